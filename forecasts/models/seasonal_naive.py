"""Seasonal naive: tomorrow looks like today (or next week like this week).

The baseline every other model must beat. Intervals come from the empirical distribution of
the in-sample seasonal differences, widened by sqrt(k) for the k-th season ahead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.series import RegularSeries

__all__ = ["SeasonalNaive", "SeasonalNaiveFit"]

FloatArray = npt.NDArray[np.float64]


def _fill_missing(values: FloatArray, period: int) -> FloatArray:
    """Fill NaNs from one season earlier, then linearly; leading NaNs take the first value."""
    out = np.array(values, dtype=float, copy=True)
    nan = np.isnan(out)
    if not nan.any():
        return out
    for i in np.flatnonzero(nan):
        if i >= period and not np.isnan(out[i - period]):
            out[i] = out[i - period]
    nan = np.isnan(out)
    if nan.all():
        raise ValueError("history has no observed values")
    if nan.any():
        idx = np.arange(out.size)
        out[nan] = np.interp(idx[nan], idx[~nan], out[~nan])
    return out


@dataclass(frozen=True, slots=True)
class SeasonalNaive:
    """`period` steps per season (24 for daily on hourly data, 168 for weekly)."""

    period: int = 24

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"period must be >= 1, got {self.period}")

    @property
    def name(self) -> str:
        return f"seasonal_naive_{self.period}"

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> SeasonalNaiveFit:
        values = _fill_missing(history.values, self.period)
        if values.size <= self.period:
            raise ValueError(
                f"{self.name} needs more than {self.period} steps of history, got {values.size}"
            )
        diffs = values[self.period :] - values[: -self.period]
        levels = np.array(STANDARD_QUANTILES)
        # Errors of a one-season-ahead naive forecast; centred so the mean path is the last season.
        spread = np.quantile(diffs - np.median(diffs), levels)
        return SeasonalNaiveFit(
            period=self.period, history=history, spread=spread, levels=tuple(STANDARD_QUANTILES)
        )


@dataclass(frozen=True, slots=True)
class SeasonalNaiveFit:
    period: int
    history: RegularSeries
    spread: FloatArray
    levels: tuple[float, ...]

    @property
    def name(self) -> str:
        return f"seasonal_naive_{self.period}"

    def predict(
        self,
        *,
        horizon: int,
        history: RegularSeries | None = None,
        exog_future: FloatArray | None = None,
    ) -> Forecast:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        hist = history if history is not None else self.history
        values = _fill_missing(hist.values, self.period)
        if values.size < self.period:
            raise ValueError(f"{self.name} needs {self.period} steps of history, got {values.size}")
        last = values[-self.period :]
        k = np.arange(horizon)
        mean = last[k % self.period]
        widen = np.sqrt(k // self.period + 1.0)
        quantiles = {q: mean + s * widen for q, s in zip(self.levels, self.spread, strict=True)}
        return Forecast(
            start=hist.end,
            step=hist.step,
            mean=mean,
            quantiles=quantiles,
            unit=hist.unit,
            model=self.name,
        )
