"""Typed time series with units: carbon intensity (irregular, provenance-tagged points)
and regular-step series (load, forecasts' inputs).

Invariants are checked on construction, so a value of these types is always clean:
UTC, strictly increasing instants, finite values, an explicit unit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from forecasts.time import ensure_utc, from_epoch_s, to_epoch_s

__all__ = [
    "CarbonPoint",
    "CarbonSeries",
    "CarbonUnit",
    "Quality",
    "RegularSeries",
    "Signal",
]

FloatArray = npt.NDArray[np.float64]


class CarbonUnit(StrEnum):
    """Units a carbon signal can be in. Only g/kWh is an intensity; a percentile is not."""

    G_PER_KWH = "gCO2eq/kWh"
    PERCENTILE = "percentile"


class Signal(StrEnum):
    """Average (attributional) vs marginal (consequential) emission rates: never mixed."""

    AVERAGE = "average"
    MARGINAL = "marginal"


class Quality(StrEnum):
    """How a point was obtained. Ordered by trust: measured beats estimated beats forecast."""

    MEASURED = "measured"
    ESTIMATED = "estimated"
    FORECAST = "forecast"


_TRUST = {Quality.MEASURED: 0, Quality.ESTIMATED: 1, Quality.FORECAST: 2}


@dataclass(frozen=True, slots=True)
class CarbonPoint:
    """One interval's intensity, valid on [at, at + series.resolution)."""

    at: datetime
    value: float
    quality: Quality


@dataclass(frozen=True, slots=True)
class CarbonSeries:
    """Carbon intensity of one region from one provider.

    `stale` is set when the series is a fallback (last known value) rather than a fresh fetch;
    `note` says why (shown to users as-is).
    """

    region: str
    points: tuple[CarbonPoint, ...]
    unit: CarbonUnit
    signal: Signal
    provider: str
    fetched_at: datetime
    resolution: timedelta
    emission_factor: str | None = None
    stale: bool = False
    note: str = ""
    _epoch: FloatArray = field(init=False, repr=False, compare=False)
    _values: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.resolution <= timedelta(0):
            raise ValueError(f"resolution must be positive, got {self.resolution}")
        ensure_utc(self.fetched_at, name="fetched_at")
        prev: datetime | None = None
        for p in self.points:
            if p.at.tzinfo is None or p.at.utcoffset() != timedelta(0):
                raise ValueError(f"point instant must be UTC, got {p.at.isoformat()}")
            if not math.isfinite(p.value):
                raise ValueError(f"point value at {p.at.isoformat()} is not finite: {p.value}")
            if self.unit is CarbonUnit.G_PER_KWH and p.value < 0:
                raise ValueError(f"negative intensity {p.value} at {p.at.isoformat()}")
            if prev is not None and p.at <= prev:
                raise ValueError(
                    "points must be strictly increasing: "
                    f"{p.at.isoformat()} after {prev.isoformat()}"
                )
            prev = p.at
        epoch = np.fromiter((to_epoch_s(p.at) for p in self.points), float, len(self.points))
        values = np.fromiter((p.value for p in self.points), float, len(self.points))
        epoch.setflags(write=False)
        values.setflags(write=False)
        object.__setattr__(self, "_epoch", epoch)
        object.__setattr__(self, "_values", values)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        *,
        region: str,
        points: Iterable[tuple[datetime, float | None, Quality]],
        unit: CarbonUnit,
        signal: Signal,
        provider: str,
        fetched_at: datetime,
        resolution: timedelta,
        emission_factor: str | None = None,
    ) -> CarbonSeries:
        """Normalise raw points: UTC, sorted, nulls and non-finite dropped, duplicates merged.

        Duplicate instants keep the most trusted point (measured > estimated > forecast);
        among equals the last one given wins (providers list revisions last).
        """
        best: dict[datetime, CarbonPoint] = {}
        for at, value, quality in points:
            if value is None or not math.isfinite(value):
                continue
            at_utc = ensure_utc(at, name="point instant")
            cand = CarbonPoint(at_utc, float(value), quality)
            old = best.get(at_utc)
            if old is None or _TRUST[quality] <= _TRUST[old.quality]:
                best[at_utc] = cand
        ordered = tuple(best[k] for k in sorted(best))
        return cls(
            region=region,
            points=ordered,
            unit=unit,
            signal=signal,
            provider=provider,
            fetched_at=ensure_utc(fetched_at, name="fetched_at"),
            resolution=resolution,
            emission_factor=emission_factor,
        )

    def as_stale(self, note: str) -> CarbonSeries:
        return replace(self, stale=True, note=note)

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.points)

    @property
    def epoch_s(self) -> FloatArray:
        return self._epoch

    @property
    def values(self) -> FloatArray:
        return self._values

    @property
    def start(self) -> datetime | None:
        return self.points[0].at if self.points else None

    @property
    def end(self) -> datetime | None:
        """End of the last point's validity interval."""
        return self.points[-1].at + self.resolution if self.points else None

    def latest(self, *, at: datetime | None = None) -> CarbonPoint | None:
        """The point whose interval contains `at` (or the last point at or before it)."""
        if not self.points:
            return None
        if at is None:
            return self.points[-1]
        idx = int(np.searchsorted(self._epoch, to_epoch_s(at), side="right")) - 1
        return self.points[idx] if idx >= 0 else None

    def window(self, start: datetime, end: datetime) -> CarbonSeries:
        """Points whose interval overlaps [start, end)."""
        lo = to_epoch_s(start) - self.resolution.total_seconds()
        hi = to_epoch_s(end)
        keep = tuple(p for p, t in zip(self.points, self._epoch, strict=True) if lo < t < hi)
        return replace(self, points=keep)

    def mean_over(self, start: datetime, end: datetime) -> float | None:
        """Time-weighted mean over [start, end), treating points as steps; None without data."""
        if end <= start:
            raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
        s, e = to_epoch_s(start), to_epoch_s(end)
        res = self.resolution.total_seconds()
        total = 0.0
        covered = 0.0
        for t, v in zip(self._epoch, self._values, strict=True):
            overlap = min(t + res, e) - max(t, s)
            if overlap > 0:
                total += v * overlap
                covered += overlap
        return total / covered if covered > 0 else None

    def with_quality(self, quality: Quality) -> tuple[CarbonPoint, ...]:
        return tuple(p for p in self.points if p.quality is quality)


@dataclass(frozen=True, slots=True)
class RegularSeries:
    """Values on a regular grid `start + i * step`. NaN marks a missing step (a marked gap).

    Used for load history and for the models' inputs; `unit` names what the values count.
    """

    start: datetime
    step: timedelta
    values: FloatArray
    unit: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, name="start"))
        if self.step <= timedelta(0):
            raise ValueError(f"step must be positive, got {self.step}")
        arr = np.array(self.values, dtype=float, copy=True)
        if arr.ndim != 1:
            raise ValueError(f"values must be one-dimensional, got shape {arr.shape}")
        if np.isinf(arr).any():
            raise ValueError("values must be finite or NaN (missing), not infinite")
        arr.setflags(write=False)
        object.__setattr__(self, "values", arr)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def end(self) -> datetime:
        """Instant just after the last step."""
        return self.start + self.step * len(self)

    def time_at(self, index: int) -> datetime:
        return self.start + self.step * index

    def times(self) -> list[datetime]:
        return [self.start + self.step * i for i in range(len(self))]

    def epoch_s(self) -> FloatArray:
        s = to_epoch_s(self.start)
        return s + np.arange(len(self), dtype=float) * self.step.total_seconds()

    def missing(self) -> npt.NDArray[np.bool_]:
        return np.isnan(self.values)

    def last_observed_index(self) -> int | None:
        """Index of the newest non-NaN value (None when there is none): the last step is
        checked first, the whole series only when that is a gap (a tick reads every
        workload's newest load)."""
        v = self.values
        if v.size and not math.isnan(v[-1]):
            return int(v.size - 1)
        observed = np.flatnonzero(~np.isnan(v))
        return int(observed[-1]) if observed.size else None

    def tail(self, n: int) -> RegularSeries:
        if n <= 0:
            raise ValueError(f"n must be positive, got {n}")
        n = min(n, len(self))
        return RegularSeries(
            start=self.time_at(len(self) - n),
            step=self.step,
            values=self.values[-n:],
            unit=self.unit,
        )

    def until(self, end: datetime) -> RegularSeries:
        """Steps starting strictly before `end`."""
        n = int(np.ceil((to_epoch_s(end) - to_epoch_s(self.start)) / self.step.total_seconds()))
        n = max(0, min(n, len(self)))
        return RegularSeries(
            start=self.start, step=self.step, values=self.values[:n], unit=self.unit
        )

    @classmethod
    def from_points(
        cls,
        times: Sequence[datetime] | FloatArray,
        values: Sequence[float] | FloatArray,
        *,
        step: timedelta,
        unit: str,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> RegularSeries:
        """Place (time, value) samples on the grid; slots without a sample are NaN.

        `times` may be datetimes or epoch seconds. Samples off the grid go to the slot that
        contains them; the last sample in a slot wins.
        """
        if len(times) != len(values):
            raise ValueError(f"{len(times)} times but {len(values)} values")
        epoch = np.array(
            [to_epoch_s(t) if isinstance(t, datetime) else float(t) for t in times], dtype=float
        )
        vals = np.asarray(values, dtype=float)
        step_s = step.total_seconds()
        if start is None:
            if epoch.size == 0:
                raise ValueError("cannot infer start of an empty series")
            start_s = np.floor(epoch.min() / step_s) * step_s
        else:
            start_s = to_epoch_s(start)
        if end is None:
            end_s = (np.floor(epoch.max() / step_s) + 1) * step_s if epoch.size else start_s
        else:
            end_s = to_epoch_s(end)
        n = max(0, int(np.ceil((end_s - start_s) / step_s - 1e-9)))
        out = np.full(n, np.nan)
        idx = np.floor((epoch - start_s) / step_s + 1e-9).astype(int)
        ok = (idx >= 0) & (idx < n)
        out[idx[ok]] = vals[ok]
        return cls(start=from_epoch_s(start_s), step=step, values=out, unit=unit)
