"""Rolling-origin backtests, accuracy scores and per-series model selection (pure).

A backtest cuts a series at several origins; at each one a model sees only the steps before
the origin (refitted every `refit_every` origins, otherwise conditioned on the newer steps
through `FittedModel.predict(history=...)`) and forecasts `horizon` steps, which are scored
against what happened. Missing actuals (NaN) are left out of every score.

Scores: MAE, RMSE, MAPE and sMAPE (%), MASE (Hyndman: errors scaled by the in-sample MAE of
the seasonal naive of each period in `mase_periods`, over the history before each origin),
coverage of the p10-p90 and p05-p95 intervals, and mean fit and predict seconds.

`select_model` picks, per series, the model with the lowest MAE among those that beat the best
seasonal naive in the same backtest; if none does, the best seasonal naive is the choice.
Time is measured with `time.perf_counter` (durations only; no wall clock).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from forecasts.forecast import FittedModel, Forecaster
from forecasts.series import RegularSeries

__all__ = [
    "BacktestResult",
    "Scores",
    "Selection",
    "backtest",
    "rolling_origins",
    "run_backtests",
    "score",
    "select_model",
    "slice_series",
]

FloatArray = npt.NDArray[np.float64]

#: Bands whose coverage is scored: (lower level, upper level) -> nominal coverage.
BANDS: tuple[tuple[float, float], ...] = ((0.1, 0.9), (0.05, 0.95))


def slice_series(series: RegularSeries, start: int, stop: int) -> RegularSeries:
    """Steps [start, stop) of `series` as a new series (indices clamped)."""
    start = max(0, start)
    stop = min(len(series), stop)
    if stop <= start:
        raise ValueError(f"empty slice [{start}, {stop}) of a {len(series)}-step series")
    return RegularSeries(
        start=series.time_at(start),
        step=series.step,
        values=series.values[start:stop],
        unit=series.unit,
    )


def rolling_origins(
    length: int, *, horizon: int, count: int, stride: int, min_train: int
) -> list[int]:
    """Up to `count` origins (index of the first forecast step), `stride` apart, the last one
    `horizon` steps before the end, none with fewer than `min_train` steps before it."""
    if horizon < 1 or count < 1 or stride < 1 or min_train < 1:
        raise ValueError("horizon, count, stride and min_train must all be >= 1")
    last = length - horizon
    origins = [last - i * stride for i in range(count)]
    kept = sorted(o for o in origins if o >= min_train)
    if not kept:
        raise ValueError(
            f"series of {length} steps is too short for a {horizon}-step backtest"
            f" with {min_train} training steps"
        )
    return kept


@dataclass(frozen=True, slots=True)
class Scores:
    mae: float
    rmse: float
    mape_pct: float
    smape_pct: float
    mase: Mapping[int, float]
    coverage: Mapping[float, float]
    fit_seconds: float
    predict_seconds: float
    points: int

    @property
    def mase_worst_baseline(self) -> float:
        """MASE against the better (lower-error) seasonal naive of the scored periods."""
        return max(self.mase.values()) if self.mase else float("nan")

    def as_dict(self) -> dict[str, float | int | dict[str, float]]:
        return {
            "mae": self.mae,
            "rmse": self.rmse,
            "mape_pct": self.mape_pct,
            "smape_pct": self.smape_pct,
            "mase": {str(k): v for k, v in self.mase.items()},
            "coverage": {f"{v:g}": c for v, c in self.coverage.items()},
            "fit_seconds": self.fit_seconds,
            "predict_seconds": self.predict_seconds,
            "points": self.points,
        }


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """Forecasts of one model at each origin: arrays are (origins, horizon)."""

    model: str
    origins: tuple[int, ...]
    horizon: int
    actual: FloatArray
    mean: FloatArray
    bands: Mapping[float, FloatArray]
    scale: Mapping[int, FloatArray]
    fit_seconds: tuple[float, ...]
    predict_seconds: tuple[float, ...]
    errors: tuple[str, ...] = field(default=())

    @property
    def scores(self) -> Scores:
        return score(self)


def _naive_scale(values: FloatArray, origins: Sequence[int], period: int) -> FloatArray:
    """In-sample MAE of the seasonal naive with `period` over the steps before each origin."""
    diff = np.abs(values[period:] - values[:-period])
    ok = np.isfinite(diff)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, diff, 0.0))])
    ccount = np.concatenate([[0], np.cumsum(ok)])
    out = np.full(len(origins), np.nan)
    for i, o in enumerate(origins):
        k = o - period
        if k > 0 and ccount[k] > 0:
            out[i] = csum[k] / ccount[k]
    return out


def score(result: BacktestResult) -> Scores:
    err = result.actual - result.mean
    ok = np.isfinite(result.actual)
    if not ok.any():
        raise ValueError(f"{result.model}: no observed values in the backtest windows")
    e = err[ok]
    a = result.actual[ok]
    f = result.mean[ok]
    nz = a != 0
    mape = float(np.mean(np.abs(e[nz] / a[nz])) * 100) if nz.any() else float("nan")
    denom = np.abs(a) + np.abs(f)
    sm = np.where(denom > 0, 2 * np.abs(e) / np.where(denom > 0, denom, 1), 0.0)
    mase: dict[int, float] = {}
    for period, scale in result.scale.items():
        per_origin = np.nanmean(np.where(ok, np.abs(err), np.nan), axis=1)
        good = np.isfinite(per_origin) & np.isfinite(scale) & (scale > 0)
        # Ratio of means (pooled) keeps one quiet origin from dominating.
        if good.any():
            mase[period] = float(np.mean(per_origin[good]) / np.mean(scale[good]))
    coverage: dict[float, float] = {}
    for lo, hi in BANDS:
        if lo in result.bands and hi in result.bands:
            inside = (result.actual >= result.bands[lo]) & (result.actual <= result.bands[hi])
            coverage[round(hi - lo, 6)] = float(np.mean(inside[ok]))
    return Scores(
        mae=float(np.mean(np.abs(e))),
        rmse=float(np.sqrt(np.mean(e**2))),
        mape_pct=mape,
        smape_pct=float(np.mean(sm) * 100),
        mase=mase,
        coverage=coverage,
        fit_seconds=float(np.mean(result.fit_seconds)) if result.fit_seconds else 0.0,
        predict_seconds=float(np.mean(result.predict_seconds)),
        points=int(ok.sum()),
    )


def backtest(
    series: RegularSeries,
    forecaster: Forecaster,
    *,
    origins: Sequence[int],
    horizon: int,
    exog: FloatArray | None = None,
    seed: int = 0,
    refit_every: int = 1,
    train_steps: int | None = None,
    mase_periods: Sequence[int] = (24,),
    on_origin: Callable[[int], None] | None = None,
) -> BacktestResult:
    """Forecast from each origin with only the data before it, and keep what happened.

    `train_steps` bounds the history handed to `fit`/`predict` (None: all before the origin).
    `on_origin(i)` is called after each origin (progress reporting)."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    if refit_every < 1:
        raise ValueError(f"refit_every must be >= 1, got {refit_every}")
    n = len(series)
    if exog is not None and exog.shape[0] != n:
        raise ValueError(f"exog has {exog.shape[0]} rows, the series has {n} steps")
    values = series.values
    actual = np.full((len(origins), horizon), np.nan)
    mean = np.full((len(origins), horizon), np.nan)
    levels = sorted({0.5, *(q for band in BANDS for q in band)})
    bands = {q: np.full((len(origins), horizon), np.nan) for q in levels}
    fit_s: list[float] = []
    predict_s: list[float] = []
    fitted: FittedModel | None = None
    for i, origin in enumerate(origins):
        if not 0 < origin <= n - 1:
            raise ValueError(f"origin {origin} outside the series (1..{n - 1})")
        lo = 0 if train_steps is None else max(0, origin - train_steps)
        history = slice_series(series, lo, origin)
        ex_hist = exog[lo:origin] if exog is not None else None
        if fitted is None or i % refit_every == 0:
            t0 = time.perf_counter()
            fitted = forecaster.fit(history, exog=ex_hist, seed=seed)
            fit_s.append(time.perf_counter() - t0)
        ex_future = None
        if exog is not None:
            ex_future = exog[origin : origin + horizon]
            if ex_future.shape[0] < horizon:
                pad = np.repeat(ex_future[-1:], horizon - ex_future.shape[0], axis=0)
                ex_future = np.vstack([ex_future, pad])
        t0 = time.perf_counter()
        fc = fitted.predict(
            horizon=horizon, history=history, exog_future=ex_future, exog_history=ex_hist
        )
        predict_s.append(time.perf_counter() - t0)
        stop = min(n, origin + horizon)
        actual[i, : stop - origin] = values[origin:stop]
        mean[i] = fc.mean
        for q in levels:
            bands[q][i] = fc.quantile(q)
        if on_origin is not None:
            on_origin(i)
    scale = {p: _naive_scale(values, origins, p) for p in mase_periods}
    return BacktestResult(
        model=forecaster.name,
        origins=tuple(origins),
        horizon=horizon,
        actual=actual,
        mean=mean,
        bands=bands,
        scale=scale,
        fit_seconds=tuple(fit_s),
        predict_seconds=tuple(predict_s),
    )


def run_backtests(
    series: RegularSeries,
    forecasters: Sequence[Forecaster],
    *,
    origins: Sequence[int],
    horizon: int,
    exog: FloatArray | None = None,
    seed: int = 0,
    refit_every: int = 1,
    train_steps: int | None = None,
    mase_periods: Sequence[int] = (24,),
    on_origin: Callable[[str, int], None] | None = None,
) -> dict[str, BacktestResult]:
    """`backtest` for each forecaster; a model whose fit or predict raises ValueError,
    RuntimeError or ArithmeticError is reported in the result's `errors`, not fatal."""
    out: dict[str, BacktestResult] = {}
    for model in forecasters:
        callback = None
        if on_origin is not None:
            name = model.name
            report = on_origin

            def callback(
                i: int, _name: str = name, _report: Callable[[str, int], None] = report
            ) -> None:
                _report(_name, i)

        try:
            out[model.name] = backtest(
                series,
                model,
                origins=origins,
                horizon=horizon,
                exog=exog,
                seed=seed,
                refit_every=refit_every,
                train_steps=train_steps,
                mase_periods=mase_periods,
                on_origin=callback,
            )
        except (ValueError, RuntimeError, ArithmeticError) as exc:
            # Bad fits (too little data, a solver that gives up) are results, not crashes.
            out[model.name] = _failed(model.name, origins, horizon, f"{type(exc).__name__}: {exc}")
    return out


def _failed(name: str, origins: Sequence[int], horizon: int, error: str) -> BacktestResult:
    empty = np.full((len(origins), horizon), np.nan)
    return BacktestResult(
        model=name,
        origins=tuple(origins),
        horizon=horizon,
        actual=empty,
        mean=empty,
        bands={},
        scale={},
        fit_seconds=(),
        predict_seconds=(),
        errors=(error,),
    )


@dataclass(frozen=True, slots=True)
class Selection:
    """The model chosen for one series, every model's scores, and why."""

    model: str
    baseline: str
    scores: Mapping[str, Scores]
    reasons: tuple[str, ...]


def _is_baseline(name: str) -> bool:
    return name.startswith("seasonal_naive")


def select_model(results: Mapping[str, BacktestResult]) -> Selection:
    """Lowest backtest MAE among the models that beat the best seasonal naive; else that naive.

    Models that failed (raised) are never chosen. Raises ValueError without a seasonal naive
    among `results` (nothing to hold the others to)."""
    scores: dict[str, Scores] = {}
    reasons: list[str] = []
    for name, res in results.items():
        if res.errors:
            reasons.append(f"{name}: not eligible, failed: {res.errors[0]}")
            continue
        scores[name] = res.scores
    baselines = {k: v for k, v in scores.items() if _is_baseline(k)}
    if not baselines:
        raise ValueError("select_model needs a seasonal naive result to compare against")
    base = min(baselines, key=lambda k: (baselines[k].mae, k))
    base_mae = baselines[base].mae
    reasons.append(f"baseline {base}: MAE {base_mae:.4g}")
    eligible: dict[str, float] = {}
    for name, s in sorted(scores.items()):
        if _is_baseline(name):
            continue
        if s.mae < base_mae:
            eligible[name] = s.mae
            reasons.append(f"{name}: MAE {s.mae:.4g} beats {base} ({s.mae / base_mae:.3f}x)")
        else:
            reasons.append(
                f"{name}: not eligible, MAE {s.mae:.4g} does not beat {base} ({base_mae:.4g})"
            )
    if eligible:
        chosen = min(eligible, key=lambda k: (eligible[k], k))
        reasons.append(f"chose {chosen}: lowest MAE among models beating the baseline")
    else:
        chosen = base
        reasons.append(f"chose {base}: no model beat the seasonal naive")
    return Selection(model=chosen, baseline=base, scores=scores, reasons=tuple(reasons))
