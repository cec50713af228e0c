"""Prophet (imported lazily, here only) with extra regressors (CI schedules).

Fitted on a bounded recent window (`window_steps`) with daily and weekly seasonality, MAP
estimate (Stan's optimizer seeded with the fit's `seed`; no posterior sampling, so no global
random state is touched). Prophet's own forecast depends on time only, so to condition on
newer observations without a refit the forecast is re-anchored: the residual of the last
observed step decays with lead time at the in-sample lag-1 residual autocorrelation
(an AR(1) on Prophet's residuals). Intervals: empirical quantiles of the in-sample residuals,
scaled by the AR(1) error growth sqrt(1 - phi^(2h)). Gaps: NaN steps are left out of the fit
(Prophet's own rule) and out of the re-anchoring.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.models._support import (
    FloatArray,
    ModelFit,
    PredictCall,
    check_exog,
    nonnegative_floor,
)
from forecasts.series import RegularSeries

__all__ = ["ProphetFit", "ProphetModel"]


def _quiet() -> None:
    """Prophet and cmdstanpy log every fit at INFO (and a plotly notice at import)."""
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    # cmdstanpy resets its logger's level on first use, so switch the logger off instead.
    logging.getLogger("cmdstanpy").disabled = True


def _frame(epoch_s: FloatArray, exog: FloatArray | None) -> Any:
    import pandas as pd

    ds = pd.to_datetime(epoch_s, unit="s")
    data: dict[str, Any] = {"ds": ds}
    if exog is not None:
        for j in range(exog.shape[1]):
            data[f"x{j}"] = exog[:, j]
    return pd.DataFrame(data)


@dataclass(frozen=True, slots=True)
class ProphetModel:
    window_steps: int = 24 * 7 * 8
    changepoint_prior_scale: float = 0.05
    seasonality_mode: Literal["additive", "multiplicative"] = "additive"

    def __post_init__(self) -> None:
        if self.window_steps < 48:
            raise ValueError(f"window_steps must be >= 48, got {self.window_steps}")
        if self.seasonality_mode not in ("additive", "multiplicative"):
            raise ValueError(
                f"seasonality_mode must be additive|multiplicative, got {self.seasonality_mode!r}"
            )

    @property
    def name(self) -> str:
        return "prophet"

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> ProphetFit:
        _quiet()
        from prophet import Prophet

        _quiet()  # again: cmdstanpy resets its level when first imported
        n = len(history)
        ex = check_exog(exog, rows=n, name="exog")
        keep = min(n, self.window_steps)
        y = history.values[n - keep :]
        ok = np.isfinite(y)
        if ok.sum() < 24:
            raise ValueError(f"{self.name} needs at least 24 observed steps, got {int(ok.sum())}")
        epoch = history.epoch_s()[n - keep :]
        ex_w = ex[n - keep :] if ex is not None else None
        frame = _frame(epoch, ex_w)
        frame["y"] = y
        frame = frame[ok]
        step_h = history.step.total_seconds() / 3600
        model = Prophet(
            daily_seasonality=step_h < 24,
            weekly_seasonality=True,
            yearly_seasonality=False,
            changepoint_prior_scale=self.changepoint_prior_scale,
            seasonality_mode=self.seasonality_mode,
            uncertainty_samples=0,
        )
        if ex_w is not None:
            for j in range(ex_w.shape[1]):
                if np.ptp(ex_w[ok, j]) > 0:
                    model.add_regressor(f"x{j}", standardize=True)
        with warnings.catch_warnings():  # prophet's own pandas deprecations
            warnings.simplefilter("ignore")
            model.fit(frame, seed=seed, iter=2000)
            fitted = np.asarray(model.predict(frame)["yhat"], dtype=float)
        resid = y[ok] - fitted
        phi = 0.0
        if resid.size > 3 and np.std(resid) > 0:
            phi = float(np.clip(np.corrcoef(resid[:-1], resid[1:])[0, 1], 0.0, 0.99))
        return ProphetFit(
            spec=self,
            history=history,
            exog=ex,
            model=model,
            phi=phi,
            spread=np.quantile(resid - np.median(resid), np.asarray(STANDARD_QUANTILES)),
            exog_columns=0 if ex is None else ex.shape[1],
            lower_bound=nonnegative_floor(history.values),
        )


@dataclass(frozen=True, slots=True)
class ProphetFit(ModelFit):
    spec: ProphetModel
    history: RegularSeries
    exog: FloatArray | None
    model: Any
    phi: float
    spread: FloatArray
    exog_columns: int
    lower_bound: float | None

    @property
    def name(self) -> str:
        return self.spec.name

    def _predict(self, call: PredictCall) -> Forecast:
        hist, horizon = call.history, call.horizon
        n = len(hist)
        ex_f, ex_h = call.resolve_exog(
            model=self.name, fitted_columns=self.exog_columns, fit_exog=self.exog
        )
        observed = np.flatnonzero(np.isfinite(hist.values))
        if observed.size == 0:
            raise ValueError("history has no observed values")
        last = int(observed[-1])
        step_s = hist.step.total_seconds()
        epoch = hist.epoch_s()
        future_s = epoch[-1] + step_s * np.arange(1, horizon + 1, dtype=float)
        x_last = ex_h[last : last + 1] if ex_h is not None else None
        frame = _frame(
            np.concatenate([[epoch[last]], future_s]),
            None if ex_f is None or x_last is None else np.vstack([x_last, ex_f]),
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yhat = np.asarray(self.model.predict(frame)["yhat"], dtype=float)
        resid_last = float(hist.values[last]) - yhat[0]
        lead = np.arange(1, horizon + 1, dtype=float) + (n - 1 - last)
        decay = self.phi**lead
        mean = yhat[1:] + resid_last * decay
        widen = np.sqrt(np.maximum(1.0 - decay**2, 1e-6))
        quantiles = {
            q: mean + s * widen for q, s in zip(STANDARD_QUANTILES, self.spread, strict=True)
        }
        return call.forecast(
            mean=mean, quantiles=quantiles, model=self.name, lower_bound=self.lower_bound
        )
