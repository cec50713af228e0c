"""The peers, the oracle and the one scoring rule every policy is measured by (pure).

Scoring (the same for every policy):
- interactive, per interval of `dt` hours at intensity `c` g/kWh, demand `d`, replicas `r`,
  capacity per replica `cap`: served = min(d, r x cap); watts = r x idle + (busy - idle) x
  served / cap (each replica linear in its utilisation); gCO2 = watts x dt / 1000 x c; the
  interval violates the SLO when d > r x cap (capacity under demand).
- elastic, per job: from its submission, each interval runs `r` replicas at busy watts and
  does throughput(r) x dt work; the job stops the moment its work is done (the last interval
  counts only the fraction it ran); a job not done by its deadline is a miss.

Peers (the decision for an interval uses only what that policy could know):
- `static_replicas`: peak demand of the period / capacity, all period (interactive); the
  carbon-agnostic baseline of elastic jobs is `base_replicas` from submission.
- `hpa_replicas`: the HPA's external/utilisation math of the reference notes §2.9 (ratio,
  0.1 tolerance, scale-down to the highest recommendation of the stabilisation window,
  scale-up at most max(2x, 4), clamp; above maxReplicas -> maxReplicas), on the load observed
  `lag_intervals` earlier; optional per-interval maxReplicas (the KEDA operator's ceiling).
- `keda_ceilings`: carbon-aware-keda-operator's maxReplicas by intensity bucket, the buckets
  equal slices of [min, max] intensity as its README derives them, a value in a bucket when
  it is > the lower and <= the upper threshold, above all thresholds -> the last bucket.
- Oracle: interactive `ceil(d / cap)` per interval (clamped), the exact minimum for any
  policy that serves the demand; elastic the fractional greedy on marginal work per gCO2 over
  the true carbon (`oracle_job`), optimal (a lower bound for every schedule meeting the
  deadline) for a non-increasing marginal throughput.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from scaler.core.workload import ElasticSpec, Workload
from scaler.replay.model import (
    HpaParams,
    Job,
    JobOutcome,
    KedaParams,
    PolicyName,
    WorkloadOutcome,
)

__all__ = [
    "hpa_replicas",
    "keda_ceilings",
    "keda_thresholds",
    "oracle_job",
    "oracle_replicas",
    "run_job",
    "score_interactive",
    "static_replicas",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_EPS = 1e-9


def _ceil(x: float) -> int:
    return math.ceil(x - _EPS)


def _clamp(n: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, n))


# ----------------------------------------------------------------------------- scoring


def score_interactive(
    w: Workload,
    *,
    policy: PolicyName,
    replicas: Sequence[float] | FloatArray,
    demand: FloatArray,
    carbon: FloatArray,
    step: timedelta,
    horizon_intervals: int | None = None,
    eco_fraction: float | None = None,
) -> WorkloadOutcome:
    """Emissions, energy, replica-hours and SLO-violating intervals of `replicas` against
    `demand` and `carbon` (aligned arrays, one value per interval)."""
    r = np.asarray(replicas, dtype=float)
    n = r.size
    if demand.size != n or carbon.size < n:
        raise ValueError(f"{n} replica values, {demand.size} demand, {carbon.size} carbon")
    cap = w.capacity_per_replica
    served = np.minimum(demand, r * cap)
    watts = r * w.power.idle_watts + (w.power.busy_watts - w.power.idle_watts) * served / cap
    hours = step.total_seconds() / 3600.0
    kwh = watts * hours / 1000.0
    g = kwh * carbon[:n]
    violations = int(np.count_nonzero(demand > r * cap * (1 + _EPS) + _EPS))
    total = horizon_intervals or n
    return WorkloadOutcome(
        workload=w.name,
        policy=policy,
        interactive=True,
        replicas=np.pad(r, (0, total - n)),
        emitted_g_per_interval=np.pad(g, (0, total - n)),
        emitted_g=float(g.sum()),
        energy_kwh=float(kwh.sum()),
        replica_hours=float(r.sum() * hours),
        slo_violations=violations,
        intervals=n,
        eco_fraction=eco_fraction,
    )


def run_job(
    spec: ElasticSpec,
    job: Job,
    *,
    busy_watts: float,
    replicas: Sequence[int],
    first_interval: int,
    period_start: datetime,
    step: timedelta,
    carbon: FloatArray,
    replicas_out: FloatArray,
    emitted_out: FloatArray,
) -> JobOutcome:
    """Run `job` with `replicas[k]` in interval `first_interval + k` until its work is done
    (see the module docstring); adds its replicas and gCO2 per interval into the `*_out`
    arrays (scenario horizon). `completed_at` is None when the replicas given never finish."""
    dt = step.total_seconds()
    remaining = job.work
    g_total = kwh_total = rh_total = 0.0
    completed: datetime | None = None
    for k, r in enumerate(replicas):
        t = first_interval + k
        if t >= carbon.size or remaining <= 0:
            break
        if r <= 0:
            continue
        work = spec.throughput(int(r)) * dt
        frac = 1.0 if work < remaining else remaining / work
        remaining -= work * frac
        kwh = r * busy_watts * dt * frac / 3.6e6
        g = kwh * float(carbon[t])
        g_total += g
        kwh_total += kwh
        rh_total += r * dt * frac / 3600.0
        replicas_out[t] += r * frac
        emitted_out[t] += g
        if remaining <= job.work * 1e-12:
            remaining = 0.0
            completed = period_start + step * t + timedelta(seconds=dt * frac)
    return JobOutcome(job.submitted_at, job.deadline, completed, g_total, kwh_total, rh_total)


# ----------------------------------------------------------------------------- peers


def static_replicas(w: Workload, demand: FloatArray) -> IntArray:
    """Peak demand of the period over capacity, clamped, every interval."""
    peak = float(demand.max()) if demand.size else 0.0
    n = _clamp(_ceil(peak / w.capacity_per_replica), max(1, w.min_replicas), w.max_replicas)
    return np.full(demand.size, n, dtype=np.int64)


def hpa_replicas(
    w: Workload,
    *,
    observed: FloatArray,
    first: int,
    n: int,
    params: HpaParams,
    step: timedelta,
    max_replicas: Sequence[int] | IntArray | None = None,
) -> IntArray:
    """Replicas per interval `first .. first+n-1` of `observed` (the load trace including the
    history before the period) as the HPA would set them (see the module docstring)."""
    cap = w.capacity_per_replica
    per_replica = cap * params.target_utilisation
    lo = max(1, w.min_replicas)

    def seen(t: int) -> float:
        return float(observed[max(0, t - params.lag_intervals)])

    first_max = w.max_replicas if max_replicas is None else int(max_replicas[0])
    current = _clamp(_ceil(seen(first) / per_replica), lo, max(lo, first_max))
    window: deque[tuple[float, int]] = deque()
    stab_s = params.downscale_stabilisation.total_seconds()
    dt = step.total_seconds()
    out = np.empty(n, dtype=np.int64)
    for k in range(n):
        hi = w.max_replicas if max_replicas is None else min(w.max_replicas, int(max_replicas[k]))
        lo_k = min(lo, hi)
        now_s = k * dt
        if current > hi:
            desired = hi
        else:
            load = seen(first + k)
            ratio = load / (current * per_replica) if current > 0 else math.inf
            if current > 0 and abs(ratio - 1.0) <= params.tolerance:
                rec = current
            else:
                rec = _ceil(load / per_replica)
            window.append((now_s, rec))
            while window and window[0][0] <= now_s - stab_s:
                window.popleft()
            desired = rec
            if rec < current:
                desired = min(current, max(r for _, r in window))
            desired = min(desired, max(2 * current, 4))
            desired = _clamp(desired, lo_k, hi)
        current = desired
        out[k] = current
    return out


def keda_thresholds(carbon: FloatArray, buckets: int) -> tuple[float, ...]:
    """Upper thresholds of `buckets` equal slices of [min, max] intensity (ascending)."""
    lo, hi = float(np.min(carbon)), float(np.max(carbon))
    width = (hi - lo) / buckets
    return tuple(lo + width * (i + 1) for i in range(buckets))


def keda_ceilings(
    carbon: FloatArray,
    *,
    thresholds: Sequence[float],
    params: KedaParams,
    max_replicas: int,
    min_replicas: int,
) -> IntArray:
    """maxReplicas per interval: the bucket of each interval's intensity (0 < c <= first
    threshold is the first bucket, above the last threshold the last bucket)."""
    caps = [max(min_replicas, round(f * max_replicas)) for f in params.max_replicas_fractions]
    idx = np.searchsorted(np.asarray(thresholds), carbon, side="left")
    idx = np.minimum(idx, len(caps) - 1)
    return np.asarray([caps[i] for i in idx], dtype=np.int64)


# ----------------------------------------------------------------------------- oracle


def oracle_replicas(w: Workload, demand: FloatArray) -> IntArray:
    """The fewest replicas that serve each interval's demand, clamped to [min, max]."""
    raw = np.ceil(demand / w.capacity_per_replica - _EPS).astype(np.int64)
    return np.clip(raw, w.min_replicas, w.max_replicas)


def oracle_job(
    spec: ElasticSpec,
    job: Job,
    *,
    busy_watts: float,
    max_replicas: int,
    first_interval: int,
    period_start: datetime,
    step: timedelta,
    carbon: FloatArray,
    replicas_out: FloatArray,
    emitted_out: FloatArray,
) -> JobOutcome:
    """The carbon-minimal schedule with perfect knowledge of the true carbon: every
    (interval, k-th replica) increment adds marginal_throughput(k) x its duration of work at
    busy_watts x duration x intensity; take increments by most work per gCO2 until the work is
    done, the last one for the fraction needed. For a non-increasing marginal throughput this
    is the optimum of the linear relaxation, so no schedule that meets the deadline emits less.
    """
    dt = step.total_seconds()
    deadline_s = (job.deadline - period_start).total_seconds()
    last = min(carbon.size, math.ceil(deadline_s / dt - _EPS))
    slots = list(range(first_interval, last))
    durs = {t: min(dt, deadline_s - t * dt) for t in slots}
    incs = sorted(
        (
            (float(carbon[t]) / spec.marginal_throughput(k), t, k)
            for t in slots
            for k in range(max_replicas)
        ),
    )
    remaining = job.work
    g_total = kwh_total = rh_total = 0.0
    finish_t = -1
    finish_frac = 0.0
    for _, t, k in incs:
        if remaining <= job.work * 1e-12:
            break
        work = spec.marginal_throughput(k) * durs[t]
        frac = min(1.0, remaining / work)
        remaining -= work * frac
        seconds = durs[t] * frac
        kwh = busy_watts * seconds / 3.6e6
        g = kwh * float(carbon[t])
        g_total += g
        kwh_total += kwh
        rh_total += seconds / 3600.0
        replicas_out[t] += frac * durs[t] / dt
        emitted_out[t] += g
        if t > finish_t or (t == finish_t and frac > finish_frac):
            finish_t, finish_frac = t, (frac if frac < 1.0 else durs[t] / dt)
    completed = (
        None
        if remaining > job.work * 1e-9 or finish_t < 0
        else period_start + step * finish_t + timedelta(seconds=dt * finish_frac)
    )
    return JobOutcome(job.submitted_at, job.deadline, completed, g_total, kwh_total, rh_total)
