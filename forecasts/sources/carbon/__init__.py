"""Carbon-intensity providers: one adapter per provider, all playing `CarbonSource`."""

__all__: list[str] = []
