"""Benchmark: one scaler tick for 500 workloads with fitted models (< 1 s, < 400 MB
resident) and one refit of all 500 (must fit in the refit period on 2 cores).

Aspects: tick wall time (median of several ticks), peak resident memory (VmHWM), refit time.
Model: `forecast.load_model=auto` (per-workload backtest between the daily seasonal naive and
the seasonal regression at each refit, on 5-minute load steps). Inputs: SAMPLE DATA sources
(in-process generators), so the figures measure gridshift's own work, not network latency.
Run with `make bench`; prints the figures and their ratio to the targets.
"""

from __future__ import annotations

import collections
import multiprocessing
import statistics
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from config.settings import (
    CiScheduleSettings,
    LoadSourceSettings,
    ScalerSettings,
    Settings,
    TargetSettings,
    WorkloadSettings,
)
from config.wiring import build_scaler, workload_from
from forecasts.forecast import Forecaster
from forecasts.series import RegularSeries
from forecasts.sources.sample import SAMPLE_REGIONS, SampleCarbonSource, SampleLoadSource
from forecasts.time import FrozenClock
from scaler.core.policy import PolicyParams
from scaler.loop import ScalerLoop
from scaler.snapshot import SnapshotHolder

pytestmark = pytest.mark.slow  # `make bench` runs it; `make unit` skips it

N_WORKLOADS = 500
TICK_TARGET_S = 1.0
RSS_TARGET_MB = 400.0


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise AssertionError(f"{field} not in /proc/self/status")


def _settings(n: int) -> Settings:
    workloads = tuple(
        WorkloadSettings(
            name=f"w{i:03d}",
            target=TargetSettings(name=f"w{i:03d}"),
            load=LoadSourceSettings(trace=f"sample:w{i:03d}"),
            capacity_per_replica=10.0,
            min_replicas=1,
            max_replicas=50,
            region=SAMPLE_REGIONS[i % len(SAMPLE_REGIONS)],
            ci_schedules=(
                (CiScheduleSettings(cron="0 */4 * * 1-5", extra_load=20.0),) if i % 5 == 0 else ()
            ),
        )
        for i in range(n)
    )
    return Settings(scaler=ScalerSettings(workloads=workloads))


def test_tick_500_workloads() -> None:
    start = datetime(2026, 11, 23, 9, tzinfo=UTC)
    clock = FrozenClock(start)
    registry = CollectorRegistry()
    built = build_scaler(
        _settings(N_WORKLOADS),
        clock=clock,
        registry=registry,
        carbon=SampleCarbonSource(),
        load=SampleLoadSource(),
    )
    t0 = time.perf_counter()
    report = built.loop.refit()
    refit_s = time.perf_counter() - t0
    assert report.fitted == N_WORKLOADS
    durations = []
    for _ in range(7):
        clock.advance(timedelta(minutes=1))
        t0 = time.perf_counter()
        snap = built.loop.tick()
        durations.append(time.perf_counter() - t0)
        assert len(snap.workloads) == N_WORKLOADS
    t0 = time.perf_counter()
    text = generate_latest(registry)
    scrape_s = time.perf_counter() - t0
    assert b"gridshift_desired_replicas" in text
    tick_s = statistics.median(durations)
    peak_mb = _rss_mb("VmHWM")
    chosen = collections.Counter(ws.load_model for ws in snap.workloads.values())
    failed = [n for n, ws in snap.workloads.items() if any("failed" in r for r in ws.reasons)]
    assert not failed, f"forecasts failed in the timed tick: {failed[:5]}"
    assert all(ws.load_forecast for ws in snap.workloads.values())
    refit_period_s = 3600.0
    print(
        f"\n[bench scaler] forecast.load_model=auto (backtest selection per workload at refit; "
        f"chosen: {dict(chosen)}), {N_WORKLOADS} workloads\n"
        f"  tick: median {tick_s:.3f} s, max {max(durations):.3f} s "
        f"(target < {TICK_TARGET_S} s, ratio {tick_s / TICK_TARGET_S:.2f})\n"
        f"  peak RSS: {peak_mb:.0f} MB (target < {RSS_TARGET_MB:.0f} MB, "
        f"ratio {peak_mb / RSS_TARGET_MB:.2f})\n"
        f"  refit all {N_WORKLOADS}: {refit_s:.3f} s on one core "
        f"(period {refit_period_s:.0f} s, ratio {refit_s / refit_period_s:.5f})\n"
        f"  /metrics scrape: {scrape_s:.3f} s, {len(text) / 1024:.0f} KiB"
    )
    assert tick_s < TICK_TARGET_S
    assert peak_mb < RSS_TARGET_MB
    assert refit_s < refit_period_s


@dataclass(frozen=True)
class _HoltWintersFit:
    params: dict[str, float]


@dataclass(frozen=True)
class _HoltWintersForBench:
    """Holt-Winters (statsmodels, additive daily season) as a stand-in for the heavier models:
    only `fit` is timed here."""

    period: int = 288
    name: str = "holt_winters_bench"

    def fit(self, history: RegularSeries, *, exog=None, seed: int = 0) -> _HoltWintersFit:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        model = ExponentialSmoothing(
            history.values,
            seasonal="add",
            seasonal_periods=self.period,
            initialization_method="heuristic",
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = model.fit()
        return _HoltWintersFit(
            {k: float(np.ravel(v)[0]) for k, v in res.params.items() if v is not None}
        )


def test_refit_on_two_cores() -> None:
    """All 500 SeasonalNaive refits on a 2-process pool, and Holt-Winters on a sample of 40
    workloads extrapolated to 500 (2 processes)."""
    clock = FrozenClock(datetime(2026, 11, 23, 9, tzinfo=UTC))
    settings = _settings(N_WORKLOADS)
    holder = SnapshotHolder()
    workloads = [workload_from(w) for w in settings.scaler.workloads]
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        pool.submit(int, 0).result()  # start the workers outside the timing
        loop = ScalerLoop(
            workloads,
            carbon=SampleCarbonSource(),
            load=SampleLoadSource(),
            clock=clock,
            holder=holder,
            params=PolicyParams(),
        )
        t0 = time.perf_counter()
        report = loop.refit(executor=pool)
        naive_s = time.perf_counter() - t0
        assert report.fitted == N_WORKLOADS
        sample = 40
        hw_loop = ScalerLoop(
            workloads[:sample],
            carbon=SampleCarbonSource(),
            load=SampleLoadSource(),
            clock=clock,
            holder=holder,
            params=PolicyParams(),
            forecaster=cast(Forecaster, _HoltWintersForBench()),  # only fit() is exercised
        )
        t0 = time.perf_counter()
        hw_report = hw_loop.refit(executor=pool)
        hw_s = time.perf_counter() - t0
        assert hw_report.fitted == sample, hw_report
    hw_500 = hw_s * N_WORKLOADS / sample
    print(
        f"\n[bench scaler refit, 2 processes] SeasonalNaive x{N_WORKLOADS}: {naive_s:.2f} s; "
        f"Holt-Winters x{sample}: {hw_s:.2f} s -> x{N_WORKLOADS} about {hw_500:.0f} s "
        f"(refit period 3600 s, ratio {hw_500 / 3600:.3f})"
    )
    assert naive_s < 3600
    assert hw_500 < 3600
