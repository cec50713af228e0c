"""scaler.core.policy: modes, interactive replicas, elastic plans.

Aspects: mode switching on the percentile rank, hysteresis, minimum dwell, absolute cap,
overrides (until / windows), stale and missing carbon, budget-behind entry; replicas from the
quantile and headroom per mode, the eco floor, CI pre-warm, scale-down stabilisation, step
limits, hold on stale/missing/off-horizon load; elastic greedy plans, infeasible deadlines,
completed work, passed deadlines, stale carbon, budgets; parameter validation. Properties:
target in [min, max], step limits, never lower on stale input, feasible deadlines are met
(also when re-planned every slot).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecasts.forecast import Forecast
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from scaler.core.policy import (
    CarbonOutlook,
    CiWindow,
    ModeState,
    OverrideWindow,
    PolicyParams,
    ReplicaState,
    carbon_outlook,
    decide_elastic,
    decide_mode,
    decide_replicas,
    elastic_slots,
    percentile_rank,
    plan_elastic,
    slot_intensities,
)
from scaler.core.workload import (
    ElasticSpec,
    PowerModel,
    Workload,
    WorkloadClass,
)
from scaler.snapshot import Mode
from tests.workloads import promql_workload

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
P = PolicyParams()


def workload(**kw: Any) -> Workload:
    query = "sum(rate(http_requests_total[5m]))"
    return promql_workload("web", query, **{"max_replicas": 50, **kw})


def forecast(median: float, *, spread: float = 0.0, start: datetime = NOW, n: int = 6) -> Forecast:
    """A flat forecast: quantile q is median + spread * (q - 0.5) * 4."""
    levels = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)
    return Forecast(
        start=start,
        step=timedelta(minutes=5),
        mean=np.full(n, median),
        quantiles={q: np.full(n, median + spread * (q - 0.5) * 4) for q in levels},
        unit="requests/s",
        model="test",
    )


def outlook(pct: float, *, mean: float = 300.0, stale: bool = False) -> CarbonOutlook:
    return CarbonOutlook("r1", mean, pct, stale, "fake", "average")


# ----------------------------------------------------------------------------- modes

MODE_TABLE = [
    pytest.param(
        None, 80.0, Mode.ECO, "switch performance -> eco", id="high percentile enters eco"
    ),
    pytest.param(None, 60.0, Mode.PERFORMANCE, "mode performance", id="middle stays performance"),
    pytest.param(
        ModeState(Mode.ECO, NOW - timedelta(hours=1)),
        60.0,
        Mode.ECO,
        "exit eco below percentile 50",
        id="hysteresis keeps eco between exit and enter",
    ),
    pytest.param(
        ModeState(Mode.ECO, NOW - timedelta(hours=1)),
        40.0,
        Mode.PERFORMANCE,
        "switch eco -> performance",
        id="low percentile leaves eco",
    ),
    pytest.param(
        ModeState(Mode.PERFORMANCE, NOW - timedelta(minutes=5)),
        90.0,
        Mode.PERFORMANCE,
        "dwell: in performance since",
        id="dwell defers a switch",
    ),
    pytest.param(
        ModeState(Mode.ECO, NOW - timedelta(minutes=14, seconds=59)),
        10.0,
        Mode.ECO,
        "eco deferred" if False else "performance deferred",
        id="dwell defers leaving eco",
    ),
    pytest.param(
        ModeState(Mode.ECO, NOW - timedelta(minutes=15)),
        10.0,
        Mode.PERFORMANCE,
        "switch eco -> performance",
        id="dwell over at exactly min_dwell",
    ),
]


@pytest.mark.parametrize(("state", "pct", "expected", "reason"), MODE_TABLE)
def test_mode_table(state, pct, expected, reason) -> None:
    d = decide_mode(outlook(pct), state=state, now=NOW, params=P)
    assert d.mode is expected
    assert any(reason in r for r in d.reasons), d.reasons
    assert d.percentile == pct


def test_mode_since_moves_only_on_switch() -> None:
    earlier = NOW - timedelta(hours=2)
    kept = decide_mode(outlook(10), state=ModeState(Mode.PERFORMANCE, earlier), now=NOW, params=P)
    assert kept.since == earlier
    switched = decide_mode(
        outlook(95), state=ModeState(Mode.PERFORMANCE, earlier), now=NOW, params=P
    )
    assert switched.since == NOW
    assert switched.state == ModeState(Mode.ECO, NOW)


def test_absolute_cap_forces_eco_even_at_low_percentile() -> None:
    params = PolicyParams(absolute_cap_g_per_kwh=250.0)
    d = decide_mode(outlook(10.0, mean=400.0), state=None, now=NOW, params=params)
    assert d.mode is Mode.ECO
    assert any("absolute cap of 250" in r for r in d.reasons)
    held = decide_mode(
        outlook(10.0, mean=400.0),
        state=ModeState(Mode.ECO, NOW - timedelta(hours=1)),
        now=NOW,
        params=params,
    )
    assert held.mode is Mode.ECO
    below = decide_mode(outlook(10.0, mean=200.0), state=None, now=NOW, params=params)
    assert below.mode is Mode.PERFORMANCE


OVERRIDE_TABLE = [
    pytest.param(
        [OverrideWindow(Mode.PERFORMANCE, NOW + timedelta(hours=1), reason="launch day")],
        Mode.PERFORMANCE,
        "override: performance forced until 2026-03-02T13:00:00Z (launch day)",
        id="force performance until, beats high carbon",
    ),
    pytest.param(
        [OverrideWindow(Mode.ECO, NOW + timedelta(hours=6), NOW - timedelta(hours=1))],
        Mode.ECO,
        "override: eco forced until 2026-03-02T18:00:00Z",
        id="recurring eco window active",
    ),
    pytest.param(
        [OverrideWindow(Mode.PERFORMANCE, NOW)],
        Mode.ECO,
        "switch performance -> eco",
        id="expired override is ignored",
    ),
    pytest.param(
        [OverrideWindow(Mode.PERFORMANCE, NOW + timedelta(hours=2), NOW + timedelta(hours=1))],
        Mode.ECO,
        "switch performance -> eco",
        id="future window is ignored",
    ),
]


@pytest.mark.parametrize(("windows", "expected", "reason"), OVERRIDE_TABLE)
def test_overrides(windows, expected, reason) -> None:
    # performance since just now: an override ignores the dwell time
    state = ModeState(Mode.PERFORMANCE, NOW - timedelta(hours=1))
    d = decide_mode(outlook(95.0), state=state, now=NOW, params=P, overrides=windows)
    assert d.mode is expected
    assert reason in d.reasons


def test_override_bypasses_dwell() -> None:
    state = ModeState(Mode.PERFORMANCE, NOW - timedelta(seconds=1))
    d = decide_mode(
        outlook(10.0),
        state=state,
        now=NOW,
        params=P,
        overrides=[OverrideWindow(Mode.ECO, NOW + timedelta(minutes=30))],
    )
    assert (d.mode, d.since) == (Mode.ECO, NOW)


@pytest.mark.parametrize(
    ("view", "reason"),
    [
        pytest.param(None, "carbon forecast missing: keep eco mode", id="missing"),
        pytest.param(outlook(5.0, stale=True), "is stale: keep eco mode", id="stale"),
    ],
)
def test_missing_or_stale_carbon_keeps_mode(view, reason) -> None:
    state = ModeState(Mode.ECO, NOW - timedelta(hours=3))
    d = decide_mode(view, state=state, now=NOW, params=P)
    assert d.mode is Mode.ECO
    assert any(reason in r for r in d.reasons)


def test_missing_carbon_defaults_to_performance() -> None:
    assert decide_mode(None, state=None, now=NOW, params=P).mode is Mode.PERFORMANCE


def test_budget_behind_lowers_the_entry_percentile() -> None:
    d_on = decide_mode(outlook(45.0), state=None, now=NOW, params=P)
    d_behind = decide_mode(outlook(45.0), state=None, now=NOW, params=P, budget_behind=True)
    assert d_on.mode is Mode.PERFORMANCE
    assert d_behind.mode is Mode.ECO
    assert any("carbon budget behind" in r for r in d_behind.reasons)
    # hysteresis is kept: with enter 40, exit is 40 - (70 - 50) = 20
    eco = ModeState(Mode.ECO, NOW - timedelta(hours=1))
    assert (
        decide_mode(outlook(25.0), state=eco, now=NOW, params=P, budget_behind=True).mode
        is Mode.ECO
    )
    assert (
        decide_mode(outlook(15.0), state=eco, now=NOW, params=P, budget_behind=True).mode
        is Mode.PERFORMANCE
    )


def test_percentile_rank() -> None:
    assert percentile_rank(5.0, [1.0, 2.0, 3.0, 4.0]) == 100.0
    assert percentile_rank(0.0, [1.0, 2.0]) == 0.0
    assert percentile_rank(2.0, [1.0, 2.0, 3.0]) == pytest.approx(50.0)
    with pytest.raises(ValueError, match="non-empty"):
        percentile_rank(1.0, [])


def carbon_series(
    values: list[float], *, start: datetime = NOW, stale: bool = False
) -> CarbonSeries:
    s = CarbonSeries.build(
        region="r1",
        points=[(start + timedelta(hours=i), v, Quality.FORECAST) for i, v in enumerate(values)],
        unit=CarbonUnit.G_PER_KWH,
        signal=Signal.MARGINAL,
        provider="fake",
        fetched_at=start,
        resolution=timedelta(hours=1),
    )
    return s.as_stale("old") if stale else s


def test_carbon_outlook_ranks_the_window_in_the_horizon() -> None:
    values = [float(v) for v in range(100, 124)]  # rising over 24 h
    view = carbon_outlook(carbon_series(values), now=NOW, params=P)
    assert view is not None
    assert view.window_mean_g_per_kwh == 100.0
    assert view.percentile == pytest.approx(100 * 0.5 / 24)
    assert (view.provider, view.signal, view.stale) == ("fake", "marginal", False)
    peak = [100.0] * 10 + [500.0] * 2 + [100.0] * 12
    at_peak = carbon_outlook(carbon_series(peak), now=NOW + timedelta(hours=10), params=P)
    assert at_peak is not None
    # the distribution is the forecast from now on: 2 peak points among 14
    assert at_peak.percentile == pytest.approx(100 * (12 + 1) / 14)


def test_carbon_outlook_missing() -> None:
    assert carbon_outlook(None, now=NOW, params=P) is None
    past = carbon_series([100.0], start=NOW - timedelta(hours=5))
    assert carbon_outlook(past, now=NOW, params=P) is None


# ----------------------------------------------------------------------------- interactive


def decide(
    w: Workload, fc: Forecast | None, *, mode=Mode.PERFORMANCE, current=5, stale=False, **kw
):
    return decide_replicas(
        w,
        forecast=fc,
        load_stale=stale,
        mode=mode,
        state=ReplicaState(current, kw.pop("recs", ())),
        now=kw.pop("now", NOW),
        params=kw.pop("params", P),
        **kw,
    )


REPLICA_TABLE = [
    # median 100, spread 10 -> q0.95 = 118, q0.75 = 110
    pytest.param(Mode.PERFORMANCE, {}, 15, id="performance: ceil(118 * 1.2 / 10)"),
    pytest.param(Mode.ECO, {}, 13, id="eco: ceil(110 * 1.1 / 10)"),
    pytest.param(Mode.PERFORMANCE, {"headroom": 0.0}, 12, id="workload headroom override"),
    pytest.param(Mode.ECO, {"max_replicas": 8}, 8, id="clamped to max"),
    pytest.param(Mode.ECO, {"min_replicas": 20, "max_replicas": 30}, 20, id="clamped to min"),
]


@pytest.mark.parametrize(("mode", "overrides", "expected"), REPLICA_TABLE)
def test_replica_table(mode, overrides, expected) -> None:
    w = workload(**overrides)
    d = decide(w, forecast(100.0, spread=10.0), mode=mode, current=expected)
    assert d.target == expected
    assert d.mode is mode
    assert d.reasons[-1] == f"target {expected} (was {expected})"


def test_eco_never_under_median_plus_min_headroom() -> None:
    # a very wide lower tail: q0.75 (85 via spread -60... ) would be below the median
    params = PolicyParams(eco_quantile=0.25)
    d = decide(workload(), forecast(100.0, spread=40.0), mode=Mode.ECO, current=11, params=params)
    # q0.25 = 60 -> 66; floor = 100 * 1.05 = 105 -> 11 replicas
    assert d.target == 11
    assert d.demand == pytest.approx(105.0)
    assert any("floor median 100" in r for r in d.reasons)


def test_ci_schedule_prewarms_one_lead_time_ahead() -> None:
    soon = CiWindow(NOW + timedelta(minutes=2), NOW + timedelta(minutes=22), 50.0)
    later = CiWindow(NOW + timedelta(minutes=4), NOW + timedelta(minutes=24), 50.0)
    past = CiWindow(NOW - timedelta(minutes=30), NOW - timedelta(minutes=10), 50.0)
    base = decide(workload(), forecast(100.0), current=12)
    assert base.target == 12
    warm = decide(
        workload(),
        forecast(100.0),
        current=12,
        ci_windows=[soon, later, past],
        params=PolicyParams(max_step_replicas=10),
    )
    assert warm.target == 17  # (120 + 50) / 10
    assert sum("pre-warm for CI load +50" in r for r in warm.reasons) == 1


def test_scale_down_is_stabilised_by_the_highest_recent_recommendation() -> None:
    recs = ((NOW - timedelta(minutes=2), 9), (NOW - timedelta(minutes=10), 20))
    d = decide(workload(), forecast(50.0), current=10, recs=recs)  # raw = 6
    assert d.target == 9
    assert any("stabilisation" in r for r in d.reasons)
    # the window slides: 5 minutes later only the raw recommendation is left
    later = decide(
        workload(),
        forecast(50.0),
        current=9,
        recs=d.state.recommendations,
        now=NOW + timedelta(minutes=5, seconds=1),
    )
    assert later.target == 6


def test_stabilisation_never_scales_up_on_old_recommendations() -> None:
    recs = ((NOW - timedelta(minutes=1), 30),)
    d = decide(workload(), forecast(50.0), current=8, recs=recs)
    assert d.target == 8  # raw 6, held at current, not raised to 30


def test_step_limits_both_ways() -> None:
    up = decide(workload(), forecast(500.0), current=5)  # raw 60 -> clamp 50
    assert up.target == 9
    assert any("step limit" in r for r in up.reasons)
    down = decide(
        workload(),
        forecast(10.0),
        current=30,
        params=PolicyParams(scale_down_stabilisation=timedelta(0)),
    )
    assert down.target == 26


@pytest.mark.parametrize(
    ("fc", "stale", "why"),
    [
        pytest.param(None, False, "missing", id="missing forecast"),
        pytest.param(forecast(1.0), True, "stale", id="stale load"),
        pytest.param(
            forecast(1.0, start=NOW + timedelta(hours=1)), False, "not covering", id="off horizon"
        ),
        pytest.param(
            forecast(1.0, start=NOW - timedelta(hours=2)), False, "not covering", id="old forecast"
        ),
    ],
)
def test_hold_on_stale_or_missing_load(fc, stale, why) -> None:
    d = decide(workload(), fc, current=17, stale=stale)
    assert d.target == 17
    assert why in d.reasons[0]
    assert "never scale down on missing data" in d.reasons[0]


def test_hold_clamps_a_current_count_outside_new_bounds() -> None:
    assert decide(workload(max_replicas=10), None, current=17).target == 10


@given(
    median=st.floats(0, 1e4),
    spread=st.floats(0, 1e3),
    lo=st.integers(0, 20),
    extra=st.integers(0, 40),
    current_off=st.integers(0, 60),
    step=st.integers(1, 10),
    eco=st.booleans(),
    stale=st.booleans(),
    missing=st.booleans(),
    recs=st.lists(st.tuples(st.integers(0, 600), st.integers(0, 60)), max_size=5),
)
def test_property_bounds_steps_and_stale_hold(
    median, spread, lo, extra, current_off, step, eco, stale, missing, recs
) -> None:
    hi = max(1, lo + extra)
    current = lo + current_off % (hi - lo + 1)
    w = workload(min_replicas=lo, max_replicas=hi)
    params = PolicyParams(max_step_replicas=step)
    d = decide_replicas(
        w,
        forecast=None if missing else forecast(median, spread=spread),
        load_stale=stale,
        mode=Mode.ECO if eco else Mode.PERFORMANCE,
        state=ReplicaState(current, tuple((NOW - timedelta(seconds=s), n) for s, n in recs)),
        now=NOW,
        params=params,
    )
    assert lo <= d.target <= hi
    assert abs(d.target - current) <= step
    if stale or missing:
        assert d.target >= current
    if not (stale or missing):
        assert d.demand is not None
        assert math.isfinite(d.demand)


# ----------------------------------------------------------------------------- elastic

SPEC = ElasticSpec(
    total_work=3600.0 * 4, deadline=NOW + timedelta(hours=4), throughput_per_replica=(1.0,)
)


def elastic_workload(spec: ElasticSpec = SPEC, **kw) -> Workload:
    return workload(
        name="batch",
        workload_class=WorkloadClass.ELASTIC,
        elastic=spec,
        min_replicas=kw.pop("min_replicas", 0),
        max_replicas=kw.pop("max_replicas", 4),
        power=PowerModel(50.0, 100.0),
        **kw,
    )


def test_elastic_slots_align_and_end_at_deadline() -> None:
    starts, ends = elastic_slots(
        NOW + timedelta(minutes=7), NOW + timedelta(minutes=50), timedelta(minutes=15)
    )
    assert [s.minute for s in starts] == [7, 15, 30, 45]
    assert [e.minute for e in ends] == [15, 30, 45, 50]


def test_greedy_plan_runs_in_the_cleanest_slots() -> None:
    # 4 one-hour slots, intensities 400, 100, 300, 50; 4 replica-hours of work, max 4 replicas
    plan = plan_elastic(
        SPEC,
        remaining_work=4 * 3600.0,
        now=NOW,
        intensities=[400.0, 100.0, 300.0, 50.0],
        busy_watts=100.0,
        min_replicas=0,
        max_replicas=4,
        slot=timedelta(hours=1),
    )
    assert plan.replicas == (0, 0, 0, 4)
    assert plan.feasible
    assert plan.planned_work == pytest.approx(4 * 3600.0)
    # 4 replicas x 100 W x 1 h = 0.4 kWh at 50 g/kWh
    assert plan.expected_g == pytest.approx(20.0)
    # carbon-unaware: 4 replicas in the first hour at 400 g/kWh
    assert plan.unaware_g == pytest.approx(160.0)


def test_diminishing_returns_spread_work_over_slots() -> None:
    spec = ElasticSpec(
        total_work=0, deadline=NOW + timedelta(hours=2), throughput_per_replica=(1.0, 0.5, 0.1)
    )
    plan = plan_elastic(
        spec,
        remaining_work=2 * 3600.0,
        now=NOW,
        intensities=[100.0, 110.0],
        busy_watts=100.0,
        min_replicas=0,
        max_replicas=3,
        slot=timedelta(hours=1),
    )
    # first replica in both slots beats a second replica in the cleaner one
    assert plan.replicas == (1, 1)


def test_unknown_carbon_plans_as_early_as_possible() -> None:
    plan = plan_elastic(
        SPEC,
        remaining_work=3600.0,
        now=NOW,
        intensities=None,
        busy_watts=100.0,
        min_replicas=0,
        max_replicas=4,
        slot=timedelta(hours=1),
    )
    assert plan.replicas == (1, 0, 0, 0)
    assert any("as early as possible" in r for r in plan.reasons)


def test_plan_rejects_wrong_intensity_count() -> None:
    with pytest.raises(ValueError, match="4 slots but 2 intensities"):
        plan_elastic(
            SPEC,
            remaining_work=1.0,
            now=NOW,
            intensities=[1.0, 2.0],
            busy_watts=1.0,
            min_replicas=0,
            max_replicas=1,
            slot=timedelta(hours=1),
        )


def test_min_replicas_alone_can_cover_the_work() -> None:
    plan = plan_elastic(
        SPEC,
        remaining_work=10.0,
        now=NOW,
        intensities=[1.0] * 4,
        busy_watts=1.0,
        min_replicas=1,
        max_replicas=4,
        slot=timedelta(hours=1),
    )
    assert plan.replicas == (1, 1, 1, 1)


def elastic(w: Workload, *, remaining: float, intensities, stale=False, current=0, now=NOW):
    params = PolicyParams(elastic_slot=timedelta(hours=1))
    return decide_elastic(
        w,
        remaining_work=remaining,
        intensities=intensities,
        carbon_stale=stale,
        current=current,
        now=now,
        params=params,
    )


def test_infeasible_deadline_is_reported_at_once_and_runs_flat_out() -> None:
    d = elastic(elastic_workload(), remaining=5 * 4 * 3600.0, intensities=[100.0] * 4)
    assert d.target == 4
    assert d.plan is not None
    assert not d.plan.feasible
    assert any("infeasible" in r and "running at max" in r for r in d.reasons)


def test_work_complete_and_deadline_passed() -> None:
    done = elastic(elastic_workload(), remaining=0.0, intensities=[1.0] * 4)
    assert (done.target, done.plan) == (0, None)
    late = elastic(
        elastic_workload(), remaining=10.0, intensities=None, now=NOW + timedelta(hours=5)
    )
    assert late.target == 4
    assert "passed" in late.reasons[0]


def test_stale_carbon_never_scales_an_elastic_job_down() -> None:
    d = elastic(
        elastic_workload(),
        remaining=3600.0,
        intensities=[400.0, 1.0, 1.0, 1.0],
        stale=True,
        current=3,
    )
    assert d.target == 3
    assert d.reasons[0] == "carbon forecast stale or missing: no scale-down"


def test_elastic_budget_verdicts() -> None:
    w = elastic_workload(budget_reduction_percent=50.0)
    met = elastic(w, remaining=3600.0, intensities=[400.0, 100.0, 300.0, 50.0])
    assert any("plan saves 87.5%, met" in r for r in met.reasons)
    w90 = elastic_workload(budget_reduction_percent=90.0)
    short = elastic(w90, remaining=3600.0, intensities=[400.0, 100.0, 300.0, 50.0])
    assert any("NOT attainable" in r for r in short.reasons)


def test_decide_elastic_rejects_interactive() -> None:
    with pytest.raises(ValueError, match="not elastic"):
        elastic(workload(), remaining=1.0, intensities=None)


@given(
    intensities=st.lists(st.floats(0, 1000), min_size=1, max_size=12),
    profile=st.lists(st.floats(0.1, 5.0), min_size=1, max_size=4),
    lo=st.integers(0, 2),
    extra=st.integers(1, 6),
    fraction=st.floats(0.0, 1.2),
)
def test_property_feasible_deadlines_are_met_when_replanned(
    intensities, profile, lo, extra, fraction
) -> None:
    """Re-plan every slot, run the first slot, repeat: a deadline feasible at max replicas is
    always met; an infeasible one is flagged from the first plan on."""
    spec = ElasticSpec(
        0.0, NOW + timedelta(hours=len(intensities)), tuple(sorted(profile, reverse=True))
    )
    hi = lo + extra
    capacity = spec.throughput(hi) * 3600.0 * len(intensities)
    work = capacity * fraction
    w = elastic_workload(spec, min_replicas=lo, max_replicas=hi)
    now = NOW
    remaining = work
    first_feasible = None
    for i in range(len(intensities)):
        d = elastic(w, remaining=remaining, intensities=intensities[i:], now=now)
        assert lo <= d.target <= hi
        if d.plan is not None:
            assert sum(d.plan.replicas[1:]) >= 0
            if first_feasible is None:
                first_feasible = d.plan.feasible
        remaining = max(0.0, remaining - spec.throughput(d.target) * 3600.0)
        now += timedelta(hours=1)
    if fraction <= 1.0 - 1e-9:
        assert remaining <= 1e-6 * max(1.0, work)
        assert first_feasible in (True, None)
    elif fraction > 1.0 + 1e-9:
        assert first_feasible is False


def test_slot_intensities() -> None:
    series = carbon_series([100.0, 200.0])
    starts = [NOW, NOW + timedelta(minutes=30), NOW + timedelta(hours=3)]
    ends = [
        NOW + timedelta(minutes=30),
        NOW + timedelta(hours=1, minutes=30),
        NOW + timedelta(hours=4),
    ]
    assert slot_intensities(series, starts=starts, ends=ends) == (100.0, 150.0, 200.0)
    before = [NOW - timedelta(hours=2)]
    assert slot_intensities(series, starts=before, ends=[NOW - timedelta(hours=1)]) == (100.0,)
    assert slot_intensities(None, starts=starts, ends=ends) is None
    empty = CarbonSeries.build(
        region="r1",
        points=[],
        unit=CarbonUnit.G_PER_KWH,
        signal=Signal.AVERAGE,
        provider="x",
        fetched_at=NOW,
        resolution=timedelta(hours=1),
    )
    assert slot_intensities(empty, starts=starts, ends=ends) is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"performance_quantile": 1.0}, "performance_quantile", id="quantile range"),
        pytest.param({"eco_quantile": 0.99}, "eco_quantile must not exceed", id="eco q above perf"),
        pytest.param({"eco_headroom": 0.5}, "eco_headroom", id="headroom order"),
        pytest.param({"eco_exit_percentile": 80.0}, "eco_exit_percentile", id="exit above enter"),
        pytest.param({"budget_eco_enter_percentile": 101.0}, "budget_eco", id="budget pct"),
        pytest.param({"max_step_replicas": 0}, "max_step_replicas", id="zero step"),
        pytest.param({"elastic_slot": timedelta(0)}, "elastic_slot must be positive", id="slot"),
        pytest.param({"carbon_horizon": timedelta(minutes=30)}, "carbon_horizon", id="horizon"),
    ],
)
def test_params_validation(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        PolicyParams(**kwargs)
