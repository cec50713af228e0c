"""The `gridshift` command: one subcommand per component.

Every level has `--help`/`-h` and `--version`. A `ConfigError` or pydantic `ValidationError`
raised by any command is printed as one readable list and exits 2; `main()` turns anything
unexpected into a one-line message (exit 1) unless `--debug` or `GRIDSHIFT_DEBUG=1` asks for
the traceback. Register a component's commands with one `cli.add_command(...)` line below.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click

from config.state import RunState
from config.version import __version__

__all__ = ["EXIT_INTERRUPTED", "LAZY_COMMANDS", "GridshiftGroup", "cli", "main"]

DEBUG_ENV = "GRIDSHIFT_DEBUG"  # config.loading.DEBUG_ENV, without importing pydantic for --help
EXIT_CONFIG_ERROR = 2  # config.errors.EXIT_CONFIG_ERROR
EXIT_INTERRUPTED = 130  # Ctrl-C on a short command (128 + SIGINT, as shells report it)
_TRUTHY = {"1", "true", "yes", "on"}

# name -> (module, attribute, one-line help for `gridshift --help`). Each command's module is
# imported only when that command runs (or its own --help is asked for), so `gridshift --help`
# does not pay for numpy, pandas, kubernetes or uvicorn. tests/unit/test_cli.py checks each
# line against the command's own help.
LAZY_COMMANDS: dict[str, tuple[str, str, str]] = {
    "agent": ("config.cmd_extender", "agent_command", "Report GPU power (NVML) as Prometheus..."),
    "backtest": ("config.cmd_forecast", "backtest_command", "Rolling-origin backtest of models..."),
    "carbon": ("config.cmd_carbon", "carbon", "Grid carbon intensity (gCO2eq/kWh) from the..."),
    "ci": ("config.cmd_load", "ci_group", "Check CI schedules (cron in a time zone)."),
    "config": ("config.cmd_config", "config_group", "Validate and show the effective..."),
    "extender": ("config.cmd_extender", "extender_command", "Serve the kube-scheduler extender..."),
    "forecast": (
        "config.cmd_forecast",
        "forecast_command",
        "Forecast one series of a CSV...",
    ),
    "prometheus": ("config.cmd_load", "prometheus_group", "Query Prometheus the way the scaler..."),
    "replay": ("config.cmd_replay", "replay_command", "Replay policies side by side over..."),
    "run": ("config.cmd_run", "run_command", "Run the scaler: ticks, metrics and the status API."),
}


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"gridshift {__version__}")
        ctx.exit(0)


def _version_option() -> click.Option:
    return click.Option(
        ["--version"],
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=_print_version,
        help="Show the version and exit.",
    )


def _equip(command: click.Command) -> None:
    """Give `command` and everything below it a `--version` option."""
    if not any(isinstance(p, click.Option) and "--version" in p.opts for p in command.params):
        command.params.append(_version_option())
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _equip(sub)


def _is_config_error(exc: BaseException) -> bool:
    """A `ConfigError` or pydantic `ValidationError` (neither can exist unless the module that
    defines it was imported, so this never imports pydantic itself)."""
    errors = sys.modules.get("config.errors")
    if errors is not None and isinstance(exc, errors.ConfigError):
        return True
    core = sys.modules.get("pydantic_core")
    return core is not None and isinstance(exc, core.ValidationError)


def _render(exc: BaseException) -> str:
    from config.errors import render_errors

    return render_errors(exc)  # type: ignore[arg-type]


class GridshiftGroup(click.Group):
    """The root group: `--version` everywhere, configuration errors -> readable list, exit 2,
    subcommands in `lazy` imported on first use."""

    def __init__(
        self, *args: Any, lazy: dict[str, tuple[str, str, str]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _equip(self)
        return super().main(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, attr, _ = self.lazy[cmd_name]
            command = getattr(importlib.import_module(module), attr)
            _equip(command)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(45)))
            else:
                rows.append((name, self.lazy[name][2]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not _is_config_error(exc):
                raise
            click.echo(_render(exc), err=True)
            ctx.exit(EXIT_CONFIG_ERROR)


@click.group(
    cls=GridshiftGroup,
    lazy=LAZY_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.option(
    "--debug",
    is_flag=True,
    help=f"Show full tracebacks for unexpected errors (also {DEBUG_ENV}=1).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """gridshift: carbon-aware autoscaling and scheduling for Kubernetes."""
    ctx.ensure_object(RunState).debug = debug


def _debug_requested(state: RunState) -> bool:
    return state.debug or os.environ.get(DEBUG_ENV, "").strip().lower() in _TRUTHY


def main(argv: Sequence[str] | None = None) -> None:
    """The console script: never a traceback for configuration errors."""
    state = RunState()
    try:
        rv = cli.main(
            args=None if argv is None else list(argv),
            prog_name="gridshift",
            standalone_mode=False,
            obj=state,
        )
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        # long-running commands (run, extender, agent, replay) handle Ctrl-C themselves and
        # stop cleanly with 0; this is Ctrl-C during a short one
        click.echo("gridshift: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as exc:
        if _is_config_error(exc):
            click.echo(_render(exc), err=True)
            sys.exit(EXIT_CONFIG_ERROR)
        if _debug_requested(state):
            traceback.print_exc()
            sys.exit(1)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        click.echo(f"gridshift: unexpected error: {type(exc).__name__}: {first_line}", err=True)
        click.echo(f"(run with --debug or {DEBUG_ENV}=1 to see the traceback)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
