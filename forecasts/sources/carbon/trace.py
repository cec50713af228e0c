"""CSV trace replay: carbon intensity read from a file in the column layout of
`../shared/data` (one row per instant and region), for replays, simulations and offline use.

Columns:
- `timestamp_utc` (ISO 8601; a stamp without offset is read as UTC, as the column name says),
  `region` (the zone a gridshift region names for provider `trace`);
- the intensity: `gco2_per_kwh`, or the pair `gco2_per_kwh_direct` / `gco2_per_kwh_lifecycle`
  chosen by `emission_factor`;
- optional `forecast_gco2_per_kwh` (the GB file's provider forecast), replayed by `forecast()`.

Blank cells are missing values. With `zeros_as_missing` (the default) an exact 0 is missing
too: the shipped traces use 0 as a placeholder (GB 2023 has five), and a real grid average of
exactly zero does not occur. The resolution is inferred per region (most common spacing).
Rows may come in any order; a repeated instant keeps its last row.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.regions import RegionMap
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon._wire import RawPoint, infer_resolution, zone_of
from forecasts.time import Clock, floor_to

__all__ = ["TraceCarbonSource"]

EmissionFactor = Literal["direct", "lifecycle"]

TIME_COLUMN = "timestamp_utc"
REGION_COLUMN = "region"
VALUE_COLUMN = "gco2_per_kwh"
FORECAST_COLUMN = "forecast_gco2_per_kwh"


@dataclass(frozen=True, slots=True)
class _Track:
    """One region's rows, sorted by time."""

    times: tuple[datetime, ...]
    values: tuple[float | None, ...]
    forecasts: tuple[float | None, ...]
    resolution: timedelta


class TraceCarbonSource:
    """`CarbonSource` replaying a CSV trace. The file is read once, on first use."""

    def __init__(
        self,
        path: Path,
        *,
        regions: RegionMap,
        clock: Clock,
        name: str = "trace",
        emission_factor: EmissionFactor = "lifecycle",
        zeros_as_missing: bool = True,
        signal: Signal = Signal.AVERAGE,
    ) -> None:
        self._path = Path(path)
        self._regions = regions
        self._clock = clock
        self._name = name
        self._factor: EmissionFactor = emission_factor
        self._zeros_as_missing = zeros_as_missing
        self._signal = signal
        self._tracks: dict[str, _Track] | None = None
        self._value_column = ""
        self._has_forecast = False
        self._zones_in_file: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"TraceCarbonSource(name={self._name!r}, path={str(self._path)!r})"

    # ------------------------------------------------------------------ the role
    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        track = self._track(region)
        i = bisect.bisect_right(track.times, at) - 1
        raw: list[RawPoint] = []
        if i >= 0 and at < track.times[i] + track.resolution:
            raw.append((track.times[i], track.values[i], Quality.MEASURED))
        return self._series(region, raw, track)

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        track = self._track(region)
        lo = bisect.bisect_left(track.times, start)
        hi = bisect.bisect_left(track.times, end)
        raw = [(track.times[i], track.values[i], Quality.MEASURED) for i in range(lo, hi)]
        return self._series(region, raw, track)

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        track = self._track(region)
        if not self._has_forecast:
            raise SourceRequestError(
                f"trace {self._path.name} has no {FORECAST_COLUMN!r} column, so no provider "
                "forecast to replay",
                source=self._name,
            )
        lo = bisect.bisect_left(track.times, floor_to(at, track.resolution))
        hi = bisect.bisect_left(track.times, at + horizon)
        raw = [(track.times[i], track.forecasts[i], Quality.FORECAST) for i in range(lo, hi)]
        return self._series(region, raw, track)

    # ------------------------------------------------------------------ loading
    def _track(self, region: str) -> _Track:
        zone = zone_of(lambda: self._regions.zone(region, provider=self._name), source=self._name)
        tracks = self._load()
        track = tracks.get(zone)
        if track is None:
            have = ", ".join(sorted(self._zones_in_file)) or "none"
            raise SourceRequestError(
                f"trace {self._path.name} has no rows for region {zone!r} (it has: {have})",
                source=self._name,
            )
        return track

    def _load(self) -> dict[str, _Track]:
        if self._tracks is not None:
            return self._tracks
        try:
            handle = self._path.open(newline="", encoding="utf-8")
        except OSError as exc:
            raise SourceRequestError(
                f"cannot open trace {self._path}: {exc.strerror or exc}", source=self._name
            ) from None
        # Only the zones some region names for this provider are parsed (a shared trace
        # holds many regions; parsing the rest would be wasted work).
        wanted = {r.zone(self._name) for r in self._regions.regions} - {None}
        rows: dict[str, dict[datetime, tuple[float | None, float | None]]] = {}
        seen_zones: set[str] = set()
        with handle:
            reader = csv.reader(handle)
            header = [h.strip() for h in next(reader, [])]
            value_column = self._choose_column(header)
            self._value_column = value_column
            self._has_forecast = FORECAST_COLUMN in header
            i_time, i_zone = header.index(TIME_COLUMN), header.index(REGION_COLUMN)
            i_value = header.index(value_column)
            i_forecast = header.index(FORECAST_COLUMN) if self._has_forecast else -1
            width = len(header)
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) != width:
                    raise SourceDataError(
                        f"{self._path.name} line {line}: {len(row)} cells, header has {width}",
                        source=self._name,
                    )
                zone = row[i_zone].strip()
                if not zone:
                    raise SourceDataError(
                        f"{self._path.name} line {line}: column {REGION_COLUMN!r} is empty",
                        source=self._name,
                    )
                seen_zones.add(zone)
                if zone not in wanted:
                    continue
                when = self._instant(row[i_time], line=line)
                value = self._number(row[i_value], column=value_column, line=line)
                forecast = (
                    self._number(row[i_forecast], column=FORECAST_COLUMN, line=line)
                    if i_forecast >= 0
                    else None
                )
                rows.setdefault(zone, {})[when] = (value, forecast)
        self._zones_in_file = frozenset(seen_zones)
        tracks: dict[str, _Track] = {}
        for zone, by_time in rows.items():
            times = tuple(sorted(by_time))
            tracks[zone] = _Track(
                times=times,
                values=tuple(by_time[t][0] for t in times),
                forecasts=tuple(by_time[t][1] for t in times),
                resolution=infer_resolution(times) or timedelta(hours=1),
            )
        self._tracks = tracks
        return tracks

    def _choose_column(self, header: Sequence[str]) -> str:
        for column in (TIME_COLUMN, REGION_COLUMN):
            if column not in header:
                raise SourceDataError(
                    f"{self._path.name}: missing column {column!r} (header: {', '.join(header)})",
                    source=self._name,
                )
        if VALUE_COLUMN in header:
            return VALUE_COLUMN
        chosen = f"{VALUE_COLUMN}_{self._factor}"
        if chosen in header:
            return chosen
        raise SourceDataError(
            f"{self._path.name}: no intensity column; expected {VALUE_COLUMN!r} or {chosen!r} "
            f"(header: {', '.join(header)})",
            source=self._name,
        )

    def _instant(self, text: str | None, *, line: int) -> datetime:
        try:
            when = datetime.fromisoformat((text or "").strip())
        except ValueError:
            raise SourceDataError(
                f"{self._path.name} line {line}: column {TIME_COLUMN!r} is not an ISO 8601 "
                f"timestamp: {text!r}",
                source=self._name,
            ) from None
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)

    def _number(self, text: str | None, *, column: str, line: int) -> float | None:
        cell = (text or "").strip()
        if not cell:
            return None
        try:
            value = float(cell)
        except ValueError:
            raise SourceDataError(
                f"{self._path.name} line {line}: column {column!r} is not a number: {cell!r}",
                source=self._name,
            ) from None
        if not math.isfinite(value):
            return None
        if value < 0:
            raise SourceDataError(
                f"{self._path.name} line {line}: column {column!r} is negative: {value}",
                source=self._name,
            )
        if value == 0 and self._zeros_as_missing:
            return None
        return value

    def _series(self, region: str, raw: list[RawPoint], track: _Track) -> CarbonSeries:
        factor: str | None = None
        if self._value_column.endswith(("_direct", "_lifecycle")):
            factor = self._value_column.rsplit("_", 1)[1]
        return CarbonSeries.build(
            region=self._regions.get(region).name,
            points=raw,
            unit=CarbonUnit.G_PER_KWH,
            signal=self._signal,
            provider=self._name,
            fetched_at=self._clock.now(),
            resolution=track.resolution,
            emission_factor=factor,
        )
