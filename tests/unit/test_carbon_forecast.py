"""forecasts.carbon_forecast: provider forecast first, bias correction only where it helps.

Aspects: grid alignment; bias correction arithmetic; the rolling decision corrects a biased
provider and leaves an unbiased one alone; forecast_carbon uses the provider where it covers
the horizon, the model elsewhere, and history-only when there is no provider."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.carbon_forecast import (
    align,
    bias_correct,
    decide_bias_correction,
    forecast_carbon,
    provider_errors,
)
from forecasts.models import SeasonalNaive
from forecasts.series import RegularSeries

START = datetime(2023, 1, 1, tzinfo=UTC)
HALF = timedelta(minutes=30)


def rs(values, *, start=START) -> RegularSeries:
    return RegularSeries(start=start, step=HALF, values=np.asarray(values, float), unit="g/kWh")


def test_align_places_values_on_the_grid() -> None:
    like = rs(np.zeros(5))
    other = rs([1.0, 2.0, 3.0], start=START + 3 * HALF)
    np.testing.assert_array_equal(align(other, like=like), [np.nan, np.nan, np.nan, 1.0, 2.0])
    with pytest.raises(ValueError, match="grid"):
        align(rs([1.0], start=START + timedelta(minutes=7)), like=like)


def test_bias_correct_adds_recent_mean_error() -> None:
    errors = provider_errors(np.array([10, 12, np.nan, 14.0]), np.array([8, 10, 9, 10.0]))
    np.testing.assert_array_equal(errors, [2, 2, np.nan, 4])
    out = bias_correct(np.array([100.0, 200.0]), past_errors=errors, window_steps=2)
    np.testing.assert_array_equal(out, [104.0, 204.0])
    with pytest.raises(ValueError, match="window_steps"):
        bias_correct(np.array([1.0]), past_errors=errors, window_steps=0)


def make_case(bias: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(48 * 40)
    actual = 200 + 50 * np.sin(2 * np.pi * t / 48) + rng.normal(0, 3, t.size)
    provider = actual - bias + rng.normal(0, 5, t.size)
    return actual, provider


@pytest.mark.parametrize(
    ("bias", "use"),
    [
        pytest.param(15.0, True, id="biased provider gets corrected"),
        pytest.param(0.0, False, id="unbiased provider left alone"),
    ],
)
def test_decision(bias: float, use: bool) -> None:
    actual, provider = make_case(bias)
    origins = list(range(48 * 10, 48 * 39, 48))
    d = decide_bias_correction(actual, provider, origins=origins, horizon=48)
    assert d.use is use
    assert (d.mae_corrected < d.mae_raw) or not use
    assert d.reasons[-1].startswith("correct" if use else "no correction")


def test_decision_rejects_bad_origins() -> None:
    actual, provider = make_case(0.0)
    with pytest.raises(ValueError, match="origin"):
        decide_bias_correction(actual, provider, origins=[0], horizon=4)
    with pytest.raises(ValueError, match="windows"):
        decide_bias_correction(actual, provider, origins=[10], horizon=4, windows=())


def test_forecast_carbon_uses_provider_then_model() -> None:
    actual, provider = make_case(15.0)
    n = 48 * 30
    history = rs(actual[:n])
    prov = rs(provider[: n + 10])  # covers 10 future steps only
    origins = list(range(48 * 10, 48 * 29, 48))
    decision = decide_bias_correction(actual[:n], provider[:n], origins=origins, horizon=48)
    fc = forecast_carbon(
        history, horizon=48, model=SeasonalNaive(48), provider=prov, decision=decision
    )
    assert len(fc) == 48
    assert fc.model == "provider+bias+seasonal_naive_48"
    bias = np.nanmean((actual[:n] - provider[:n])[-decision.window_steps :])
    np.testing.assert_allclose(fc.mean[:10], provider[n : n + 10] + bias)
    np.testing.assert_allclose(fc.mean[10:], actual[n - 48 + 10 : n])
    assert (fc.quantile(0.1)[:10] < fc.mean[:10]).all()


def test_forecast_carbon_without_provider_is_the_model() -> None:
    actual, _ = make_case(0.0)
    fc = forecast_carbon(rs(actual[: 48 * 5]), horizon=12, model=SeasonalNaive(48))
    assert fc.model == "seasonal_naive_48"
    with pytest.raises(ValueError, match="horizon"):
        forecast_carbon(rs(actual[: 48 * 5]), horizon=0, model=SeasonalNaive(48))


def test_forecast_carbon_raw_provider_when_no_decision() -> None:
    actual, provider = make_case(0.0)
    n = 48 * 5
    fc = forecast_carbon(
        rs(actual[:n]), horizon=4, model=SeasonalNaive(48), provider=rs(provider[: n + 4])
    )
    assert fc.model == "provider"
    np.testing.assert_allclose(fc.mean, provider[n : n + 4])
