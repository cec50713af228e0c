"""Replica targets and eco/performance modes from forecasts (pure: no I/O, no clock).

Owns three decisions, each returning its reasons as a tuple of plain sentences:

- `decide_mode`: eco when the coming window's forecast carbon intensity is high *relative to
  the region's own forecast distribution* (a percentile rank, so no absolute per-region
  thresholds) or above an optional absolute cap; hysteresis (enter/exit percentiles), a minimum
  dwell time, and overrides (forced until an instant, or recurring cron windows expanded by the
  caller). A relative carbon budget that is behind lowers the entry percentile.
- `decide_replicas` (interactive): a quantile of the load forecast over the next step plus the
  scale-up lead time, plus known CI load (pre-warmed one lead time ahead), divided by the
  capacity per replica. Performance mode takes a high quantile and full headroom; eco a lower
  quantile and less headroom, but never under the median forecast plus a minimum headroom.
  Then HPA-like stabilisation (scale-down takes the highest recommendation in a window) and
  step limits. Stale or missing load input holds the current replicas: never scale down on
  missing data.
- `plan_elastic` / `decide_elastic`: the carbon-minimal allocation of remaining work over the
  slots before its deadline, greedy on marginal work per gCO2 (as in CarbonScaler); optimal for
  non-increasing marginal throughput; feasible deadlines are always met, infeasible ones are
  reported at once and run flat out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from forecasts.forecast import Forecast
from forecasts.series import CarbonSeries
from forecasts.time import floor_to, to_epoch_s
from scaler.core.workload import ElasticSpec, Workload
from scaler.snapshot import Mode

__all__ = [
    "CarbonOutlook",
    "CiWindow",
    "ElasticDecision",
    "ElasticPlan",
    "ModeDecision",
    "ModeState",
    "OverrideWindow",
    "PolicyParams",
    "ReplicaDecision",
    "ReplicaState",
    "carbon_outlook",
    "decide_elastic",
    "decide_mode",
    "decide_replicas",
    "elastic_slots",
    "percentile_rank",
    "plan_elastic",
    "slot_intensities",
]

_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """The scaler's policy knobs (derived from `ScalerSettings` by the composition root)."""

    performance_quantile: float = 0.95
    eco_quantile: float = 0.75
    performance_headroom: float = 0.2
    eco_headroom: float = 0.1
    eco_min_headroom: float = 0.05
    decision_step: timedelta = timedelta(seconds=60)
    scale_up_lead: timedelta = timedelta(minutes=2)
    scale_down_stabilisation: timedelta = timedelta(minutes=5)
    max_step_replicas: int = 4
    eco_enter_percentile: float = 70.0
    eco_exit_percentile: float = 50.0
    budget_eco_enter_percentile: float = 40.0
    absolute_cap_g_per_kwh: float | None = None
    carbon_window: timedelta = timedelta(hours=1)
    carbon_horizon: timedelta = timedelta(hours=24)
    min_dwell: timedelta = timedelta(minutes=15)
    elastic_slot: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        for name in ("performance_quantile", "eco_quantile"):
            q = getattr(self, name)
            if not 0.0 < q < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {q}")
        if self.eco_quantile > self.performance_quantile:
            raise ValueError("eco_quantile must not exceed performance_quantile")
        if not 0 <= self.eco_min_headroom <= self.eco_headroom <= self.performance_headroom:
            raise ValueError(
                "need 0 <= eco_min_headroom <= eco_headroom <= performance_headroom, got "
                f"{self.eco_min_headroom}, {self.eco_headroom}, {self.performance_headroom}"
            )
        if not 0 <= self.eco_exit_percentile <= self.eco_enter_percentile <= 100:
            raise ValueError(
                "need 0 <= eco_exit_percentile <= eco_enter_percentile <= 100, got "
                f"{self.eco_exit_percentile}, {self.eco_enter_percentile}"
            )
        if not 0 <= self.budget_eco_enter_percentile <= 100:
            raise ValueError("budget_eco_enter_percentile must be in [0, 100]")
        if self.max_step_replicas < 1:
            raise ValueError(f"max_step_replicas must be >= 1, got {self.max_step_replicas}")
        for name in ("decision_step", "carbon_window", "carbon_horizon", "elastic_slot"):
            if getattr(self, name) <= timedelta(0):
                raise ValueError(f"{name} must be positive")
        if self.carbon_horizon < self.carbon_window:
            raise ValueError("carbon_horizon must be at least carbon_window")


# ----------------------------------------------------------------------------- modes


@dataclass(frozen=True, slots=True)
class CarbonOutlook:
    """What the mode decision needs from a region's carbon forecast."""

    region: str
    window_mean_g_per_kwh: float
    percentile: float
    stale: bool
    provider: str
    signal: str


def percentile_rank(value: float, distribution: Sequence[float] | np.ndarray) -> float:
    """Percent of `distribution` at or below `value` (ties count half), in [0, 100]."""
    arr = np.asarray(distribution, dtype=float)
    if arr.size == 0:
        raise ValueError("percentile_rank needs a non-empty distribution")
    below = float(np.count_nonzero(arr < value))
    equal = float(np.count_nonzero(arr == value))
    return 100.0 * (below + 0.5 * equal) / arr.size


def carbon_outlook(
    series: CarbonSeries | None, *, now: datetime, params: PolicyParams
) -> CarbonOutlook | None:
    """Mean over the coming `carbon_window` and its percentile rank among the points over
    `carbon_horizon`; None when the series has no value for the coming window."""
    if series is None:
        return None
    window_mean = series.mean_over(now, now + params.carbon_window)
    if window_mean is None:
        return None
    horizon = series.window(now, now + params.carbon_horizon)
    return CarbonOutlook(
        region=series.region,
        window_mean_g_per_kwh=window_mean,
        percentile=percentile_rank(window_mean, horizon.values),
        stale=series.stale,
        provider=series.provider,
        signal=str(series.signal),
    )


@dataclass(frozen=True, slots=True)
class OverrideWindow:
    """A forced mode over [start, end); `start=None` means "from any time"."""

    mode: Mode
    end: datetime
    start: datetime | None = None
    reason: str = ""

    def contains(self, at: datetime) -> bool:
        return (self.start is None or self.start <= at) and at < self.end


@dataclass(frozen=True, slots=True)
class ModeState:
    mode: Mode
    since: datetime


@dataclass(frozen=True, slots=True)
class ModeDecision:
    mode: Mode
    since: datetime
    reasons: tuple[str, ...]
    percentile: float | None = None

    @property
    def state(self) -> ModeState:
        return ModeState(self.mode, self.since)


def _iso(at: datetime) -> str:
    return at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _dur(td: timedelta) -> str:
    """`24h`, `15m`, `90s`: durations as people write them in reasons."""
    s = round(td.total_seconds())
    if s and s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{s // 60}m" if s and s % 60 == 0 else f"{s}s"


def decide_mode(
    outlook: CarbonOutlook | None,
    *,
    state: ModeState | None,
    now: datetime,
    params: PolicyParams,
    overrides: Sequence[OverrideWindow] = (),
    budget_behind: bool = False,
) -> ModeDecision:
    """Eco or performance for the coming window (see the module docstring)."""
    current = state.mode if state is not None else Mode.PERFORMANCE
    since = state.since if state is not None else now

    def result(mode: Mode, reasons: list[str], pct: float | None = None) -> ModeDecision:
        return ModeDecision(mode, since if mode is current else now, tuple(reasons), pct)

    for window in overrides:
        if window.contains(now):
            why = f" ({window.reason})" if window.reason else ""
            return result(
                window.mode, [f"override: {window.mode} forced until {_iso(window.end)}{why}"]
            )
    if outlook is None:
        return result(current, [f"carbon forecast missing: keep {current} mode"])
    reasons: list[str] = []
    if outlook.stale:
        reasons.append(f"carbon forecast for {outlook.region} is stale: keep {current} mode")
        return result(current, reasons)
    pct = outlook.percentile
    enter, exit_ = params.eco_enter_percentile, params.eco_exit_percentile
    if budget_behind:
        gap = enter - exit_
        enter = min(enter, params.budget_eco_enter_percentile)
        exit_ = max(0.0, min(exit_, enter - gap))
        reasons.append(f"carbon budget behind: eco from percentile {enter:.0f}")
    cap = params.absolute_cap_g_per_kwh
    over_cap = cap is not None and outlook.window_mean_g_per_kwh > cap
    level = (
        f"next {_dur(params.carbon_window)} at {outlook.window_mean_g_per_kwh:.0f} g/kWh "
        f"({outlook.signal}, {outlook.provider}) is percentile {pct:.0f} of the region's "
        f"{_dur(params.carbon_horizon)} forecast"
    )
    if current is Mode.ECO:
        want = Mode.ECO if (pct >= exit_ or over_cap) else Mode.PERFORMANCE
        rule = f"exit eco below percentile {exit_:.0f}"
    else:
        want = Mode.ECO if (pct >= enter or over_cap) else Mode.PERFORMANCE
        rule = f"enter eco at percentile {enter:.0f}"
    reasons.append(f"{level}; {rule}")
    if over_cap:
        reasons.append(f"above the absolute cap of {cap:.0f} g/kWh")
    if want is not current and state is not None and now - since < params.min_dwell:
        reasons.append(
            f"dwell: in {current} since {_iso(since)}, minimum dwell {_dur(params.min_dwell)}; "
            f"{want} deferred"
        )
        return result(current, reasons, pct)
    reasons.append(f"mode {want}" if want is current else f"switch {current} -> {want}")
    return result(want, reasons, pct)


# ----------------------------------------------------------------------------- interactive


@dataclass(frozen=True, slots=True)
class CiWindow:
    """Known extra load over [start, end) from an expanded CI schedule."""

    start: datetime
    end: datetime
    extra_load: float


@dataclass(frozen=True, slots=True)
class ReplicaState:
    """The replicas last decided and recent raw recommendations (for stabilisation)."""

    current: int
    recommendations: tuple[tuple[datetime, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ReplicaDecision:
    target: int
    mode: Mode
    reasons: tuple[str, ...]
    state: ReplicaState
    demand: float | None = None


def _clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, n))


def _window_max(forecast: Forecast, values: np.ndarray, start: datetime, end: datetime) -> float:
    """Max of `values` over the forecast steps overlapping [start, end); NaN if none."""
    s0 = to_epoch_s(forecast.start)
    step = forecast.step.total_seconds()
    lo = max(0, math.floor((to_epoch_s(start) - s0) / step + _EPS))
    hi = min(forecast.horizon, math.ceil((to_epoch_s(end) - s0) / step - _EPS))
    return float(values[lo:hi].max()) if hi > lo else math.nan


def decide_replicas(
    workload: Workload,
    *,
    forecast: Forecast | None,
    load_stale: bool,
    mode: Mode,
    state: ReplicaState,
    now: datetime,
    params: PolicyParams,
    ci_windows: Sequence[CiWindow] = (),
) -> ReplicaDecision:
    """The interactive replica target (see the module docstring)."""
    lo, hi = workload.min_replicas, workload.max_replicas
    current = _clamp(state.current, lo, hi)
    horizon_end = now + params.decision_step + params.scale_up_lead
    demand_q = (
        math.nan
        if forecast is None or load_stale
        else _window_max(
            forecast,
            forecast.quantile(
                params.eco_quantile if mode is Mode.ECO else params.performance_quantile
            ),
            now,
            horizon_end,
        )
    )
    if math.isnan(demand_q):
        why = (
            "missing"
            if forecast is None
            else "stale"
            if load_stale
            else "not covering the next step"
        )
        held = (f"load forecast {why}: hold {current} replicas (never scale down on missing data)",)
        return ReplicaDecision(current, mode, held, replace(state, current=current))
    assert forecast is not None
    reasons: list[str] = []
    demand = _demand(
        workload,
        forecast,
        demand_q,
        mode=mode,
        now=now,
        horizon_end=horizon_end,
        params=params,
        ci_windows=ci_windows,
        reasons=reasons,
    )
    raw = _clamp(math.ceil(demand / workload.capacity_per_replica - _EPS), lo, hi)
    reasons.append(
        f"demand {demand:.4g} / {workload.capacity_per_replica:g} per replica -> {raw} "
        f"(bounds {lo}..{hi})"
    )
    target, recs = _stabilised(raw, current, state=state, now=now, params=params, reasons=reasons)
    step = params.max_step_replicas
    limited = _clamp(target, current - step, current + step)
    if limited != target:
        reasons.append(f"step limit: at most {step} replicas per decision, {current} -> {limited}")
    target = _clamp(limited, lo, hi)
    reasons.append(f"target {target} (was {current})")
    return ReplicaDecision(target, mode, tuple(reasons), ReplicaState(target, recs), demand)


def _demand(
    workload: Workload,
    forecast: Forecast,
    demand_q: float,
    *,
    mode: Mode,
    now: datetime,
    horizon_end: datetime,
    params: PolicyParams,
    ci_windows: Sequence[CiWindow],
    reasons: list[str],
) -> float:
    """The load to size for: the mode's quantile `demand_q` with its headroom (eco: floored
    at the median plus the minimum headroom), plus the CI runs starting before
    `horizon_end`; each step said in `reasons`."""
    perf_headroom = (
        workload.headroom if workload.headroom is not None else params.performance_headroom
    )
    if mode is Mode.ECO:
        median = _window_max(forecast, forecast.quantile(0.5), now, horizon_end)
        headroom = min(params.eco_headroom, perf_headroom)
        demand = max(demand_q * (1 + headroom), median * (1 + params.eco_min_headroom))
        reasons.append(
            f"eco: q{params.eco_quantile:g} load {demand_q:.4g} +{headroom:.0%} headroom, "
            f"floor median {median:.4g} +{params.eco_min_headroom:.0%}"
        )
    else:
        demand = demand_q * (1 + perf_headroom)
        reasons.append(
            f"performance: q{params.performance_quantile:g} load {demand_q:.4g} "
            f"+{perf_headroom:.0%} headroom"
        )
    extra = 0.0
    for w in ci_windows:
        if w.start < horizon_end and w.end > now:
            extra += w.extra_load
            reasons.append(f"pre-warm for CI load +{w.extra_load:.4g} from {_iso(w.start)}")
    return demand + extra


def _stabilised(
    raw: int,
    current: int,
    *,
    state: ReplicaState,
    now: datetime,
    params: PolicyParams,
    reasons: list[str],
) -> tuple[int, tuple[tuple[datetime, int], ...]]:
    """Scale-down stabilisation: the highest recommendation within the window (this one
    included) bounds a scale-down; (target, the recommendations kept)."""
    cutoff = now - params.scale_down_stabilisation
    recs = (*(r for r in state.recommendations if r[0] > cutoff), (now, raw))
    target = raw
    if raw < current:
        target = max(raw, min(current, max(n for _, n in recs)))
        if target > raw:
            reasons.append(
                f"stabilisation: highest recommendation in {_dur(params.scale_down_stabilisation)} "
                f"keeps {target}"
            )
    return target, recs


# ----------------------------------------------------------------------------- elastic


def slot_intensities(
    series: CarbonSeries | None, *, starts: Sequence[datetime], ends: Sequence[datetime]
) -> tuple[float, ...] | None:
    """Mean intensity per slot; a slot without data takes the last known value before it (or
    the first value after). None when the series is missing or empty."""
    if series is None or len(series) == 0:
        return None
    s = np.array([to_epoch_s(t) for t in starts])[:, None]
    e = np.array([to_epoch_s(t) for t in ends])[:, None]
    t0 = series.epoch_s[None, :]
    overlap = np.clip(
        np.minimum(t0 + series.resolution.total_seconds(), e) - np.maximum(t0, s), 0, None
    )
    covered = overlap.sum(axis=1)
    means = (overlap @ series.values) / np.where(covered > 0, covered, 1.0)
    out: list[float] = []
    for i, start in enumerate(starts):
        if covered[i] > 0:
            out.append(float(means[i]))
        else:
            point = series.latest(at=start) or series.points[0]
            out.append(point.value)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ElasticPlan:
    """Replicas per slot from `slot_starts[i]` to `slot_ends[i]` (the first slot starts now,
    the last ends at the deadline)."""

    slot_starts: tuple[datetime, ...]
    slot_ends: tuple[datetime, ...]
    replicas: tuple[int, ...]
    remaining_work: float
    planned_work: float
    feasible: bool
    expected_g: float
    unaware_g: float
    reasons: tuple[str, ...]


def elastic_slots(
    now: datetime, deadline: datetime, slot: timedelta
) -> tuple[list[datetime], list[datetime]]:
    """Slots from `now` to `deadline`: the first ends at the next multiple of `slot`, the last
    at the deadline."""
    starts: list[datetime] = []
    ends: list[datetime] = []
    s = now
    boundary = floor_to(now, slot) + slot  # later boundaries are whole slots apart
    while s < deadline:
        e = min(boundary, deadline)
        starts.append(s)
        ends.append(e)
        s = e
        boundary = e + slot
    return starts, ends


def plan_elastic(
    spec: ElasticSpec,
    *,
    remaining_work: float,
    now: datetime,
    intensities: Sequence[float] | None,
    busy_watts: float,
    min_replicas: int,
    max_replicas: int,
    slot: timedelta,
) -> ElasticPlan:
    """Carbon-minimal replicas per slot until `spec.deadline` (greedy on work per gCO2).

    `intensities` has one value per slot of `elastic_slots(now, deadline, slot)`; None plans
    carbon-unaware (as early as possible). Exact at slot granularity: a replica runs a whole
    slot, so the plan may finish a little more work than needed."""
    starts, ends = elastic_slots(now, spec.deadline, slot)
    n = len(starts)
    durs = [(e - s).total_seconds() for s, e in zip(starts, ends, strict=True)]
    unknown = intensities is None
    inten = [1.0] * n if intensities is None else [float(v) for v in intensities]
    if len(inten) != n:
        raise ValueError(f"{n} slots but {len(inten)} intensities")
    g_per_replica_s = [busy_watts / 3.6e6 * i for i in inten]  # gCO2 per replica-second

    rate_min, rate_max = spec.throughput(min_replicas), spec.throughput(max_replicas)
    alloc = [min_replicas] * n
    planned = sum(rate_min * d for d in durs)
    capacity = sum(rate_max * d for d in durs)
    feasible = capacity + _EPS * max(1.0, remaining_work) >= remaining_work
    reasons: list[str] = []
    if not feasible:
        alloc = [max_replicas] * n
        planned = capacity
        reasons.append(
            f"deadline {_iso(spec.deadline)} infeasible: {remaining_work:.4g} work left, "
            f"{max_replicas} replicas finish only {capacity:.4g} by then; running at max"
        )
    elif planned < remaining_work:
        # every increment: (work per gCO2, slot, replica index); earlier slots win ties.
        # (numpy lexsort: the same order as sorting those tuples, without a Python loop)
        ks = np.arange(min_replicas, max_replicas)
        marginal = np.array([spec.marginal_throughput(int(k)) for k in ks])
        g_arr = np.maximum(np.asarray(g_per_replica_s, dtype=float), 1e-300)
        ratio = -(marginal[None, :] / g_arr[:, None])
        t_idx = np.repeat(np.arange(n), ks.size)
        k_idx = np.tile(ks, n)
        order = np.lexsort((k_idx, t_idx, ratio.ravel()))
        for i in order:
            if planned >= remaining_work - _EPS * max(1.0, remaining_work):
                break
            t, k = int(t_idx[i]), int(k_idx[i])
            alloc[t] = k + 1
            planned += float(marginal[k - min_replicas]) * durs[t]
    expected = sum(a * g * d for a, g, d in zip(alloc, g_per_replica_s, durs, strict=True))
    unaware = _asap_g(spec, remaining_work, durs, g_per_replica_s, min_replicas, max_replicas)
    if feasible:
        reasons.append(
            f"plan: {remaining_work:.4g} work by {_iso(spec.deadline)} over {n} slots, "
            + ("carbon unknown: as early as possible" if unknown else "greedy on work per gCO2")
        )
    if not unknown:
        reasons.append(f"expected {expected:.4g} gCO2 vs {unaware:.4g} g as fast as possible")
    return ElasticPlan(
        tuple(starts),
        tuple(ends),
        tuple(alloc),
        remaining_work,
        planned,
        feasible,
        expected,
        unaware,
        tuple(reasons),
    )


def _asap_g(
    spec: ElasticSpec,
    work: float,
    durs: Sequence[float],
    g_per_replica_s: Sequence[float],
    min_replicas: int,
    max_replicas: int,
) -> float:
    """Emissions of the carbon-unaware plan: max replicas from now until the work is done."""
    rate = spec.throughput(max_replicas)
    total = 0.0
    for d, g in zip(durs, g_per_replica_s, strict=True):
        if work <= 0:
            break
        run = min(d, work / rate)
        total += max_replicas * g * run
        work -= rate * run
    return total


@dataclass(frozen=True, slots=True)
class ElasticDecision:
    target: int
    reasons: tuple[str, ...]
    plan: ElasticPlan | None


def decide_elastic(
    workload: Workload,
    *,
    remaining_work: float,
    intensities: Sequence[float] | None,
    carbon_stale: bool,
    current: int,
    now: datetime,
    params: PolicyParams,
) -> ElasticDecision:
    """This tick's replicas for an elastic workload: the first slot of a fresh plan.

    Elastic targets skip stabilisation and step limits: a plan that must meet a deadline is
    not rate-limited. On stale or missing carbon the plan is carbon-unaware and the target
    never drops below the current replicas."""
    spec = workload.elastic
    if spec is None:
        raise ValueError(f"{workload.name} is not elastic")
    lo, hi = workload.min_replicas, workload.max_replicas
    if remaining_work <= 0:
        return ElasticDecision(lo, ("work complete: minimum replicas",), None)
    if now >= spec.deadline:
        return ElasticDecision(
            hi,
            (
                f"deadline {_iso(spec.deadline)} passed with {remaining_work:.4g} work left: "
                f"running at max",
            ),
            None,
        )
    plan = plan_elastic(
        spec,
        remaining_work=remaining_work,
        now=now,
        intensities=None if carbon_stale else intensities,
        busy_watts=workload.power.busy_watts,
        min_replicas=lo,
        max_replicas=hi,
        slot=params.elastic_slot,
    )
    target = plan.replicas[0]
    reasons = list(plan.reasons)
    unknown = carbon_stale or intensities is None
    if unknown:
        reasons.insert(0, "carbon forecast stale or missing: no scale-down")
        target = max(target, _clamp(current, lo, hi))
    budget = workload.budget_reduction_percent
    if budget is not None and not unknown and plan.unaware_g > 0:
        achieved = 100.0 * (1 - plan.expected_g / plan.unaware_g)
        verdict = "met" if achieved + _EPS >= budget else "NOT attainable"
        reasons.append(
            f"budget {budget:g}% less than carbon-unaware: plan saves {achieved:.1f}%, {verdict}"
        )
    reasons.append(f"target {target} now")
    return ElasticDecision(target, tuple(reasons), plan)
