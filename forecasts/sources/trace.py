"""Recorded traces as sources: CSV columns in, `CarbonSource` and `LoadSource` out (the replay,
and the `trace` carbon provider that plays a CSV file as if it were live).

- `fill_gaps`: linear interpolation of NaN steps (the replay needs a value every step).
- `CarbonTrace`: one region's recorded intensity on a regular grid, with optionally a recorded
  provider forecast and day-ahead inputs.
- `TraceCarbonSource`: recorded traces per region as a `CarbonSource` (and a `ProviderRecord`,
  a `RegularHistory` and an `ExogSource` for `CarbonForecasting`). One implementation, two
  ways in:
  * `TraceCarbonSource(traces)`: the replay's traces (the scenario reader,
    `config.replay_scenario`, builds them with `forecasts.sources.csv_series`). A step's value
    is known once the step has ended: `latest(at=)` and `history` never return the step
    containing `at`/`end` (no peeking); `forecast` plays the recorded provider forecast exactly
    as it had arrived by `at` (values not yet published are absent).
  * `TraceCarbonSource.from_csv(path, regions=, clock=)`: the `trace` provider of
    `gridshift run` / `gridshift carbon` (`carbon.trace.path`). A file in the column layout of
    `../shared/data` is read once, on first use, and played as a live provider answers: a
    step's value is reported from the step's start (`latest` is the step containing `at`,
    nothing in a gap or after the file ends), and the `forecast_gco2_per_kwh` column, which
    has no issue times, is served as given.
- `TraceLoadSource`: recorded demand per name as a `LoadSource`, re-gridded to the step asked,
  many names at once (`history_many`: a replay's tick reads every workload's load in one call).

CSV trace columns (`from_csv`):
- `timestamp_utc` (ISO 8601; a stamp without offset is read as UTC, as the column name says),
  `region` (the zone a gridshift region names for provider `trace`);
- the intensity: `gco2_per_kwh`, or the pair `gco2_per_kwh_direct` / `gco2_per_kwh_lifecycle`
  chosen by `emission_factor`;
- optional `forecast_gco2_per_kwh` (the GB file's provider forecast), replayed by `forecast()`.

The file is read by `forecasts.sources.csv_series` (gridshift's one reader of these files):
blank cells are missing values; rows may come in any order; a repeated instant keeps its last
row; a cell that is not a timestamp or a number is an error naming the line. With
`zeros_as_missing` (the default) an exact 0 is missing too: the shipped traces use 0 as a
placeholder (GB 2023 has five), and a real grid average of exactly zero does not occur. A
negative intensity is an error. The resolution is inferred per region (most common spacing),
and a row off that region's grid is an error naming the line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecasts.carbon_forecast import KnownSeries
from forecasts.platform.errors import SourceDataError, SourceError, SourceRequestError
from forecasts.regions import RegionMap
from forecasts.series import CarbonSeries, CarbonUnit, Quality, RegularSeries, Signal
from forecasts.sources.carbon._wire import infer_resolution, zone_of
from forecasts.sources.csv_series import (
    REGION_COLUMN,
    TIME_COLUMN,
    TraceRows,
    read_trace_frame,
    trace_rows,
)
from forecasts.time import Clock, ensure_utc, from_epoch_s, to_epoch_s

__all__ = [
    "CarbonTrace",
    "EmissionFactor",
    "KnownFrom",
    "TraceCarbonSource",
    "TraceLoadSource",
    "fill_gaps",
]

FloatArray = npt.NDArray[np.float64]
EmissionFactor = Literal["direct", "lifecycle"]
#: When a recorded step's measured value counts as known: from the step's `start` (a live
#: provider's report of the current interval) or at its `end` (the replay: no peeking).
KnownFrom = Literal["start", "end"]

VALUE_COLUMN = "gco2_per_kwh"
FORECAST_COLUMN = "forecast_gco2_per_kwh"


def fill_gaps(series: RegularSeries) -> RegularSeries:
    """NaN steps linearly interpolated (edges take the nearest value); ValueError if all NaN."""
    v = series.values
    nan = np.isnan(v)
    if not nan.any():
        return series
    if nan.all():
        raise ValueError("series has no values to fill gaps from")
    idx = np.arange(v.size)
    out = np.array(v, copy=True)
    out[nan] = np.interp(idx[nan], idx[~nan], v[~nan])
    return replace(series, values=out)


@dataclass(frozen=True, slots=True)
class CarbonTrace:
    """One region's recorded intensity on a regular grid (NaN: no value for that step),
    optionally a recorded provider forecast (each value with the instant it became known) and
    day-ahead inputs.

    `provider` labels the measured series, `forecast_provider` the forecast ones (default
    "<provider> forecast"). `forecast_issue_times` False: `provider_forecast` is a column
    without issue times (every value known at any instant), so the source keeps no
    `provider_record` of it and a forecaster keeps what it was served, as from a live provider.
    """

    region: str
    truth: RegularSeries
    provider: str
    signal: Signal = Signal.AVERAGE
    provider_forecast: KnownSeries | None = None
    exog: KnownSeries | None = None
    forecast_issue_times: bool = True
    forecast_provider: str | None = None
    emission_factor: str | None = None

    def __post_init__(self) -> None:
        for name, ks in (("forecast", self.provider_forecast), ("inputs", self.exog)):
            if ks is not None and ks.step != self.truth.step:
                raise ValueError(f"carbon trace {self.region}: {name} step differs from truth")


class TraceCarbonSource:
    """Recorded carbon traces as a `CarbonSource`; see the module docstring.

    `traces` (or a CSV file, see `from_csv`) are keyed by the region asked for, or with
    `regions` by the region's zone for provider `name` (the series then name the region as
    configured). `known_from`: when a step's value is known (see `KnownFrom`); `latest`
    returns the steps known at `at` that lie within `latest_span` (None: the last step only)
    before it. Series are stamped `fetched_at=clock.now()`, or without a clock with the
    instant asked (a replay's "now"). gridshift's own forecast is not made here: it is
    `forecasts.sources.carbon.forecasting.CarbonForecasting` over this source, as in
    `gridshift run`.
    """

    def __init__(
        self,
        traces: Mapping[str, CarbonTrace] | _CsvTraceFile,
        *,
        name: str = "trace",
        regions: RegionMap | None = None,
        clock: Clock | None = None,
        known_from: KnownFrom = "end",
        latest_span: timedelta | None = timedelta(hours=3),
    ) -> None:
        self._csv = traces if isinstance(traces, _CsvTraceFile) else None
        self._traces = None if isinstance(traces, _CsvTraceFile) else dict(traces)
        self._name = name
        self._regions = regions
        self._clock = clock
        self._known_lag = 0 if known_from == "start" else 1
        self._latest_span = latest_span
        self._latest_cache: dict[tuple[str, datetime, datetime | None], CarbonSeries] = {}

    @classmethod
    def from_csv(
        cls,
        path: Path,
        *,
        regions: RegionMap,
        clock: Clock,
        name: str = "trace",
        emission_factor: EmissionFactor = "lifecycle",
        zeros_as_missing: bool = True,
        signal: Signal = Signal.AVERAGE,
    ) -> TraceCarbonSource:
        """The `trace` provider: a CSV file played as live (see the module docstring); the
        file is read on first use."""
        csv = _CsvTraceFile(
            Path(path),
            source=name,
            emission_factor=emission_factor,
            zeros_as_missing=zeros_as_missing,
            signal=signal,
        )
        return cls(
            csv, name=name, regions=regions, clock=clock, known_from="start", latest_span=None
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        if self._csv is not None:
            return f"TraceCarbonSource(name={self._name!r}, path={str(self._csv.path)!r})"
        return f"TraceCarbonSource(name={self._name!r}, regions={sorted(self._traces or {})!r})"

    # ------------------------------------------------------------------ lookup
    def _trace(self, region: str) -> tuple[CarbonTrace, str]:
        """The region's trace and the region's name for the series."""
        key, label = region, region
        regions = self._regions
        if regions is not None:
            key = zone_of(lambda: regions.zone(region, provider=self._name), source=self._name)
            label = regions.get(region).name
        traces = self._traces
        if traces is None:
            assert self._csv is not None
            wanted = {r.zone(self._name) for r in regions.regions} if regions is not None else None
            traces = self._traces = self._csv.load({z for z in wanted or () if z is not None})
        trace = traces.get(key)
        if trace is None:
            origin = "the carbon traces" if self._csv is None else f"trace {self._csv.path.name}"
            have = self._csv.zones_in_file if self._csv is not None else frozenset(traces)
            raise SourceRequestError(
                f"{origin} has no rows for region {key!r} "
                f"(it has: {', '.join(sorted(have)) or 'none'})",
                source=self._name,
            )
        return trace, label

    def _index(self, trace: CarbonTrace, at: datetime) -> int:
        """Number of whole steps of the trace that start strictly before `at`."""
        t = trace.truth
        return math.ceil((to_epoch_s(at) - to_epoch_s(t.start)) / t.step.total_seconds() - 1e-9)

    def _complete(self, trace: CarbonTrace, at: datetime) -> int:
        """Number of steps of the trace that have ended by `at` (= index of the step
        containing `at`)."""
        t = trace.truth
        return math.floor((to_epoch_s(at) - to_epoch_s(t.start)) / t.step.total_seconds() + 1e-9)

    def _known(self, trace: CarbonTrace, at: datetime) -> int:
        """Number of steps whose value is known at `at` (past the trace's end too)."""
        return self._complete(trace, at) + 1 - self._known_lag

    def _series(
        self,
        trace: CarbonTrace,
        label: str,
        start: datetime,
        values: FloatArray,
        quality: Quality,
        at: datetime,
        provider: str,
    ) -> CarbonSeries:
        step_s = trace.truth.step.total_seconds()
        s0 = to_epoch_s(start)
        return CarbonSeries.build(
            region=label,
            points=(
                (from_epoch_s(s0 + k * step_s), float(v), quality)
                for k, v in enumerate(values)
                if math.isfinite(v)
            ),
            unit=CarbonUnit.G_PER_KWH,
            signal=trace.signal,
            provider=provider,
            fetched_at=self._clock.now() if self._clock is not None else at,
            resolution=trace.truth.step,
            emission_factor=trace.emission_factor,
        )

    # ------------------------------------------------------------------ the role
    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        """The steps known at `at` within `latest_span` before it (empty when there are none:
        before the trace, in a gap, or after it ends)."""
        trace, label = self._trace(region)
        fetched = self._clock.now() if self._clock is not None else None
        key = (region, at, fetched)
        hit = self._latest_cache.get(key)
        if hit is not None:
            return hit
        t = trace.truth
        known = self._known(trace, at)
        span = 1 if self._latest_span is None else max(1, round(self._latest_span / t.step))
        lo = min(len(t), max(0, known - span))
        hi = max(lo, min(len(t), known))
        out = self._series(
            trace, label, t.time_at(lo), t.values[lo:hi], Quality.MEASURED, at, trace.provider
        )
        if len(self._latest_cache) > 4096:
            self._latest_cache.clear()
        self._latest_cache[key] = out
        return out

    def _history_range(
        self, trace: CarbonTrace, start: datetime, end: datetime
    ) -> tuple[int, int, int]:
        """(lo, hi, cap): the steps that start in [start, end) and are known at `end` are
        lo..cap, of which the trace holds lo..hi."""
        n = len(trace.truth)
        lo = min(n, max(0, self._index(trace, start)))
        cap = max(lo, min(self._known(trace, end), self._index(trace, end)))
        return lo, min(n, cap), cap

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        trace, label = self._trace(region)
        t = trace.truth
        lo, hi, _ = self._history_range(trace, start, end)
        return self._series(
            trace, label, t.time_at(lo), t.values[lo:hi], Quality.MEASURED, end, trace.provider
        )

    def history_series(self, region: str, *, start: datetime, end: datetime) -> RegularSeries:
        """`history` on the trace's grid as a `RegularSeries` (the fast path for forecasts):
        from its first value on, NaN where it has none, up to the last step known at `end`
        (past the trace's end too, so the series ends where the history asked for does)."""
        trace, _ = self._trace(region)
        t = trace.truth
        lo, hi, cap = self._history_range(trace, start, end)
        finite = np.flatnonzero(np.isfinite(t.values[lo:hi]))
        if finite.size:
            lo += int(finite[0])
        values = t.values[lo:hi]
        if cap > hi:
            values = np.concatenate([values, np.full(cap - hi, np.nan)])
        return RegularSeries(start=t.time_at(lo), step=t.step, values=values, unit="g/kWh")

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        """The recorded provider forecast as known at `at`, for the steps from the one
        containing `at` over `horizon`."""
        trace, label = self._trace(region)
        pf = trace.provider_forecast
        if pf is None:
            origin = "carbon trace" if self._csv is None else f"trace {self._csv.path.name}"
            why = "" if self._csv is None else f" (no {FORECAST_COLUMN!r} column)"
            raise SourceRequestError(
                f"{origin} has no recorded provider forecast for region {region!r}{why}",
                source=self._name,
            )
        first = trace.truth.time_at(self._complete(trace, at))
        steps = max(1, math.ceil((at + horizon - first) / trace.truth.step))
        values = pf.on(first, steps, at=at)[:, 0]
        return self._series(
            trace,
            label,
            first,
            values,
            Quality.FORECAST,
            at,
            trace.forecast_provider or f"{trace.provider} forecast",
        )

    def provider_record(self, region: str) -> KnownSeries | None:
        """Every recorded provider forecast value with the instant it became known (None
        where the trace has no forecast with issue times)."""
        trace, _ = self._trace(region)
        return trace.provider_forecast if trace.forecast_issue_times else None

    def exog(
        self, region: str, *, start: datetime, end: datetime, at: datetime
    ) -> KnownSeries | None:
        """The region's recorded day-ahead inputs (each row with when it became known)."""
        return self._trace(region)[0].exog


class _CsvTraceFile:
    """A CSV trace file as `TraceCarbonSource.from_csv` reads it: one `CarbonTrace` per zone."""

    def __init__(
        self,
        path: Path,
        *,
        source: str,
        emission_factor: EmissionFactor,
        zeros_as_missing: bool,
        signal: Signal,
    ) -> None:
        self.path = path
        self.zones_in_file: frozenset[str] = frozenset()
        self._source = source
        self._factor: EmissionFactor = emission_factor
        self._zeros_as_missing = zeros_as_missing
        self._signal = signal

    def load(self, zones: set[str]) -> dict[str, CarbonTrace]:
        """The traces of `zones` (the ones some region names for this provider)."""
        if not self.path.is_file():
            raise SourceRequestError(
                f"cannot open trace {self.path}: no such file", source=self._source
            )
        frame = read_trace_frame(self.path, source=self._source)
        header = [str(c).strip() for c in frame.columns]
        frame.columns = pd.Index(header)
        value_column = self._choose_column(header)
        has_forecast = FORECAST_COLUMN in header
        columns = (value_column, FORECAST_COLUMN) if has_forecast else (value_column,)
        factor = None
        if value_column.endswith(("_direct", "_lifecycle")):
            factor = value_column.rsplit("_", 1)[1]
        self.zones_in_file = frozenset(
            frame[REGION_COLUMN].dropna().astype(str).str.strip().unique()
        )
        by_zone = trace_rows(
            frame,
            path=self.path,
            columns=columns,
            regions=zones,
            zero_is_missing=self._zeros_as_missing,
            source=self._source,
        )
        traces: dict[str, CarbonTrace] = {}
        for zone, rows in by_zone.items():
            assert zone is not None
            self._refuse_negative(rows, columns)
            grid = self._grid(zone, rows)
            truth = RegularSeries(
                start=grid[0], step=grid[1], values=grid[2][:, 0], unit=VALUE_COLUMN
            )
            forecast = None
            if has_forecast:
                forecast = KnownSeries(
                    start=truth.start,
                    step=truth.step,
                    values=grid[2][:, 1],
                    known_s=np.full(len(truth), -np.inf),
                )
            traces[zone] = CarbonTrace(
                region=zone,
                truth=truth,
                provider=self._source,
                signal=self._signal,
                provider_forecast=forecast,
                forecast_issue_times=False,
                forecast_provider=self._source,
                emission_factor=factor,
            )
        return traces

    def _grid(self, zone: str, rows: TraceRows) -> tuple[datetime, timedelta, FloatArray]:
        """The rows on their region's grid (inferred resolution; NaN where no row)."""
        times = [from_epoch_s(float(e)) for e in rows.epoch_s]
        step = infer_resolution(times) or timedelta(hours=1)
        step_s = step.total_seconds()
        k = (rows.epoch_s - rows.epoch_s[0]) / step_s
        slots = np.round(k).astype(np.int64)
        off = np.flatnonzero(np.abs(k - slots) > 1e-6)
        if off.size:
            i = int(off[0])
            raise SourceDataError(
                f"{self.path.name} line {rows.lines[i]}: {times[i].isoformat()} is off the "
                f"{step} grid of region {zone!r}, which starts {times[0].isoformat()}",
                source=self._source,
            )
        values = np.full((int(slots[-1]) + 1, rows.values.shape[1]), np.nan)
        values[slots] = rows.values
        return times[0], step, values

    def _refuse_negative(self, rows: TraceRows, columns: tuple[str, ...]) -> None:
        negative = np.argwhere(rows.values < 0)
        if negative.size:
            i, j = (int(x) for x in negative[0])
            raise SourceDataError(
                f"{self.path.name} line {rows.lines[i]}: column {columns[j]!r} is negative: "
                f"{rows.values[i, j]:g}",
                source=self._source,
            )

    def _choose_column(self, header: Sequence[str]) -> str:
        for column in (TIME_COLUMN, REGION_COLUMN):
            if column not in header:
                raise SourceDataError(
                    f"{self.path.name}: missing column {column!r} (header: {', '.join(header)})",
                    source=self._source,
                )
        if VALUE_COLUMN in header:
            return VALUE_COLUMN
        chosen = f"{VALUE_COLUMN}_{self._factor}"
        if chosen in header:
            return chosen
        raise SourceDataError(
            f"{self.path.name}: no intensity column; expected {VALUE_COLUMN!r} or {chosen!r} "
            f"(header: {', '.join(header)})",
            source=self._source,
        )


class TraceLoadSource:
    """Recorded demand per name (the workload's load query) as a `LoadSource` that answers
    many queries at once (`history_many`, one call per tick for every workload).

    Histories are cut from the recorded grid; a step asked for that is a multiple of the
    recorded one is averaged. Missing recorded steps stay NaN (the scaler treats them as gaps).
    """

    def __init__(self, series: Mapping[str, RegularSeries]) -> None:
        self._series = dict(series)

    @property
    def name(self) -> str:
        return "trace"

    def history(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> RegularSeries:
        start = ensure_utc(start, name="start")
        return self._cut(query, start=start, end=end, step=step, grid={})

    def history_many(
        self, queries: Sequence[str], *, start: datetime, end: datetime, step: timedelta
    ) -> dict[str, RegularSeries | SourceError]:
        """Each query's `history` (or the error it raises) over one window; traces on one
        grid share the window's place on it."""
        start = ensure_utc(start, name="start")
        grid: dict[tuple[datetime, timedelta], tuple[int, int, float]] = {}
        out: dict[str, RegularSeries | SourceError] = {}
        for query in queries:
            try:
                out[query] = self._cut(query, start=start, end=end, step=step, grid=grid)
            except SourceError as exc:
                out[query] = exc
        return out

    def _cut(
        self,
        query: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
        grid: dict[tuple[datetime, timedelta], tuple[int, int, float]],
    ) -> RegularSeries:
        """`query`'s history; `grid` memoises (k, n, offset) per trace grid for one window."""
        s = self._series.get(query)
        if s is None:
            raise SourceRequestError(f"no load trace named {query!r}", source="trace")
        place = grid.get((s.start, s.step))
        if place is None:
            ratio = step / s.step
            k = round(ratio)
            if k < 1 or abs(ratio - k) > 1e-9:
                raise SourceRequestError(
                    f"load trace {query!r} has step {s.step}; cannot serve step {step}",
                    source="trace",
                )
            n = max(0, math.ceil((end - start) / step))
            off = (to_epoch_s(start) - to_epoch_s(s.start)) / s.step.total_seconds()
            place = grid[(s.start, s.step)] = (k, n, off)
        k, n, off = place
        i0 = round(off)
        if abs(off - i0) > 1e-9:
            raise SourceRequestError(f"{start} is off the trace grid of {query!r}", source="trace")
        lo, hi = max(0, i0), min(len(s), i0 + n * k)
        if lo == i0 and hi - lo == n * k:  # inside the trace: the recorded values as they are
            out = s.values[lo:hi]
        else:
            out = np.full(n * k, np.nan)
            if hi > lo:
                out[lo - i0 : hi - i0] = s.values[lo:hi]
        if k > 1:
            with np.errstate(invalid="ignore"):
                out = out.reshape(n, k).mean(axis=1)
        return RegularSeries(start=start, step=step, values=out, unit=s.unit)
