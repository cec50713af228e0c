"""Shared helpers for reading provider JSON: every problem becomes a `SourceDataError` that
names the field and what is wrong with it, never a `KeyError`/`TypeError` from deep inside."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.time import Clock, ensure_utc

__all__ = [
    "RawPoint",
    "as_list",
    "as_mapping",
    "bounded_duration",
    "check_unit",
    "chunks",
    "empty_series",
    "fmt_iso_z",
    "infer_resolution",
    "parse_duration_seconds",
    "parse_instant",
    "parse_intensity",
    "parse_number",
    "zone_of",
]

RawPoint = tuple[datetime, float | None, Quality]
EARLIEST = datetime(1990, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_DURATION = timedelta(days=366)
T = TypeVar("T")


def as_mapping(value: Any, *, source: str, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SourceDataError(f"{where}: expected a JSON object, got {_kind(value)}", source=source)
    return value


def as_list(value: Any, *, source: str, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SourceDataError(f"{where}: expected a JSON array, got {_kind(value)}", source=source)
    return value


def parse_instant(value: Any, *, source: str, where: str) -> datetime:
    """An ISO 8601 instant with an explicit offset (`Z` or `+00:00`), returned in UTC."""
    if not isinstance(value, str) or not value:
        raise SourceDataError(
            f"{where}: expected an ISO 8601 timestamp, got {_kind(value)}", source=source
        )
    try:
        # Python >= 3.11 reads `Z`, minute-only times and .NET's 7 fractional digits.
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SourceDataError(
            f"{where}: not an ISO 8601 timestamp: {value!r}", source=source
        ) from None
    if parsed.tzinfo is None:
        raise SourceDataError(
            f"{where}: timestamp {value!r} has no time zone; refusing to guess", source=source
        )
    if not EARLIEST <= parsed <= LATEST:
        raise SourceDataError(
            f"{where}: implausible timestamp {value!r} (outside {EARLIEST.year}..{LATEST.year})",
            source=source,
        )
    return parsed.astimezone(UTC)


def parse_duration_seconds(
    value: Any, *, source: str, where: str, unit_seconds: float
) -> timedelta:
    """A non-negative duration given as a number of `unit_seconds`, at most `MAX_DURATION`."""
    number = parse_number(value, source=source, where=where)
    if number is None:
        return timedelta(0)
    return bounded_duration(number * unit_seconds, source=source, where=where)


def bounded_duration(seconds: float, *, source: str, where: str) -> timedelta:
    if not 0 <= seconds <= MAX_DURATION.total_seconds():
        raise SourceDataError(
            f"{where}: duration of {seconds:g} s is outside 0..{MAX_DURATION.days} days",
            source=source,
        )
    return timedelta(seconds=seconds)


def parse_number(value: Any, *, source: str, where: str) -> float | None:
    """A JSON number; `null` is a missing value (None). Strings and booleans are errors."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SourceDataError(
            f"{where}: expected a number or null, got {_kind(value)}", source=source
        )
    number = float(value)
    if not math.isfinite(number):
        return None
    return number


def parse_intensity(value: Any, *, source: str, where: str) -> float | None:
    """A gCO2eq/kWh value: a number >= 0, or null."""
    number = parse_number(value, source=source, where=where)
    if number is not None and number < 0:
        raise SourceDataError(f"{where}: negative carbon intensity {number}", source=source)
    return number


G_PER_KWH_UNITS = frozenset({"gCO2eq/kWh", "gCO2/kWh", "g/kWh", "gCO2e/kWh"})


def check_unit(doc: Mapping[str, Any], *, source: str, where: str) -> None:
    """Refuse an answer that states a unit other than grams per kWh (`unit`/`units` key)."""
    for key in ("unit", "units"):
        unit = doc.get(key)
        if unit is not None and not (isinstance(unit, str) and unit in G_PER_KWH_UNITS):
            raise SourceDataError(
                f"{where}.{key}: expected gCO2eq/kWh but got {unit!r}", source=source
            )


def fmt_iso_z(at: datetime, *, seconds: bool = True) -> str:
    """UTC with an explicit `Z` (providers are strict about datetime formats)."""
    at = ensure_utc(at)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ" if seconds else "%Y-%m-%dT%H:%MZ")


def chunks(
    start: datetime, end: datetime, *, size: timedelta
) -> Iterator[tuple[datetime, datetime]]:
    """Split [start, end) into consecutive windows of at most `size`."""
    lo = start
    while lo < end:
        hi = min(lo + size, end)
        yield lo, hi
        lo = hi


def infer_resolution(times: Iterable[datetime]) -> timedelta | None:
    """The most common spacing between distinct consecutive instants (ties: the smallest);
    None with fewer than two instants."""
    ordered = sorted(set(times))
    gaps = Counter(b - a for a, b in itertools.pairwise(ordered))
    if not gaps:
        return None
    top = max(gaps.values())
    return min(g for g, n in gaps.items() if n == top)


def zone_of(lookup: Callable[[], T], *, source: str) -> T:
    """Run a region lookup, turning an unknown region into a `SourceRequestError`."""
    try:
        return lookup()
    except ValueError as exc:
        raise SourceRequestError(str(exc), source=source) from None


def empty_series(
    region: str,
    *,
    unit: CarbonUnit,
    signal: Signal,
    provider: str,
    clock: Clock,
    resolution: timedelta,
    emission_factor: str | None = None,
) -> CarbonSeries:
    return CarbonSeries.build(
        region=region,
        points=(),
        unit=unit,
        signal=signal,
        provider=provider,
        fetched_at=clock.now(),
        resolution=resolution,
        emission_factor=emission_factor,
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
