"""Model configuration and shared helpers: every bad setting is a clear ValueError.

Aspects: constructor bounds of each model (table); the catalog builds every named model for
hourly and half-hourly steps and rejects unknown names and odd steps; exog validation; the gap
rule; short or empty histories at predict time; recency weighting and in-sample intervals; the
fits' shared `predict()` preamble (`ModelFit`): horizon check, which history, the fit-history
flag, the forecast built from the history's end, step and unit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

# Imported at collection so no timed test pays for statsmodels' import.
import statsmodels.tsa.holtwinters
import statsmodels.tsa.statespace.sarimax  # noqa: F401

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.models import ETS, ProphetModel, Sarimax, SeasonalNaive, SeasonalRegression
from forecasts.models._support import (
    ModelFit,
    PredictCall,
    check_exog,
    fill_gaps,
    fourier_terms,
)
from forecasts.models.catalog import MODEL_NAMES, build_model, season_steps
from forecasts.models.profile_persistence import ProfilePersistence
from forecasts.series import RegularSeries

START = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
BAD: Any = "magic"  # a value outside a Literal, as a YAML file could carry


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: SeasonalNaive(0), "period", id="naive period"),
        pytest.param(lambda: SeasonalRegression(season_steps=1), "season_steps", id="reg season"),
        pytest.param(lambda: SeasonalRegression(week_steps=10), "week_steps", id="reg week"),
        pytest.param(lambda: SeasonalRegression(max_horizon=0), "max_horizon", id="reg horizon"),
        pytest.param(lambda: SeasonalRegression(window_steps=0), "window_steps", id="reg window"),
        pytest.param(lambda: SeasonalRegression(ridge=-1), "ridge", id="reg ridge"),
        pytest.param(lambda: SeasonalRegression(holdout_steps=-1), "holdout", id="reg holdout"),
        pytest.param(
            lambda: SeasonalRegression(half_life_steps=0), "half_life", id="reg half-life"
        ),
        pytest.param(lambda: SeasonalRegression(extra_lags=(1,)), "extra_lags", id="reg lags"),
        pytest.param(
            lambda: SeasonalRegression(residual_window_steps=3), "residual", id="reg resid"
        ),
        pytest.param(lambda: ETS(season_steps=1), "season_steps", id="ets season"),
        pytest.param(lambda: ETS(window_steps=10), "window_steps", id="ets window"),
        pytest.param(lambda: ETS(simulations=5), "simulations", id="ets sims"),
        pytest.param(lambda: ETS(initialization=BAD), "initialization", id="ets init"),
        pytest.param(lambda: Sarimax(window_steps=5), "window_steps", id="sarimax window"),
        pytest.param(lambda: Sarimax(fourier=((1, 2),)), "fourier", id="sarimax fourier"),
        pytest.param(lambda: ProphetModel(window_steps=10), "window_steps", id="prophet window"),
        pytest.param(
            lambda: ProphetModel(seasonality_mode=BAD), "seasonality_mode", id="prophet mode"
        ),
    ],
)
def test_bad_configuration(make, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("step", [HOUR, timedelta(minutes=30)], ids=["hourly", "half-hourly"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_catalog_builds_every_model(name: str, step: timedelta) -> None:
    model = build_model(name, step=step)
    assert model.name


def test_catalog_rejects_unknown_and_odd_steps() -> None:
    with pytest.raises(ValueError, match="unknown 'x'"):
        build_model("x", step=HOUR)
    with pytest.raises(ValueError, match="divide a day"):
        season_steps(timedelta(minutes=7))
    assert season_steps(timedelta(minutes=30)) == (48, 336)


def test_check_exog() -> None:
    assert check_exog(None, rows=3, name="exog") is None
    one_column = check_exog(np.arange(3.0), rows=3, name="exog")
    assert one_column is not None
    assert one_column.shape == (3, 1)
    with pytest.raises(ValueError, match="2-D"):
        check_exog(np.zeros((3, 1, 1)), rows=3, name="exog")
    with pytest.raises(ValueError, match="non-finite"):
        check_exog(np.array([1.0, np.nan, 2.0]), rows=3, name="exog")


def test_fill_gaps_rule() -> None:
    values = np.array([np.nan, 1.0, 2.0, np.nan, np.nan, 5.0])
    out = fill_gaps(values, 2)
    np.testing.assert_array_equal(out, [1.0, 1.0, 2.0, 1.0, 2.0, 5.0])
    assert np.isnan(values[0])  # input untouched
    np.testing.assert_array_equal(fill_gaps(np.array([1.0, np.nan, 3.0]), 0), [1.0, 2.0, 3.0])
    assert fourier_terms(np.arange(3.0), terms=()).shape == (3, 0)


def series(n: int) -> RegularSeries:
    t = np.arange(n)
    return RegularSeries(start=START, step=HOUR, values=10 + np.sin(2 * np.pi * t / 24), unit="x")


def test_predict_needs_enough_history() -> None:
    long = series(24 * 16)
    with pytest.raises(ValueError, match="steps of history to predict"):
        SeasonalRegression(max_horizon=24).fit(long).predict(horizon=4, history=series(30))
    with pytest.raises(ValueError, match="steps of history to predict"):
        ETS(window_steps=24 * 4, simulations=50).fit(long).predict(horizon=4, history=series(10))
    with pytest.raises(ValueError, match="needs 24 steps"):
        SeasonalNaive(24).fit(long).predict(horizon=4, history=series(10))
    empty = RegularSeries(start=START, step=HOUR, values=np.full(24 * 16, np.nan), unit="x")
    fitted = Sarimax(order=(1, 0, 0), fourier=((24, 1),), window_steps=24 * 4).fit(long)
    with pytest.raises(ValueError, match="observed"):
        fitted.predict(horizon=4, history=empty)


def test_regression_options_change_the_fit() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(24 * 20)
    values = (
        10
        + np.sin(2 * np.pi * t / 24)
        + np.where(t > 24 * 15, 3.0, 0.0)
        + rng.normal(0, 0.1, t.size)
    )
    s = RegularSeries(start=START, step=HOUR, values=values, unit="x")
    base = SeasonalRegression(week_steps=0, max_horizon=12, window_steps=24 * 16, holdout_steps=0)
    weighted = SeasonalRegression(
        week_steps=0,
        max_horizon=12,
        window_steps=24 * 16,
        holdout_steps=0,
        half_life_steps=24,
        residual_window_steps=48,
        extra_lags=(2, 24),
    )
    a = base.fit(s).predict(horizon=12)
    b = weighted.fit(s).predict(horizon=12)
    assert not np.allclose(a.mean, b.mean)
    assert abs(float(np.mean(b.mean)) - 13.0) < 1.0


@dataclass(frozen=True, slots=True)
class _RecordingFit(ModelFit):
    """A fit that forecasts a flat 1.0 and keeps the calls its `_predict` got."""

    history: RegularSeries
    calls: list[PredictCall]

    @property
    def name(self) -> str:
        return "recording"

    def _predict(self, call: PredictCall) -> Forecast:
        self.calls.append(call)
        ones = np.ones(call.horizon)
        return call.forecast(
            mean=ones,
            quantiles=dict.fromkeys(STANDARD_QUANTILES, ones),
            model=self.name,
            lower_bound=None,
        )


def test_model_fit_preamble() -> None:
    fit_history = RegularSeries(start=START, step=HOUR, values=np.arange(48.0), unit="g")
    newer = RegularSeries(start=START, step=HOUR, values=np.arange(60.0), unit="g")
    fit = _RecordingFit(history=fit_history, calls=[])
    with pytest.raises(ValueError, match="horizon must be >= 1, got 0"):
        fit.predict(horizon=0)
    assert fit.calls == []  # the model's own code never sees a bad horizon
    exog = np.ones((3, 1))
    default = fit.predict(horizon=3, exog_future=exog)
    given_fit = fit.predict(horizon=3, history=fit_history)
    given_newer = fit.predict(horizon=3, history=newer)
    assert [(c.history, c.history_is_fit) for c in fit.calls] == [
        (fit_history, True),
        (fit_history, True),
        (newer, False),
    ]
    assert fit.calls[0].exog_future is exog
    assert (default.start, default.step, default.unit, default.model) == (
        START + 48 * HOUR,
        HOUR,
        "g",
        "recording",
    )
    assert given_fit.start == default.start
    assert given_newer.start == START + 60 * HOUR


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(SeasonalNaive(24), id="seasonal_naive"),
        pytest.param(SeasonalRegression(max_horizon=6, window_steps=24 * 8), id="regression"),
        pytest.param(ETS(window_steps=24 * 8, simulations=20), id="ets"),
        pytest.param(Sarimax(order=(1, 0, 0), fourier=((24, 1),)), id="sarimax"),
        pytest.param(ProfilePersistence(), id="profile_persistence"),
    ],
)
def test_every_bundled_fit_shares_the_preamble(model: Any) -> None:
    t = np.arange(24 * 12)
    history = RegularSeries(
        start=START, step=HOUR, values=50 + 10 * np.sin(2 * np.pi * t / 24), unit="g"
    )
    fit = model.fit(history)
    assert isinstance(fit, ModelFit)
    with pytest.raises(ValueError, match="horizon must be >= 1, got -1"):
        fit.predict(horizon=-1)
