"""The `gridshift` command: one subcommand per component.

Every level has `--help`/`-h` and `--version`. A `ConfigError` or pydantic `ValidationError`
raised by any command is printed as one readable list and exits 2; `main()` turns anything
unexpected into a one-line message (exit 1) unless `--debug` or `GRIDSHIFT_DEBUG=1` asks for
the traceback. Register a component's commands with one `cli.add_command(...)` line below.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import click
from pydantic import ValidationError

from config.cmd_carbon import carbon
from config.cmd_config import config_group
from config.cmd_extender import agent_command, extender_command
from config.cmd_load import ci_group, prometheus_group
from config.cmd_run import replay_command, run_command
from config.errors import EXIT_CONFIG_ERROR, ConfigError, render_errors
from config.loading import DEBUG_ENV
from config.options import RunState
from config.version import __version__

__all__ = ["GridshiftGroup", "cli", "main"]

_TRUTHY = {"1", "true", "yes", "on"}


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


class GridshiftGroup(click.Group):
    """The root group: `--version` everywhere, configuration errors -> readable list, exit 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        _equip(self)
        return super().main(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (ConfigError, ValidationError) as exc:
            click.echo(render_errors(exc), err=True)
            ctx.exit(EXIT_CONFIG_ERROR)


@click.group(cls=GridshiftGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--debug",
    is_flag=True,
    help=f"Show full tracebacks for unexpected errors (also {DEBUG_ENV}=1).",
)
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """gridshift: carbon-aware autoscaling and scheduling for Kubernetes."""
    ctx.ensure_object(RunState).debug = debug


cli.add_command(config_group)
cli.add_command(run_command)
cli.add_command(replay_command)
cli.add_command(carbon)
cli.add_command(prometheus_group)
cli.add_command(ci_group)
cli.add_command(extender_command)
cli.add_command(agent_command)


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
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except (ConfigError, ValidationError) as exc:
        click.echo(render_errors(exc), err=True)
        sys.exit(EXIT_CONFIG_ERROR)
    except Exception as exc:
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
