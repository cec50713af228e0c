"""forecasts.carbon_forecast: gridshift's one carbon forecast (pure).

Aspects: grid alignment; `KnownSeries` hides values not yet known; the seasonal naive; the plan
keeps the naive on a flat series, corrects a biased provider by its latest error, keeps an
accurate provider as given, blends a noisy one; the forecast has the horizon, finite values
and lo <= mean <= hi; calibrated intervals cover about their nominal share out of sample,
are calibrated on errors made knowing what the forecast knows (a provider's day arrived or
not), and only on errors of steps observed before the plan's origin;
the honest scores on hand-computed cases; look-ahead: making any input known an hour later
never changes a forecast made before it became known (and making it known earlier can),
with inputs published at different times side by side; an input published the day before
is used for tomorrow's hours (the exog model's fit on the earliest-published inputs), and a
forecast keeps the plan's earliest-published columns when the inputs' publication leads
change (inputs with other columns are left out).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.carbon_forecast import (
    Calibration,
    CarbonForecastSettings,
    CarbonInputs,
    KnownSeries,
    _early_columns,
    align,
    forecast_carbon,
    plan_carbon_forecast,
    score_forecasts,
    seasonal_naive,
)
from forecasts.series import RegularSeries

H = timedelta(hours=1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
SMALL = CarbonForecastSettings(
    horizon_steps=24, backtest_origins=12, origin_stride_steps=25, train_steps=24 * 14
)


def series(values: np.ndarray, start: datetime = T0) -> RegularSeries:
    return RegularSeries(start=start, step=H, values=values, unit="g/kWh")


def daily(n: int, *, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    walk = np.cumsum(rng.normal(0, noise, n)) if noise else np.zeros(n)
    return 300 + 80 * np.sin(2 * np.pi * t / 24) + walk + rng.normal(0, noise, n)


def provider_of(truth: np.ndarray, *, bias: float, noise: float, seed: int = 1) -> KnownSeries:
    """A day-ahead provider: each day's values known from 04:00 of that day."""
    rng = np.random.default_rng(seed)
    t = np.arange(truth.size) * 3600.0 + T0.timestamp()
    return KnownSeries(
        start=T0,
        step=H,
        values=truth + bias + rng.normal(0, noise, truth.size),
        known_s=np.floor(t / 86400) * 86400 + 4 * 3600,
    )


def test_align_and_known_series_hide_the_future() -> None:
    a = series(np.arange(5.0))
    b = series(np.arange(3.0), start=T0 + 2 * H)
    np.testing.assert_array_equal(align(b, like=a), [np.nan, np.nan, 0, 1, 2])
    ks = KnownSeries(
        start=T0, step=H, values=np.arange(4.0), known_s=T0.timestamp() + np.arange(4.0) * 3600 + 1
    )
    np.testing.assert_array_equal(
        ks.on(T0 - H, 6, at=T0 + 2 * H)[:, 0], [np.nan, 0, 1, np.nan, np.nan, np.nan]
    )
    np.testing.assert_array_equal(ks.shifted(1).on(T0, 2, at=None)[:, 0], [np.nan, 0])


def test_seasonal_naive_takes_the_newest_whole_day() -> None:
    v = np.arange(48.0)
    np.testing.assert_array_equal(seasonal_naive(v, 48, 26), [*range(24, 48), 24, 25])
    with pytest.raises(ValueError, match="a day of history"):
        seasonal_naive(v, 10, 2)


def test_plan_keeps_the_naive_where_it_is_exact() -> None:
    truth = daily(24 * 50)
    plan = plan_carbon_forecast(CarbonInputs(series(truth)), settings=SMALL)
    assert plan.own == "seasonal_naive"
    fc = forecast_carbon(CarbonInputs(series(truth)), plan, horizon=30)
    np.testing.assert_allclose(fc.mean, seasonal_naive(truth, truth.size, 30))


@pytest.mark.parametrize(
    ("bias", "noise", "expect"),
    [
        pytest.param(0.0, 0.0, "provider", id="exact provider as given"),
        pytest.param(60.0, 1.0, "+correction", id="biased provider corrected"),
    ],
)
def test_plan_uses_the_provider(bias: float, noise: float, expect: str) -> None:
    truth = daily(24 * 50, noise=4.0)
    inputs = CarbonInputs(series(truth[:-42]), provider=provider_of(truth, bias=bias, noise=noise))
    plan = plan_carbon_forecast(inputs, settings=SMALL)
    assert plan.name.startswith(expect.removesuffix("+correction")), plan.reasons
    assert plan.name.endswith("+correction") == expect.endswith("+correction"), plan.reasons
    fc = forecast_carbon(inputs, plan, horizon=24)
    # the origin is day 48 06:00: day 48's values arrived at 04:00, day 49's have not
    err = np.abs(fc.mean[:18] - truth[-42:-24]).mean()
    assert err < (2.0 if expect == "provider" else bias / 3)  # raw provider: off by `bias`


def ar_daily(n: int, *, seed: int, phi: float = 0.9, sigma: float = 6.0) -> np.ndarray:
    """A daily shape plus stationary AR(1) noise."""
    rng = np.random.default_rng(seed)
    eps = rng.normal(0, sigma, n)
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = phi * e[i - 1] + eps[i]
    return 300 + 80 * np.sin(2 * np.pi * np.arange(n) / 24) + e


def test_forecast_shape_and_calibrated_coverage() -> None:
    inside80, inside90, n = 0, 0, 0
    for seed in (3, 4):
        truth = ar_daily(24 * 60, seed=seed)
        for k, day in enumerate(range(40, 58, 2)):
            o = 24 * day + (k * 5) % 24  # origins at several hours of the day
            inputs = CarbonInputs(series(truth[:o]))
            plan = plan_carbon_forecast(inputs, settings=SMALL)
            fc = forecast_carbon(inputs, plan, horizon=24)
            assert len(fc) == 24
            assert np.isfinite(fc.mean).all()
            assert (fc.quantile(0.05) <= fc.mean).all()
            assert (fc.mean <= fc.quantile(0.95)).all()
            actual = truth[o : o + 24]
            inside80 += int(((actual >= fc.quantile(0.1)) & (actual <= fc.quantile(0.9))).sum())
            inside90 += int(((actual >= fc.quantile(0.05)) & (actual <= fc.quantile(0.95))).sum())
            n += 24
    assert 0.7 <= inside80 / n <= 0.9
    assert 0.82 <= inside90 / n <= 0.97


def test_intervals_are_calibrated_on_what_the_forecast_knew() -> None:
    # an accurate provider whose day arrives at 04:00: at 02:00 the forecast has none for
    # today (the own model's errors), at 04:00 it has it for every step to midnight
    truth = ar_daily(24 * 60, seed=5)
    provider = provider_of(truth, bias=0.0, noise=2.0)
    day = 24 * 50
    plan = plan_carbon_forecast(
        CarbonInputs(series(truth[: day + 2]), provider=provider), settings=SMALL
    )
    assert plan.provider_weight > 0, plan.reasons
    before = forecast_carbon(
        CarbonInputs(series(truth[: day + 2]), provider=provider), plan, horizon=24
    )
    after = forecast_carbon(
        CarbonInputs(series(truth[: day + 4]), provider=provider), plan, horizon=24
    )
    # the same plan and leads: pooling every origin's errors would give the same widths
    # (past lead 15, few backtest origins had the provider that far ahead: every state's
    # errors are pooled there)
    width_before = (before.quantile(0.9) - before.quantile(0.1))[:16]
    width_after = (after.quantile(0.9) - after.quantile(0.1))[:16]
    assert (width_after < width_before).all(), (width_before, width_after)
    assert (width_after[1:] < 0.6 * width_before[1:]).all(), (width_before, width_after)
    inside = (truth[day + 4 : day + 24] >= after.quantile(0.05)[:20]) & (
        truth[day + 4 : day + 24] <= after.quantile(0.95)[:20]
    )
    assert inside.mean() >= 0.7


def test_calibration_errors_are_of_steps_observed_before_the_origin() -> None:
    truth = ar_daily(24 * 60, seed=6)
    hist = series(truth[: 24 * 50 + 7])
    provider = provider_of(truth, bias=5.0, noise=4.0)
    plan = plan_carbon_forecast(CarbonInputs(hist, provider=provider), settings=SMALL)
    cal = plan.calibration
    assert cal.residuals.shape[0] >= 24 * 7 // SMALL.calibration_stride_steps
    step_end = cal.origin_s[:, None] + 3600.0 * (np.arange(cal.residuals.shape[1]) + 1)
    assert np.isfinite(cal.residuals).all()
    assert (step_end <= hist.end.timestamp()).all()
    # the newest error's step ends at the origin: nothing later exists to calibrate on
    assert step_end.max() == hist.end.timestamp()
    # the volatility of each origin comes from the steps before it
    first = round((cal.origin_s[0] - T0.timestamp()) / 3600)
    window = SMALL.volatility_window_steps
    expect = np.abs(truth[first - window : first] - truth[first - window - 24 : first - 24])
    assert cal.scale[0] == pytest.approx(expect.mean())


def test_calibration_edges() -> None:
    with pytest.raises(ValueError, match="interval_widening"):
        CarbonForecastSettings(interval_widening=0.0)
    with pytest.raises(ValueError, match="Calibration"):
        Calibration(
            residuals=np.zeros((2, 3)),
            states=np.zeros((2, 2), dtype=np.int64),
            origin_s=np.zeros(2),
            scale=np.ones(2),
        )
    # the calibration carries the knobs its forecasts apply it with, with or without errors
    knobs = replace(
        SMALL, interval_widening=1.3, calibration_min_points=40, volatility_window_steps=24
    )
    for hours in (24 * 50, 60):
        cal = plan_carbon_forecast(
            CarbonInputs(series(ar_daily(hours, seed=2))), settings=knobs
        ).calibration
        assert (cal.widening, cal.min_points, cal.volatility_window_steps) == (1.3, 40, 24)
    # too little history for a backtest: no errors to calibrate on, zero-width intervals
    inputs = CarbonInputs(series(ar_daily(60, seed=1)))
    plan = plan_carbon_forecast(inputs, settings=SMALL)
    assert plan.calibration.residuals.size == 0
    assert plan.calibration.scale_floor == 1.0
    fc = forecast_carbon(inputs, plan, horizon=6)
    np.testing.assert_array_equal(fc.quantile(0.05), fc.mean)
    np.testing.assert_array_equal(fc.quantile(0.95), fc.mean)


def test_scores_on_a_hand_computed_case() -> None:
    truth = np.array([[100.0, 200.0, 300.0]])
    sc = score_forecasts(
        truth,
        np.array([[110.0, 190.0, 330.0]]),
        np.array([[150.0, 150.0, 150.0]]),
        bands={0.1: truth - 5, 0.9: truth + 5, 0.05: truth - 50, 0.95: truth + 50},
    )
    assert sc.mae == pytest.approx(50 / 3)
    assert sc.naive_mae == pytest.approx(250 / 3)
    assert sc.relative_mae == pytest.approx(0.2)
    assert sc.mape_percent == pytest.approx(100 * (0.1 + 0.05 + 0.1) / 3)
    assert sc.rank_correlation == pytest.approx(1.0)
    assert (sc.coverage_80_percent, sc.coverage_90_percent) == (100.0, 100.0)


def _later(ks: KnownSeries, *, after: float, by: float = 3600.0) -> KnownSeries:
    """Every value that became known after `after` (epoch s) becomes known `by` later."""
    known = np.where(ks.known_s > after, ks.known_s + by, ks.known_s)
    return KnownSeries(
        start=ks.start, step=ks.step, values=ks.values, known_s=known, columns=ks.columns
    )


def test_an_input_known_an_hour_later_never_changes_an_earlier_forecast() -> None:
    truth = daily(24 * 50, noise=4.0)
    provider = provider_of(truth, bias=30.0, noise=5.0)
    rng = np.random.default_rng(7)
    t = np.arange(truth.size) * 3600.0 + T0.timestamp()
    wx = KnownSeries(
        start=T0,
        step=H,
        values=np.column_stack(
            [truth / 100 + rng.normal(0, 0.1, truth.size), truth + rng.normal(0, 20, truth.size)]
        ),
        # weather from 04:00 of its day; a wind forecast published at 17:00 the day before
        known_s=np.column_stack([provider.known_s[:, 0], np.floor(t / 86400) * 86400 - 7 * 3600]),
        columns=("wind", "wind_da"),
    )
    fast = CarbonForecastSettings(
        horizon_steps=24, backtest_origins=6, origin_stride_steps=25, train_steps=24 * 14
    )
    for hours in (24 * 45 + 2, 24 * 46 + 13, 24 * 46 + 18):
        hist = series(truth[:hours])
        origin_s = hist.end.timestamp()
        base = CarbonInputs(hist, provider=provider, exog=wx)
        plan = plan_carbon_forecast(base, settings=fast)
        fc = forecast_carbon(base, plan, horizon=24)
        late = CarbonInputs(
            hist, provider=_later(provider, after=origin_s), exog=_later(wx, after=origin_s)
        )
        late_fc = forecast_carbon(late, plan_carbon_forecast(late, settings=fast), horizon=24)
        np.testing.assert_array_equal(fc.mean, late_fc.mean)
        for q in fc.quantiles:
            np.testing.assert_array_equal(fc.quantile(q), late_fc.quantile(q))
    # the test can fail: the same shift applied to values known before the origin shows
    hist = series(truth[: 24 * 45 + 6])
    base = CarbonInputs(hist, provider=provider)
    plan = plan_carbon_forecast(base, settings=fast)
    shifted = CarbonInputs(
        hist, provider=_later(provider, after=hist.end.timestamp() - 3 * 3600, by=3 * 3600)
    )
    assert not np.array_equal(
        forecast_carbon(base, plan, horizon=24).mean,
        forecast_carbon(shifted, plan, horizon=24).mean,
    )


def test_the_exog_model_is_used_when_its_newest_inputs_are_not_known_yet() -> None:
    # an input at a negative lag reaches into tomorrow, whose values arrive at 04:00: the
    # last steps before the origin have no exog yet; the fit must leave those steps out,
    # not lose the exog model (the forecast was the seasonal naive under its name)
    rng = np.random.default_rng(5)
    n = 24 * 60
    wind = np.zeros(n)
    for i in range(1, n):
        wind[i] = 0.5 * wind[i - 1] + rng.normal(0, 1.0)
    truth = daily(n) - 40 * wind
    t = np.arange(n) * 3600.0 + T0.timestamp()
    wx = KnownSeries(
        start=T0 + 3 * H,  # each row is labelled 3 h after the instant it describes
        step=H,
        values=wind[:, None],
        known_s=np.floor((t + 3 * 3600) / 86400) * 86400 + 4 * 3600,
        columns=("wind",),
    )
    settings = CarbonForecastSettings(
        horizon_steps=24,
        backtest_origins=12,
        origin_stride_steps=25,
        train_steps=24 * 21,
        weather_lags=(-3, 0),
    )
    origin = 24 * 55  # midnight: tomorrow's rows (lag -3 h) are not known
    inputs = CarbonInputs(series(truth[:origin]), exog=wx)
    plan = plan_carbon_forecast(inputs, settings=settings)
    assert plan.weather_lags == (-3,)
    assert plan.own == "regression+exog", plan.reasons
    assert "regression+exog" in plan.fits
    at = 24 * 55 + 6
    fc = forecast_carbon(CarbonInputs(series(truth[:at]), exog=wx), plan, horizon=18)
    assert fc.model == "regression+exog"
    naive_err = np.abs(seasonal_naive(truth, at, 18) - truth[at : at + 18]).mean()
    assert np.abs(fc.mean - truth[at : at + 18]).mean() < naive_err / 2


#: The plan settings of the `_wind_inputs` tests.
WIND_SETTINGS = CarbonForecastSettings(
    horizon_steps=24,
    backtest_origins=8,
    origin_stride_steps=25,
    train_steps=24 * 21,
    weather_lags=(0,),
)


def _wind_inputs(n: int, *, da_known_before_midnight_s: float) -> tuple[np.ndarray, KnownSeries]:
    """Intensity driven by wind; two inputs: a noisy weather column known from 04:00 of its
    day, and a day-ahead wind forecast known `da_known_before_midnight_s` before its day."""
    rng = np.random.default_rng(11)
    wind = np.zeros(n)
    for i in range(1, n):
        wind[i] = 0.9 * wind[i - 1] + rng.normal(0, 1.0)
    truth = daily(n) - 40 * wind
    t = np.arange(n) * 3600.0 + T0.timestamp()
    day = np.floor(t / 86400) * 86400
    return truth, KnownSeries(
        start=T0,
        step=H,
        values=np.column_stack([wind + rng.normal(0, 2.0, n), wind + rng.normal(0, 0.2, n)]),
        known_s=np.column_stack([day + 4 * 3600, day - da_known_before_midnight_s]),
        columns=("weather", "wind_da"),
    )


@pytest.mark.parametrize(
    ("known_hours_before_midnight", "early"),
    [
        pytest.param((-4.0, 7.0), (1,), id="wind forecast the evening before"),
        pytest.param((-4.0, -4.0), (), id="published alike"),
        pytest.param((-4.0, None), (), id="a column known at once"),
    ],
)
def test_early_columns_are_those_published_furthest_ahead(
    known_hours_before_midnight: tuple[float, float | None], early: tuple[int, ...]
) -> None:
    t = np.arange(72) * 3600.0 + T0.timestamp()
    day = np.floor(t / 86400) * 86400
    known = [
        np.full(72, -np.inf) if h is None else day - h * 3600 for h in known_hours_before_midnight
    ]
    ks = KnownSeries(
        start=T0,
        step=H,
        values=np.ones((72, 2)),
        known_s=np.column_stack(known),
        columns=("a", "b"),
    )
    assert _early_columns(ks) == early


def test_an_input_published_the_day_before_is_used_for_tomorrow() -> None:
    # at 20:00 tomorrow's weather is not known, the day-ahead wind forecast is (published at
    # 17:00): tomorrow's hours come from a fit on that input alone, not the history-only
    # regression; the same input known only from 04:00 (like the weather) cannot do that
    at = 24 * 40 + 20
    errors = {}
    for name, before in (("the day before", 7 * 3600.0), ("from 04:00", -4 * 3600.0)):
        truth, wx = _wind_inputs(24 * 42, da_known_before_midnight_s=before)
        inputs = CarbonInputs(series(truth[:at]), exog=wx)
        plan = plan_carbon_forecast(inputs, settings=WIND_SETTINGS)
        assert plan.own == "regression+exog", plan.reasons
        fc = forecast_carbon(inputs, plan, horizon=24)
        tomorrow = slice(4, 24)
        errors[name] = np.abs(fc.mean[tomorrow] - truth[at : at + 24][tomorrow]).mean()
    assert errors["the day before"] < errors["from 04:00"] / 2, errors


@pytest.mark.parametrize("seam", [pytest.param(0.0, id="no carry"), pytest.param(6.0, id="6 h")])
def test_the_own_model_carries_on_from_where_the_provider_ends(seam: float) -> None:
    # day 48's provider values end at 23:00; the own model takes over from there, the
    # provider's difference fading with the seam half-life (0: a level jump)
    truth = daily(24 * 50, noise=4.0)
    o = 24 * 48 + 6
    hist = series(truth[:o])
    provider = provider_of(truth, bias=80.0, noise=0.0)
    settings = replace(SMALL, horizon_steps=36, seam_half_life_steps=seam)
    plan = plan_carbon_forecast(CarbonInputs(hist, provider=provider), settings=settings)
    given = replace(plan, provider_weight=1.0, half_life_steps=None)
    fc = forecast_carbon(CarbonInputs(hist, provider=provider), given, horizon=36)
    own = forecast_carbon(CarbonInputs(hist), plan, horizon=36).mean
    np.testing.assert_allclose(fc.mean[:18], truth[o : o + 18] + 80.0)
    gap = np.arange(1, 19)
    np.testing.assert_allclose(
        fc.mean[18:], own[18:] + (fc.mean[17] - own[17]) * (0.5 ** (gap / seam) if seam else 0)
    )
    with pytest.raises(ValueError, match="seam_half_life_steps"):
        CarbonForecastSettings(seam_half_life_steps=-1)


def test_a_forecast_keeps_the_plans_early_columns_when_publication_leads_change() -> None:
    # planned with the day-ahead wind forecast published the evening before (the early
    # column); later the weather column is published even earlier. The early-inputs fit was
    # made on the wind column: the forecast must keep using it on that column (choosing the
    # columns again from the new leads would feed the weather to the wind fit), so it equals
    # the forecast whose weather is published with the wind forecast
    at = 24 * 40 + 20
    truth, wx = _wind_inputs(24 * 45, da_known_before_midnight_s=7 * 3600.0)
    plan = plan_carbon_forecast(CarbonInputs(series(truth[:at]), exog=wx), settings=WIND_SETTINGS)
    assert plan.own == "regression+exog", plan.reasons
    assert (plan.exog_columns, plan.early_columns) == (("weather", "wind_da"), (1,))
    later = at + 30  # 02:00: today's wind forecast is known, tomorrow's is not
    hist = series(truth[:later])
    day = np.floor(wx.known_s[:, 1] / 86400) * 86400
    weather_first = replace(wx, known_s=np.column_stack([day - 2 * 86400, wx.known_s[:, 1]]))
    assert _early_columns(weather_first) == (0,)
    weather_with_wind = replace(wx, known_s=np.column_stack([wx.known_s[:, 1]] * 2))
    fc = forecast_carbon(CarbonInputs(hist, exog=weather_first), plan, horizon=24)
    alike = forecast_carbon(CarbonInputs(hist, exog=weather_with_wind), plan, horizon=24)
    assert fc.model == alike.model == "regression+exog"
    known = np.isfinite(weather_first.on(hist.end, 24, at=hist.end))
    assert known[:, 0].all()
    assert not known[:, 1].all()  # steps only the weather reaches
    np.testing.assert_array_equal(fc.mean, alike.mean)
    for q in fc.quantiles:
        np.testing.assert_array_equal(fc.quantile(q), alike.quantile(q))
    # inputs that are not the planned columns are left out: the regression, under its name
    renamed = replace(wx, columns=("weather", "wind_forecast"))
    fallback = forecast_carbon(CarbonInputs(hist, exog=renamed), plan, horizon=24)
    assert fallback.model == "regression"
    np.testing.assert_array_equal(
        fallback.mean, forecast_carbon(CarbonInputs(hist), plan, horizon=24).mean
    )
