"""Seasonal naive: tomorrow looks like today (or next week like this week).

The baseline every other model must beat. Intervals come from the empirical distribution of
the in-sample seasonal differences, widened by sqrt(k) for the k-th season ahead, and clipped
at zero when the history never goes negative (load, gCO2/kWh).
Gaps follow the rule in `forecasts.models._support` (filled from one season earlier).
Use `SeasonalNaive(24)` for daily and `SeasonalNaive(168)` for weekly seasonality on hourly data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.models._support import ModelFit, PredictCall, fill_gaps
from forecasts.series import RegularSeries

__all__ = ["SeasonalNaive", "SeasonalNaiveFit"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class SeasonalNaive:
    """`period` steps per season (24 for daily on hourly data, 168 for weekly). `label`, when
    set, is its name (the catalog's `seasonal_naive_day`/`_week`, the names the flags take)."""

    period: int = 24
    label: str = ""

    def __post_init__(self) -> None:
        if self.period < 1:
            raise ValueError(f"period must be >= 1, got {self.period}")

    @property
    def name(self) -> str:
        return self.label or f"seasonal_naive_{self.period}"

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> SeasonalNaiveFit:
        values = fill_gaps(history.values, self.period)
        if values.size <= self.period:
            raise ValueError(
                f"{self.name} needs more than {self.period} steps of history, got {values.size}"
            )
        diffs = values[self.period :] - values[: -self.period]
        levels = np.array(STANDARD_QUANTILES)
        # Errors of a one-season-ahead naive forecast; centred so the mean path is the last season.
        spread = np.quantile(diffs - np.median(diffs), levels)
        return SeasonalNaiveFit(
            period=self.period,
            history=history,
            spread=spread,
            levels=tuple(STANDARD_QUANTILES),
            label=self.label,
        )


@dataclass(frozen=True, slots=True)
class SeasonalNaiveFit(ModelFit):
    period: int
    history: RegularSeries
    spread: FloatArray
    levels: tuple[float, ...]
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or f"seasonal_naive_{self.period}"

    def _predict(self, call: PredictCall) -> Forecast:
        hist, horizon = call.history, call.horizon
        values = fill_gaps(hist.values, self.period)
        if values.size < self.period:
            raise ValueError(f"{self.name} needs {self.period} steps of history, got {values.size}")
        last = values[-self.period :]
        k = np.arange(horizon)
        mean = last[k % self.period]
        widen = np.sqrt(k // self.period + 1.0)
        quantiles = {q: mean + s * widen for q, s in zip(self.levels, self.spread, strict=True)}
        observed = hist.values[np.isfinite(hist.values)]
        return call.forecast(
            mean=mean,
            quantiles=quantiles,
            model=self.name,
            lower_bound=0.0 if observed.min() >= 0 else None,
        )
