"""One workload's tick once its inputs are read, step by step (pure: no I/O, no clock).

`scaler.loop.ScalerLoop` reads the inputs (carbon per region, load and measured power per
workload) and calls these steps in order: `account_interval_since` (the interval just ended,
at the replicas that ran), `decide_elastic_target` or `decide_interactive_target` (after the
mode), and `workload_status`. The per-workload state they update (`WorkloadState`) belongs to
the loop; ticks never overlap, so only one step touches it at a time. `region_view` turns a
region's carbon reads into what every workload there decides from.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from forecasts.forecast import Forecast
from forecasts.series import CarbonSeries, RegularSeries
from scaler.core.accounting import (
    IntervalAccount,
    Totals,
    account_interval,
    budget_status,
    carbon_integral,
)
from scaler.core.policy import (
    CarbonOutlook,
    CiWindow,
    ModeDecision,
    ModeState,
    OverrideWindow,
    PolicyParams,
    ReplicaState,
    carbon_outlook,
    decide_elastic,
    decide_mode,
    decide_replicas,
    elastic_slots,
    slot_intensities,
)
from scaler.core.workload import Workload, WorkloadClass
from scaler.snapshot import Mode, RegionCarbon, WorkloadStatus

__all__ = [
    "Decision",
    "RegionView",
    "TickInputs",
    "WorkloadState",
    "account_interval_since",
    "account_tick",
    "decide_elastic_target",
    "decide_interactive_target",
    "decide_mode_tick",
    "fresh_state",
    "last_value",
    "region_view",
    "workload_status",
]

FORECAST_LEVELS = (0.5, 0.75, 0.9, 0.95)


@dataclass(slots=True)
class WorkloadState:
    """Mutable per-workload state; only the tick touches it (ticks never overlap)."""

    replicas: ReplicaState
    shadow: ReplicaState
    remaining_work: float
    shadow_remaining: float
    mode: ModeState | None = None
    last_at: datetime | None = None
    last_status: WorkloadStatus | None = None
    window: deque[IntervalAccount] = field(default_factory=deque)


def fresh_state(w: Workload) -> WorkloadState:
    """A workload's state before its first tick: min replicas, all its work ahead."""
    work = w.elastic.total_work if w.elastic else 0.0
    return WorkloadState(
        replicas=ReplicaState(w.min_replicas),
        shadow=ReplicaState(w.min_replicas),
        remaining_work=work,
        shadow_remaining=work,
    )


@dataclass(frozen=True, slots=True)
class TickInputs:
    """What one workload's tick read: load history (interactive only) and measured power."""

    history: RegularSeries | None
    load_stale: bool
    load_now: float | None
    measured_watts: float | None
    stale_inputs: tuple[str, ...]


@dataclass(slots=True)
class Decision:
    """One workload's decision as the tick builds it (mode first, then the target)."""

    mode: ModeDecision
    reasons: list[str]
    target: int = 0
    load_forecast: dict[str, float] = field(default_factory=dict)
    deadline: datetime | None = None
    feasible: bool | None = None


@dataclass(frozen=True, slots=True)
class RegionView:
    """A region's carbon as one tick saw it, shared by every workload there."""

    latest: CarbonSeries | None
    forecast: CarbonSeries | None
    outlook: CarbonOutlook | None
    status: RegionCarbon
    _integrals: dict[tuple[datetime, datetime], tuple[float, float]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def carbon_over(self, start: datetime, end: datetime) -> tuple[float, float]:
        """`carbon_integral` of `latest` over [start, end), once per interval for every
        workload of the region."""
        got = self._integrals.get((start, end))
        if got is None:
            got = self._integrals[(start, end)] = carbon_integral(self.latest, start=start, end=end)
        return got


def region_view(
    region: str,
    *,
    latest: CarbonSeries | None,
    forecast: CarbonSeries | None,
    now: datetime,
    params: PolicyParams,
    stale_after: timedelta,
) -> RegionView:
    """The region's view from its latest values and forecast (either may be missing or
    stale); the latest values are marked stale when their newest point is older than
    `stale_after`."""
    point = latest.latest(at=now) if latest is not None else None
    age = (now - point.at).total_seconds() if point is not None else None
    stale = latest is None or latest.stale or age is None or age > stale_after.total_seconds()
    if latest is not None and stale and not latest.stale:
        latest = latest.as_stale(f"newest value is {age:.0f} s old")
    outlook = carbon_outlook(forecast, now=now, params=params)
    status = RegionCarbon(
        region=region,
        intensity_g_per_kwh=point.value if point else None,
        at=point.at if point else None,
        provider=latest.provider if latest else "none",
        stale=stale,
        age_seconds=age,
        signal=str(latest.signal) if latest else "",
        note=(latest.note if latest else "") or (forecast.note if forecast else ""),
        forecast_window_g_per_kwh=outlook.window_mean_g_per_kwh if outlook else None,
        forecast_percentile=outlook.percentile if outlook else None,
        forecast_provider=forecast.provider if forecast else "",
    )
    return RegionView(latest, forecast, outlook, status)


def last_value(hist: RegularSeries | None) -> float | None:
    """The newest non-NaN value of `hist`, if any."""
    if hist is None:
        return None
    i = hist.last_observed_index()
    return None if i is None else float(hist.values[i])


def account_interval_since(
    w: Workload,
    st: WorkloadState,
    *,
    now: datetime,
    region: RegionView,
    load_now: float | None,
    measured_watts: float | None = None,
    ran: int | None = None,
) -> IntervalAccount | None:
    """Account [last tick, now) at the replicas decided last tick, or at `ran` (the count
    the cluster runs at the end of the interval, when the decisions are in effect there),
    and the shadow's, with the carbon intensity the last tick saw (held over the interval).
    Elastic work progresses at the same replicas.

    With a measured power series, the actual watts are measured; the counterfactual keeps
    the measured load-dependent part and idles its own replica count:
    cf = cf_replicas * idle + (measured - replicas * idle)."""
    if st.last_at is None or now <= st.last_at:
        return None
    seconds = (now - st.last_at).total_seconds()
    replicas = st.replicas.current if ran is None else max(0, ran)
    cf_replicas = st.shadow.current
    if w.elastic is not None:
        st.remaining_work = max(0.0, st.remaining_work - w.elastic.throughput(replicas) * seconds)
        st.shadow_remaining = max(
            0.0, st.shadow_remaining - w.elastic.throughput(cf_replicas) * seconds
        )
        watts = cf_watts = w.power.busy_watts
    else:
        load = load_now if load_now is not None else 0.0
        cap = w.capacity_per_replica
        watts = w.power.replica_watts(load / (replicas * cap) if replicas else 0.0)
        cf_watts = w.power.replica_watts(load / (cf_replicas * cap) if cf_replicas else 0.0)
    if measured_watts is not None and replicas > 0:
        busy_part = max(0.0, measured_watts - replicas * w.power.idle_watts)
        watts = measured_watts / replicas
        cf_watts = (
            (cf_replicas * w.power.idle_watts + busy_part) / cf_replicas if cf_replicas else 0.0
        )
    return account_interval(
        workload=w.name,
        region=w.region,
        start=st.last_at,
        end=now,
        replicas=replicas,
        replica_watts=watts,
        counterfactual_replicas=cf_replicas,
        counterfactual_replica_watts=cf_watts,
        carbon=region.latest,
        carbon_over=region.carbon_over(st.last_at, now),
    )


def account_tick(
    w: Workload,
    st: WorkloadState,
    *,
    now: datetime,
    region: RegionView,
    inputs: TickInputs,
    ran: int | None,
    budget_window: timedelta,
) -> tuple[IntervalAccount | None, list[str]]:
    """Account the interval since the last tick (`account_interval_since`) and keep the
    budget window (the accounts of the last `budget_window`); the reasons it gives
    (accounted at replicas other than decided)."""
    decided = st.replicas.current
    account = account_interval_since(
        w,
        st,
        now=now,
        region=region,
        load_now=inputs.load_now,
        measured_watts=inputs.measured_watts,
        ran=ran,
    )
    reasons: list[str] = []
    if account is not None:
        st.window.append(account)
        while st.window and st.window[0].end <= now - budget_window:
            st.window.popleft()
    if account is not None and ran is not None and ran != decided:
        reasons.append(
            f"accounted at the {ran} replicas running, not the {decided} decided "
            "(the cluster has not caught up)"
        )
    return account, reasons


def decide_mode_tick(
    w: Workload,
    st: WorkloadState,
    reasons: list[str],
    *,
    now: datetime,
    region: RegionView,
    overrides: Sequence[OverrideWindow],
    params: PolicyParams,
) -> Decision:
    """The mode (budget, overrides, outlook): the decision the target is then added to
    (`decide_elastic_target` or `decide_interactive_target`), with `reasons` so far."""
    budget_behind = False
    if w.budget_reduction_percent is not None and w.workload_class is not WorkloadClass.ELASTIC:
        budget = budget_status(
            tuple(st.window), target_reduction_percent=w.budget_reduction_percent
        )
        budget_behind = budget.behind
        reasons.append(budget.reason)
    mode_decision = decide_mode(
        region.outlook,
        state=st.mode,
        now=now,
        params=params,
        overrides=overrides,
        budget_behind=budget_behind,
    )
    st.mode = mode_decision.state
    return Decision(mode_decision, reasons)


def decide_elastic_target(
    w: Workload,
    st: WorkloadState,
    d: Decision,
    *,
    now: datetime,
    region: RegionView,
    params: PolicyParams,
    log: logging.Logger,
) -> None:
    """An elastic job: replicas from the plan over the slots to its deadline (the shadow
    runs at max replicas until its own work is done). Logs when the deadline turns
    infeasible."""
    assert w.elastic is not None
    d.deadline = w.elastic.deadline
    starts, ends = elastic_slots(now, d.deadline, params.elastic_slot)
    intens = slot_intensities(region.forecast, starts=starts, ends=ends) if starts else None
    decision = decide_elastic(
        w,
        remaining_work=st.remaining_work,
        intensities=intens,
        carbon_stale=region.outlook is None or region.outlook.stale,
        current=st.replicas.current,
        now=now,
        params=params,
    )
    d.target = decision.target
    d.feasible = decision.plan.feasible if decision.plan else None
    was = st.last_status.deadline_feasible if st.last_status else None
    if d.feasible is False and was is not False:
        log.warning("%s: %s", w.name, decision.reasons[0])
    d.reasons.extend(decision.reasons)
    st.replicas = ReplicaState(d.target)
    shadow_target = w.max_replicas if st.shadow_remaining > 0 else w.min_replicas
    st.shadow = ReplicaState(shadow_target)


def decide_interactive_target(
    w: Workload,
    st: WorkloadState,
    d: Decision,
    *,
    forecast: Forecast | None,
    load_stale: bool,
    ci_windows: tuple[CiWindow, ...],
    now: datetime,
    params: PolicyParams,
) -> None:
    """An interactive workload: replicas from the load forecast in the decided mode, and
    the performance-only shadow beside it."""
    if forecast is not None:
        idx = min(forecast.horizon - 1, max(0, forecast.index_of(now) or 0))
        d.load_forecast["mean"] = float(forecast.mean[idx])
        for q in FORECAST_LEVELS:
            d.load_forecast[f"{q:g}"] = float(forecast.quantile(q)[idx])
    decision_r = decide_replicas(
        w,
        forecast=forecast,
        load_stale=load_stale,
        mode=d.mode.mode,
        state=st.replicas,
        now=now,
        params=params,
        ci_windows=ci_windows,
    )
    shadow = decide_replicas(
        w,
        forecast=forecast,
        load_stale=load_stale,
        mode=Mode.PERFORMANCE,
        state=st.shadow,
        now=now,
        params=params,
        ci_windows=ci_windows,
    )
    d.target = decision_r.target
    st.replicas = decision_r.state
    st.shadow = shadow.state
    d.reasons.extend(decision_r.reasons)


def workload_status(
    w: Workload,
    st: WorkloadState,
    d: Decision,
    *,
    now: datetime,
    region: RegionView,
    inputs: TickInputs,
    account: IntervalAccount | None,
    totals: Totals | None,
    data_note: str,
    load_model: str | None,
    actual: tuple[int | None, str] = (None, ""),
) -> WorkloadStatus:
    """The workload's status after its decision, with its running totals (`totals` before
    this tick's `account`) and `actual`: the replicas its target runs (None: unknown) and
    why unknown."""
    emitted = (totals.emitted_g if totals else 0.0) + (account.emitted_g if account else 0.0)
    cf = (totals.counterfactual_g if totals else 0.0) + (
        account.counterfactual_g if account else 0.0
    )
    energy = (totals.energy_joules if totals else 0.0) + (account.energy_joules if account else 0.0)
    return WorkloadStatus(
        name=w.name,
        namespace=w.namespace,
        region=w.region,
        desired_replicas=d.target,
        mode=d.mode.mode,
        reasons=(
            *((data_note,) if data_note else ()),
            *d.mode.reasons,
            *d.reasons,
        ),
        decided_at=now,
        stale_inputs=inputs.stale_inputs,
        emitted_g=emitted,
        saved_g=cf - emitted,
        workload_class=str(w.workload_class),
        target_kind=str(w.target.kind),
        target_name=w.target.name,
        mode_since=d.mode.since,
        load_now=inputs.load_now,
        load_unit=w.load.unit,
        load_forecast=d.load_forecast,
        counterfactual_replicas=st.shadow.current,
        load_model=load_model,
        energy_joules=energy,
        counterfactual_g=cf,
        carbon_provenance=(
            f"{region.status.provider}/{region.status.signal}" if region.latest else "none"
        ),
        remaining_work=st.remaining_work if w.elastic is not None else None,
        deadline=d.deadline,
        deadline_feasible=d.feasible,
        min_replicas=w.min_replicas,
        max_replicas=w.max_replicas,
        capacity_per_replica=w.capacity_per_replica,
        actual_replicas=actual[0],
        actual_replicas_note=actual[1],
    )
