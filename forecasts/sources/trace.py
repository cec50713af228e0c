"""Recorded traces as sources: CSV columns in, `CarbonSource` and `LoadSource` out (replay).

- `read_csv_series`: one numeric column of a tidy CSV (ISO-8601 UTC timestamps, optional
  filter column such as `region`), averaged onto a regular grid (`RegularSeries`, NaN where
  no sample fell). Zeros can be declared missing (some carbon files use 0 for "no value").
- `fill_gaps`: linear interpolation of NaN steps (the replay needs a value every step).
- `TraceCarbonSource`: the recorded truth per region as a `CarbonSource`. `latest(at=)` and
  `history` only ever return values *before* `at`/`end` (no peeking); `forecast` either fits a
  `Forecaster` on the history up to `at` and predicts, or plays a recorded provider forecast
  column; optional seeded multiplicative noise degrades every forecast (sensitivity runs).
- `TraceLoadSource`: recorded demand per name as a `LoadSource`, re-gridded to the step asked.
"""

from __future__ import annotations

import csv
import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from forecasts.forecast import FittedModel, Forecaster
from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.series import CarbonSeries, CarbonUnit, Quality, RegularSeries, Signal
from forecasts.time import ensure_utc, floor_to, from_epoch_s, to_epoch_s

__all__ = [
    "CarbonTrace",
    "TraceCarbonSource",
    "TraceLoadSource",
    "fill_gaps",
    "read_csv_series",
]

FloatArray = npt.NDArray[np.float64]


def _parse_ts(text: str, *, where: str) -> float:
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise SourceDataError(f"{where}: bad timestamp {text!r}", source="trace") from exc
    return to_epoch_s(ensure_utc(at, name=where))


def read_csv_series(
    path: str | Path,
    *,
    column: str,
    step: timedelta,
    start: datetime,
    end: datetime,
    time_column: str = "timestamp_utc",
    where: Mapping[str, str] | None = None,
    zero_is_missing: bool = False,
    shift: timedelta = timedelta(0),
    unit: str = "",
) -> RegularSeries:
    """Rows of `path` (optionally only those whose columns equal `where`), timestamps moved by
    `shift`, `column` averaged per grid step on [start, end). Raises `SourceDataError` naming
    the file and the problem (missing file/column, bad number, no rows)."""
    p = Path(path)
    step_s = step.total_seconds()
    s0, e0 = to_epoch_s(start), to_epoch_s(end)
    n = max(0, math.ceil((e0 - s0) / step_s))
    sums = np.zeros(n)
    counts = np.zeros(n)
    shift_s = shift.total_seconds()
    matched = 0
    try:
        handle = p.open(newline="")
    except OSError as exc:
        raise SourceDataError(f"cannot read trace {p}: {exc}", source="trace") from exc
    with handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        for name in (time_column, column, *(where or {})):
            if name not in fields:
                raise SourceDataError(
                    f"{p}: no column {name!r} (columns: {', '.join(fields)})", source="trace"
                )
        for lineno, row in enumerate(reader, start=2):
            if where and any(row[k] != v for k, v in where.items()):
                continue
            matched += 1
            raw = (row[column] or "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError as exc:
                raise SourceDataError(
                    f"{p}:{lineno}: column {column!r} is not a number: {raw!r}", source="trace"
                ) from exc
            if not math.isfinite(value) or (zero_is_missing and value == 0.0):
                continue
            t = _parse_ts(row[time_column], where=f"{p}:{lineno}") + shift_s
            i = math.floor((t - s0) / step_s)
            if 0 <= i < n:
                sums[i] += value
                counts[i] += 1
    if matched == 0:
        raise SourceDataError(f"{p}: no rows match {dict(where or {})}", source="trace")
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(counts > 0, sums / np.where(counts > 0, counts, 1), np.nan)
    return RegularSeries(start=start, step=step, values=values, unit=unit)


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
    """One region's recorded intensity on a regular grid (no NaN), and optionally a recorded
    provider forecast on the same grid."""

    region: str
    truth: RegularSeries
    provider: str
    signal: Signal = Signal.AVERAGE
    provider_forecast: RegularSeries | None = None

    def __post_init__(self) -> None:
        if np.isnan(self.truth.values).any():
            raise ValueError(f"carbon trace {self.region} has gaps; fill them first")
        pf = self.provider_forecast
        if pf is not None and (pf.start != self.truth.start or pf.step != self.truth.step):
            raise ValueError(f"carbon trace {self.region}: forecast grid differs from truth")


class TraceCarbonSource:
    """Recorded carbon traces as a `CarbonSource` (see the module docstring).

    `forecaster` is fitted on `forecast_history` before `at` — per forecast call, or, with
    `refit_every`, once per region every `refit_every` (as `gridshift run` refits on a
    cadence), predicting in between from the newest history with the fitted model; when
    `use_provider_forecast` is set and a trace has a recorded forecast, that is played
    instead. `noise_fraction` > 0 multiplies each forecast point by (1 + N(0, noise)),
    seeded by (seed, region, at), clipped at 0. Forecasts are cached per (region, at, horizon).
    """

    def __init__(
        self,
        traces: Mapping[str, CarbonTrace],
        *,
        forecaster: Forecaster,
        forecast_history: timedelta = timedelta(days=7),
        use_provider_forecast: bool = False,
        noise_fraction: float = 0.0,
        seed: int = 0,
        latest_span: timedelta = timedelta(hours=3),
        refit_every: timedelta | None = None,
    ) -> None:
        if noise_fraction < 0:
            raise ValueError(f"noise_fraction must be >= 0, got {noise_fraction}")
        if refit_every is not None and refit_every <= timedelta(0):
            raise ValueError(f"refit_every must be positive, got {refit_every}")
        self._refit_every = refit_every
        self._fits: dict[tuple[str, datetime], FittedModel] = {}
        self._traces = dict(traces)
        self._forecaster = forecaster
        self._history = forecast_history
        self._use_provider = use_provider_forecast
        self._noise = noise_fraction
        self._seed = seed
        self._latest_span = latest_span
        self._cache: dict[tuple[str, datetime, timedelta], CarbonSeries] = {}
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
        lo: int,
        values: FloatArray,
        quality: Quality,
        at: datetime,
        provider: str,
    ) -> CarbonSeries:
        t = trace.truth
        s0 = to_epoch_s(t.start)
        step_s = t.step.total_seconds()
        return CarbonSeries.build(
            region=trace.region,
            points=(
                (from_epoch_s(s0 + (lo + k) * step_s), float(v), quality)
                for k, v in enumerate(values)
            ),
            unit=CarbonUnit.G_PER_KWH,
            signal=trace.signal,
            provider=provider,
            fetched_at=at,
            resolution=t.step,
        )

    def _history_before(self, trace: CarbonTrace, end: int) -> RegularSeries | None:
        """`forecast_history` of the truth ending before step `end`; None under 2 steps."""
        t = trace.truth
        lo = max(0, end - max(1, round(self._history / t.step)))
        if end - lo < 2:
            return None
        return RegularSeries(start=t.time_at(lo), step=t.step, values=t.values[lo:end], unit=t.unit)

    def _fitted(self, trace: CarbonTrace, hist: RegularSeries, at: datetime) -> FittedModel:
        """The model for `trace` at `at`: fitted on `hist` now, or (with `refit_every`) the
        one fitted at the last multiple of `refit_every` at or before `at`, on the history
        before that instant (so jobs replayed out of time order share fits)."""
        if self._refit_every is None:
            return self._forecaster.fit(hist)
        anchor = floor_to(at, self._refit_every)
        key = (trace.region, anchor)
        hit = self._fits.get(key)
        if hit is not None:
            return hit
        anchor_hist = self._history_before(trace, self._complete(trace, anchor))
        if anchor_hist is None:
            raise ValueError(f"not enough history before {anchor} to fit")
        fitted = self._forecaster.fit(anchor_hist)
        if len(self._fits) > 64:
            self._fits.clear()
        self._fits[key] = fitted
        return fitted

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
        out = self._series(trace, lo, t.values[lo:hi], Quality.MEASURED, at, trace.provider)
        if len(self._latest_cache) > 4096:
            self._latest_cache.clear()
        self._latest_cache[key] = out
        return out

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        trace = self._trace(region)
        t = trace.truth
        lo = max(0, self._index(trace, start))
        hi = min(len(t), self._index(trace, end))
        return self._series(
            trace, lo, t.values[lo : max(lo, hi)], Quality.MEASURED, end, trace.provider
        )

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        """Forecast for the steps from the one containing `at` over `horizon`, made only from
        data before `at` (or the recorded provider forecast)."""
        trace = self._trace(region)
        key = (region, at, horizon)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        t = trace.truth
        first = self._complete(trace, at)  # the step containing `at`
        steps = max(1, math.ceil(horizon / t.step))
        if self._use_provider and trace.provider_forecast is not None:
            pf = trace.provider_forecast.values
            lo, hi = max(0, first), min(len(t), first + steps)
            values = np.array(pf[lo:hi], dtype=float)
            if np.isnan(values).any():
                values = np.where(np.isnan(values), t.values[lo:hi], values)
            provider = f"{trace.provider} forecast"
        else:
            hist = self._history_before(trace, first)
            if hist is None:
                raise SourceDataError(
                    f"not enough carbon history for {region} before {at}", source="trace"
                )
            try:
                fc = self._fitted(trace, hist, at).predict(horizon=steps, history=hist)
            except ValueError as exc:
                raise SourceDataError(
                    f"carbon forecast for {region}: {exc}", source="trace"
                ) from exc
            lo = first
            values = np.clip(np.asarray(fc.mean, dtype=float), 0.0, None)
            provider = f"gridshift {fc.model} on {trace.provider}"
        if self._noise > 0 and values.size:
            rng = np.random.default_rng(
                [self._seed, zlib.crc32(region.encode()), int(to_epoch_s(at))]
            )
            values = np.clip(values * (1.0 + rng.normal(0.0, self._noise, values.size)), 0.0, None)
        out = self._series(trace, lo, values, Quality.FORECAST, at, provider)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = out
        return out


class TraceLoadSource:
    """Recorded demand per name (the workload's load query) as a `LoadSource`.

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
        s = self._series.get(query)
        if s is None:
            raise SourceRequestError(f"no load trace named {query!r}", source="trace")
        ratio = step / s.step
        k = round(ratio)
        if k < 1 or abs(ratio - k) > 1e-9:
            raise SourceRequestError(
                f"load trace {query!r} has step {s.step}; cannot serve step {step}",
                source="trace",
            )
        start = ensure_utc(start, name="start")
        n = max(0, math.ceil((end - start) / step))
        s_step = s.step.total_seconds()
        off = (to_epoch_s(start) - to_epoch_s(s.start)) / s_step
        i0 = round(off)
        if abs(off - i0) > 1e-9:
            raise SourceRequestError(f"{start} is off the trace grid of {query!r}", source="trace")
        out = np.full(n * k, np.nan)
        lo, hi = max(0, i0), min(len(s), i0 + n * k)
        if hi > lo:
            out[lo - i0 : hi - i0] = s.values[lo:hi]
        if k > 1:
            with np.errstate(invalid="ignore"):
                out = out.reshape(n, k).mean(axis=1)
        return RegularSeries(start=start, step=step, values=out, unit=s.unit)
