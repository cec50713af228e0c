"""The replay's domain values (pure): a scenario, its workloads and jobs, and the results.

A scenario is a period on a regular step grid, workloads with their recorded demand
(interactive) or job submissions (elastic), and each region's recorded carbon intensity on
the same grid. Intervals are `[start + i*step, start + (i+1)*step)`; a demand value is the
mean load over its interval, a carbon value the mean intensity over its interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from forecasts.series import RegularSeries
from forecasts.time import ensure_utc, to_epoch_s
from scaler.core.workload import Workload, WorkloadClass

__all__ = [
    "HpaParams",
    "Job",
    "JobOutcome",
    "KedaParams",
    "PolicyName",
    "ReplayResult",
    "ReplayScenario",
    "ReplayWorkload",
    "WorkloadOutcome",
]

FloatArray = npt.NDArray[np.float64]


class PolicyName(StrEnum):
    STATIC = "static"
    HPA = "hpa"
    KEDA_CARBON = "keda-carbon"
    GRIDSHIFT_PERFORMANCE = "gridshift-performance"
    GRIDSHIFT = "gridshift"
    ORACLE = "oracle"


@dataclass(frozen=True, slots=True)
class HpaParams:
    """The reactive HPA emulation (reference notes §2.9, legacy behaviour without `behavior`).

    `target_utilisation`: load / (replicas x capacity_per_replica) the HPA aims at;
    `tolerance`: no change while the ratio is within 1 +- tolerance; scale-down takes the
    highest recommendation of the last `downscale_stabilisation`; scale-up at most
    max(2 x current, 4); `lag_intervals`: the decision for an interval sees the load observed
    `lag_intervals` intervals earlier (it reacts to measured utilisation)."""

    target_utilisation: float = 0.7
    tolerance: float = 0.1
    downscale_stabilisation: timedelta = timedelta(minutes=5)
    lag_intervals: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.target_utilisation <= 1:
            raise ValueError(f"target_utilisation must be in (0, 1], got {self.target_utilisation}")
        if not 0 <= self.tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {self.tolerance}")
        if self.lag_intervals < 0:
            raise ValueError(f"lag_intervals must be >= 0, got {self.lag_intervals}")


@dataclass(frozen=True, slots=True)
class KedaParams:
    """carbon-aware-keda-operator ceilings: `len(max_replicas_fractions)` equal-width buckets
    between the region's minimum and maximum intensity (that project's README), the i-th
    (ascending intensity) capping max replicas at `fractions[i] x max_replicas`."""

    max_replicas_fractions: tuple[float, ...] = (1.0, 0.6, 0.1)

    def __post_init__(self) -> None:
        if not self.max_replicas_fractions:
            raise ValueError("max_replicas_fractions must not be empty")
        if any(not 0 <= f <= 1 for f in self.max_replicas_fractions):
            raise ValueError("max_replicas_fractions must lie in [0, 1]")


@dataclass(frozen=True, slots=True)
class Job:
    """One submission of an elastic workload: `work` units (at the workload's throughput
    profile, per second) due by `deadline`."""

    submitted_at: datetime
    deadline: datetime
    work: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "submitted_at", ensure_utc(self.submitted_at, name="submitted"))
        object.__setattr__(self, "deadline", ensure_utc(self.deadline, name="deadline"))
        if self.deadline <= self.submitted_at:
            raise ValueError("a job's deadline must be after its submission")
        if self.work <= 0:
            raise ValueError(f"job work must be > 0, got {self.work}")


@dataclass(frozen=True, slots=True)
class ReplayWorkload:
    """A workload to replay. Interactive: `demand` (load per interval, NaN-free) on the
    scenario grid, starting at or before the scenario start (earlier steps are the history
    the scaler may learn from). Elastic: `jobs`; `workload.elastic` gives the throughput
    profile (its own work and deadline are ignored); `base_replicas` is the scale of the
    carbon-agnostic baseline."""

    workload: Workload
    demand: RegularSeries | None = None
    jobs: tuple[Job, ...] = ()
    base_replicas: int = 1

    def __post_init__(self) -> None:
        w = self.workload
        if w.workload_class is WorkloadClass.INTERACTIVE:
            if self.demand is None:
                raise ValueError(f"{w.name}: an interactive workload needs a demand trace")
            if np.isnan(self.demand.values).any():
                raise ValueError(f"{w.name}: demand has gaps; fill them first")
            if (self.demand.values < 0).any():
                raise ValueError(f"{w.name}: demand must be >= 0")
        else:
            if not self.jobs:
                raise ValueError(f"{w.name}: an elastic workload needs at least one job")
            if not w.min_replicas <= self.base_replicas <= w.max_replicas:
                raise ValueError(f"{w.name}: base_replicas must lie in [min, max] replicas")
            if self.base_replicas < 1:
                raise ValueError(f"{w.name}: base_replicas must be >= 1")

    @property
    def name(self) -> str:
        return self.workload.name

    @property
    def interactive(self) -> bool:
        return self.workload.workload_class is WorkloadClass.INTERACTIVE


@dataclass(frozen=True, slots=True)
class ReplayScenario:
    """Everything a replay needs, already read and validated.

    `carbon[region]` must cover `[start, horizon_end)` on the scenario grid, NaN-free; data
    before `start` is history forecasts may use."""

    name: str
    start: datetime
    end: datetime
    step: timedelta
    workloads: tuple[ReplayWorkload, ...]
    carbon: Mapping[str, RegularSeries]
    policies: tuple[PolicyName, ...] = tuple(PolicyName)
    hpa: HpaParams = HpaParams()
    keda: KedaParams = KedaParams()
    forecast_noise_percent: float = 0.0
    seed: int = 0
    notes: tuple[str, ...] = field(default=())
    #: Extends the horizon to at least this instant: a part of a fleet replay keeps the
    #: whole scenario's horizon (set by `scaler.replay.fleet.partition`).
    horizon_until: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, name="start"))
        object.__setattr__(self, "end", ensure_utc(self.end, name="end"))
        if self.end <= self.start:
            raise ValueError("the period's end must be after its start")
        if self.step <= timedelta(0):
            raise ValueError("step must be positive")
        if (self.end - self.start) % self.step:
            raise ValueError("the period must be a whole number of steps")
        names = [w.name for w in self.workloads]
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"workload names must be unique and non-empty: {names}")
        if PolicyName.ORACLE not in self.policies:
            object.__setattr__(self, "policies", (*self.policies, PolicyName.ORACLE))
        if not 0 <= self.forecast_noise_percent <= 100:
            raise ValueError("forecast_noise_percent must be in [0, 100]")
        for w in self.workloads:
            region = w.workload.region
            series = self.carbon.get(region)
            if series is None:
                raise ValueError(f"{w.name}: no carbon trace for region {region!r}")
            if series.step != self.step:
                raise ValueError(f"carbon of {region}: step {series.step} != {self.step}")
            if np.isnan(series.values).any():
                raise ValueError(f"carbon of {region} has gaps; fill them first")
            if self.index(series, self.start) < 0 or self.index(series, self.horizon_end) > len(
                series
            ):
                raise ValueError(
                    f"carbon of {region} must cover {self.start.isoformat()} .. "
                    f"{self.horizon_end.isoformat()}"
                )
            if w.demand is not None:
                if w.demand.step != self.step:
                    raise ValueError(f"{w.name}: demand step {w.demand.step} != {self.step}")
                if self.index(w.demand, self.start) < 0 or self.index(w.demand, self.end) > len(
                    w.demand
                ):
                    raise ValueError(f"{w.name}: demand must cover the period")
            for j in w.jobs:
                if not self.start <= j.submitted_at < self.end:
                    raise ValueError(f"{w.name}: job submitted outside the period")
                if (j.submitted_at - self.start) % self.step:
                    raise ValueError(f"{w.name}: job submissions must lie on the step grid")

    @property
    def intervals(self) -> int:
        return (self.end - self.start) // self.step

    @property
    def horizon_end(self) -> datetime:
        """End of the period or of the latest job deadline (rounded up to the grid)."""
        deadlines = (j.deadline for w in self.workloads for j in w.jobs)
        last = max([self.end, self.horizon_until or self.end, *deadlines])
        n = -(-(last - self.start) // self.step)
        return self.start + n * self.step

    @property
    def horizon_intervals(self) -> int:
        return (self.horizon_end - self.start) // self.step

    @staticmethod
    def index(series: RegularSeries, at: datetime) -> int:
        """Index of the step of `series` starting at `at` (which must be on its grid)."""
        off = (to_epoch_s(at) - to_epoch_s(series.start)) / series.step.total_seconds()
        i = round(off)
        if abs(off - i) > 1e-6:
            raise ValueError(f"{at.isoformat()} is off the grid of a series")
        return i

    def carbon_on_horizon(self, region: str) -> FloatArray:
        """The region's intensity per interval over `[start, horizon_end)`."""
        s = self.carbon[region]
        i = self.index(s, self.start)
        return np.asarray(s.values[i : i + self.horizon_intervals], dtype=float)

    def demand_in_period(self, w: ReplayWorkload) -> FloatArray:
        assert w.demand is not None
        i = self.index(w.demand, self.start)
        return np.asarray(w.demand.values[i : i + self.intervals], dtype=float)


@dataclass(frozen=True, slots=True)
class JobOutcome:
    submitted_at: datetime
    deadline: datetime
    completed_at: datetime | None
    emitted_g: float
    energy_kwh: float
    replica_hours: float

    @property
    def missed(self) -> bool:
        return self.completed_at is None or self.completed_at > self.deadline + timedelta(
            seconds=1e-6
        )


@dataclass(frozen=True, slots=True)
class WorkloadOutcome:
    """One policy on one workload. `replicas` (per interval over the scenario horizon; for
    elastic workloads summed over jobs, fractional for the oracle) and `emitted_g_per_interval`
    feed the plots; the totals feed the tables."""

    workload: str
    policy: PolicyName
    interactive: bool
    replicas: FloatArray
    emitted_g_per_interval: FloatArray
    emitted_g: float
    energy_kwh: float
    replica_hours: float
    slo_violations: int = 0
    intervals: int = 0
    jobs: tuple[JobOutcome, ...] = ()
    eco_fraction: float | None = None

    @property
    def deadline_misses(self) -> int:
        return sum(j.missed for j in self.jobs)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """Every policy's outcome per workload, and how gridshift got its carbon forecasts."""

    scenario: ReplayScenario
    outcomes: Mapping[PolicyName, Mapping[str, WorkloadOutcome]]
    carbon_forecast: str
    seconds: float
    ticks: int
