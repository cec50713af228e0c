"""Per-series automatic model selection as a `Forecaster`.

`AutoSelect.fit` backtests its candidates on the history it is given (rolling origins over
the newest part), keeps the model with the lowest MAE among those that beat the seasonal-naive
baseline (`forecasts.backtest.select_model`), and fits that model on the whole history. The
scaler's refit job calls `fit` on its own schedule, so selection is re-run as the series
changes. A history too short to backtest falls back to the baseline, and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecasts.backtest import Selection, rolling_origins, run_backtests, select_model
from forecasts.forecast import FittedModel, Forecast, Forecaster
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.series import RegularSeries

__all__ = ["AutoSelect", "AutoSelectFit", "join_history"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class AutoSelect:
    """`candidates` must include a `SeasonalNaive` (the baseline every model must beat).

    `horizon` is the lead the selection cares about (steps); `origins` backtest origins,
    `stride` steps apart, each with at least `min_train` steps of history before it."""

    candidates: Sequence[Forecaster]
    horizon: int
    origins: int = 4
    stride: int = 12
    min_train: int = 2

    def __post_init__(self) -> None:
        if not any(isinstance(c, SeasonalNaive) for c in self.candidates):
            raise ValueError("AutoSelect candidates must include a SeasonalNaive baseline")
        if self.horizon < 1 or self.origins < 1 or self.stride < 1 or self.min_train < 1:
            raise ValueError("horizon, origins, stride and min_train must all be >= 1")

    @property
    def name(self) -> str:
        return "auto"

    def _baseline(self) -> SeasonalNaive:
        return next(c for c in self.candidates if isinstance(c, SeasonalNaive))

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> AutoSelectFit:
        baseline = self._baseline()
        try:
            points = rolling_origins(
                len(history),
                horizon=self.horizon,
                count=self.origins,
                stride=self.stride,
                min_train=self.min_train,
            )
        except ValueError:
            points = []
        if not points:
            reason = (
                f"history of {len(history)} steps too short to backtest "
                f"(need {self.min_train + self.horizon}); using {baseline.name}"
            )
            return AutoSelectFit(baseline.fit(history, seed=seed), (reason,), None, history)
        results = run_backtests(
            history,
            list(self.candidates),
            origins=points,
            horizon=self.horizon,
            exog=exog,
            seed=seed,
            mase_periods=(baseline.period,),
        )
        try:
            selection = select_model(results)
        except ValueError as exc:
            # The baseline itself could not be backtested (e.g. no observed values): fitting
            # it on the whole history raises the precise error, or serves if it can.
            return AutoSelectFit(baseline.fit(history, seed=seed), (str(exc),), None, history)
        chosen = next(c for c in self.candidates if c.name == selection.model)
        try:
            fitted = chosen.fit(history, exog=exog, seed=seed)
        except ValueError as exc:
            reason = f"{chosen.name} failed to fit on the full history ({exc}); using baseline"
            return AutoSelectFit(
                baseline.fit(history, seed=seed), (*selection.reasons, reason), selection, history
            )
        return AutoSelectFit(fitted, tuple(selection.reasons), selection, history)


def join_history(base: RegularSeries, newer: RegularSeries) -> RegularSeries:
    """`newer` preceded by the part of `base` before it (a gap between them stays NaN), so a
    model that needs a long look-back can condition on a short window of newer data. Series
    on different grids, or a `newer` that starts first, are returned as `newer`."""
    step = newer.step
    if step != base.step or newer.start <= base.start:
        return newer
    offset = (newer.start - base.start) / step
    if offset != int(offset):
        return newer
    head = base.values[: min(int(offset), len(base))]
    gap = np.full(max(0, int(offset) - len(base)), np.nan)
    values = np.concatenate([head, gap, newer.values])
    return RegularSeries(start=base.start, step=step, values=values, unit=newer.unit)


@dataclass(frozen=True, slots=True)
class AutoSelectFit:
    """The chosen model, fitted; `reasons` say why it was chosen. `history` is what it was
    fitted on: a shorter newer window given to `predict` is joined onto it."""

    fitted: FittedModel
    reasons: tuple[str, ...]
    selection: Selection | None
    history: RegularSeries

    @property
    def name(self) -> str:
        return self.fitted.name

    def predict(
        self,
        *,
        horizon: int,
        history: RegularSeries | None = None,
        exog_future: FloatArray | None = None,
        exog_history: FloatArray | None = None,
    ) -> Forecast:
        if history is not None and exog_history is None:
            history = join_history(self.history, history)
        return self.fitted.predict(
            horizon=horizon,
            history=history,
            exog_future=exog_future,
            exog_history=exog_history,
        )
