"""Fleet replays: a scenario cut into parts and merged back gives exactly the one-process
result; how `--workers`/`--scheduler-address` resolve.

Aspects: `partition` covers every workload once, keeps regions together, balances work,
keeps the whole horizon (an elastic job past the period's end) and only the parts' carbon;
`merge` restores the single-process order and tick count, and refuses missing outcomes;
`run_replay_parallel` on a thread pool with 1..4 parts equals `run_replay` (every policy's
replicas, emissions and jobs, the summary minus wall time); `plan_fleet`'s table.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from config.fleet import AUTO, plan_fleet
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.series import RegularSeries
from scaler.core.policy import PolicyParams
from scaler.core.workload import ElasticSpec, Workload, WorkloadClass
from scaler.loop import LoopSettings
from scaler.replay.engine import CarbonForecastSetup, run_replay, run_replay_parallel
from scaler.replay.fleet import merge, partition, work_units
from scaler.replay.model import Job, ReplayResult, ReplayScenario, ReplayWorkload
from scaler.replay.summary import summarise
from tests.workloads import trace_workload

H = timedelta(hours=1)
START = datetime(2026, 3, 2, tzinfo=UTC)
DAYS = 3


def _workload(name: str, region: str, **kw: object) -> Workload:
    return trace_workload(name, region, **{"max_replicas": 20, **kw})


def _scenario() -> ReplayScenario:
    hist = START - timedelta(days=DAYS)
    hours = 24 * (DAYS + 1)
    t = np.arange(hours)
    rng = np.random.default_rng(7)
    interactive = [
        ReplayWorkload(
            _workload(f"web-{region}-{i}", region),
            RegularSeries(
                start=hist,
                step=H,
                values=(40 + 30 * np.sin(2 * np.pi * t / 24 + i)) * (1 + 0.1 * rng.random(hours)),
                unit="req/s",
            ),
        )
        for region in ("A", "B", "C")
        for i in range(2)
    ]
    batch = ReplayWorkload(
        _workload(
            "batch",
            "B",
            min_replicas=0,
            max_replicas=3,
            workload_class=WorkloadClass.ELASTIC,
            elastic=ElasticSpec(1.0, START + 12 * H, (1.0, 0.8)),
        ),
        jobs=(Job(START, START + 5 * H, 3 * 3600.0), Job(START + 6 * H, START + 15 * H, 4 * 3600)),
        base_replicas=1,
    )
    carbon = {
        r: RegularSeries(
            start=hist,
            step=H,
            values=300 + k * 50 + 150 * np.sin(2 * np.pi * (t + 4 * k) / 24),
            unit="",
        )
        for k, r in enumerate(("A", "B", "C"))
    }
    return ReplayScenario(
        name="fleet",
        start=START,
        end=START + 12 * H,
        step=H,
        workloads=(interactive[0], batch, *interactive[1:]),
        carbon=carbon,
        forecast_noise_percent=5.0,
        seed=3,
    )


PARAMS = PolicyParams(
    decision_step=H, scale_up_lead=timedelta(0), elastic_slot=H, max_step_replicas=100
)
KW = {
    "params": PARAMS,
    "loop_settings": LoopSettings(
        load_step=H, load_history=timedelta(days=2), tick_history=timedelta(days=2)
    ),
    "carbon_forecast": CarbonForecastSetup(),
    "load_forecaster": SeasonalNaive(24),
    "refit_every": timedelta(hours=6),
}


@pytest.fixture(scope="module")
def single() -> ReplayResult:
    return run_replay(_scenario(), **KW)  # type: ignore[arg-type]


def test_partition_covers_every_workload_once_by_region() -> None:
    sc = _scenario()
    parts = partition(sc, 3)
    assert len(parts) == 3
    names = [w.name for p in parts for w in p.workloads]
    assert sorted(names) == sorted(w.name for w in sc.workloads)
    for p in parts:
        assert set(p.carbon) == {w.workload.region for w in p.workloads}
        assert p.horizon_end == sc.horizon_end == START + 15 * H  # the late deadline
        assert (p.start, p.end, p.seed, p.policies) == (sc.start, sc.end, sc.seed, sc.policies)
    regions = [w.workload.region for p in parts for w in p.workloads]
    assert regions == sorted(regions)  # region order: each region in as few parts as possible
    loads = [sum(work_units(sc, w) for w in p.workloads) for p in parts]
    assert max(loads) <= 2 * min(loads)


@pytest.mark.parametrize(("asked", "made"), [(1, 1), (2, 2), (7, 7), (50, 7)])
def test_partition_never_makes_an_empty_part(asked: int, made: int) -> None:
    parts = partition(_scenario(), asked)
    assert len(parts) == made
    assert all(p.workloads for p in parts)


def test_partition_refuses_zero_parts() -> None:
    with pytest.raises(ValueError, match="parts"):
        partition(_scenario(), 0)


def _same(a: ReplayResult, b: ReplayResult) -> None:
    assert list(a.outcomes) == list(b.outcomes)
    for policy, per_workload in a.outcomes.items():
        assert list(per_workload) == list(b.outcomes[policy]), policy
        for name, x in per_workload.items():
            y = b.outcomes[policy][name]
            np.testing.assert_array_equal(x.replicas, y.replicas)
            np.testing.assert_array_equal(x.emitted_g_per_interval, y.emitted_g_per_interval)
            assert (x.emitted_g, x.energy_kwh, x.jobs) == (y.emitted_g, y.energy_kwh, y.jobs)
    assert (a.carbon_forecast, a.ticks) == (b.carbon_forecast, b.ticks)
    sa, sb = summarise(a), summarise(b)
    sa.pop("seconds")
    sb.pop("seconds")
    assert sa == sb


@pytest.mark.parametrize("parts", [1, 2, 3, 4])
def test_parallel_replay_equals_one_process(single: ReplayResult, parts: int) -> None:
    done: list[int] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = run_replay_parallel(
            _scenario(),
            executor=pool,
            parts=parts,
            progress=done.append,
            **KW,  # type: ignore[arg-type]
        )
    _same(single, got)
    assert sum(done) == 12 + 2  # progress_total: intervals + elastic jobs
    assert len(done) == min(parts, 7)


def test_merge_refuses_a_missing_part(single: ReplayResult) -> None:
    sc = _scenario()
    parts = partition(sc, 2)
    first = run_replay(parts[0], **KW)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no outcome for"):
        merge(sc, [first], seconds=0.0)
    with pytest.raises(ValueError, match="no part results"):
        merge(sc, [], seconds=0.0)


@pytest.mark.parametrize(
    ("workers", "address", "parts", "work", "expected", "why"),
    [
        pytest.param("1", None, 8, 10**6, 1, "in this process", id="one worker"),
        pytest.param("3", None, 8, 10, 3, "local Dask cluster of 3", id="forced three"),
        pytest.param("4", None, 2, 10**6, 2, "local Dask cluster of 2", id="no more than parts"),
        pytest.param(AUTO, None, 8, 10, 1, "below the 100", id="auto small job"),
        pytest.param(AUTO, None, 1, 10**6, 1, "one part", id="auto one part"),
        pytest.param(AUTO, "tcp://10.0.0.1:8786", 8, 10, 0, "scheduler at tcp", id="remote"),
    ],
)
def test_plan_fleet(
    workers: str,
    address: str | None,
    parts: int,
    work: int,
    expected: int,
    why: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    plan = plan_fleet(workers, address, parts=parts, work=work, worth_it=100, unit="units")
    assert plan.workers == expected
    assert plan.scheduler_address == address
    assert why in plan.why
    assert plan.single_process == (expected == 1)


def test_plan_fleet_auto_uses_every_cpu_for_a_big_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    plan = plan_fleet(AUTO, None, parts=100, work=10**6, worth_it=100, unit="units")
    assert (plan.workers, plan.single_process) == (4, False)
