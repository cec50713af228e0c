"""forecasts.backtest: origins, scores (MAE, MAPE, sMAPE, MASE, coverage), model selection.

Aspects: origin placement and errors; scores on hand-computed cases; NaN actuals skipped;
MASE scaled by the in-sample seasonal naive; selection never picks a model that does not beat
the seasonal naive; failed models are reported, not chosen; newer history without refit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.backtest import (
    BacktestResult,
    backtest,
    rolling_origins,
    run_backtests,
    score,
    select_model,
    slice_series,
)
from forecasts.forecast import Forecast
from forecasts.models import SeasonalNaive, SeasonalRegression
from forecasts.series import RegularSeries

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def series(values: np.ndarray) -> RegularSeries:
    return RegularSeries(start=START, step=HOUR, values=values, unit="x")


def result(actual, mean, *, lo=None, hi=None, scale=None, name="m") -> BacktestResult:
    a = np.atleast_2d(np.asarray(actual, dtype=float))
    m = np.atleast_2d(np.asarray(mean, dtype=float))
    bands = {}
    if lo is not None and hi is not None:
        bands = {0.1: np.atleast_2d(lo), 0.9: np.atleast_2d(hi)}
    return BacktestResult(
        model=name,
        origins=tuple(range(a.shape[0])),
        horizon=a.shape[1],
        actual=a,
        mean=m,
        bands=bands,
        scale=scale or {},
        fit_seconds=(0.5,),
        predict_seconds=(0.25,),
    )


@pytest.mark.parametrize(
    ("length", "count", "stride", "expected"),
    [
        pytest.param(100, 3, 10, [66, 76, 86], id="three origins"),
        pytest.param(100, 10, 30, [26, 56, 86], id="clipped by min_train"),
    ],
)
def test_rolling_origins(length, count, stride, expected) -> None:
    assert rolling_origins(length, horizon=14, count=count, stride=stride, min_train=20) == expected


def test_rolling_origins_too_short() -> None:
    with pytest.raises(ValueError, match="too short"):
        rolling_origins(30, horizon=14, count=2, stride=5, min_train=20)
    with pytest.raises(ValueError, match=">= 1"):
        rolling_origins(30, horizon=0, count=2, stride=5, min_train=20)


def test_scores_hand_computed() -> None:
    s = score(result([10, 20, np.nan, 40], [12, 18, 5, 40], lo=[9, 19, 0, 41], hi=[11, 21, 9, 45]))
    assert s.mae == pytest.approx(4 / 3)
    assert s.rmse == pytest.approx(np.sqrt(8 / 3))
    assert s.mape_pct == pytest.approx((0.2 + 0.1 + 0) / 3 * 100)
    assert s.smape_pct == pytest.approx((2 * 2 / 22 + 2 * 2 / 38 + 0) / 3 * 100)
    assert s.coverage[0.8] == pytest.approx(2 / 3)
    assert s.points == 3
    assert s.fit_seconds == 0.5


def test_mase_uses_the_scale() -> None:
    s = score(result([[10, 20]], [[12, 22]], scale={24: np.array([4.0])}))
    assert s.mase == {24: pytest.approx(0.5)}
    assert s.mase_worst_baseline == pytest.approx(0.5)


def test_all_missing_actuals_is_an_error() -> None:
    with pytest.raises(ValueError, match="no observed"):
        score(result([np.nan], [1.0]))


def test_backtest_seasonal_naive_on_a_pure_cycle_is_exact() -> None:
    values = np.tile(np.arange(24, dtype=float), 10)
    s = series(values)
    origins = rolling_origins(len(s), horizon=24, count=3, stride=24, min_train=48)
    r = backtest(s, SeasonalNaive(24), origins=origins, horizon=24, mase_periods=(24, 168))
    assert r.scores.mae == 0.0
    assert r.actual.shape == (3, 24)
    np.testing.assert_array_equal(r.actual[0], np.arange(24))
    assert set(r.bands) == {0.05, 0.1, 0.5, 0.9, 0.95}


def test_backtest_refit_every_uses_newer_history() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(24 * 30)
    s = series(50 + 10 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, t.size))
    origins = rolling_origins(len(s), horizon=24, count=4, stride=24, min_train=24 * 20)
    model = SeasonalRegression(week_steps=0, max_horizon=24, window_steps=24 * 10)
    r = backtest(s, model, origins=origins, horizon=24, refit_every=4)
    assert len(r.fit_seconds) == 1
    assert len(r.predict_seconds) == 4
    assert r.scores.mae < 2.0


def test_backtest_rejects_bad_arguments() -> None:
    s = series(np.arange(100, dtype=float))
    with pytest.raises(ValueError, match="origin"):
        backtest(s, SeasonalNaive(24), origins=[100], horizon=4)
    with pytest.raises(ValueError, match="exog"):
        backtest(s, SeasonalNaive(24), origins=[50], horizon=4, exog=np.zeros((5, 1)))
    with pytest.raises(ValueError, match="refit_every"):
        backtest(s, SeasonalNaive(24), origins=[50], horizon=4, refit_every=0)


def test_select_model_prefers_a_model_that_beats_naive() -> None:
    naive = result([[10, 20]], [[14, 24]], name="seasonal_naive_24")
    good = result([[10, 20]], [[11, 21]], name="good")
    better_but_failed = BacktestResult(
        model="broken",
        origins=(0,),
        horizon=2,
        actual=np.zeros((1, 2)),
        mean=np.zeros((1, 2)),
        bands={},
        scale={},
        fit_seconds=(),
        predict_seconds=(),
        errors=("boom",),
    )
    choice = select_model({"seasonal_naive_24": naive, "good": good, "broken": better_but_failed})
    assert choice.model == "good"
    assert choice.baseline == "seasonal_naive_24"
    assert any("broken" in r and "failed" in r for r in choice.reasons)


def test_select_model_falls_back_to_the_best_naive() -> None:
    weekly = result([[10, 20]], [[11, 21]], name="seasonal_naive_168")
    daily = result([[10, 20]], [[14, 24]], name="seasonal_naive_24")
    worse = result([[10, 20]], [[12, 22]], name="fancy")
    choice = select_model({r.model: r for r in (daily, weekly, worse)})
    assert choice.model == "seasonal_naive_168"
    assert any("fancy: not eligible" in r for r in choice.reasons)


def test_select_model_needs_a_baseline() -> None:
    with pytest.raises(ValueError, match="seasonal naive"):
        select_model({"m": result([[1.0]], [[1.0]])})


def test_run_backtests_reports_failures_and_progress() -> None:
    s = series(np.tile(np.arange(24, dtype=float), 8))
    seen: list[tuple[str, int]] = []
    out = run_backtests(
        s,
        [SeasonalNaive(24), SeasonalRegression()],
        origins=[24 * 6],
        horizon=24,
        on_origin=lambda name, i: seen.append((name, i)),
    )
    assert out["seasonal_regression"].errors
    assert "needs at least" in out["seasonal_regression"].errors[0]
    assert seen == [("seasonal_naive_24", 0)]
    assert select_model(out).model == "seasonal_naive_24"


def test_slice_series() -> None:
    s = series(np.arange(10, dtype=float))
    part = slice_series(s, 2, 5)
    assert part.start == START + 2 * HOUR
    np.testing.assert_array_equal(part.values, [2, 3, 4])
    with pytest.raises(ValueError, match="empty"):
        slice_series(s, 5, 5)


class RecordingFit:
    """Predicts the mean of the given exog_history rows; records what it was given."""

    name = "recording"

    def __init__(self, seen: list[tuple[int, int]]) -> None:
        self.seen = seen

    def predict(self, *, horizon, history=None, exog_future=None, exog_history=None):
        assert history is not None
        assert exog_history is not None
        self.seen.append((len(history), exog_history.shape[0]))
        level = np.full(horizon, float(exog_history.mean()))
        quantiles = {q: level for q in (0.05, 0.1, 0.5, 0.9, 0.95)}
        return Forecast(
            start=history.end,
            step=history.step,
            mean=level,
            quantiles=quantiles,
            unit=history.unit,
            model=self.name,
        )


class RecordingModel:
    name = "recording"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def fit(self, history, *, exog=None, seed=0):
        return RecordingFit(self.seen)


def test_backtest_passes_exog_history_when_not_refitting() -> None:
    s = series(np.arange(100, dtype=float))
    exog = np.arange(100, dtype=float)[:, None]
    model = RecordingModel()
    backtest(s, model, origins=[60, 70, 80], horizon=5, exog=exog, refit_every=3, train_steps=50)
    assert model.seen == [(50, 50), (50, 50), (50, 50)]


class ExplodingModel:
    name = "exploding"

    def fit(self, history, *, exog=None, seed=0):
        raise RuntimeError("solver gave up")


def test_run_backtests_survives_a_solver_failure() -> None:
    s = series(np.tile(np.arange(24, dtype=float), 8))
    out = run_backtests(s, [SeasonalNaive(24), ExplodingModel()], origins=[24 * 6], horizon=24)
    assert out["exploding"].errors == ("RuntimeError: solver gave up",)
    choice = select_model(out)
    assert choice.model == "seasonal_naive_24"
    assert any("exploding: not eligible, failed" in r for r in choice.reasons)
