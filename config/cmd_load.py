"""`gridshift prometheus ...` and `gridshift ci ...`: check load queries and CI schedules.

- `gridshift prometheus history QUERY --since 6h --step 1m` runs a workload's PromQL the way
  the scaler will (aligned, split, gap rule) and prints the gap report and the values
  (table, JSON or CSV). Connection settings come from the `prometheus` settings group
  (`--config FILE`, `GRIDSHIFT_PROMETHEUS__URL`, `--set prometheus.KEY=VALUE`); `--url`
  overrides the URL. `--rate` turns a counter
  selector into `sum(rate(counter[window]))` using `scrape_interval_seconds`.
- `gridshift ci expand CRON --timezone Europe/London --duration 30m --window 7d` validates a
  CI schedule and lists its next runs in UTC and local time.
"""

from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import click

from config.options import setting_option, settings_from_context, settings_options
from config.wiring import build_prometheus_source
from forecasts.ci import CISchedule, expand_runs
from forecasts.load import LoadHistory
from forecasts.platform.errors import SourceError
from forecasts.platform.http import RetryPolicy
from forecasts.sources.clock import SystemClock
from forecasts.sources.prometheus import rate_query
from forecasts.time import UTC, Clock, ensure_utc, humanize_duration, parse_duration

__all__ = ["ci_group", "format_history", "prometheus_group"]


def _duration(_ctx: click.Context, param: click.Parameter, value: str) -> timedelta:
    try:
        got = parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param=param) from None
    if got <= timedelta(0):
        raise click.BadParameter(f"must be positive, got {value!r}", param=param)
    return got


def _instant(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return ensure_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 instant with a zone (e.g. 2024-01-15T12:00:00Z): {exc}",
            param=param,
        ) from None


def format_history(history: LoadHistory, *, fmt: Literal["table", "json", "csv"]) -> str:
    """Render a `LoadHistory` with its gap report."""
    series = history.series
    kinds = [
        "interpolated" if filled else ("missing" if math.isnan(v) else "measured")
        for v, filled in zip(series.values, history.interpolated_mask, strict=True)
    ]
    rows = [
        (t.isoformat().replace("+00:00", "Z"), None if math.isnan(v) else float(v), kind)
        for t, v, kind in zip(series.times(), series.values, kinds, strict=True)
    ]
    if fmt == "json":
        return json.dumps(
            {
                "query": history.query,
                "step_seconds": series.step.total_seconds(),
                "coverage": history.coverage,
                "requests": history.requests,
                "non_finite_samples": history.non_finite_samples,
                "interpolated": [[g.start.isoformat(), g.steps] for g in history.interpolated],
                "marked": [[g.start.isoformat(), g.steps] for g in history.marked],
                "warnings": list(history.warnings),
                "points": [{"at": a, "value": v, "kind": k} for a, v, k in rows],
            },
            indent=2,
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["at", "value", "kind"])
        writer.writerows((a, "" if v is None else repr(v), k) for a, v, k in rows)
        return out.getvalue()
    last = history.last_observed_at
    lines = [
        f"query: {history.query}",
        f"{len(series)} steps of {humanize_duration(series.step)}, "
        f"{history.coverage:.1%} measured, "
        f"{history.requests} request(s), last measured {last.isoformat() if last else 'never'}",
    ]
    for gap in history.interpolated:
        lines.append(f"interpolated: {gap.start.isoformat()} ({gap.steps} steps)")
    for gap in history.marked:
        lines.append(f"marked (NaN): {gap.start.isoformat()} ({gap.steps} steps)")
    if history.non_finite_samples:
        lines.append(f"NaN/Inf samples treated as missing: {history.non_finite_samples}")
    lines += [f"warning: {w}" for w in history.warnings]
    width = max(len(a) for a, _, _ in rows) if rows else 0
    lines += [f"{a:<{width}}  {'' if v is None else f'{v:.6g}':>12}  {k}" for a, v, k in rows]
    return "\n".join(lines) + "\n"


@click.group("prometheus")
def prometheus_group() -> None:
    """Query Prometheus the way the scaler does."""


@prometheus_group.command("history")
@click.argument("query")
@click.option(
    "--since",
    "since",
    default="6h",
    show_default=True,
    callback=_duration,
    help="How far back from --until.",
)
@click.option(
    "--until",
    "until",
    default=None,
    callback=_instant,
    help="End of the window (ISO 8601, exclusive); default now.",
)
@click.option(
    "--step",
    "step",
    default="1m",
    show_default=True,
    callback=_duration,
    help="Grid step (aligned to multiples of it).",
)
@settings_options
@setting_option("--url", path="prometheus.url", help="Prometheus base URL (prometheus.url).")
@click.option(
    "--rate",
    "as_rate",
    is_flag=True,
    help="QUERY is a counter selector: fetch sum(rate(QUERY[window])) with the window rule "
    "(4 scrape intervals, or step + 1 scrape).",
)
@click.option(
    "--sum",
    "sum_series",
    is_flag=True,
    help="Sum several series per step instead of refusing them.",
)
@click.option("--unit", default="1", show_default=True, help="Unit of the values.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json", "csv"]),
    default="table",
    show_default=True,
)
@click.pass_context
def history_command(
    ctx: click.Context,
    query: str,
    since: timedelta,
    until: datetime | None,
    step: timedelta,
    as_rate: bool,
    sum_series: bool,
    unit: str,
    fmt: Literal["table", "json", "csv"],
) -> None:
    """Fetch QUERY as load history and print it with the gap report."""
    settings = settings_from_context(ctx).prometheus
    clock: Clock = SystemClock()
    source = build_prometheus_source(settings, clock=clock, retry=RetryPolicy(attempts=2))
    end = until or clock.now()
    try:
        if as_rate:
            scrape = timedelta(seconds=settings.scrape_interval_seconds)
            query = rate_query(query, scrape_interval=scrape, step=step)
        got = source.fetch(
            query,
            start=end - since,
            end=end,
            step=step,
            aggregate="sum" if sum_series else "one",
            unit=unit,
        )
    except SourceError as exc:
        raise click.ClickException(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    finally:
        source.close()
    click.echo(format_history(got, fmt=fmt), nl=False)


@click.group("ci")
def ci_group() -> None:
    """Check CI schedules (cron in a time zone)."""


@ci_group.command("expand")
@click.argument("cron")
@click.option(
    "--timezone",
    "timezone",
    default="UTC",
    show_default=True,
    help="IANA time zone the cron expression is read in.",
)
@click.option(
    "--duration",
    "duration",
    default="30m",
    show_default=True,
    callback=_duration,
    help="Expected run time.",
)
@click.option(
    "--window",
    "window",
    default="7d",
    show_default=True,
    callback=_duration,
    help="How far ahead to list runs.",
)
@click.option(
    "--from",
    "start",
    default=None,
    callback=_instant,
    help="Start of the window (ISO 8601); default now.",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1))
def expand_command(
    cron: str,
    timezone: str,
    duration: timedelta,
    window: timedelta,
    start: datetime | None,
    limit: int,
) -> None:
    """Validate CRON and list the runs it starts in the window."""
    try:
        schedule = CISchedule(name="cli", cron=cron, duration=duration, timezone=timezone)
    except ValueError as exc:
        raise click.UsageError(str(exc).removeprefix("schedule 'cli': ")) from None
    begin = start or SystemClock().now()
    runs = [r for r in expand_runs([schedule], start=begin, end=begin + window) if r.start >= begin]
    local = ZoneInfo(timezone)  # validated by CISchedule
    for run in runs[:limit]:
        click.echo(
            f"{run.start.astimezone(UTC).isoformat().replace('+00:00', 'Z')}  "
            f"{run.start.astimezone(local).isoformat()}  until {run.end.astimezone(local):%H:%M}"
        )
    more = len(runs) - limit
    click.echo(f"{len(runs)} run(s) in {window}" + (f" ({more} not shown)" if more > 0 else ""))
