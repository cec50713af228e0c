"""Recorded traces as sources: CSV columns in, `CarbonSource` and `LoadSource` out (replay).

- `fill_gaps`: linear interpolation of NaN steps (the replay needs a value every step).
- `TraceCarbonSource`: the recorded truth per region as a `CarbonSource`. `latest(at=)` and
  `history` only ever return values *before* `at`/`end` (no peeking); `forecast` plays a
  recorded provider forecast exactly as it had arrived (CSV files are read with
  `forecasts.sources.csv_series`, recorded forecasts with `forecasts.sources.forecast_traces`).
- `TraceLoadSource`: recorded demand per name as a `LoadSource`, re-gridded to the step asked,
  many names at once (`history_many`: a replay's tick reads every workload's load in one call).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from forecasts.carbon_forecast import KnownSeries
from forecasts.platform.errors import SourceDataError, SourceError, SourceRequestError
from forecasts.series import CarbonSeries, CarbonUnit, Quality, RegularSeries, Signal
from forecasts.time import ensure_utc, from_epoch_s, to_epoch_s

__all__ = [
    "CarbonTrace",
    "TraceCarbonSource",
    "TraceLoadSource",
    "fill_gaps",
]

FloatArray = npt.NDArray[np.float64]


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
    """One region's recorded intensity on a regular grid (no NaN), optionally a recorded
    provider forecast (each value with the instant it became known) and day-ahead inputs."""

    region: str
    truth: RegularSeries
    provider: str
    signal: Signal = Signal.AVERAGE
    provider_forecast: KnownSeries | None = None
    exog: KnownSeries | None = None

    def __post_init__(self) -> None:
        if np.isnan(self.truth.values).any():
            raise ValueError(f"carbon trace {self.region} has gaps; fill them first")
        for name, ks in (("forecast", self.provider_forecast), ("inputs", self.exog)):
            if ks is not None and ks.step != self.truth.step:
                raise ValueError(f"carbon trace {self.region}: {name} step differs from truth")


class TraceCarbonSource:
    """Recorded carbon traces as a `CarbonSource`, a `ProviderRecord` and an `ExogSource`.

    `latest(at=)` and `history` only ever return steps that ended by `at`/`end` (no
    peeking). `forecast` plays the recorded provider forecast exactly as it had arrived by
    `at` (values not yet published are absent; no forecast at all is `SourceRequestError`,
    as for a live provider without one). gridshift's own forecast is not made here: it is
    `forecasts.sources.carbon.forecasting.CarbonForecasting` over this source, as in
    `gridshift run`.
    """

    def __init__(
        self,
        traces: Mapping[str, CarbonTrace],
        *,
        latest_span: timedelta = timedelta(hours=3),
    ) -> None:
        self._traces = dict(traces)
        self._latest_span = latest_span
        self._latest_cache: dict[tuple[str, datetime], CarbonSeries] = {}

    @property
    def name(self) -> str:
        return "trace"

    def _trace(self, region: str) -> CarbonTrace:
        trace = self._traces.get(region)
        if trace is None:
            raise SourceRequestError(
                f"no carbon trace for region {region!r} (have {', '.join(sorted(self._traces))})",
                source="trace",
            )
        return trace

    def _index(self, trace: CarbonTrace, at: datetime) -> int:
        """Number of whole steps of the trace that start strictly before `at`."""
        t = trace.truth
        return math.ceil((to_epoch_s(at) - to_epoch_s(t.start)) / t.step.total_seconds() - 1e-9)

    def _complete(self, trace: CarbonTrace, at: datetime) -> int:
        """Number of steps of the trace that have ended by `at` (= index of the step
        containing `at`)."""
        t = trace.truth
        return math.floor((to_epoch_s(at) - to_epoch_s(t.start)) / t.step.total_seconds() + 1e-9)

    def _series(
        self,
        trace: CarbonTrace,
        start: datetime,
        values: FloatArray,
        quality: Quality,
        at: datetime,
        provider: str,
    ) -> CarbonSeries:
        step_s = trace.truth.step.total_seconds()
        s0 = to_epoch_s(start)
        return CarbonSeries.build(
            region=trace.region,
            points=(
                (from_epoch_s(s0 + k * step_s), float(v), quality)
                for k, v in enumerate(values)
                if math.isfinite(v)
            ),
            unit=CarbonUnit.G_PER_KWH,
            signal=trace.signal,
            provider=provider,
            fetched_at=at,
            resolution=trace.truth.step,
        )

    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        """The last few recorded steps that end at or before `at` (never the current one)."""
        trace = self._trace(region)
        key = (region, at)
        hit = self._latest_cache.get(key)
        if hit is not None:
            return hit
        t = trace.truth
        hi = min(len(t), self._complete(trace, at))
        if hi <= 0:
            raise SourceDataError(f"no carbon data for {region} before {at}", source="trace")
        lo = max(0, hi - max(1, round(self._latest_span / t.step)))
        out = self._series(
            trace, t.time_at(lo), t.values[lo:hi], Quality.MEASURED, at, trace.provider
        )
        if len(self._latest_cache) > 4096:
            self._latest_cache.clear()
        self._latest_cache[key] = out
        return out

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        trace = self._trace(region)
        t = trace.truth
        lo = max(0, self._index(trace, start))
        hi = min(len(t), self._complete(trace, end))
        return self._series(
            trace, t.time_at(lo), t.values[lo : max(lo, hi)], Quality.MEASURED, end, trace.provider
        )

    def history_series(self, region: str, *, start: datetime, end: datetime) -> RegularSeries:
        """`history` on the trace's grid, as a `RegularSeries` (the fast path for forecasts)."""
        trace = self._trace(region)
        t = trace.truth
        lo = max(0, self._index(trace, start))
        hi = max(lo, min(len(t), self._complete(trace, end)))
        return RegularSeries(start=t.time_at(lo), step=t.step, values=t.values[lo:hi], unit="g/kWh")

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        """The recorded provider forecast as known at `at`, for the steps from the one
        containing `at` over `horizon`."""
        trace = self._trace(region)
        pf = trace.provider_forecast
        if pf is None:
            raise SourceRequestError(
                f"carbon trace {region} has no recorded provider forecast", source="trace"
            )
        first = trace.truth.time_at(self._complete(trace, at))
        steps = max(1, math.ceil((at + horizon - first) / trace.truth.step))
        values = pf.on(first, steps, at=at)[:, 0]
        return self._series(
            trace, first, values, Quality.FORECAST, at, f"{trace.provider} forecast"
        )

    def provider_record(self, region: str) -> KnownSeries | None:
        """Every recorded provider forecast value with the instant it became known."""
        return self._trace(region).provider_forecast

    def exog(
        self, region: str, *, start: datetime, end: datetime, at: datetime
    ) -> KnownSeries | None:
        """The region's recorded day-ahead inputs (each row with when it became known)."""
        return self._trace(region).exog


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
