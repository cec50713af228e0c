"""Settings, wiring (the composition root) and the `gridshift` command."""

__all__: list[str] = []
