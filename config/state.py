"""Per-invocation state of the `gridshift` command, importable without pydantic (so that
`gridshift --help` stays fast)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config.settings import Settings

__all__ = ["RunState"]


@dataclass
class RunState:
    """Per-invocation state on `ctx.obj`: what `main()` needs, and what tests may inject.
    `settings_model` None means `config.settings.Settings`."""

    debug: bool = False
    settings_model: type[Settings] | None = None
    environ: Mapping[str, str] | None = None

    def model(self) -> type[Settings]:
        if self.settings_model is not None:
            return self.settings_model
        from config.settings import Settings

        return Settings
