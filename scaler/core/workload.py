"""The workload model: what the scaler scales, as plain frozen values (pure, no I/O).

A `Workload` names its Kubernetes target, where its load comes from, how much load one replica
serves, how much power a replica draws, which grid region it runs in, its CI schedules and its
class: `interactive` (follows demand) or `elastic` (a fixed amount of work due by a deadline).
The pydantic settings in `config.settings.ScalerSettings` are translated into these values in
`config.wiring`; nothing here knows about settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from forecasts.time import ensure_utc

__all__ = [
    "CiSchedule",
    "ElasticSpec",
    "LoadSourceKind",
    "LoadSpec",
    "ModeOverride",
    "PowerModel",
    "TargetKind",
    "TargetRef",
    "Workload",
    "WorkloadClass",
]


class TargetKind(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"
    SCALED_OBJECT = "ScaledObject"


class WorkloadClass(StrEnum):
    INTERACTIVE = "interactive"
    ELASTIC = "elastic"


class LoadSourceKind(StrEnum):
    PROMQL = "promql"
    TRACE = "trace"


@dataclass(frozen=True, slots=True)
class TargetRef:
    """The object whose replica count we set (a KEDA ScaledObject carries its own target).
    `kind` is a `TargetKind` for config-file workloads; a CarbonAwareScaler may name any kind
    with a scale subresource."""

    kind: TargetKind | str
    name: str


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Where demand comes from: a PromQL expression or the name of a trace/sample series.

    With `match`, `query` is a grouped PromQL expression shared by many workloads (e.g.
    `sum by (namespace, workload) (rate(http_requests_total[2m]))`) and the workload's load is
    its one series whose labels include every `match` pair; workloads sharing the query are
    fetched with one range query per tick."""

    kind: LoadSourceKind
    query: str
    unit: str = "requests/s"
    match: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not self.query.strip():
            raise ValueError("load query must not be empty")
        if self.match and self.kind is not LoadSourceKind.PROMQL:
            raise ValueError("load match labels need a PromQL load query")


@dataclass(frozen=True, slots=True)
class PowerModel:
    """Power draw of one replica: linear between idle and busy watts in its utilisation, or a
    measured series (Kepler/NVML in Prometheus) of the workload's total watts."""

    idle_watts: float
    busy_watts: float
    measured_query: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.idle_watts <= self.busy_watts:
            raise ValueError(
                f"power model needs 0 <= idle_watts <= busy_watts, got "
                f"idle_watts={self.idle_watts}, busy_watts={self.busy_watts}"
            )

    def replica_watts(self, utilisation: float) -> float:
        """Watts of one replica at `utilisation` (clamped to [0, 1])."""
        u = min(1.0, max(0.0, utilisation))
        return self.idle_watts + (self.busy_watts - self.idle_watts) * u


@dataclass(frozen=True, slots=True)
class CiSchedule:
    """Known extra load: `extra_load` for `duration` after each `cron` firing in `timezone`.

    Plain data here; the loop expands it to instants (`forecasts.ci.CISchedule` semantics)."""

    cron: str
    timezone: str
    duration: timedelta
    extra_load: float

    def __post_init__(self) -> None:
        if self.duration <= timedelta(0):
            raise ValueError(f"CI schedule duration must be positive, got {self.duration}")
        if self.extra_load < 0:
            raise ValueError(f"CI schedule extra_load must be >= 0, got {self.extra_load}")


@dataclass(frozen=True, slots=True)
class ModeOverride:
    """Force `mode` ("eco" or "performance"): until an instant, or in recurring cron windows
    (`cron` + `timezone`, each window lasting `duration`)."""

    mode: str
    until: datetime | None = None
    cron: str | None = None
    timezone: str = "UTC"
    duration: timedelta | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.mode not in ("eco", "performance"):
            raise ValueError(f"override mode must be 'eco' or 'performance', got {self.mode!r}")
        if (self.until is None) == (self.cron is None):
            raise ValueError("an override needs exactly one of `until` or `cron`")
        if self.until is not None:
            object.__setattr__(self, "until", ensure_utc(self.until, name="override until"))
        if self.cron is not None and (self.duration is None or self.duration <= timedelta(0)):
            raise ValueError("a recurring (cron) override needs a positive `duration`")


@dataclass(frozen=True, slots=True)
class ElasticSpec:
    """An amount of work (in the workload's work units) due by `deadline`.

    `throughput_per_replica[i]` is the work per second the (i+1)-th replica adds; the last value
    repeats for larger counts. It must not increase (diminishing returns), which makes the
    greedy carbon plan optimal (CarbonScaler's assumption)."""

    total_work: float
    deadline: datetime
    throughput_per_replica: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "deadline", ensure_utc(self.deadline, name="deadline"))
        if self.total_work < 0:
            raise ValueError(f"total_work must be >= 0, got {self.total_work}")
        if not self.throughput_per_replica:
            raise ValueError("throughput_per_replica must list at least one value")
        prev = float("inf")
        for i, t in enumerate(self.throughput_per_replica):
            if t <= 0:
                raise ValueError(f"throughput_per_replica[{i}] must be > 0, got {t}")
            if t > prev:
                raise ValueError(
                    f"throughput_per_replica must not increase: [{i}]={t} after {prev}"
                )
            prev = t

    def marginal_throughput(self, replica_index: int) -> float:
        """Work per second added by replica number `replica_index + 1`."""
        profile = self.throughput_per_replica
        return profile[min(replica_index, len(profile) - 1)]

    def throughput(self, replicas: int) -> float:
        return sum(self.marginal_throughput(i) for i in range(replicas))


@dataclass(frozen=True, slots=True)
class Workload:
    """One scaled workload. `capacity_per_replica` is the load one replica serves at its target
    utilisation; `headroom` overrides the policy's performance headroom when set."""

    name: str
    namespace: str
    target: TargetRef
    load: LoadSpec
    capacity_per_replica: float
    min_replicas: int
    max_replicas: int
    power: PowerModel
    region: str
    workload_class: WorkloadClass = WorkloadClass.INTERACTIVE
    headroom: float | None = None
    ci_schedules: tuple[CiSchedule, ...] = ()
    overrides: tuple[ModeOverride, ...] = ()
    elastic: ElasticSpec | None = None
    budget_reduction_percent: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("workload name must not be empty")
        if self.capacity_per_replica <= 0:
            raise ValueError(
                f"{self.name}: capacity_per_replica must be > 0, got {self.capacity_per_replica}"
            )
        if self.min_replicas < 0:
            raise ValueError(f"{self.name}: min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(1, self.min_replicas):
            raise ValueError(
                f"{self.name}: max_replicas ({self.max_replicas}) must be >= 1 and >= "
                f"min_replicas ({self.min_replicas})"
            )
        if self.headroom is not None and not 0 <= self.headroom <= 10:
            raise ValueError(f"{self.name}: headroom must be in [0, 10], got {self.headroom}")
        if (self.workload_class is WorkloadClass.ELASTIC) != (self.elastic is not None):
            raise ValueError(
                f"{self.name}: only an elastic workload has (and needs) an `elastic` spec"
            )
        if self.budget_reduction_percent is not None and not (
            0 < self.budget_reduction_percent < 100
        ):
            raise ValueError(
                f"{self.name}: budget_reduction_percent must be in (0, 100), "
                f"got {self.budget_reduction_percent}"
            )
