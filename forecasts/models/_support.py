"""Helpers the bundled models share: the gap rule, exogenous checks, Fourier terms, turning a
point forecast plus an error distribution into a valid `Forecast`, and `ModelFit`, the base of
every fitted model whose `predict()` starts from a history (the shared preamble, once).

Gap rule (every model documents that it follows it): a NaN step is a missing observation.
Models that are not state-space filters fill it before use with the value one season
earlier, then by linear interpolation (leading NaNs take the first observed value).
State-space models (SARIMAX) skip missing steps in the Kalman filter instead. A history
with no observed value at all is a `ValueError`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.series import RegularSeries

__all__ = [
    "FloatArray",
    "ModelFit",
    "PredictCall",
    "build_forecast",
    "check_exog",
    "fill_gaps",
    "fourier_terms",
    "gaussian_quantiles",
    "nonnegative_floor",
    "predict_history",
    "resolve_exog",
]

FloatArray = npt.NDArray[np.float64]


def predict_history(
    horizon: int, history: RegularSeries | None, *, fitted: RegularSeries
) -> RegularSeries:
    """Every model's `predict()` preamble: a horizon of at least one step, and the history to
    forecast from (the one given, else the one the model was fitted on)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    return history if history is not None else fitted


def nonnegative_floor(values: FloatArray) -> float | None:
    """0.0 (the lower bound `build_forecast` clips to) for a history that never goes negative
    (load, gCO2/kWh), else None."""
    return 0.0 if np.nanmin(values) >= 0 else None


def fill_gaps(values: FloatArray, period: int) -> FloatArray:
    """Fill NaNs from one season earlier, then linearly; leading NaNs take the first value.

    Returns a new array; `values` is never modified."""
    out = np.array(values, dtype=float, copy=True)
    nan = np.isnan(out)
    if not nan.any():
        return out
    if period >= 1:
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


def check_exog(exog: FloatArray | None, *, rows: int, name: str) -> FloatArray | None:
    """Validate an exogenous matrix (one row per step) and return a private 2-D float copy."""
    if exog is None:
        return None
    arr = np.array(exog, dtype=float, copy=True)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D matrix (steps x regressors), got {arr.shape}")
    if arr.shape[0] != rows:
        raise ValueError(f"{name} has {arr.shape[0]} rows, expected one per step ({rows})")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} has non-finite values")
    return arr


def resolve_exog(
    *,
    model: str,
    fitted_columns: int,
    fit_exog: FloatArray | None,
    history_is_fit: bool,
    horizon: int,
    history_steps: int,
    exog_future: FloatArray | None,
    exog_history: FloatArray | None,
) -> tuple[FloatArray | None, FloatArray | None]:
    """Checked (future, history) regressors for a `predict` call, or (None, None) when the
    model was fitted without exog. The fit's own exog stands in for `exog_history` only when
    the history is the fit history."""
    ex_f = check_exog(exog_future, rows=horizon, name="exog_future")
    ex_h = check_exog(exog_history, rows=history_steps, name="exog_history")
    if not fitted_columns:
        return None, None
    if ex_f is None:
        raise ValueError(f"{model} was fitted with exog: exog_future is required")
    if ex_h is None:
        if not history_is_fit:
            raise ValueError(f"{model} was fitted with exog: exog_history is required")
        ex_h = fit_exog
    for label, arr in (("exog_future", ex_f), ("exog_history", ex_h)):
        if arr is not None and arr.shape[1] != fitted_columns:
            raise ValueError(f"{label} has {arr.shape[1]} columns, the fit used {fitted_columns}")
    return ex_f, ex_h


def fourier_terms(epoch_s: FloatArray, *, terms: Sequence[tuple[float, int]]) -> FloatArray:
    """sin/cos pairs for each (period_seconds, order): phase from absolute time, so a
    sliding window keeps the same seasonal phase."""
    cols: list[FloatArray] = []
    for period_s, order in terms:
        for k in range(1, order + 1):
            angle = 2.0 * math.pi * k * epoch_s / period_s
            cols.append(np.sin(angle))
            cols.append(np.cos(angle))
    if not cols:
        return np.empty((epoch_s.size, 0))
    return np.column_stack(cols)


def gaussian_quantiles(
    mean: FloatArray, sd: FloatArray, levels: Sequence[float] = STANDARD_QUANTILES
) -> dict[float, FloatArray]:
    dist = NormalDist()
    return {q: mean + dist.inv_cdf(q) * sd for q in levels}


def build_forecast(
    *,
    start: datetime,
    step: timedelta,
    mean: FloatArray,
    quantiles: dict[float, FloatArray],
    unit: str,
    model: str,
    lower_bound: float | None = None,
) -> Forecast:
    """A `Forecast` whose quantiles are sorted per step and whose outer band holds the mean.

    `lower_bound` (e.g. 0 for a non-negative series) clips mean and quantiles from below."""
    levels = sorted(quantiles)
    mat = np.vstack([np.asarray(quantiles[q], dtype=float) for q in levels])
    m = np.array(mean, dtype=float, copy=True)
    if lower_bound is not None:
        m = np.maximum(m, lower_bound)
        mat = np.maximum(mat, lower_bound)
    mat = np.sort(mat, axis=0)
    mat[0] = np.minimum(mat[0], m)
    mat[-1] = np.maximum(mat[-1], m)
    mat = np.sort(mat, axis=0)
    return Forecast(
        start=start,
        step=step,
        mean=m,
        quantiles={q: mat[i] for i, q in enumerate(levels)},
        unit=unit,
        model=model,
    )


@dataclass(frozen=True, slots=True)
class PredictCall:
    """One checked `predict()` call: the horizon (>= 1), the history to forecast from (the one
    given, else the fit's), whether that is the fit history, and the caller's regressors."""

    horizon: int
    history: RegularSeries
    history_is_fit: bool
    exog_future: FloatArray | None
    exog_history: FloatArray | None

    def resolve_exog(
        self, *, model: str, fitted_columns: int, fit_exog: FloatArray | None
    ) -> tuple[FloatArray | None, FloatArray | None]:
        """`resolve_exog` for this call (future, history regressors, checked)."""
        return resolve_exog(
            model=model,
            fitted_columns=fitted_columns,
            fit_exog=fit_exog,
            history_is_fit=self.history_is_fit,
            horizon=self.horizon,
            history_steps=len(self.history),
            exog_future=self.exog_future,
            exog_history=self.exog_history,
        )

    def forecast(
        self,
        *,
        mean: FloatArray,
        quantiles: dict[float, FloatArray],
        model: str,
        lower_bound: float | None,
    ) -> Forecast:
        """`build_forecast` from the end of the history, on its step and in its unit."""
        hist = self.history
        return build_forecast(
            start=hist.end,
            step=hist.step,
            mean=mean,
            quantiles=quantiles,
            unit=hist.unit,
            model=model,
            lower_bound=lower_bound,
        )


class ModelFit(ABC):
    """Base of the bundled models' fits (frozen slotted dataclasses with a `history` field, the
    fit history): `predict()` checks the horizon, picks the history and hands one
    `PredictCall` to the model's `_predict`. Plays `forecasts.forecast.FittedModel`."""

    __slots__ = ()

    history: RegularSeries

    @property
    @abstractmethod
    def name(self) -> str: ...

    def predict(
        self,
        *,
        horizon: int,
        history: RegularSeries | None = None,
        exog_future: FloatArray | None = None,
        exog_history: FloatArray | None = None,
    ) -> Forecast:
        """Forecast `horizon` steps after the end of `history` (default: the fit history); see
        `forecasts.forecast.FittedModel.predict`."""
        hist = predict_history(horizon, history, fitted=self.history)
        return self._predict(
            PredictCall(
                horizon=horizon,
                history=hist,
                history_is_fit=history is None or history is self.history,
                exog_future=exog_future,
                exog_history=exog_history,
            )
        )

    @abstractmethod
    def _predict(self, call: PredictCall) -> Forecast:
        """The model's own forecast for one checked call."""
