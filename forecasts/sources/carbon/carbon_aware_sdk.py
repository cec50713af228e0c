"""GSF Carbon Aware SDK WebAPI adapter (`../shared/reference/carbon-aware-sdk.md`), for teams
that already run the SDK in front of WattTime or Electricity Maps.

- `latest`: `GET emissions/bylocation?location=X&time=at-1h&toTime=at`, newest point at or
  before `at`; `history`: the same route over [start, end). HTTP 204 means "no data" (an empty
  series, never an error).
- `forecast`: `GET emissions/forecasts/current?location=X&dataStartAt=..&dataEndAt=..`.
- Errors are RFC 7807 problem details (`title`, `detail`), surfaced by `HttpSource`.
- `rating`/`value` are gCO2/kWh. Whether they are marginal (SDK on WattTime) or average (SDK on
  Electricity Maps) is not in the answer, so the configured `signal` says which.
- A point's `duration` is a .NET TimeSpan (`"00:05:00"`, `"1.00:00:00"`) in emissions data and
  whole minutes in forecast data; the most common positive duration is the series' resolution.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from forecasts.platform.errors import SourceDataError
from forecasts.platform.http import HttpSource
from forecasts.regions import RegionMap
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon._wire import (
    RawPoint,
    as_list,
    as_mapping,
    bounded_duration,
    check_unit,
    fmt_iso_z,
    infer_resolution,
    parse_duration_seconds,
    parse_instant,
    parse_intensity,
    zone_of,
)

__all__ = ["CarbonAwareSdkSource", "parse_timespan"]

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")
LATEST_LOOKBACK = timedelta(hours=1)


def parse_timespan(text: str) -> timedelta:
    """A non-negative .NET TimeSpan `[d.]hh:mm:ss[.fffffff]`; `ValueError` otherwise."""
    match = _TIMESPAN.match(text.strip())
    if match is None:
        raise ValueError(f"not a TimeSpan [d.]hh:mm:ss: {text!r}")
    days, hours, minutes, seconds, fraction = match.groups()
    if int(minutes) > 59 or int(seconds) > 59:
        raise ValueError(f"not a TimeSpan [d.]hh:mm:ss: {text!r}")
    frac = float(f"0.{fraction}") if fraction else 0.0
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds) + frac,
    )


class CarbonAwareSdkSource:
    """`CarbonSource` over a Carbon Aware SDK WebAPI deployment."""

    def __init__(self, http: HttpSource, *, regions: RegionMap, signal: Signal) -> None:
        self._http = http
        self._regions = regions
        self._signal = signal

    @property
    def name(self) -> str:
        return self._http.name

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self._http.close()

    def __repr__(self) -> str:
        return f"CarbonAwareSdkSource(name={self.name!r}, signal={self._signal.value!r})"

    # ------------------------------------------------------------------ the role
    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        series = self._emissions(region, start=at - LATEST_LOOKBACK, end=at)
        point = series.latest(at=at)
        return replace(series, points=(point,) if point else ())

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        series = self._emissions(region, start=start, end=end)
        return replace(series, points=tuple(p for p in series.points if start <= p.at < end))

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        location = self._location(region)
        end = at + horizon
        params = [
            ("location", location),
            ("dataStartAt", fmt_iso_z(at)),
            ("dataEndAt", fmt_iso_z(end)),
        ]
        body = self._http.get_json(
            "emissions/forecasts/current",
            params=params,
            cache_key=("forecast", location, fmt_iso_z(at), fmt_iso_z(end)),
        )
        forecasts = as_list(body, source=self.name, where="forecasts")
        if not forecasts:
            return self._series(region, [], [])
        if len(forecasts) != 1:
            raise SourceDataError(
                f"forecasts: asked for one location but got {len(forecasts)} forecasts",
                source=self.name,
            )
        doc = as_mapping(forecasts[0], source=self.name, where="forecasts[0]")
        check_unit(doc, source=self.name, where="forecasts[0]")
        data = as_list(doc.get("forecastData"), source=self.name, where="forecasts[0].forecastData")
        raw: list[RawPoint] = []
        durations: list[timedelta] = []
        for i, entry in enumerate(data):
            where = f"forecasts[0].forecastData[{i}]"
            item = as_mapping(entry, source=self.name, where=where)
            check_unit(item, source=self.name, where=where)
            when = parse_instant(
                item.get("timestamp"), source=self.name, where=f"{where}.timestamp"
            )
            value = parse_intensity(item.get("value"), source=self.name, where=f"{where}.value")
            duration = parse_duration_seconds(
                item.get("duration"), source=self.name, where=f"{where}.duration", unit_seconds=60
            )
            # Keep points whose [timestamp, timestamp + duration) overlaps [at, end).
            if when >= end or (when + duration <= at if duration > timedelta(0) else when < at):
                continue
            raw.append((when, value, Quality.FORECAST))
            durations.append(duration)
        return self._series(region, raw, durations)

    # ------------------------------------------------------------------ helpers
    def _location(self, region: str) -> str:
        return zone_of(lambda: self._regions.zone(region, provider=self.name), source=self.name)

    def _emissions(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        location = self._location(region)
        params = {"location": location, "time": fmt_iso_z(start), "toTime": fmt_iso_z(end)}
        body = self._http.get_json(
            "emissions/bylocation",
            params=params,
            allow_empty=True,
            cache_key=("bylocation", location, params["time"], params["toTime"]),
        )
        if body is None:  # 204 No Content: nothing matched
            return self._series(region, [], [])
        data = as_list(body, source=self.name, where="emissions")
        raw: list[RawPoint] = []
        durations: list[timedelta] = []
        for i, entry in enumerate(data):
            where = f"emissions[{i}]"
            item = as_mapping(entry, source=self.name, where=where)
            check_unit(item, source=self.name, where=where)
            when = parse_instant(item.get("time"), source=self.name, where=f"{where}.time")
            value = parse_intensity(item.get("rating"), source=self.name, where=f"{where}.rating")
            raw.append((when, value, Quality.MEASURED))
            durations.append(self._duration(item.get("duration"), where=f"{where}.duration"))
        return self._series(region, raw, durations)

    def _duration(self, value: Any, *, where: str) -> timedelta:
        if value is None:
            return timedelta(0)
        if isinstance(value, str):
            try:
                span = parse_timespan(value)
            except (ValueError, OverflowError) as exc:
                raise SourceDataError(f"{where}: {exc}", source=self.name) from None
            return bounded_duration(span.total_seconds(), source=self.name, where=where)
        return parse_duration_seconds(value, source=self.name, where=where, unit_seconds=60)

    def _series(self, region: str, raw: list[RawPoint], durations: list[timedelta]) -> CarbonSeries:
        return CarbonSeries.build(
            region=self._regions.get(region).name,
            points=raw,
            unit=CarbonUnit.G_PER_KWH,
            signal=self._signal,
            provider=self.name,
            fetched_at=self._http.clock.now(),
            resolution=_resolution(raw, durations),
        )


def _resolution(raw: list[RawPoint], durations: list[timedelta]) -> timedelta:
    """Most common positive duration; else the most common spacing; else one hour."""
    positive = [d for d in durations if d > timedelta(0)]
    if positive:
        return Counter(positive).most_common(1)[0][0]
    return infer_resolution(p[0] for p in raw) or timedelta(hours=1)
