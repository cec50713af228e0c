"""One contract, every Forecaster.

Aspects: forecast length == horizon, starts at the history's end, finite values, quantiles
ordered with p05 <= mean <= p95; determinism for a seed; no mutation of the inputs (values,
exog); NaN gaps in the history; `predict(history=...)` conditions on newer data without a refit
(and equals `predict()` on the fit history); exogenous regressors are validated; hypothesis
property tests on random series; and the shipping rule: every model beats SeasonalNaive on the
bundled backtest series (tests/fixtures/backtest_series.csv).

Fast models run in the default suite; Prophet (and the full-size backtests of the slower
statsmodels fits) are marked `slow`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasts.backtest import backtest, rolling_origins, select_model
from forecasts.forecast import (
    REQUIRED_QUANTILES,
    BatchForecaster,
    Forecast,
    Forecaster,
    fit_each,
)
from forecasts.models import ETS, ProphetModel, Sarimax, SeasonalNaive, SeasonalRegression
from forecasts.models.auto import AutoSelect
from forecasts.models.profile_persistence import ProfilePersistence
from forecasts.series import RegularSeries
from forecasts.sources.csv_series import read_csv_series
from tests.fixtures import backtest_series

START = datetime(2024, 3, 4, tzinfo=UTC)
HOUR = timedelta(hours=1)

Factory = Callable[[], Forecaster]

# Small configurations so that a fit takes well under a second on a short series.
FAST: list[tuple[str, Factory]] = [
    ("seasonal_naive_24", lambda: SeasonalNaive(24)),
    ("seasonal_naive_168", lambda: SeasonalNaive(168)),
    ("seasonal_regression", lambda: SeasonalRegression(max_horizon=24, window_steps=24 * 10)),
    ("ets", lambda: ETS(season_steps=24, window_steps=24 * 8, simulations=100)),
    ("sarimax", lambda: Sarimax(order=(1, 0, 0), fourier=((24, 2),), window_steps=24 * 8)),
    ("profile_persistence", lambda: ProfilePersistence(period=24, seasons=7)),
    (
        "auto",
        lambda: AutoSelect(
            candidates=(
                SeasonalNaive(24),
                SeasonalRegression(max_horizon=24, window_steps=24 * 10),
            ),
            horizon=24,
            origins=3,
            stride=12,
            min_train=24 * 9,
        ),
    ),
]
SLOW: list[tuple[str, Factory]] = [
    ("prophet", lambda: ProphetModel(window_steps=24 * 10)),
]
ALL = [pytest.param(f, id=name) for name, f in FAST] + [
    pytest.param(f, id=name, marks=pytest.mark.slow) for name, f in SLOW
]
EXOG_MODELS = {"seasonal_regression", "sarimax", "prophet"}
#: Models that filter on past regressors, so a new history needs its exog rows.
FILTERING_EXOG = {"sarimax", "prophet"}


def make_series(steps: int = 24 * 16, *, seed: int = 7, gaps: bool = False) -> RegularSeries:
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    values = 50 + 20 * np.sin(2 * np.pi * t / 24) + 5 * np.sin(2 * np.pi * t / 168)
    values = values + rng.normal(0, 2, steps)
    if gaps:
        values[30:36] = np.nan
        values[-40] = np.nan
    return RegularSeries(start=START, step=HOUR, values=values, unit="rps")


def working_hours(start: datetime, steps: int) -> np.ndarray:
    """A CI-schedule-like regressor: 1.0 during 09-17 on weekdays."""
    out = np.zeros((steps, 1))
    for i in range(steps):
        at = start + HOUR * i
        out[i, 0] = float(at.weekday() < 5 and 9 <= at.hour < 17)
    return out


def check_forecast(fc: Forecast, *, horizon: int, history: RegularSeries) -> None:
    assert len(fc) == horizon
    assert fc.start == history.end
    assert fc.step == history.step
    assert np.isfinite(fc.mean).all()
    for q in REQUIRED_QUANTILES:
        assert q in fc.quantiles
    levels = sorted(fc.quantiles)
    for lo, hi in itertools.pairwise(levels):
        assert (fc.quantiles[lo] <= fc.quantiles[hi] + 1e-9).all()
    assert (fc.quantile(0.05) <= fc.mean + 1e-9).all()
    assert (fc.mean <= fc.quantile(0.95) + 1e-9).all()


@pytest.mark.parametrize("factory", ALL)
@pytest.mark.parametrize("horizon", [1, 24, 60])
def test_shape_finite_ordered(factory: Factory, horizon: int) -> None:
    history = make_series()
    fc = factory().fit(history).predict(horizon=horizon)
    check_forecast(fc, horizon=horizon, history=history)


@pytest.mark.parametrize("factory", ALL)
def test_deterministic_for_a_seed(factory: Factory) -> None:
    history = make_series()
    a = factory().fit(history, seed=3).predict(horizon=24)
    b = factory().fit(history, seed=3).predict(horizon=24)
    np.testing.assert_array_equal(a.mean, b.mean)
    for q in a.quantiles:
        np.testing.assert_array_equal(a.quantiles[q], b.quantiles[q])


@pytest.mark.parametrize("factory", ALL)
def test_does_not_mutate_inputs(factory: Factory) -> None:
    history = make_series(gaps=True)
    before = history.values.copy()
    model = factory()
    exog = working_hours(history.start, len(history)) if model.name in EXOG_MODELS else None
    future = working_hours(history.end, 24) if exog is not None else None
    exog_before = None if exog is None else exog.copy()
    fitted = model.fit(history, exog=exog)
    fitted.predict(horizon=24, exog_future=future)
    np.testing.assert_array_equal(history.values, before)
    if exog is not None:
        np.testing.assert_array_equal(exog, exog_before)
        assert future is not None
        np.testing.assert_array_equal(future, working_hours(history.end, 24))


@pytest.mark.parametrize("factory", ALL)
def test_gaps_in_history_still_give_a_finite_forecast(factory: Factory) -> None:
    history = make_series(gaps=True)
    fc = factory().fit(history).predict(horizon=24)
    check_forecast(fc, horizon=24, history=history)


@pytest.mark.parametrize("factory", ALL)
def test_newer_history_without_refit(factory: Factory) -> None:
    full = make_series(24 * 18)
    fit_part = RegularSeries(start=full.start, step=HOUR, values=full.values[:-30], unit="rps")
    fitted = factory().fit(fit_part)
    default = fitted.predict(horizon=12)
    same = fitted.predict(horizon=12, history=fit_part)
    np.testing.assert_allclose(default.mean, same.mean)
    newer = fitted.predict(horizon=12, history=full)
    check_forecast(newer, horizon=12, history=full)
    assert newer.start == fit_part.end + 30 * HOUR


@pytest.mark.parametrize(
    "factory",
    [pytest.param(f, id=n) for n, f in FAST if n in EXOG_MODELS]
    + [pytest.param(f, id=n, marks=pytest.mark.slow) for n, f in SLOW],
)
def test_exog_is_used_and_validated(factory: Factory) -> None:
    history = make_series()
    exog = working_hours(history.start, len(history))
    values = history.values + 10 * exog[:, 0]
    shifted = RegularSeries(start=history.start, step=HOUR, values=values, unit="rps")
    fitted = factory().fit(shifted, exog=exog)
    with pytest.raises(ValueError, match="exog_future"):
        fitted.predict(horizon=24)
    with pytest.raises(ValueError, match="rows"):
        fitted.predict(horizon=24, exog_future=np.zeros((5, 1)))
    on = fitted.predict(horizon=24, exog_future=np.ones((24, 1)))
    off = fitted.predict(horizon=24, exog_future=np.zeros((24, 1)))
    assert float(np.mean(on.mean - off.mean)) > 3.0
    with pytest.raises(ValueError, match="rows"):
        factory().fit(shifted, exog=exog[:-1])
    with pytest.raises(ValueError, match="columns"):
        fitted.predict(horizon=24, exog_future=np.ones((24, 2)))
    longer = make_series(24 * 17)
    longer_exog = working_hours(longer.start, len(longer))
    if fitted.name in FILTERING_EXOG:
        with pytest.raises(ValueError, match="exog_history"):
            fitted.predict(horizon=24, history=longer, exog_future=np.ones((24, 1)))
    newer = fitted.predict(
        horizon=24, history=longer, exog_future=np.ones((24, 1)), exog_history=longer_exog
    )
    check_forecast(newer, horizon=24, history=longer)


@pytest.mark.parametrize("factory", ALL)
def test_all_missing_history_is_rejected(factory: Factory) -> None:
    history = RegularSeries(start=START, step=HOUR, values=np.full(24 * 16, np.nan), unit="rps")
    with pytest.raises(ValueError, match="observed"):
        factory().fit(history).predict(horizon=4)


@pytest.mark.parametrize("factory", ALL)
def test_horizon_must_be_positive(factory: Factory) -> None:
    fitted = factory().fit(make_series())
    with pytest.raises(ValueError, match="horizon"):
        fitted.predict(horizon=0)


FAST_PROPERTY = [
    pytest.param(lambda: SeasonalNaive(24), id="seasonal_naive_24"),
    pytest.param(
        lambda: SeasonalRegression(week_steps=0, max_horizon=12, window_steps=24 * 6),
        id="seasonal_regression",
    ),
]


@pytest.mark.parametrize("factory", FAST_PROPERTY)
@settings(max_examples=15)
@given(
    level=st.floats(-1e3, 1e4),
    amplitude=st.floats(0, 500),
    noise=st.floats(0, 50),
    seed=st.integers(0, 2**16),
    horizon=st.integers(1, 40),
    gap=st.integers(0, 30),
)
def test_property_forecast_invariants(
    factory: Factory,
    level: float,
    amplitude: float,
    noise: float,
    seed: int,
    horizon: int,
    gap: int,
) -> None:
    rng = np.random.default_rng(seed)
    t = np.arange(24 * 9)
    values = level + amplitude * np.sin(2 * np.pi * t / 24) + rng.normal(0, noise + 1e-9, t.size)
    values[50 : 50 + gap] = np.nan
    history = RegularSeries(start=START, step=HOUR, values=values, unit="x")
    fc = factory().fit(history, seed=seed).predict(horizon=horizon)
    check_forecast(fc, horizon=horizon, history=history)


@settings(max_examples=3)
@given(seed=st.integers(0, 2**16), horizon=st.integers(1, 30))
def test_property_ets_invariants(seed: int, horizon: int) -> None:
    history = make_series(24 * 6, seed=seed)
    fc = ETS(window_steps=24 * 6, simulations=50).fit(history, seed=seed).predict(horizon=horizon)
    check_forecast(fc, horizon=horizon, history=history)


# ------------------------------------------------------------------ shipping rule


def test_fixture_file_is_what_its_generator_writes() -> None:
    assert backtest_series.PATH.read_text() == backtest_series.generate()


def bundled() -> RegularSeries:
    return read_csv_series(Path(backtest_series.PATH))


def beats_naive(model: Forecaster, *, count: int, refit_every: int) -> tuple[float, float]:
    series = bundled()
    origins = rolling_origins(len(series), horizon=24, count=count, stride=24, min_train=24 * 21)
    naive = backtest(series, SeasonalNaive(24), origins=origins, horizon=24)
    result = backtest(series, model, origins=origins, horizon=24, refit_every=refit_every)
    choice = select_model({naive.model: naive, result.model: result})
    assert choice.model == result.model, choice.reasons
    return result.scores.mae, naive.scores.mae


@pytest.mark.parametrize(
    ("model", "count", "refit_every"),
    [
        pytest.param(
            SeasonalRegression(max_horizon=24, window_steps=24 * 14), 6, 1, id="regression"
        ),
        pytest.param(ETS(window_steps=24 * 7, simulations=50), 4, 4, id="ets"),
        pytest.param(
            Sarimax(order=(1, 0, 0), fourier=((24, 2),), window_steps=24 * 7), 3, 3, id="sarimax"
        ),
    ],
)
def test_every_model_beats_seasonal_naive_quick(
    model: Forecaster, count: int, refit_every: int
) -> None:
    mae, naive_mae = beats_naive(model, count=count, refit_every=refit_every)
    assert mae < naive_mae


@pytest.mark.slow
@pytest.mark.parametrize(
    "model",
    [
        pytest.param(SeasonalRegression(), id="regression"),
        pytest.param(ETS(), id="ets"),
        pytest.param(Sarimax(), id="sarimax"),
        pytest.param(ProphetModel(), id="prophet"),
    ],
)
def test_every_model_beats_seasonal_naive_full(model: Forecaster) -> None:
    mae, naive_mae = beats_naive(model, count=14, refit_every=1)
    assert mae < naive_mae


@pytest.mark.parametrize("factory", ALL)
def test_non_negative_history_gives_non_negative_forecast(factory: Factory) -> None:
    rng = np.random.default_rng(5)
    t = np.arange(24 * 16)
    spiky = np.abs(rng.normal(0, 1, t.size)) * (rng.random(t.size) < 0.2) * 50
    history = RegularSeries(start=START, step=HOUR, values=spiky, unit="merges")
    fc = factory().fit(history).predict(horizon=24)
    assert (fc.mean >= 0).all()
    for q in fc.quantiles:
        assert (fc.quantiles[q] >= 0).all()


@pytest.mark.parametrize("factory", ALL)
def test_fit_each_is_fit_of_each_history(factory: Factory) -> None:
    """`fit_each` (batched where the model is a `BatchForecaster`) gives exactly what `fit`
    gives for each history, in order, with the error in place of a history it cannot fit."""
    histories = [
        make_series(seed=1),
        make_series(seed=2, gaps=True),
        make_series(24 * 15, seed=3),
        RegularSeries(start=START, step=HOUR, values=np.full(24 * 16, np.nan), unit="rps"),
    ]
    got = fit_each(factory(), histories)
    assert len(got) == len(histories)
    assert isinstance(got[-1], ValueError)
    with pytest.raises(ValueError, match=str(got[-1])):
        factory().fit(histories[-1])
    for history, fitted in zip(histories[:-1], got[:-1], strict=True):
        assert not isinstance(fitted, ValueError)
        alone = factory().fit(history).predict(horizon=24)
        batched = fitted.predict(horizon=24)
        np.testing.assert_array_equal(batched.mean, alone.mean)
        for q in alone.quantiles:
            np.testing.assert_array_equal(batched.quantiles[q], alone.quantiles[q])


def test_profile_persistence_fits_many_at_once() -> None:
    assert isinstance(ProfilePersistence(period=24), BatchForecaster)
    assert not isinstance(SeasonalNaive(24), BatchForecaster)
