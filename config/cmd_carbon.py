"""`gridshift carbon now|history|forecast`: grid carbon intensity from the configured providers.

Each subcommand asks the region's fallback chain (`--source` first when given). When the
preferred source fails, the next one answers, or the last known value (stale, with its age)
from the last-known cache (`carbon.last_known_path`, default ~/.cache/gridshift/carbon.json,
which every fetch updates); stderr says so, the table says STALE with the cache's path, and
JSON/CSV carry `source`, `stale` and `age`. A region with no configured source is an error,
never an answer from that cache. `--source sample` (and any `sample-*` region, the ones the
embedded `gridshift run` uses) answers offline from the bundled SAMPLE DATA generator.

Exit codes: 0 answered (possibly by a fallback), 1 no source could answer, 2 usage or
configuration error.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import msgspec

from config.options import settings_from_context, settings_options
from config.settings import CARBON_PROVIDERS, Settings
from config.wiring import (
    build_carbon_source,
    build_region_map,
    carbon_provider_status,
    default_last_known_path,
)
from forecasts.platform.errors import SourceError
from forecasts.regions import UnknownRegion
from forecasts.series import CarbonSeries
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.carbon.fallback import format_age, series_to_dict
from forecasts.sources.clock import SystemClock
from forecasts.sources.sample import SAMPLE_PROVIDER, SAMPLE_REGIONS, SampleCarbonSource
from forecasts.time import Clock, parse_duration

__all__ = ["carbon", "render"]

FORMATS = ("table", "json", "csv")
LAST_KNOWN = "last-known"


class _Instant(click.ParamType[datetime]):
    """ISO 8601; a value without an offset is UTC; a bare date is its midnight UTC."""

    name = "ISO-8601"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            at = datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time such as 2025-01-20T12:00Z", param, ctx)
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


class _Duration(click.ParamType[timedelta]):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, timedelta):
            return value
        try:
            duration = parse_duration(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if duration <= timedelta(0):
            self.fail(f"{value!r} must be a positive duration such as 24h", param, ctx)
        return duration


INSTANT = _Instant()
DURATION = _Duration()


def _common(func: Callable[..., None]) -> Callable[..., None]:
    options = [
        click.option(
            "--region",
            "-r",
            required=True,
            help="gridshift region, e.g. GB, DE, or sample-wind (SAMPLE DATA, offline).",
        ),
        click.option(
            "--source",
            "-s",
            type=click.Choice((*CARBON_PROVIDERS, SAMPLE_PROVIDER)),
            default=None,
            help="Provider to ask first (the rest of the chain stays as fallback); `sample`: "
            f"the offline SAMPLE DATA regions ({', '.join(SAMPLE_REGIONS)}).",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMATS),
            default="table",
            show_default=True,
            help="Output format.",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Log each provider failure."),
    ]
    for option in reversed(options):
        func = option(func)
    return settings_options(func)


@click.group("carbon")
def carbon() -> None:
    """Grid carbon intensity (gCO2eq/kWh) from the configured providers."""


@carbon.command("now")
@_common
@click.option("--at", type=INSTANT, default=None, help="Instant to ask about [default: now].")
def now_cmd(region: str, source: str | None, fmt: str, verbose: bool, at: datetime | None) -> None:
    """The latest value for a region."""
    _answer(
        "latest",
        region=region,
        prefer=source,
        fmt=fmt,
        verbose=verbose,
        ask=lambda src, clock: src.latest(region, at=at or clock.now()),
    )


@carbon.command("history")
@_common
@click.option("--start", type=INSTANT, default=None, help="Start (UTC) [default: end - 24h].")
@click.option("--end", type=INSTANT, default=None, help="End (UTC, exclusive) [default: now].")
def history_cmd(
    region: str,
    source: str | None,
    fmt: str,
    verbose: bool,
    start: datetime | None,
    end: datetime | None,
) -> None:
    """Measured and estimated values over [start, end)."""

    def ask(src: CarbonSource, clock: Clock) -> CarbonSeries:
        stop = end or clock.now()
        begin = start or stop - timedelta(hours=24)
        if begin >= stop:
            raise click.BadParameter(
                f"--start {begin.isoformat()} must be before --end {stop.isoformat()}"
            )
        return src.history(region, start=begin, end=stop)

    _answer("history", region=region, prefer=source, fmt=fmt, verbose=verbose, ask=ask)


@carbon.command("forecast")
@_common
@click.option("--at", type=INSTANT, default=None, help="Forecast from [default: now].")
@click.option(
    "--horizon", type=DURATION, default="24h", show_default=True, help="How far ahead, e.g. 48h."
)
def forecast_cmd(
    region: str,
    source: str | None,
    fmt: str,
    verbose: bool,
    at: datetime | None,
    horizon: timedelta,
) -> None:
    """The provider's forecast over the horizon."""
    _answer(
        "forecast",
        region=region,
        prefer=source,
        fmt=fmt,
        verbose=verbose,
        ask=lambda src, clock: src.forecast(region, at=at or clock.now(), horizon=horizon),
    )


# ---------------------------------------------------------------------- plumbing
def _settings() -> Settings:
    ctx = click.get_current_context()
    found = ctx.find_object(Settings)
    if found is not None:
        return found
    # --config FILE < env < --set: ConfigError reaches the root command (readable list, exit 2).
    return settings_from_context(ctx)


def _clock() -> Clock:
    found = click.get_current_context().find_object(SystemClock)
    return found if found is not None else SystemClock()


def _answer(
    query: str,
    *,
    region: str,
    prefer: str | None,
    fmt: str,
    verbose: bool,
    ask: Callable[[CarbonSource, Clock], CarbonSeries],
) -> None:
    # Provider failures are summarised once below; -v shows each as it happens.
    logging.basicConfig(
        level=logging.WARNING if verbose else logging.ERROR,
        format="gridshift: %(levelname)s: %(message)s",
    )
    settings = _settings()
    clock = _clock()
    if prefer == SAMPLE_PROVIDER or (prefer is None and region in SAMPLE_REGIONS):
        _answer_sample(query, region=region, fmt=fmt, clock=clock, ask=ask)
        return
    try:
        canonical = build_region_map(settings.carbon).get(region).name
    except UnknownRegion as exc:
        raise click.BadParameter(
            f"{exc}; or one of the SAMPLE DATA regions {', '.join(SAMPLE_REGIONS)}",
            param_hint="--region",
        ) from None
    try:
        source = build_carbon_source(settings, clock=clock, prefer=prefer)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--source") from None
    with contextlib.closing(source):  # the providers' HTTP clients, whatever happens
        chain = [s.name for s in source.chain(canonical)]
        if not chain:
            _, missing = carbon_provider_status(settings)
            why = "; ".join(f"{name}: {reason}" for name, reason in sorted(missing.items()))
            raise click.UsageError(
                f"no carbon source is configured for region {canonical} ({why or 'no zone'}); "
                "configure one (gridshift config fields | grep carbon), or use --source sample "
                "for the offline SAMPLE DATA"
            )
        if prefer is not None and chain[0] != prefer:
            _warn(f"region {canonical} has no {prefer} zone; asking {', '.join(chain)}")
        try:
            series = ask(source, clock)
        except SourceError as exc:
            raise click.ClickException(f"carbon {query} for {canonical}: {exc}") from None
    answered_by = LAST_KNOWN if series.stale else series.provider
    wanted = prefer or chain[0]
    age = clock.now() - series.fetched_at
    cache = settings.carbon.last_known_path or default_last_known_path()
    if series.stale:
        _warn(f"no source answered; serving a stale value from {cache}: {series.note}")
    elif series.note or answered_by != wanted:
        _warn(f"{wanted} did not answer; {answered_by} did: {series.note}")
    text = render(series, fmt=fmt, query=query, source=answered_by, age=age, cache=str(cache))
    click.echo(text, nl=False)


def _answer_sample(
    query: str,
    *,
    region: str,
    fmt: str,
    clock: Clock,
    ask: Callable[[CarbonSource, Clock], CarbonSeries],
) -> None:
    """SAMPLE DATA, offline: never the network, never the last-known cache."""
    if region not in SAMPLE_REGIONS:
        raise click.BadParameter(
            f"{region!r} is not a SAMPLE DATA region; --source sample knows "
            f"{', '.join(SAMPLE_REGIONS)}",
            param_hint="--region",
        )
    series = ask(SampleCarbonSource(), clock)
    age = timedelta(0)  # generated just now, whatever instant it describes
    click.echo(render(series, fmt=fmt, query=query, source=SAMPLE_PROVIDER, age=age), nl=False)


def _warn(message: str) -> None:
    click.echo(f"gridshift carbon: warning: {message}", err=True)


def render(
    series: CarbonSeries,
    *,
    fmt: str,
    query: str,
    source: str,
    age: timedelta,
    cache: str | None = None,
) -> str:
    """The series as table, json or csv text (ending in a newline); a stale (last known)
    answer says so in every format, the table with the cache it came from."""
    if fmt == "json":
        doc = {
            "query": query,
            "source": source,
            "stale": series.stale,
            "age_seconds": round(age.total_seconds(), 3),
            **series_to_dict(series),
        }
        return msgspec.json.format(msgspec.json.encode(doc), indent=2).decode() + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(
            [
                "timestamp_utc",
                "region",
                "value",
                "unit",
                "signal",
                "quality",
                "source",
                "provider",
                "stale",
                "age_seconds",
            ]
        )
        for p in series.points:
            writer.writerow(
                [
                    p.at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    series.region,
                    f"{p.value:g}",
                    series.unit.value,
                    series.signal.value,
                    p.quality.value,
                    source,
                    series.provider,
                    str(series.stale).lower(),
                    f"{age.total_seconds():.0f}",
                ]
            )
        return out.getvalue()
    state = f"STALE, {format_age(age)} old" if series.stale else f"fetched {format_age(age)} ago"
    factor = f", {series.emission_factor} factors" if series.emission_factor else ""
    lines = [
        f"{series.region} {query} from {source} (provider {series.provider}; {state})",
        f"{series.signal.value} signal in {series.unit.value}{factor}, "
        f"{format_age(series.resolution)} resolution, {len(series)} points",
    ]
    if series.stale:
        lines.append(
            "STALE: no source answered; this is the last known value"
            + (f" from {cache}" if cache else "")
            + f", fetched {format_age(age)} ago"
        )
    if series.note:
        lines.append(f"note: {series.note}")
    lines.append(f"{'time (UTC)':<18}  {'value':>9}  quality")
    for p in series.points:
        lines.append(f"{p.at.strftime('%Y-%m-%d %H:%MZ'):<18}  {p.value:>9.1f}  {p.quality.value}")
    return "\n".join(lines) + "\n"
