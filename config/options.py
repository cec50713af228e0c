"""Click glue between commands and the settings loader.

    @click.command()
    @settings_options                       # --config FILE, --set KEY=VALUE (repeatable)
    @setting_option("--tick-interval", path="scaler.tick_interval_seconds", type=float)
    @click.pass_context
    def run(ctx: click.Context) -> None:
        settings = settings_from_context(ctx)   # ConfigError -> readable list, exit 2

Specific flags are applied after `--set`, so `--tick-interval 5` beats
`--set scaler.tick_interval_seconds=9`; a repeated `--set` of one key keeps the last.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import click

from config.loading import CONFIG_ENV, LoadedConfig, Override
from config.settings import Settings
from config.state import RunState
from config.wiring import load_settings_with_sources

__all__ = [
    "RunState",
    "loaded_settings_from_context",
    "setting_option",
    "settings_from_context",
    "settings_options",
]

F = TypeVar("F", bound=Callable[..., Any])
_META_KEY = "gridshift.settings_inputs"


@dataclass
class _Inputs:
    config_file: str | None = None
    sets: list[Override] = field(default_factory=list)
    flags: list[Override] = field(default_factory=list)


def _inputs(ctx: click.Context) -> _Inputs:
    inputs = ctx.meta.get(_META_KEY)
    if not isinstance(inputs, _Inputs):
        inputs = ctx.meta[_META_KEY] = _Inputs()
    return inputs


def _store_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        _inputs(ctx).config_file = value


def _store_sets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> None:
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(
                f"expected KEY=VALUE (e.g. scaler.tick_interval_seconds=30), got {item!r}",
                ctx=ctx,
                param=param,
            )
        _inputs(ctx).sets.append(Override(key.strip(), value, "flag:--set"))


def settings_options(f: F) -> F:
    """Add `--config FILE` and repeatable `--set KEY=VALUE` to a command."""
    f = click.option(
        "--set",
        "set_values",
        multiple=True,
        metavar="KEY=VALUE",
        expose_value=False,
        callback=_store_sets,
        help="Override one setting, e.g. --set scaler.tick_interval_seconds=30 (repeatable; "
        "nested values are YAML).",
    )(f)
    return click.option(
        "--config",
        "config_file",
        metavar="FILE",
        expose_value=False,
        callback=_store_config,
        help=f"YAML configuration file (default: ${CONFIG_ENV}).",
    )(f)


def setting_option(*decls: str, path: str, **kwargs: Any) -> Callable[[F], F]:
    """A command-specific flag that sets the setting at dotted `path` when given."""
    label = "flag:" + max((d for d in decls if d.startswith("-")), key=len, default=path)

    def store(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        if value is None or value == ():
            return
        text = str(value).lower() if isinstance(value, bool) else str(value)
        _inputs(ctx).flags.append(Override(path, text, label))

    if "default" in kwargs:
        raise TypeError(f"setting_option {decls}: the default belongs in config/settings.py")
    kwargs.setdefault("help", f"Sets {path}.")
    return click.option(*decls, expose_value=False, callback=store, default=None, **kwargs)


def loaded_settings_from_context(ctx: click.Context) -> LoadedConfig[Settings]:
    """Load the settings with provenance from this command's flags (raises `ConfigError`)."""
    inputs = _inputs(ctx)
    state = ctx.find_object(RunState) or RunState()
    return load_settings_with_sources(
        config_file=inputs.config_file,
        overrides=[*inputs.sets, *inputs.flags],
        environ=state.environ,
        model=state.model(),
    )


def settings_from_context(ctx: click.Context) -> Settings:
    return loaded_settings_from_context(ctx).settings
