"""Replay on a tiny hand-computed scenario: every policy's gCO2, SLO and deadline figures.

Aspects: static/HPA/KEDA-ceiling/oracle replicas; gridshift's eco and performance targets come
from the real `ScalerLoop.tick()`; the elastic plan; the scoring rule; the summary's savings.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.series import RegularSeries
from scaler.core.policy import PolicyParams
from scaler.core.workload import ElasticSpec, WorkloadClass
from scaler.loop import LoopSettings
from scaler.replay.engine import CarbonForecastSetup, run_replay
from scaler.replay.model import (
    HpaParams,
    Job,
    KedaParams,
    PolicyName,
    ReplayResult,
    ReplayScenario,
    ReplayWorkload,
)
from scaler.replay.summary import summarise
from tests.workloads import trace_workload

H = timedelta(hours=1)
START = datetime(2026, 3, 2, tzinfo=UTC)  # hour 0 of a day
HISTORY_DAYS = 3
P = PolicyName

# Daily carbon patterns (the same every day, so a 24 h seasonal-naive forecast is exact):
# hours 0..5 as listed, 350 g/kWh for the rest of the day.
CARBON_A = [100.0, 200.0, 300.0, 400.0, 500.0, 600.0]
CARBON_B = [400.0, 100.0, 300.0, 200.0, 500.0, 500.0]
DEMAND = [18.0, 18.0, 36.0, 36.0, 18.0, 18.0]  # history: 18 every hour


def _daily(pattern: list[float], *, days: int) -> np.ndarray:
    day = np.full(24, 350.0)
    day[: len(pattern)] = pattern
    return np.tile(day, days)


def _scenario() -> ReplayScenario:
    hist_start = START - timedelta(days=HISTORY_DAYS)
    demand = np.concatenate([np.full(24 * HISTORY_DAYS, 18.0), DEMAND])
    web = ReplayWorkload(
        trace_workload("web", "A"),
        RegularSeries(start=hist_start, step=H, values=demand, unit="req/s"),
    )
    job = Job(START, START + 4 * H, 2 * 3600.0)
    batch = ReplayWorkload(
        trace_workload(
            "batch",
            "B",
            min_replicas=0,
            max_replicas=2,
            workload_class=WorkloadClass.ELASTIC,
            elastic=ElasticSpec(1.0, START + 6 * H, (1.0,)),
        ),
        jobs=(job,),
        base_replicas=1,
    )
    carbon = {
        r: RegularSeries(start=hist_start, step=H, values=_daily(p, days=HISTORY_DAYS + 1), unit="")
        for r, p in (("A", CARBON_A), ("B", CARBON_B))
    }
    return ReplayScenario(
        name="hand",
        start=START,
        end=START + 6 * H,
        step=H,
        workloads=(web, batch),
        carbon=carbon,
        hpa=HpaParams(target_utilisation=1.0),
        keda=KedaParams((1.0, 0.5)),
    )


def _run() -> ReplayResult:
    params = PolicyParams(
        decision_step=H,
        scale_up_lead=timedelta(0),
        elastic_slot=H,
        max_step_replicas=100,
    )
    settings = LoopSettings(
        load_step=H, load_history=timedelta(days=2), tick_history=timedelta(days=2)
    )
    return run_replay(
        _scenario(),
        params=params,
        loop_settings=settings,
        carbon_forecast=CarbonForecastSetup(),
        load_forecaster=SeasonalNaive(24),
        refit_every=timedelta(days=1),  # one fit on the flat history: no spread
    )


@pytest.fixture(scope="module")
def result() -> ReplayResult:
    return _run()


def _g(replicas: list[int]) -> float:
    """Interactive gCO2 of `web` (cap 10, idle 50 W, busy 100 W, 1 h intervals, region A)."""
    total = 0.0
    for r, d, c in zip(replicas, DEMAND, CARBON_A, strict=True):
        watts = r * 50.0 + 50.0 * min(d, 10.0 * r) / 10.0
        total += watts / 1000.0 * c
    return total


def test_interactive_policies_match_the_hand_computation(result: ReplayResult) -> None:
    """Hand computation (demand 18 everywhere in the history, then 18 18 36 36 18 18;
    capacity 10 per replica; region A carbon 100..600 in these hours, 350 otherwise):

    - oracle ceil(d/10)                      = 2 2 4 4 2 2, no violation
    - static: peak 36 -> 4                   = 4 4 4 4 4 4, no violation
    - HPA (target 1.0, tolerance 0.1, sees the previous hour): starts at ceil(18/10)=2;
      18/20 = 0.9 is within tolerance -> 2 2 2; then sees 36: ratio 1.8 -> ceil(3.6)=4;
      36/40 = 0.9 keeps 4; sees 18: 0.45 -> 2   = 2 2 2 4 4 2, violation at hour 2 (36 > 20)
    - KEDA ceilings: 2 buckets of [100, 600] (thresholds 350, 600), caps 4 and 0.5 x 4 = 2
      -> 4 4 4 2 2 2; the HPA under them      = 2 2 2 2 2 2, violations at hours 2, 3
    - gridshift performance: the load forecast is the value a day earlier (18, no spread):
      ceil(18 x 1.2 / 10) = ceil(2.16) = 3      = 3 3 3 3 3 3, violations at hours 2, 3
    - gridshift eco: the coming hour's carbon is percentile 2, 6, 10, 90, 94, 98 of the day
      ahead (enter eco at 70) -> eco from hour 3: max(18 x 1.1, 18 x 1.05) / 10 -> 2
                                              = 3 3 3 2 2 2, violations at hours 2, 3
    gCO2 per hour = (r x 50 W + 5 W x served) / 1000 x intensity; e.g. the oracle:
    (190 x 100 + 190 x 200 + 380 x 300 + 380 x 400 + 190 x 500 + 190 x 600) / 1000 = 532;
    static 290 290 380 380 290 290 W -> 672; HPA 190 190 200 380 290 190 W -> 528 (hour 2
    serves only 20); KEDA 190 190 200 200 190 190 W -> 406; performance 240 240 300 300 240
    240 W -> 546; eco 240 240 300 200 190 190 W -> 451
    """
    expected = {
        P.ORACLE: ([2, 2, 4, 4, 2, 2], 0, 532.0),
        P.STATIC: ([4, 4, 4, 4, 4, 4], 0, 672.0),
        P.HPA: ([2, 2, 2, 4, 4, 2], 1, 528.0),
        P.KEDA_CARBON: ([2, 2, 2, 2, 2, 2], 2, 406.0),
        P.GRIDSHIFT_PERFORMANCE: ([3, 3, 3, 3, 3, 3], 2, 546.0),
        P.GRIDSHIFT: ([3, 3, 3, 2, 2, 2], 2, 451.0),
    }
    for policy, (replicas, violations, grams) in expected.items():
        o = result.outcomes[policy]["web"]
        assert o.replicas[:6].tolist() == replicas, policy
        assert o.slo_violations == violations, policy
        assert o.emitted_g == pytest.approx(grams), policy
        assert o.emitted_g == pytest.approx(_g(replicas)), policy


def test_elastic_policies_match_the_hand_computation(result: ReplayResult) -> None:
    """One job: 2 replica-hours of work (throughput 1/s per replica, linear), at most 2
    replicas, due 4 h after submission; busy 100 W; region B carbon 400 100 300 200 in its
    window.

    - static (1 replica from submission): hours 0, 1 -> 0.1 kWh x (400 + 100) = 50 g, done 2 h
    - hpa (2 replicas as soon as possible): hour 0 -> 0.2 kWh x 400 = 80 g, done 1 h
    - gridshift performance (the loop's carbon-unaware shadow): the same 80 g
    - keda-carbon: buckets of [100, 500] (thresholds 300, 500): 400 -> cap 1, 100 -> cap 2;
      hour 0 at 1 replica (40 g, half the work), hour 1 at 2 replicas for half an hour
      (0.1 kWh x 100 = 10 g) -> 50 g, done 1.5 h
    - oracle: the 4 increments (hour, replica) by gCO2 per work: both replicas of hour 1
      -> 0.2 kWh x 100 = 20 g, done 2 h
    - gridshift (the loop's greedy plan on an exact forecast): 0 replicas at hour 0, 2 at
      hour 1 -> 20 g, done 2 h
    """
    expected = {
        P.STATIC: (50.0, 2.0),
        P.HPA: (80.0, 1.0),
        P.GRIDSHIFT_PERFORMANCE: (80.0, 1.0),
        P.KEDA_CARBON: (50.0, 1.5),
        P.ORACLE: (20.0, 2.0),
        P.GRIDSHIFT: (20.0, 2.0),
    }
    for policy, (grams, done_h) in expected.items():
        o = result.outcomes[policy]["batch"]
        (job,) = o.jobs
        assert job.emitted_g == pytest.approx(grams), policy
        assert job.completed_at == START + timedelta(hours=done_h), policy
        assert not job.missed
        assert o.deadline_misses == 0


def test_summary_savings_and_oracle_gap(result: ReplayResult) -> None:
    s = summarise(result)
    gridshift = s["policies"]["gridshift"]
    static = s["policies"]["static"]
    oracle = s["policies"]["oracle"]
    assert gridshift["emitted_g"] == pytest.approx(451.0 + 20.0)
    assert static["emitted_g"] == pytest.approx(672.0 + 50.0)
    assert oracle["emitted_g"] == pytest.approx(532.0 + 20.0)
    assert gridshift["saving_vs"]["static"] == pytest.approx(100 * (1 - 471 / 722))
    assert gridshift["oracle_gap_percent"] == pytest.approx(100 * (471 - 552) / 552)
    assert gridshift["oracle_share_percent"] == pytest.approx(100 * (722 - 471) / (722 - 552))
    assert gridshift["slo_violations"] == 2
    assert gridshift["slo_intervals"] == 6
    assert s["workloads"]["batch"]["policies"]["oracle"]["deadline_misses"] == 0
