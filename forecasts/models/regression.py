"""Seasonal lag regression: one least-squares model per lead time (direct multi-step).

For an origin with last observation y[o-1] and a target y[o+h-1] the features are: the last
value, the mean of the last season, the same slot one and two seasons before the target (as
observed at the origin), the same slot one week before, Fourier terms of the target's time of
day and week, and the exogenous regressors (e.g. CI schedule indicators) at the target step.
Coefficients are fitted by ridge-regularised (optionally recency-weighted) least squares on a
bounded recent window.

Leads up to `max_horizon` have their own coefficients; longer horizons are forecast
recursively (the mean path is fed back as observations). Intervals are the empirical
quantiles of each lead's out-of-sample errors on the newest `holdout_steps` training origins
(scored with coefficients fitted on the older ones), widened by sqrt(k) for the k-th
recursive block. Gaps follow `forecasts.models._support` (seasonal fill).
`predict(history=...)` uses the newest observations of the given history with the fitted
coefficients: no refit. Deterministic: no randomness at all (the seed is unused).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.models._support import (
    FloatArray,
    ModelFit,
    PredictCall,
    check_exog,
    fill_gaps,
    fourier_terms,
    nonnegative_floor,
)
from forecasts.series import RegularSeries

__all__ = ["SeasonalRegression", "SeasonalRegressionFit"]

_IntArray = np.ndarray[tuple[int], np.dtype[np.int64]]


@dataclass(frozen=True, slots=True)
class SeasonalRegression:
    """`season_steps` per day-like season, `week_steps` per week (0 disables weekly lags and
    terms), `window_steps` of recent history used for fitting."""

    season_steps: int = 24
    week_steps: int = 168
    max_horizon: int = 48
    window_steps: int = 24 * 7 * 12
    ridge: float = 1e-3
    fourier_order: int = 2
    #: Further values before the origin used as features (steps back from the origin, >= 2).
    extra_lags: tuple[int, ...] = ()
    #: Intervals from the errors of only the last this-many training origins (recent
    #: volatility); None uses all of them.
    residual_window_steps: int | None = None
    #: Weighted least squares: a training origin this many steps older counts half as much
    #: (None: all origins in the window count the same).
    half_life_steps: int | None = None
    #: Intervals from out-of-sample errors: coefficients fitted without the newest this-many
    #: training origins are scored on them (0, or too little data: in-sample errors inflated
    #: for the degrees of freedom).
    holdout_steps: int = 24 * 14

    def __post_init__(self) -> None:
        if self.season_steps < 2:
            raise ValueError(f"season_steps must be >= 2, got {self.season_steps}")
        if self.week_steps < 0 or (0 < self.week_steps <= self.season_steps):
            raise ValueError(
                f"week_steps must be 0 or more than season_steps, got {self.week_steps}"
            )
        if self.max_horizon < 1:
            raise ValueError(f"max_horizon must be >= 1, got {self.max_horizon}")
        if self.window_steps < 1:
            raise ValueError(f"window_steps must be >= 1, got {self.window_steps}")
        if self.ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {self.ridge}")
        if self.holdout_steps < 0:
            raise ValueError(f"holdout_steps must be >= 0, got {self.holdout_steps}")
        if self.half_life_steps is not None and self.half_life_steps < 1:
            raise ValueError(f"half_life_steps must be >= 1, got {self.half_life_steps}")
        if any(lag < 2 for lag in self.extra_lags):
            raise ValueError(f"extra_lags must be >= 2, got {self.extra_lags}")
        if self.residual_window_steps is not None and self.residual_window_steps < 10:
            raise ValueError(
                f"residual_window_steps must be >= 10, got {self.residual_window_steps}"
            )

    @property
    def name(self) -> str:
        return "seasonal_regression"

    @property
    def min_lag_steps(self) -> int:
        """Observations an origin needs behind it."""
        return max(self.week_steps, 3 * self.season_steps, *self.extra_lags)

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> SeasonalRegressionFit:
        n_all = len(history)
        ex_all = check_exog(exog, rows=n_all, name="exog")
        keep = min(n_all, self.window_steps + self.min_lag_steps)
        values = fill_gaps(history.values[n_all - keep :], self.season_steps)
        ex = ex_all[n_all - keep :] if ex_all is not None else None
        start_s = history.epoch_s()[n_all - keep]
        step_s = history.step.total_seconds()
        n = values.size
        first_origin = self.min_lag_steps
        n_feat = self._n_features(0 if ex is None else ex.shape[1])
        needed = first_origin + self.max_horizon + 2 * n_feat
        if n < needed:
            raise ValueError(
                f"{self.name} needs at least {needed} steps of history, got {n}"
                " (lower max_horizon/week_steps for short series)"
            )
        horizons = min(self.max_horizon, n - first_origin - 2 * n_feat)
        coefs: list[FloatArray] = []
        spreads: list[FloatArray] = []
        levels = np.asarray(STANDARD_QUANTILES)
        for h in range(1, horizons + 1):
            origins = np.arange(first_origin, n - h + 1, dtype=np.int64)
            x = self._features(values, origins, h, start_s=start_s, step_s=step_s, exog=ex)
            y = values[origins + h - 1]
            scale = np.maximum(x.std(axis=0), 1e-12)
            scale[0] = 1.0
            xs = x / scale
            weight = np.ones(origins.size)
            if self.half_life_steps is not None:
                weight = 0.5 ** ((origins[-1] - origins) / self.half_life_steps)
            beta = self._solve(xs, y, weight) / scale
            holdout = self.holdout_steps
            if holdout and origins.size - holdout >= 4 * xs.shape[1]:
                # Honest errors: coefficients from the older origins, scored on the newest.
                early = self._solve(xs[:-holdout], y[:-holdout], weight[:-holdout]) / scale
                resid = y[-holdout:] - x[-holdout:] @ early
                inflate = 1.0
            else:
                resid = y - x @ beta
                if self.residual_window_steps is not None:
                    resid = resid[-self.residual_window_steps :]
                dof = max(origins.size - xs.shape[1], 1)
                inflate = np.sqrt(origins.size / dof)
            coefs.append(beta)
            spreads.append(np.quantile(resid, levels) * inflate)
        return SeasonalRegressionFit(
            spec=self,
            history=history,
            coefs=np.vstack(coefs),
            spreads=np.vstack(spreads),
            exog_columns=0 if ex is None else ex.shape[1],
            lower_bound=nonnegative_floor(history.values),
        )

    def _solve(self, xs: FloatArray, y: FloatArray, weight: FloatArray) -> FloatArray:
        """Weighted ridge least squares on standardised columns (intercept unpenalised)."""
        penalty = self.ridge * weight.sum() * np.eye(xs.shape[1])
        penalty[0, 0] = 0.0
        xw = xs * weight[:, None]
        out: FloatArray = np.linalg.solve(xw.T @ xs + penalty, xw.T @ y)
        return out

    def _n_features(self, exog_columns: int) -> int:
        weekly = 1 if self.week_steps else 0
        terms = 2 * self.fourier_order * (1 + weekly)
        return 5 + weekly + len(self.extra_lags) + terms + exog_columns

    def _features(
        self,
        values: FloatArray,
        origins: _IntArray,
        h: int | _IntArray,
        *,
        start_s: float,
        step_s: float,
        exog: FloatArray | None,
    ) -> FloatArray:
        """Feature rows for targets `origins + h - 1`; `h` is one lead for every origin or
        one lead per origin (one origin's whole horizon at once)."""
        m = self.season_steps
        target = origins + h - 1
        back = m * ((h + m - 1) // m)
        csum = np.concatenate([[0.0], np.cumsum(values)])
        level = (csum[origins] - csum[origins - m]) / m
        cols = [
            np.ones(origins.size),
            values[origins - 1],
            level,
            values[target - back],
            values[target - back - m],
        ]
        cols += [values[origins - lag] for lag in self.extra_lags]
        terms: list[tuple[float, int]] = [(m * step_s, self.fourier_order)]
        if self.week_steps:
            w = self.week_steps
            cols.append(values[target - w * ((h + w - 1) // w)])
            terms.append((w * step_s, self.fourier_order))
        t_s = start_s + target.astype(float) * step_s
        parts = [np.column_stack(cols), fourier_terms(t_s, terms=terms)]
        if exog is not None:
            parts.append(exog[target])
        return np.hstack(parts)


@dataclass(frozen=True, slots=True)
class SeasonalRegressionFit(ModelFit):
    spec: SeasonalRegression
    history: RegularSeries
    coefs: FloatArray
    spreads: FloatArray
    exog_columns: int
    lower_bound: float | None

    @property
    def name(self) -> str:
        return self.spec.name

    def _predict(self, call: PredictCall) -> Forecast:
        hist, horizon = call.history, call.horizon
        ex_f = check_exog(call.exog_future, rows=horizon, name="exog_future")
        if self.exog_columns and ex_f is None:
            raise ValueError(f"{self.name} was fitted with exog: exog_future is required")
        if ex_f is not None and ex_f.shape[1] != self.exog_columns:
            raise ValueError(
                f"exog_future has {ex_f.shape[1]} columns, the fit used {self.exog_columns}"
            )
        spec = self.spec
        need = spec.min_lag_steps
        if len(hist) < need:
            raise ValueError(f"{self.name} needs {need} steps of history to predict")
        values = fill_gaps(hist.values[-(need + spec.season_steps) :], spec.season_steps)
        base = values.size
        start_s = hist.epoch_s()[len(hist) - base]
        step_s = hist.step.total_seconds()
        block = self.coefs.shape[0]
        mean = np.empty(horizon)
        qs = np.empty((len(STANDARD_QUANTILES), horizon))
        work = np.concatenate([values, np.zeros(horizon)])
        ex_work = None
        if ex_f is not None:
            ex_work = np.vstack([np.zeros((base, ex_f.shape[1])), ex_f])
        done = 0
        if horizon <= block:
            # One origin, every lead at once (the common case: no recursive blocks).
            hs = np.arange(1, horizon + 1, dtype=np.int64)
            origins = np.full(horizon, base, dtype=np.int64)
            x = spec._features(work, origins, hs, start_s=start_s, step_s=step_s, exog=ex_work)
            mean[:] = np.einsum("ij,ij->i", x, self.coefs[:horizon])
            qs[:, :] = (mean[:, None] + self.spreads[:horizon]).T
            done = horizon
        while done < horizon:
            origin = np.array([base + done], dtype=np.int64)
            k = done // block
            for h in range(1, min(block, horizon - done) + 1):
                x = spec._features(work, origin, h, start_s=start_s, step_s=step_s, exog=ex_work)
                yhat = float(x[0] @ self.coefs[h - 1])
                mean[done + h - 1] = yhat
                qs[:, done + h - 1] = yhat + self.spreads[h - 1] * np.sqrt(k + 1.0)
            n_new = min(block, horizon - done)
            work[base + done : base + done + n_new] = mean[done : done + n_new]
            done += n_new
        return call.forecast(
            mean=mean,
            quantiles={q: qs[i] for i, q in enumerate(STANDARD_QUANTILES)},
            model=self.name,
            lower_bound=self.lower_bound,
        )
