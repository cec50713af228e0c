"""CSV trace replay: carbon intensity read from a file in the column layout of
`../shared/data` (one row per instant and region), for replays, simulations and offline use.

Columns:
- `timestamp_utc` (ISO 8601; a stamp without offset is read as UTC, as the column name says),
  `region` (the zone a gridshift region names for provider `trace`);
- the intensity: `gco2_per_kwh`, or the pair `gco2_per_kwh_direct` / `gco2_per_kwh_lifecycle`
  chosen by `emission_factor`;
- optional `forecast_gco2_per_kwh` (the GB file's provider forecast), replayed by `forecast()`.

The file is read by `forecasts.sources.csv_series` (gridshift's one reader of these files,
shared with the replays): blank cells are missing values; rows may come in any order; a
repeated instant keeps its last row; a cell that is not a timestamp or a number is an error
naming the line. With `zeros_as_missing` (the default) an exact 0 is missing too: the shipped
traces use 0 as a placeholder (GB 2023 has five), and a real grid average of exactly zero does
not occur. A negative intensity is an error. The resolution is inferred per region (most
common spacing).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.regions import RegionMap
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon._wire import RawPoint, infer_resolution, zone_of
from forecasts.sources.csv_series import (
    REGION_COLUMN,
    TIME_COLUMN,
    FloatArray,
    TraceRows,
    read_trace_frame,
    trace_rows,
)
from forecasts.time import Clock, floor_to, from_epoch_s

__all__ = ["TraceCarbonSource"]

EmissionFactor = Literal["direct", "lifecycle"]

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
        if not self._path.is_file():
            raise SourceRequestError(
                f"cannot open trace {self._path}: no such file", source=self._name
            )
        frame = read_trace_frame(self._path, source=self._name)
        header = [str(c).strip() for c in frame.columns]
        frame.columns = pd.Index(header)
        value_column = self._choose_column(header)
        self._value_column = value_column
        self._has_forecast = FORECAST_COLUMN in header
        columns = (value_column, FORECAST_COLUMN) if self._has_forecast else (value_column,)
        # Only the zones some region names for this provider are kept (a shared trace
        # holds many regions).
        wanted = {r.zone(self._name) for r in self._regions.regions} - {None}
        self._zones_in_file = frozenset(
            frame[REGION_COLUMN].dropna().astype(str).str.strip().unique()
        )
        by_zone = trace_rows(
            frame,
            path=self._path,
            columns=columns,
            regions={z for z in wanted if z is not None},
            zero_is_missing=self._zeros_as_missing,
            source=self._name,
        )
        tracks: dict[str, _Track] = {}
        for zone, rows in by_zone.items():
            assert zone is not None
            self._refuse_negative(rows, columns)
            times = tuple(from_epoch_s(float(e)) for e in rows.epoch_s)
            tracks[zone] = _Track(
                times=times,
                values=_cells(rows.values[:, 0]),
                forecasts=_cells(rows.values[:, 1]) if self._has_forecast else (None,) * len(times),
                resolution=infer_resolution(times) or timedelta(hours=1),
            )
        self._tracks = tracks
        return tracks

    def _refuse_negative(self, rows: TraceRows, columns: tuple[str, ...]) -> None:
        negative = np.argwhere(rows.values < 0)
        if negative.size:
            i, j = (int(x) for x in negative[0])
            raise SourceDataError(
                f"{self._path.name} line {rows.lines[i]}: column {columns[j]!r} is negative: "
                f"{rows.values[i, j]:g}",
                source=self._name,
            )

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


def _cells(column: FloatArray) -> tuple[float | None, ...]:
    return tuple(None if math.isnan(v) else float(v) for v in column)
