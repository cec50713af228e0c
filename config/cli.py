"""The `gridshift` command: one subcommand per component."""

from __future__ import annotations

import click

from config.cmd_forecast import backtest_command, forecast_command
from config.version import __version__

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gridshift")
def cli() -> None:
    """gridshift: carbon-aware autoscaling and scheduling for Kubernetes."""


cli.add_command(forecast_command)
cli.add_command(backtest_command)


def main() -> None:
    cli(prog_name="gridshift")


if __name__ == "__main__":  # pragma: no cover
    main()
