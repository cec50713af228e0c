"""`gridshift replay`: policies side by side over a scenario file, or the sample tick replay.

- `gridshift replay --scenario FILE [--out DIR] [--format table|json]` runs every policy of
  the scenario (static, HPA, carbon-aware KEDA ceilings, gridshift performance-only,
  gridshift, oracle) on the same demand and carbon and prints a table or JSON; with `--out`
  it also writes `summary.json` and a self-contained `report.html`.
- `gridshift replay --from --to` (no scenario file) is the scaler's own replay of the
  bundled SAMPLE DATA (`config.cmd_run.replay_command`), kept as it was.
"""

from __future__ import annotations

import io
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import msgspec
import yaml

from config import cmd_run
from config.fleet import fleet_executor, fleet_options, plan_fleet
from config.replay_report import render_html, render_table
from config.replay_scenario import LoadedScenario, ScenarioError, load_scenario
from config.replay_spec import CARBON_MODELS
from forecasts.platform.signals import stop_on_signals
from scaler.replay.engine import progress_total, run_replay, run_replay_parallel
from scaler.replay.fleet import work_units
from scaler.replay.model import PolicyName, ReplayResult
from scaler.replay.summary import summarise

__all__ = ["REPLAY_WORTH_A_CLUSTER", "replay_command"]

#: Workload-intervals from which `--workers auto` starts a local cluster: about 15 s of replay
#: on one core (0.7 ms per workload-interval, 6 policies), several times the ~2-3 s a
#: local Dask cluster takes to start.
REPLAY_WORTH_A_CLUSTER = 20_000


def _instant(value: str | None, name: str) -> datetime | None:
    return None if value is None else cmd_run._parse_instant(value, name)


@click.command("replay")
@click.option(
    "--scenario",
    default="sample",
    show_default=True,
    help="A replay scenario YAML file, or `sample` for the scaler's SAMPLE DATA tick replay.",
)
@click.option("--from", "start_text", help="Start instant (ISO 8601); overrides the file's.")
@click.option("--to", "end_text", help="End instant (ISO 8601); overrides the file's.")
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write summary.json and report.html (self-contained) here.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
)
@click.option("--noise-percent", type=click.FloatRange(0, 100), help="Degrade carbon forecasts.")
@click.option("--seed", type=int, default=None, help="Seed for forecast noise (file's default).")
@click.option(
    "--carbon-model",
    type=click.Choice(CARBON_MODELS),
    default=None,
    help="How gridshift forecasts carbon in this run (overrides the file's forecast.carbon_model; "
    "`perfect` plays the recorded intensity as its own forecast: an upper bound).",
)
@click.option(
    "--policy",
    "policies",
    multiple=True,
    type=click.Choice([str(p) for p in PolicyName]),
    help="Run only these policies (repeat; the oracle always runs).",
)
@click.option(
    "--scaler",
    "scaler_knobs",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override one of the scenario's scaler settings for this run (repeat), "
    "e.g. --scaler eco_quantile=0.75.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sample replay only: workloads to replay instead of the sample scenario's own.",
)
@click.option("--step-seconds", type=click.FloatRange(min=1), default=None, help="Sample only.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@fleet_options
@click.pass_context
def replay_command(
    ctx: click.Context,
    scenario: str,
    start_text: str | None,
    end_text: str | None,
    out_dir: Path | None,
    fmt: str,
    noise_percent: float | None,
    seed: int | None,
    carbon_model: str | None,
    policies: tuple[str, ...],
    scaler_knobs: tuple[str, ...],
    no_progress: bool,
    config_file: Path | None,
    step_seconds: float | None,
    as_json: bool,
    workers: str,
    scheduler_address: str | None,
) -> None:
    """Replay policies side by side over recorded demand and carbon."""
    if scenario == "sample":
        _sample_replay(
            ctx,
            start_text=start_text,
            end_text=end_text,
            config_file=config_file,
            step_seconds=step_seconds,
            seed=seed,
            as_json=as_json or fmt == "json",
        )
        return
    path = Path(scenario)
    if not path.is_file():
        raise click.BadParameter(f"{scenario}: no such scenario file", param_hint="--scenario")
    logging.basicConfig(level="WARNING", format="%(levelname)s %(name)s: %(message)s")
    try:
        loaded = load_scenario(
            path,
            start=_instant(start_text, "--from"),
            end=_instant(end_text, "--to"),
            noise_percent=noise_percent,
            seed=seed,
            policies=tuple(PolicyName(p) for p in policies) or None,
            scaler_overrides=_knobs(scaler_knobs),
            forecast_overrides=None if carbon_model is None else {"carbon_model": carbon_model},
        )
    except ScenarioError as exc:
        raise click.ClickException(str(exc)) from exc
    result = _run(loaded, no_progress=no_progress, workers=workers, scheduler=scheduler_address)
    if result is not None:
        _report(result, out_dir=out_dir, as_json=as_json or fmt == "json")


def _sample_replay(
    ctx: click.Context,
    *,
    start_text: str | None,
    end_text: str | None,
    config_file: Path | None,
    step_seconds: float | None,
    seed: int | None,
    as_json: bool,
) -> None:
    """`--scenario sample`: the scaler's own tick replay of the bundled SAMPLE DATA."""
    if start_text is None or end_text is None:
        raise click.UsageError(
            "the sample tick replay needs --from and --to; or pass --scenario FILE "
            "(e.g. config/scenarios/sample.yaml)"
        )
    ctx.invoke(
        cmd_run.replay_command,
        start_text=start_text,
        end_text=end_text,
        scenario="sample",
        config_file=config_file,
        step_seconds=step_seconds,
        seed=0 if seed is None else seed,
        as_json=as_json,
    )


def _run(
    loaded: LoadedScenario, *, no_progress: bool, workers: str, scheduler: str | None
) -> ReplayResult | None:
    """Every policy of the scenario, in this process or on a fleet, with a progress bar when
    it is long; None when Ctrl-C / SIGTERM stopped it (said on stderr)."""
    sc = loaded.scenario
    total = progress_total(sc)
    show = not no_progress and total > 500
    plan = plan_fleet(
        workers,
        scheduler,
        parts=len(sc.workloads),
        work=sum(work_units(sc, w) for w in sc.workloads),
        worth_it=REPLAY_WORTH_A_CLUSTER,
        unit="workload-intervals",
    )
    if show or not plan.single_process:
        click.echo(f"replay {sc.name}: {plan.why}", err=True)
    done = [0]
    with (
        stop_on_signals() as stop,
        fleet_executor(plan) as (executor, parts),
        click.progressbar(
            length=total, label=f"replay {sc.name}", file=sys.stderr if show else io.StringIO()
        ) as bar,
    ):

        def progress(n: int) -> None:
            bar.update(n)
            done[0] += n
            if stop.is_set():  # Ctrl-C / SIGTERM: stop after the step in progress
                raise _Stopped

        try:
            if executor is None:
                return run_replay(sc, progress=progress, **loaded.replay_options)
            # parts report as they finish; a stop cancels the rest with the cluster
            return run_replay_parallel(
                sc, executor=executor, parts=parts, progress=progress, **loaded.replay_options
            )
        except _Stopped:
            pass
    click.echo(
        f"replay {sc.name}: stopped after {done[0]} of {total} ticks (interrupted); no "
        "summary, the policies would be compared over unequal spans",
        err=True,
    )
    return None


def _report(result: ReplayResult, *, out_dir: Path | None, as_json: bool) -> None:
    """The summary as a table or JSON; with `out_dir` also summary.json and report.html."""
    summary = summarise(result)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_bytes(_json(summary))
        (out_dir / "report.html").write_text(render_html(result, summary))
    if as_json:
        click.echo(_json(summary).decode())
    else:
        click.echo(render_table(summary))
        if out_dir is not None:
            click.echo(f"\nwrote {out_dir / 'summary.json'} and {out_dir / 'report.html'}")


class _Stopped(Exception):
    """Ctrl-C or SIGTERM during a scenario replay."""


def _knobs(items: tuple[str, ...]) -> dict[str, Any]:
    """`KEY=VALUE` pairs; values read as YAML scalars (0.75 -> float, true -> bool)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--scaler")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise click.BadParameter(f"{item!r}: {exc}", param_hint="--scaler") from exc
    return out


def _json(summary: dict[str, Any]) -> bytes:
    return msgspec.json.format(msgspec.json.encode(summary), indent=2)
