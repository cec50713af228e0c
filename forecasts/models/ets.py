"""Holt-Winters / ETS(A, Ad, A): additive (damped) trend and additive seasonality.

statsmodels' `holtwinters.ExponentialSmoothing` estimates the smoothing parameters (and, with
`initialization="estimated"`, the initial states; by default they come from its heuristic
decomposition, which fits several times faster) on a bounded recent window (`window_steps`).
Prediction re-runs the smoothing recursion with those fixed parameters over the history it is
given (the fitted initial seasonal profile is rotated to that history's phase), so
`predict(history=newer)` conditions on newer observations without a refit.

Intervals come from simulation: `simulations` future paths driven by one-step errors
resampled from the in-sample errors (seeded with the fit's `seed`), so the forecast is
deterministic for a seed. Gaps follow `forecasts.models._support` (seasonal fill).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.models._support import (
    FloatArray,
    ModelFit,
    PredictCall,
    check_exog,
    fill_gaps,
    nonnegative_floor,
)
from forecasts.series import RegularSeries
from forecasts.time import to_epoch_s

__all__ = ["ETS", "ETSFit"]


@dataclass(frozen=True, slots=True)
class ETS:
    """`season_steps` per season (24 on hourly data: daily; 168: weekly, slower)."""

    season_steps: int = 24
    damped_trend: bool = True
    window_steps: int = 24 * 7 * 4
    simulations: int = 400
    #: "heuristic" (initial states from a decomposition, 4 parameters optimised: several times
    #: faster) or "estimated" (initial states optimised too: slightly tighter fit, slow).
    initialization: Literal["heuristic", "estimated"] = "heuristic"
    #: its name when set (the catalog's `ets`, the name the flags take)
    label: str = ""

    def __post_init__(self) -> None:
        if self.season_steps < 2:
            raise ValueError(f"season_steps must be >= 2, got {self.season_steps}")
        if self.window_steps < 2 * self.season_steps + 2:
            raise ValueError(f"window_steps must cover two seasons, got {self.window_steps}")
        if self.initialization not in ("heuristic", "estimated"):
            raise ValueError(
                f"initialization must be heuristic|estimated, got {self.initialization!r}"
            )
        if self.simulations < 20:
            raise ValueError(f"simulations must be >= 20, got {self.simulations}")

    @property
    def name(self) -> str:
        return self.label or f"ets_{self.season_steps}"

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> ETSFit:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        check_exog(exog, rows=len(history), name="exog")  # accepted, not used by ETS
        m = self.season_steps
        tail = history.values[-self.window_steps :]
        if tail.size < 2 * m + 2:
            raise ValueError(f"{self.name} needs at least {2 * m + 2} steps of history")
        values = fill_gaps(tail, m)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = ExponentialSmoothing(
                values,
                trend="add" if self.damped_trend else None,
                damped_trend=self.damped_trend,
                seasonal="add",
                seasonal_periods=m,
                initialization_method=self.initialization,
            ).fit()
        p = res.params
        trend_on = self.damped_trend
        params = _Params(
            alpha=float(p["smoothing_level"]),
            beta=float(p["smoothing_trend"]) if trend_on else 0.0,
            gamma=float(p["smoothing_seasonal"]),
            phi=float(p["damping_trend"]) if trend_on else 0.0,
            level0=float(p["initial_level"]),
            trend0=float(p["initial_trend"]) if trend_on else 0.0,
            season0=np.asarray(p["initial_seasons"], dtype=float).copy(),
        )
        start_s = to_epoch_s(history.time_at(len(history) - tail.size))
        fit = ETSFit(
            spec=self,
            history=history,
            params=params,
            phase_origin_s=start_s,
            seed=seed,
            errors=np.empty(0),
            lower_bound=nonnegative_floor(history.values),
        )
        _, _, _, errors = fit.filter(values, start_s=start_s, step_s=history.step.total_seconds())
        object.__setattr__(fit, "errors", errors[m:] if errors.size > 2 * m else errors)
        return fit


@dataclass(frozen=True, slots=True)
class _Params:
    alpha: float
    beta: float
    gamma: float
    phi: float
    level0: float
    trend0: float
    season0: FloatArray


@dataclass(frozen=True, slots=True)
class ETSFit(ModelFit):
    spec: ETS
    history: RegularSeries
    params: _Params
    phase_origin_s: float
    seed: int
    errors: FloatArray
    lower_bound: float | None

    @property
    def name(self) -> str:
        return self.spec.name

    def filter(
        self, values: FloatArray, *, start_s: float, step_s: float
    ) -> tuple[float, float, FloatArray, FloatArray]:
        """Run the smoothing recursion over `values`; returns the final level, trend, the
        seasonal states for the next season (next step first) and the one-step errors."""
        p = self.params
        m = self.spec.season_steps
        shift = round((start_s - self.phase_origin_s) / step_s) % m
        season = np.roll(p.season0, -shift).tolist()
        level, trend = p.level0, p.trend0
        errors = np.empty(values.size)
        a, b, g, phi = p.alpha, p.beta, p.gamma, p.phi
        for i, y in enumerate(values.tolist()):
            s = season[i % m]
            err = y - (level + phi * trend + s)
            errors[i] = err
            new_level = level + phi * trend + a * err
            trend = phi * trend + a * b * err
            season[i % m] = s + g * err
            level = new_level
        k = values.size % m
        ordered = np.array(season[k:] + season[:k])
        return level, trend, ordered, errors

    def _predict(self, call: PredictCall) -> Forecast:
        hist, horizon = call.history, call.horizon
        check_exog(call.exog_future, rows=horizon, name="exog_future")  # accepted, not used
        m = self.spec.season_steps
        tail = hist.values[-self.spec.window_steps :]
        if tail.size < m:
            raise ValueError(f"{self.name} needs at least {m} steps of history to predict")
        values = fill_gaps(tail, m)
        step_s = hist.step.total_seconds()
        start_s = to_epoch_s(hist.time_at(len(hist) - tail.size))
        level, trend, season, _ = self.filter(values, start_s=start_s, step_s=step_s)
        mean = self._paths(level, trend, season, horizon, shocks=None)[0]
        rng = np.random.default_rng(self.seed)
        errors = self.errors if self.errors.size else np.zeros(1)
        shocks = rng.choice(errors, size=(self.spec.simulations, horizon), replace=True)
        sims = self._paths(level, trend, season, horizon, shocks=shocks)
        levels = np.asarray(STANDARD_QUANTILES)
        qmat = np.quantile(sims, levels, axis=0)
        return call.forecast(
            mean=mean,
            quantiles={q: qmat[i] for i, q in enumerate(STANDARD_QUANTILES)},
            model=self.name,
            lower_bound=self.lower_bound,
        )

    def _paths(
        self,
        level: float,
        trend: float,
        season: FloatArray,
        horizon: int,
        *,
        shocks: FloatArray | None,
    ) -> FloatArray:
        """Simulate paths (rows) forward; without shocks the single row is the point forecast."""
        p = self.params
        m = self.spec.season_steps
        rows = 1 if shocks is None else shocks.shape[0]
        lv = np.full(rows, level)
        tr = np.full(rows, trend)
        ss = np.tile(season, (rows, 1))
        out = np.empty((rows, horizon))
        for h in range(horizon):
            s = ss[:, h % m].copy()
            yhat = lv + p.phi * tr + s
            e = np.zeros(rows) if shocks is None else shocks[:, h]
            out[:, h] = yhat + e
            new_lv = lv + p.phi * tr + p.alpha * e
            tr = p.phi * tr + p.alpha * p.beta * e
            ss[:, h % m] = s + p.gamma * e
            lv = new_lv
        return out
