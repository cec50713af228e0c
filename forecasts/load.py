"""Load history: the `LoadSource` role, the `LoadHistory` value and the gap rule.

The gap rule (one rule for every load source, applied by `apply_gap_rule`):

- A *gap* is a run of consecutive grid steps without a finite value.
- A gap of at most `short_gap_steps` steps with a finite value on **both** sides is filled by
  linear interpolation between those two values (a missed scrape or two must not look like a
  load drop to the models).
- Every other gap, longer ones and any gap touching the first or last step (nothing to
  interpolate towards), stays NaN: it is *marked*. Models and the policy see NaN as missing.
- `LoadHistory` reports both kinds, so callers can tell measured from filled steps.

`short_gap_steps = 0` turns interpolation off (every gap is marked).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
import numpy.typing as npt

from forecasts.series import RegularSeries

__all__ = ["Gap", "LoadHistory", "LoadSource", "apply_gap_rule", "find_gaps"]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Gap:
    """`steps` consecutive missing grid steps starting at `start`."""

    start: datetime
    steps: int
    step: timedelta

    @property
    def end(self) -> datetime:
        """Instant just after the last missing step."""
        return self.start + self.step * self.steps


def find_gaps(values: FloatArray) -> list[tuple[int, int]]:
    """(first index, length) of every run of non-finite values, in order."""
    missing = ~np.isfinite(np.asarray(values, dtype=float))
    if not missing.any():
        return []
    padded = np.concatenate(([False], missing, [False])).astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    stops = np.flatnonzero(edges == -1)
    return [(int(a), int(b - a)) for a, b in zip(starts, stops, strict=True)]


def apply_gap_rule(values: FloatArray, *, short_gap_steps: int) -> tuple[FloatArray, BoolArray]:
    """Apply the module's gap rule; returns (filled values, mask of interpolated steps).

    Non-finite inputs (NaN, ±inf) count as missing; the output holds finite values or NaN.
    """
    if short_gap_steps < 0:
        raise ValueError(f"short_gap_steps must be >= 0, got {short_gap_steps}")
    out = np.array(values, dtype=float, copy=True)
    out[~np.isfinite(out)] = np.nan
    filled = np.zeros(out.shape[0], dtype=bool)
    for first, length in find_gaps(out):
        last = first + length - 1
        if length > short_gap_steps or first == 0 or last == out.shape[0] - 1:
            continue
        left, right = out[first - 1], out[last + 1]
        frac = np.arange(1, length + 1, dtype=float) / (length + 1)
        out[first : last + 1] = left + (right - left) * frac
        filled[first : last + 1] = True
    return out, filled


@dataclass(frozen=True, slots=True)
class LoadHistory:
    """One load series from a source, after the gap rule, with a report of what was done.

    `series` holds finite measured or interpolated values and NaN for marked gaps.
    `interpolated` and `marked` list the gaps by kind; `non_finite_samples` counts samples the
    source sent as NaN/±Inf (treated as missing); `requests` counts the source calls it took;
    `warnings` carries the source's own warnings verbatim.
    """

    query: str
    series: RegularSeries
    interpolated: tuple[Gap, ...] = ()
    marked: tuple[Gap, ...] = ()
    non_finite_samples: int = 0
    requests: int = 1
    warnings: tuple[str, ...] = ()
    _interpolated_mask: BoolArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        mask = np.zeros(len(self.series), dtype=bool)
        base = self.series.start
        step_s = self.series.step.total_seconds()
        for gap in self.interpolated:
            i = round((gap.start - base).total_seconds() / step_s)
            if i < 0 or i + gap.steps > len(self.series):
                raise ValueError(f"interpolated gap at {gap.start.isoformat()} is off the series")
            mask[i : i + gap.steps] = True
        mask.setflags(write=False)
        object.__setattr__(self, "_interpolated_mask", mask)

    @classmethod
    def from_samples(
        cls,
        query: str,
        values: FloatArray,
        *,
        start: datetime,
        step: timedelta,
        unit: str,
        short_gap_steps: int,
        non_finite_samples: int = 0,
        requests: int = 1,
        warnings: tuple[str, ...] = (),
    ) -> LoadHistory:
        """Build from raw grid values (NaN = no sample) by applying the gap rule."""
        raw = np.asarray(values, dtype=float)
        filled, interpolated_mask = apply_gap_rule(raw, short_gap_steps=short_gap_steps)
        interpolated: list[Gap] = []
        marked: list[Gap] = []
        for first, length in find_gaps(raw):
            gap = Gap(start=start + step * first, steps=length, step=step)
            (interpolated if interpolated_mask[first] else marked).append(gap)
        series = RegularSeries(start=start, step=step, values=filled, unit=unit)
        return cls(
            query=query,
            series=series,
            interpolated=tuple(interpolated),
            marked=tuple(marked),
            non_finite_samples=non_finite_samples,
            requests=requests,
            warnings=warnings,
        )

    @property
    def interpolated_mask(self) -> BoolArray:
        """True where a step's value was interpolated rather than measured."""
        return self._interpolated_mask

    @property
    def measured_mask(self) -> BoolArray:
        """True where a step's value came from the source."""
        return ~(self._interpolated_mask | self.series.missing())

    @property
    def last_observed_at(self) -> datetime | None:
        """Instant of the last measured step (None when nothing was measured).

        A series that went stale (its target disappeared) ends in a marked gap: compare this
        with the window's end to see how stale it is.
        """
        measured = np.flatnonzero(self.measured_mask)
        return self.series.time_at(int(measured[-1])) if measured.size else None

    @property
    def coverage(self) -> float:
        """Fraction of steps that were measured (0..1)."""
        n = len(self.series)
        return float(self.measured_mask.sum()) / n if n else 0.0


class LoadSource(Protocol):
    """Load history of a workload from a metrics backend (Prometheus in production).

    `history` returns the grid instants `t = start' + k*step` with `start' = floor(start)`
    to a multiple of `step` and `t < end` (aligned, so repeated calls land on the same grid,
    and half-open like `RegularSeries`). The value at `t` is the query evaluated at `t`;
    NaN marks a missing step. Errors are `forecasts.sources.SourceError`s.

    Adapters that also report how gaps were handled offer
    `fetch(...) -> LoadHistory` (see `PrometheusLoadSource.fetch`).
    """

    @property
    def name(self) -> str: ...

    def history(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> RegularSeries:
        """Values of `query` on the aligned grid for instants before `end`."""
        ...
