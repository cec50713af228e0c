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
    STANDARD_QUANTILES,
    BatchForecaster,
    BatchPredictor,
    Forecast,
    Forecaster,
    PredictRequest,
    fit_each,
    forecasts_of_table,
    predict_each,
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


def _same_forecast(got: Forecast | ValueError, want: Forecast) -> None:
    assert isinstance(got, Forecast), got
    assert (got.start, got.step, got.unit, got.model) == (
        want.start,
        want.step,
        want.unit,
        want.model,
    )
    np.testing.assert_array_equal(got.mean, want.mean)
    assert list(got.quantiles) == list(want.quantiles)
    for q in want.quantiles:
        np.testing.assert_array_equal(got.quantiles[q], want.quantiles[q])
        assert not got.quantiles[q].flags.writeable
    assert not got.mean.flags.writeable


@pytest.mark.parametrize("factory", ALL)
def test_predict_each_is_predict_of_each_request(factory: Factory) -> None:
    """`predict_each` (batched where the fit has a `BatchPredictor`) gives exactly what
    `predict` gives for each request, in order: fit histories and newer ones, several
    horizons, and the error in place of a request `predict` refuses."""
    fits = [factory().fit(make_series(seed=s, gaps=s == 2)) for s in (1, 2, 3)]
    newer = make_series(24 * 16 + 5, seed=4)
    requests = [
        PredictRequest(fits[0], 24),
        PredictRequest(fits[1], 1, newer),
        PredictRequest(fits[2], 2, newer),
        PredictRequest(fits[0], 0),
        PredictRequest(fits[1], 2, make_series(24 * 16 + 1, seed=5, gaps=True)),
        PredictRequest(fits[2], 24),
    ]
    got = predict_each(requests)
    assert len(got) == len(requests)
    for r, forecast in zip(requests, got, strict=True):
        if r.horizon < 1:
            assert isinstance(forecast, ValueError)
            with pytest.raises(ValueError, match=str(forecast)):
                r.model.predict(horizon=r.horizon, history=r.history)
            continue
        _same_forecast(forecast, r.model.predict(horizon=r.horizon, history=r.history))


@pytest.mark.parametrize("multiplicative", [False, True], ids=["additive", "multiplicative"])
def test_profile_persistence_predicts_many_fits_bit_for_bit(multiplicative: bool) -> None:
    """Many fits, predicted at once, from histories moved on by 0..30 steps (every phase
    of the profile and the error groups), horizons 1, 2 and 30, a negative history (no
    zero floor) and a non-positive last value (multiplicative: refused as `predict` does):
    each forecast is exactly its own `predict`, array for array."""
    rng = np.random.default_rng(11)
    model = ProfilePersistence(period=24, seasons=7, multiplicative=multiplicative)
    histories = [make_series(24 * 15 + int(rng.integers(0, 24)), seed=int(s)) for s in range(40)]
    if not multiplicative:
        histories[3] = RegularSeries(
            start=START, step=HOUR, values=histories[3].values - 60.0, unit="rps"
        )
    fits = fit_each(model, histories)
    requests = []
    for i, fit in enumerate(fits):
        assert not isinstance(fit, ValueError)
        moved = int(rng.integers(0, 30))
        values = np.concatenate([histories[i].values, 50 + rng.normal(0, 5, moved)])
        if multiplicative and i == 5:
            values[-1] = -1.0
        history = RegularSeries(start=START, step=HOUR, values=values, unit="rps")
        for horizon in (1, 2, 30):
            requests.append(PredictRequest(fit, horizon, history))
    got = predict_each(requests)
    refused = 0
    for r, forecast in zip(requests, got, strict=True):
        if isinstance(forecast, ValueError):
            refused += 1
            with pytest.raises(ValueError) as info:
                r.model.predict(horizon=r.horizon, history=r.history)
            assert str(info.value) == str(forecast)
            continue
        _same_forecast(forecast, r.model.predict(horizon=r.horizon, history=r.history))
    assert refused == (3 if multiplicative else 0)


def test_forecasts_of_table_checks_each_row_as_forecast_does() -> None:
    """A row `Forecast` would refuse (non-finite, crossed levels) gets `Forecast`'s own
    error; the other rows are forecasts."""
    levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    good = np.tile(np.arange(7.0)[:, None], (1, 2))
    crossed = good.copy()
    crossed[2, 1] = 10.0
    table = np.stack([good, crossed, np.where(good == 3.0, np.nan, good)])
    got = forecasts_of_table(
        starts=[START] * 3,
        steps=[HOUR] * 3,
        levels=levels,
        table=table,
        mean_level=0.5,
        units=["rps"] * 3,
        model="m",
    )
    assert isinstance(got[0], Forecast)
    np.testing.assert_array_equal(got[0].mean, [3.0, 3.0])
    assert str(got[1]) == "m: quantile 0.25 exceeds quantile 0.5"
    assert str(got[2]) == "m: mean forecast has non-finite values"
    with pytest.raises(ValueError, match="sorted"):
        forecasts_of_table(
            starts=[START],
            steps=[HOUR],
            levels=levels[::-1],
            table=table[:1],
            mean_level=0.5,
            units=["rps"],
            model="m",
        )


def test_batch_prediction_refuses_what_it_cannot_predict() -> None:
    one, other = ProfilePersistence(period=24), ProfilePersistence(period=12)
    with pytest.raises(ValueError, match="cannot predict profile_persistence_12_add's fit"):
        one.predict_many([PredictRequest(other.fit(make_series()), 1)])
    with pytest.raises(ValueError, match=r"table must be \(forecast, 7 levels, step\)"):
        forecasts_of_table(
            starts=[START],
            steps=[HOUR],
            levels=STANDARD_QUANTILES,
            table=np.zeros((7, 2)),
            mean_level=0.5,
            units=["rps"],
            model="m",
        )


def test_profile_persistence_fits_many_at_once() -> None:
    assert isinstance(ProfilePersistence(period=24), BatchForecaster)
    assert not isinstance(SeasonalNaive(24), BatchForecaster)
    fitted = ProfilePersistence(period=24).fit(make_series())
    assert isinstance(getattr(fitted, "batch_predictor", None), BatchPredictor)
