"""SARIMAX (statsmodels) with Fourier seasonality and exogenous regressors (CI schedules).

Default: a regression on a constant, daily and weekly seasonality as Fourier terms of absolute
time (order 3 and 2: a seasonal AR at lag 168 is far too slow on hourly data) and the caller's
regressors, with ARMA(2, 1) errors; fitted on a bounded recent window (`window_steps`, four
weeks of hours) in two steps: the regression by least squares, then the (S)ARIMA error model
by maximum likelihood on its residuals. A seasonal part can be added with `seasonal_order`.

Gaps: NaN steps are missing observations that the Kalman filter skips (no filling).
`predict(history=...)` re-filters the newest `window_steps` of the given history with the
fitted (fixed) parameters (statsmodels `filter`), so newer observations are used without a
refit. Intervals are the model's Gaussian prediction intervals; no randomness is involved.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.models._support import (
    FloatArray,
    ModelFit,
    PredictCall,
    check_exog,
    fourier_terms,
    gaussian_quantiles,
    nonnegative_floor,
)
from forecasts.series import RegularSeries

__all__ = ["Sarimax", "SarimaxFit"]


@dataclass(frozen=True, slots=True)
class Sarimax:
    """`fourier` is ((period_steps, order), ...); orders follow statsmodels' SARIMAX."""

    order: tuple[int, int, int] = (2, 0, 1)
    seasonal_order: tuple[int, int, int, int] = (0, 0, 0, 0)
    fourier: tuple[tuple[int, int], ...] = ((24, 3), (168, 2))
    window_steps: int = 24 * 7 * 4
    max_iterations: int = 60

    def __post_init__(self) -> None:
        if self.window_steps < 10:
            raise ValueError(f"window_steps must be >= 10, got {self.window_steps}")
        if any(p < 2 or k < 1 for p, k in self.fourier):
            raise ValueError(f"fourier terms need period >= 2 and order >= 1: {self.fourier}")

    @property
    def name(self) -> str:
        return "sarimax"

    def design(self, epoch_s: FloatArray, step_s: float, exog: FloatArray | None) -> FloatArray:
        """Regressors: a constant, the Fourier terms, the caller's exog."""
        terms = [(p * step_s, k) for p, k in self.fourier]
        parts = [np.ones((epoch_s.size, 1)), fourier_terms(epoch_s, terms=terms)]
        if exog is not None:
            parts.append(exog)
        return np.hstack(parts)

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> SarimaxFit:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        n = len(history)
        ex = check_exog(exog, rows=n, name="exog")
        keep = min(n, self.window_steps)
        y = history.values[n - keep :]
        observed = int(np.isfinite(y).sum())
        n_params = sum(self.order) + 2 * sum(k for _, k in self.fourier) + 3
        if observed < max(3 * n_params, 20):
            raise ValueError(
                f"{self.name} needs at least {max(3 * n_params, 20)} observed steps, got {observed}"
            )
        step_s = history.step.total_seconds()
        x = self.design(
            history.epoch_s()[n - keep :], step_s, ex[n - keep :] if ex is not None else None
        )
        # Two steps: the regression (constant, Fourier terms, exog) by least squares, then the
        # ARMA errors by maximum likelihood on its residuals (few parameters: fits fast).
        ok = np.isfinite(y)
        beta: FloatArray = np.asarray(
            np.linalg.lstsq(x[ok], y[ok], rcond=None)[0], dtype=np.float64
        )
        resid = y - x @ beta
        scale = float(np.nanstd(resid)) or 1.0
        model = SARIMAX(resid / scale, order=self.order, seasonal_order=self.seasonal_order)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit(disp=False, maxiter=self.max_iterations)
        return SarimaxFit(
            spec=self,
            history=history,
            exog=ex,
            params=np.asarray(res.params, dtype=float).copy(),
            beta=beta,
            scale=scale,
            exog_columns=0 if ex is None else ex.shape[1],
            lower_bound=nonnegative_floor(history.values),
        )


@dataclass(frozen=True, slots=True)
class SarimaxFit(ModelFit):
    spec: Sarimax
    history: RegularSeries
    exog: FloatArray | None
    params: FloatArray
    beta: FloatArray
    scale: float
    exog_columns: int
    lower_bound: float | None

    @property
    def name(self) -> str:
        return self.spec.name

    def _predict(self, call: PredictCall) -> Forecast:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        hist, horizon = call.history, call.horizon
        n = len(hist)
        ex_f, ex_h = call.resolve_exog(
            model=self.name, fitted_columns=self.exog_columns, fit_exog=self.exog
        )
        spec = self.spec
        keep = min(n, spec.window_steps)
        y = hist.values[n - keep :]
        if not np.isfinite(y).any():
            raise ValueError("history has no observed values")
        step_s = hist.step.total_seconds()
        epoch = hist.epoch_s()
        x_h = spec.design(epoch[n - keep :], step_s, ex_h[n - keep :] if ex_h is not None else None)
        future_s = epoch[-1] + step_s * np.arange(1, horizon + 1, dtype=float)
        x_f = spec.design(future_s, step_s, ex_f)
        resid = (y - x_h @ self.beta) / self.scale
        model = SARIMAX(resid, order=spec.order, seasonal_order=spec.seasonal_order)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res: Any = model.filter(self.params)
            fc = res.get_forecast(horizon)
        mean = np.asarray(fc.predicted_mean, dtype=float) * self.scale + x_f @ self.beta
        sd = np.asarray(fc.se_mean, dtype=float) * self.scale
        sd = np.where(np.isfinite(sd), sd, np.nanmax(np.where(np.isfinite(sd), sd, 0.0)))
        return call.forecast(
            mean=mean,
            quantiles=gaussian_quantiles(mean, sd, STANDARD_QUANTILES),
            model=self.name,
            lower_bound=self.lower_bound,
        )
