"""Forecast accuracy and cost on the real traces in ../shared/data (skipped when absent).

Aspects (carbon forecasts are in test_carbon_forecast_benchmarks.py): Wikipedia load 2012 (MASE vs
the better seasonal naive, p05-p95 coverage); cargo CI merges with and without CI-schedule
regressors; fit/predict seconds and peak memory per model. Run with `make bench`; timings
are on a shared machine.
"""

from __future__ import annotations

import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasts.backtest import backtest, run_backtests, select_model
from forecasts.forecast import Forecaster
from forecasts.models import ETS, ProphetModel, Sarimax, SeasonalNaive, SeasonalRegression
from forecasts.series import RegularSeries
from forecasts.sources.csv_series import read_csv_series
from forecasts.time import to_epoch_s

# Benchmarks run under `make bench` (no marker filter); `slow` keeps them out of `make unit`.
pytestmark = pytest.mark.slow

CARBONCAST_DAY1_MAPE = {"CISO": 9.7, "PJM": 2.7, "ERCO": 11.5}
ENSEMBLE = "ensembleci-grid-carbon-intensity-hourly/grid_carbon_intensity_hourly_2019_2022.csv"
GRIDS = ("CISO", "PJM", "ERCO", "DE", "ES", "NL", "PL", "SE")


def index_of(series: RegularSeries, at: datetime) -> int:
    return round((to_epoch_s(at) - to_epoch_s(series.start)) / series.step.total_seconds())


def carbon_models() -> list[Forecaster]:
    return [SeasonalNaive(24), SeasonalRegression()]


def test_wikipedia_load_2012(shared_data: Path) -> None:
    path = shared_data / "wikipedia-de-hourly-pageviews/dewiki_hourly_requests_2007_2012.csv"
    raw = read_csv_series(path)
    # SOURCE.md: counts below 100,000 are incomplete dumps; treat them as missing.
    values = np.where(raw.values < 100_000, np.nan, raw.values)
    series = RegularSeries(start=raw.start, step=raw.step, values=values, unit="requests")
    first = index_of(series, datetime(2012, 1, 1, tzinfo=UTC))
    origins = list(range(first, len(series) - 24 + 1, 24))
    models: list[Forecaster] = [SeasonalNaive(24), SeasonalNaive(168), SeasonalRegression()]
    t0 = time.perf_counter()
    results = run_backtests(
        series,
        models,
        origins=origins,
        horizon=24,
        train_steps=24 * 7 * 16,
        mase_periods=(24, 168),
    )
    secs = time.perf_counter() - t0
    print(f"\nWikipedia (de) hourly requests 2012, 24 h horizon, {len(origins)} daily origins")
    print(
        f"{'model':<22}{'MAPE%':>8}{'MASE24':>8}{'MASE168':>9}{'MASEbest':>9}{'cov80':>7}{'cov90':>7}"
    )
    for name, r in results.items():
        s = r.scores
        print(
            f"{name:<22}{s.mape_pct:>8.2f}{s.mase[24]:>8.3f}{s.mase[168]:>9.3f}"
            f"{s.mase_worst_baseline:>9.3f}{s.coverage[0.8]:>7.2f}{s.coverage[0.9]:>7.2f}"
        )
    print(f"selected: {select_model(results).model}; {secs:.1f} s")
    ours = results["seasonal_regression"].scores
    assert ours.mase_worst_baseline < 0.9
    assert 0.85 <= ours.coverage[0.9] <= 0.95


def cron_working_hours(epoch_s: np.ndarray) -> np.ndarray:
    """Regressors from the cron `0 9-17 * * 1-5` (UTC): in-window flag and weekday flag."""
    stamps = pd.to_datetime(epoch_s, unit="s")
    weekday = stamps.day_of_week < 5
    hours = (stamps.hour >= 9) & (stamps.hour <= 17)
    return np.column_stack([(weekday & hours).astype(float), weekday.astype(float)])


def test_ci_regressors_cargo(shared_data: Path) -> None:
    path = shared_data / "ci-merge-events-rust-cargo/cargo_ci_merge_events_2014_2024.csv"
    events = pd.read_csv(path)
    stamps = pd.to_datetime(events["timestamp_utc"], utc=True, format="ISO8601")
    hours = stamps.dt.floor("h")
    start = pd.Timestamp("2018-01-01", tz="UTC")
    end = pd.Timestamp("2020-01-01", tz="UTC")
    index = pd.date_range(start, end, freq="h", inclusive="left")
    counts = np.asarray(hours.value_counts().reindex(index, fill_value=0), dtype=np.float64)
    series = RegularSeries(
        start=start.to_pydatetime(), step=index[1] - index[0], values=counts, unit="merges"
    )
    exog = cron_working_hours(series.epoch_s())
    first = index_of(series, datetime(2019, 1, 1, tzinfo=UTC))
    origins = list(range(first, len(series) - 24 + 1, 24 * 3))
    rows = []
    for label, model, ex in (
        ("regression", SeasonalRegression(), None),
        ("regression+cron", SeasonalRegression(), exog),
        ("sarimax", Sarimax(), None),
        ("sarimax+cron", Sarimax(), exog),
    ):
        refit = 1 if label.startswith("regression") else 7
        r = backtest(
            series,
            model,
            origins=origins,
            horizon=24,
            exog=ex,
            refit_every=refit,
            train_steps=24 * 7 * 16,
        )
        rows.append((label, r.scores))
    naive = backtest(series, SeasonalNaive(168), origins=origins, horizon=24).scores
    print(f"\nCargo merges per hour, 2019, 24 h horizon, {len(origins)} origins (every 3 days)")
    print(f"{'model':<18}{'MAE':>8}{'RMSE':>8}{'MASE24':>8}")
    for label, s in [*rows, ("seasonal_naive_168", naive)]:
        print(f"{label:<18}{s.mae:>8.4f}{s.rmse:>8.4f}{s.mase[24]:>8.3f}")
    for base in ("regression", "sarimax"):
        without = dict(rows)[base].mae
        with_ci = dict(rows)[f"{base}+cron"].mae
        print(f"{base}: CI regressors change MAE by {100 * (with_ci / without - 1):+.2f} %")


@pytest.mark.parametrize(
    "model",
    [SeasonalNaive(24), SeasonalRegression(), ETS(), Sarimax(), ProphetModel()],
    ids=lambda m: m.name,
)
def test_cost_per_model(shared_data: Path, model: Forecaster) -> None:
    series = read_csv_series(shared_data / ENSEMBLE, region="DE", column="gco2_per_kwh_direct")
    first = index_of(series, datetime(2021, 7, 1, tzinfo=UTC))
    origins = list(range(first, first + 24 * 5, 24))
    r = backtest(series, model, origins=origins, horizon=24, train_steps=24 * 7 * 16)
    # Memory in a second run: tracemalloc slows Python-heavy code, so it must not be timed.
    tracemalloc.start()
    backtest(series, model, origins=origins[:1], horizon=24, train_steps=24 * 7 * 16)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    s = r.scores
    print(
        f"\ncost {model.name:<22} fit {s.fit_seconds:8.3f} s  predict {s.predict_seconds:7.4f} s"
        f"  peak {peak / 2**20:7.1f} MiB (tracemalloc, Python allocations)  MAE {s.mae:.2f}"
    )
