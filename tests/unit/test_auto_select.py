"""forecasts.models.auto.AutoSelect and the scaler's load-model choice.

Aspects: picks the model that beats seasonal naive on the series itself; keeps the baseline when
the alternative loses or cannot fit; too-short histories fall back with a reason; settings names
equal the catalog's; the scaler's forecaster is built from `forecast.load_model`."""

from __future__ import annotations

import typing
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from config.settings import LoadModelName, Settings
from config.wiring import load_forecaster_from
from forecasts.models.auto import AutoSelect, join_history
from forecasts.models.catalog import LOAD_MODEL_CHOICES
from forecasts.models.regression import SeasonalRegression
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.series import RegularSeries

START = datetime(2026, 1, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)


def series(values: np.ndarray) -> RegularSeries:
    return RegularSeries(start=START, step=HOUR, values=values, unit="req/s")


def auto(min_train: int = 24 * 9) -> AutoSelect:
    return AutoSelect(
        candidates=(SeasonalNaive(24), SeasonalRegression(max_horizon=6, window_steps=24 * 12)),
        horizon=6,
        origins=4,
        stride=6,
        min_train=min_train,
    )


def test_picks_the_regression_on_a_noisy_daily_pattern() -> None:
    t = np.arange(24 * 14)
    rng = np.random.default_rng(3)
    y = 100 + 40 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 8, t.size)
    fit = auto().fit(series(y))
    assert fit.name == "seasonal_regression"
    assert fit.selection is not None
    assert fit.selection.model == "seasonal_regression"
    assert any("beats" in r for r in fit.reasons)
    assert fit.predict(horizon=6).horizon == 6


def test_keeps_the_baseline_when_the_day_repeats_exactly() -> None:
    """A series that repeats every day exactly is forecast perfectly by seasonal naive; the
    regression cannot beat an MAE of zero, so the baseline is kept."""
    t = np.arange(24 * 14)
    y = 100 + 40 * np.sin(2 * np.pi * t / 24)
    fit = auto().fit(series(y))
    assert fit.name == "seasonal_naive_24"
    assert any("chose seasonal_naive_24" in r or "baseline" in r for r in fit.reasons)


def test_short_history_falls_back_to_the_baseline_and_says_why() -> None:
    y = np.linspace(10, 20, 30)
    fit = auto().fit(series(y))
    assert fit.name == "seasonal_naive_24"
    assert fit.selection is None
    assert "too short to backtest" in fit.reasons[0]


def test_candidates_need_a_baseline() -> None:
    with pytest.raises(ValueError, match="SeasonalNaive"):
        AutoSelect(candidates=(SeasonalRegression(),), horizon=6)


def test_settings_names_equal_the_catalog() -> None:
    assert typing.get_args(LoadModelName) == LOAD_MODEL_CHOICES


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("auto", "auto", id="auto"),
        pytest.param("seasonal_naive_day", "seasonal_naive_day", id="naive (the flag's name)"),
    ],
)
def test_scaler_forecaster_follows_the_setting(name: str, expected: str) -> None:
    settings = Settings.model_validate({"forecast": {"load_model": name}})
    assert load_forecaster_from(settings).name == expected


def test_unknown_model_is_a_named_error() -> None:
    with pytest.raises(ValueError, match="load_model"):
        Settings.model_validate({"forecast": {"load_model": "magic"}})


def test_a_short_newer_window_is_joined_onto_the_fit_history() -> None:
    """The scaler's tick passes only its recent window; a model with a long look-back still
    predicts, from the newest data."""
    t = np.arange(24 * 14)
    rng = np.random.default_rng(5)
    y = 100 + 40 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 8, t.size)
    fit = auto().fit(series(y[: 24 * 13]))
    assert fit.name == "seasonal_regression"
    recent = RegularSeries(start=START + 24 * 12 * HOUR, step=HOUR, values=y[24 * 12 :], unit="x")
    fc = fit.predict(horizon=6, history=recent)
    assert fc.start == recent.end
    assert fc.horizon == 6


@pytest.mark.parametrize(
    ("offset_h", "expect_len"),
    [
        pytest.param(10, 10 + 5, id="overlap"),
        pytest.param(30, 30 + 5, id="gap"),
        pytest.param(-2, 5, id="newer starts first"),
    ],
)
def test_join_history(offset_h: int, expect_len: int) -> None:
    base = series(np.arange(24.0))
    newer = RegularSeries(
        start=START + offset_h * HOUR, step=HOUR, values=np.full(5, 7.0), unit="req/s"
    )
    joined = join_history(base, newer)
    assert len(joined) == expect_len
    assert joined.end == newer.end
    assert (joined.values[-5:] == 7.0).all()
    if offset_h == 30:
        assert np.isnan(joined.values[24:30]).all()
