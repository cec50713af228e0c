"""Carbon-intensity forecasting (pure): the provider's forecast where there is one, with its
bias corrected from its recent errors only where a rolling backtest shows that helps;
a model forecast from history where the provider has none.

- `bias_correct`: provider forecast + the mean of its last `window_steps` errors
  (actual - forecast) over the steps where both are known.
- `decide_bias_correction`: per series, a rolling-origin backtest of the raw provider forecast
  against each candidate correction window; the correction is used only when it lowers MAE by
  at least `min_gain` (relative). Otherwise the raw forecast is used. The decision keeps
  the scores and the reasons.
- `forecast_carbon`: one `Forecast` for `horizon` steps after `history.end`. Steps covered by
  the provider's forecast take it (corrected when the decision says so) with intervals from
  the empirical quantiles of its recent errors; the rest come from `model` fitted on `history`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecasts.forecast import STANDARD_QUANTILES, Forecast, Forecaster
from forecasts.models._support import build_forecast
from forecasts.series import RegularSeries
from forecasts.time import to_epoch_s

__all__ = [
    "BiasDecision",
    "align",
    "bias_correct",
    "decide_bias_correction",
    "forecast_carbon",
    "provider_errors",
]

FloatArray = npt.NDArray[np.float64]


def align(series: RegularSeries, *, like: RegularSeries) -> FloatArray:
    """Values of `series` on the grid of `like` (NaN where `series` has no step)."""
    if series.step != like.step:
        raise ValueError(f"steps differ: {series.step} vs {like.step}")
    offset = (to_epoch_s(series.start) - to_epoch_s(like.start)) / like.step.total_seconds()
    if abs(offset - round(offset)) > 1e-9:
        raise ValueError("series are not on the same grid")
    shift = round(offset)
    out = np.full(len(like), np.nan)
    lo = max(0, shift)
    hi = min(len(like), shift + len(series))
    if hi > lo:
        out[lo:hi] = series.values[lo - shift : hi - shift]
    return out


def provider_errors(actual: FloatArray, provider: FloatArray) -> FloatArray:
    """actual - provider forecast, NaN where either is missing."""
    out: FloatArray = np.asarray(actual, dtype=np.float64) - np.asarray(provider, dtype=np.float64)
    return out


def _recent_bias(errors: FloatArray, window_steps: int) -> float:
    recent = errors[-window_steps:]
    recent = recent[np.isfinite(recent)]
    return float(np.mean(recent)) if recent.size else 0.0


def bias_correct(
    provider_future: FloatArray, *, past_errors: FloatArray, window_steps: int
) -> FloatArray:
    """The provider's future values plus the mean of its last `window_steps` errors."""
    if window_steps < 1:
        raise ValueError(f"window_steps must be >= 1, got {window_steps}")
    out: FloatArray = np.asarray(provider_future, dtype=float) + _recent_bias(
        past_errors, window_steps
    )
    return out


@dataclass(frozen=True, slots=True)
class BiasDecision:
    """Whether to correct this series' provider forecast, with which window, and why."""

    use: bool
    window_steps: int
    mae_raw: float
    mae_corrected: float
    reasons: tuple[str, ...]


def decide_bias_correction(
    actual: FloatArray,
    provider: FloatArray,
    *,
    origins: Sequence[int],
    horizon: int,
    windows: Sequence[int] = (12, 48, 336),
    min_gain: float = 0.01,
) -> BiasDecision:
    """Rolling backtest: at each origin, correct the next `horizon` provider values with the
    errors known before the origin; keep the window with the lowest MAE if it beats the raw
    forecast by `min_gain` (relative), else do not correct."""
    if not windows:
        raise ValueError("windows must not be empty")
    errors = provider_errors(actual, provider)
    raw_abs: list[FloatArray] = []
    corr_abs: dict[int, list[FloatArray]] = {w: [] for w in windows}
    for o in origins:
        if o < 1 or o >= errors.size:
            raise ValueError(f"origin {o} outside the series (1..{errors.size - 1})")
        future = errors[o : o + horizon]
        raw_abs.append(np.abs(future))
        for w in windows:
            corr_abs[w].append(np.abs(future - _recent_bias(errors[:o], w)))
    raw = float(np.nanmean(np.concatenate(raw_abs)))
    maes = {w: float(np.nanmean(np.concatenate(v))) for w, v in corr_abs.items()}
    best = min(maes, key=lambda w: (maes[w], w))
    reasons = [f"raw provider MAE {raw:.4g}"]
    reasons += [f"bias window {w}: MAE {m:.4g}" for w, m in sorted(maes.items())]
    use = maes[best] < raw * (1 - min_gain)
    reasons.append(
        f"correct with window {best}: {1 - maes[best] / raw:.1%} lower MAE"
        if use
        else f"no correction: best window {best} gains {1 - maes[best] / raw:.1%} < {min_gain:.0%}"
    )
    return BiasDecision(
        use=use, window_steps=best, mae_raw=raw, mae_corrected=maes[best], reasons=tuple(reasons)
    )


def forecast_carbon(
    history: RegularSeries,
    *,
    horizon: int,
    model: Forecaster,
    provider: RegularSeries | None = None,
    decision: BiasDecision | None = None,
    error_window_steps: int = 24 * 14,
    seed: int = 0,
) -> Forecast:
    """`horizon` steps after `history.end`: the provider's forecast (corrected per `decision`)
    where it has values, `model` elsewhere. `provider` may cover past steps too (its past
    values give the errors the correction and the intervals use)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    step = history.step
    future_grid = RegularSeries(
        start=history.end, step=step, values=np.zeros(horizon), unit=history.unit
    )
    covered = np.zeros(horizon, dtype=bool)
    prov_future = np.full(horizon, np.nan)
    past_errors = np.empty(0)
    if provider is not None:
        prov_future = align(provider, like=future_grid)
        covered = np.isfinite(prov_future)
        past_errors = provider_errors(history.values, align(provider, like=history))
        past_errors = past_errors[-error_window_steps:]
    levels = STANDARD_QUANTILES
    name = "provider"
    mean = np.full(horizon, np.nan)
    qs = {q: np.full(horizon, np.nan) for q in levels}
    if covered.any():
        values = prov_future
        finite_err = past_errors[np.isfinite(past_errors)]
        if decision is not None and decision.use:
            values = bias_correct(
                prov_future, past_errors=past_errors, window_steps=decision.window_steps
            )
            finite_err = finite_err - _recent_bias(past_errors, decision.window_steps)
            name = "provider+bias"
        spread = np.quantile(finite_err, np.asarray(levels)) if finite_err.size >= 10 else None
        mean[covered] = values[covered]
        for i, q in enumerate(levels):
            width = spread[i] if spread is not None else 0.0
            qs[q][covered] = values[covered] + width
    if not covered.all():
        fc = model.fit(history, seed=seed).predict(horizon=horizon)
        rest = ~covered
        mean[rest] = fc.mean[rest]
        for q in levels:
            qs[q][rest] = fc.quantile(q)[rest]
        name = fc.model if not covered.any() else f"{name}+{fc.model}"
    observed = history.values[np.isfinite(history.values)]
    return build_forecast(
        start=history.end,
        step=step,
        mean=mean,
        quantiles=qs,
        unit=history.unit,
        model=name,
        lower_bound=0.0 if observed.size and observed.min() >= 0 else None,
    )
