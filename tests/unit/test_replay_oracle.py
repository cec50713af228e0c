"""The oracle is never beaten: property tests over random small scenarios.

Aspects: interactive (per interval and in total, against every policy that served the demand
in that interval / throughout); elastic (per job, against every policy that met the
deadline); the fractional greedy equals a brute-force optimum on tiny jobs.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.series import RegularSeries
from forecasts.sources.forecast_traces import known_ahead
from scaler.core.policy import PolicyParams
from scaler.core.workload import ElasticSpec, PowerModel, Workload, WorkloadClass
from scaler.loop import LoopSettings
from scaler.replay.engine import CarbonForecastSetup, run_replay
from scaler.replay.model import Job, PolicyName, ReplayScenario, ReplayWorkload
from scaler.replay.policies import oracle_job, run_job
from tests.workloads import trace_workload

H = timedelta(hours=1)
START = datetime(2026, 5, 4, tzinfo=UTC)
HIST = 48


def _wl(name: str, region: str, **kw: object) -> Workload:
    return trace_workload(
        name, region, **{"max_replicas": 12, "power": PowerModel(40.0, 120.0), **kw}
    )


@st.composite
def scenarios(draw: st.DrawFn) -> ReplayScenario:
    n = draw(st.integers(3, 6))
    total = HIST + n + 8
    pos = st.floats(10.0, 900.0, allow_nan=False)
    carbon = {r: np.array(draw(st.lists(pos, min_size=total, max_size=total))) for r in ("A", "B")}
    demand = np.array(draw(st.lists(st.floats(0.0, 110.0), min_size=HIST + n, max_size=HIST + n)))
    hist_start = START - HIST * H
    profile = tuple(
        sorted(draw(st.lists(st.floats(0.3, 1.0), min_size=1, max_size=3)), reverse=True)
    )
    max_r = draw(st.integers(1, 4))
    window = draw(st.integers(2, 6))
    spec = ElasticSpec(1.0, START + (n + 8) * H, profile)
    capacity = spec.throughput(max_r) * window * 3600.0
    work = draw(st.floats(0.1, 0.95)) * capacity
    submit = draw(st.integers(0, n - 1))
    job = Job(START + submit * H, START + (submit + window) * H, work)
    return ReplayScenario(
        name="prop",
        start=START,
        end=START + n * H,
        step=H,
        workloads=(
            ReplayWorkload(
                _wl("web", draw(st.sampled_from(["A", "B"]))),
                RegularSeries(start=hist_start, step=H, values=demand, unit=""),
            ),
            ReplayWorkload(
                _wl(
                    "job",
                    draw(st.sampled_from(["A", "B"])),
                    min_replicas=0,
                    max_replicas=max_r,
                    workload_class=WorkloadClass.ELASTIC,
                    elastic=spec,
                ),
                jobs=(job,),
            ),
        ),
        carbon={
            r: RegularSeries(start=hist_start, step=H, values=v, unit="") for r, v in carbon.items()
        },
    )


@settings(max_examples=6)
@given(scenarios())
def test_no_policy_beats_the_oracle(scenario: ReplayScenario) -> None:
    _check_oracle_unbeaten(scenario)


@pytest.mark.slow
@settings(max_examples=200)
@given(scenarios())
def test_no_policy_beats_the_oracle_many(scenario: ReplayScenario) -> None:
    """The same property over many more scenarios (`pytest -m slow`)."""
    _check_oracle_unbeaten(scenario)


def _check_oracle_unbeaten(scenario: ReplayScenario) -> None:
    result = run_replay(
        scenario,
        params=PolicyParams(
            decision_step=H, scale_up_lead=timedelta(0), elastic_slot=H, max_step_replicas=50
        ),
        loop_settings=LoopSettings(
            load_step=H, load_history=timedelta(days=1), tick_history=timedelta(days=1)
        ),
        carbon_forecast=CarbonForecastSetup(),
        load_forecaster=SeasonalNaive(24),
    )
    oracle = result.outcomes[PolicyName.ORACLE]
    n = scenario.intervals
    web = scenario.workloads[0]
    demand = scenario.demand_in_period(web)
    for policy, outcomes in result.outcomes.items():
        o, best = outcomes["web"], oracle["web"]
        served = demand <= o.replicas[:n] * 10.0 * (1 + 1e-9) + 1e-9
        assert (
            o.emitted_g_per_interval[:n][served] >= best.emitted_g_per_interval[:n][served] - 1e-9
        ).all(), policy
        if o.slo_violations == 0:
            assert o.emitted_g >= best.emitted_g - 1e-9, policy
        (job,) = outcomes["job"].jobs
        (best_job,) = oracle["job"].jobs
        assert not best_job.missed
        if not job.missed:
            assert job.emitted_g >= best_job.emitted_g * (1 - 1e-9) - 1e-9, policy


@pytest.mark.parametrize("profile", [(1.0,), (1.0, 0.8, 0.64)], ids=["linear", "sub-linear"])
def test_fractional_greedy_beats_every_integer_schedule(profile: tuple[float, ...]) -> None:
    """Brute force over every integer schedule (0..3 replicas in each of 4 hours) that
    finishes by the deadline: none emits less than the oracle."""
    carbon = np.array([300.0, 120.0, 500.0, 80.0])
    spec = ElasticSpec(1.0, START + 4 * H, profile)
    job = Job(START, START + 4 * H, 4.3 * 3600.0)

    def run(sched: tuple[int, ...] | None) -> float:
        reps, em = np.zeros(4), np.zeros(4)
        common = {
            "busy_watts": 100.0,
            "first_interval": 0,
            "period_start": START,
            "step": H,
            "carbon": carbon,
            "replicas_out": reps,
            "emitted_out": em,
        }
        if sched is None:
            out = oracle_job(spec, job, max_replicas=3, **common)  # type: ignore[arg-type]
        else:
            out = run_job(spec, job, replicas=list(sched), **common)  # type: ignore[arg-type]
            if out.missed:
                return float("inf")
        return out.emitted_g

    best = run(None)
    brute = min(run(s) for s in itertools.product(range(4), repeat=4))
    assert best <= brute + 1e-9
    assert brute < float("inf")


@settings(max_examples=8)
@given(
    st.lists(st.floats(10.0, 900.0), min_size=HIST + 12, max_size=HIST + 12),
    st.integers(1, 3),
    st.integers(2, 6),
    st.data(),
)
def test_perfect_foresight_plan_equals_the_oracle(
    carbon: list[float], max_r: int, window: int, data: st.DataObject
) -> None:
    """With the truth as its forecast and whole replica-hours of linear work, the tick's
    re-planned greedy is the oracle's schedule: the same gCO2 (the planner loses nothing;
    every gap to the oracle in the benchmarks is forecast error)."""
    hours = data.draw(st.integers(1, max_r * window))
    truth = RegularSeries(start=START - HIST * H, step=H, values=np.array(carbon), unit="")
    spec = ElasticSpec(1.0, START + 12 * H, (1.0,))
    scenario = ReplayScenario(
        name="perfect",
        start=START,
        end=START + 4 * H,
        step=H,
        workloads=(
            ReplayWorkload(
                _wl(
                    "job",
                    "A",
                    min_replicas=0,
                    max_replicas=max_r,
                    workload_class=WorkloadClass.ELASTIC,
                    elastic=spec,
                ),
                jobs=(Job(START, START + window * H, hours * 3600.0),),
            ),
        ),
        carbon={"A": truth},
        policies=(PolicyName.STATIC, PolicyName.GRIDSHIFT, PolicyName.ORACLE),
    )
    result = run_replay(
        scenario,
        params=PolicyParams(decision_step=H, scale_up_lead=timedelta(0), elastic_slot=H),
        loop_settings=LoopSettings(load_step=H),
        carbon_forecast=CarbonForecastSetup(
            mode="provider", provider_forecasts={"A": known_ahead(truth, None)}, perfect=True
        ),
    )
    (gs,) = result.outcomes[PolicyName.GRIDSHIFT]["job"].jobs
    (best,) = result.outcomes[PolicyName.ORACLE]["job"].jobs
    assert not gs.missed
    assert gs.emitted_g == pytest.approx(best.emitted_g, rel=1e-9)
    assert result.carbon_forecast.startswith("perfect foresight")
