"""Helpers the bundled models share: the gap rule, exogenous checks, Fourier terms, and
turning a point forecast plus an error distribution into a valid `Forecast`.

Gap rule (every model documents that it follows it): a NaN step is a missing observation.
Models that are not state-space filters fill it before use with the value one season
earlier, then by linear interpolation (leading NaNs take the first observed value).
State-space models (SARIMAX) skip missing steps in the Kalman filter instead. A history
with no observed value at all is a `ValueError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.series import RegularSeries

__all__ = [
    "FloatArray",
    "build_forecast",
    "check_exog",
    "fill_gaps",
    "fourier_terms",
    "gaussian_quantiles",
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
