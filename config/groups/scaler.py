"""`scaler`: the tick, the policy's quantiles and headroom, state, and the workloads."""

from __future__ import annotations

import itertools
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from config.groups.base import Group

__all__ = [
    "CiScheduleSettings",
    "ElasticSettings",
    "LoadSourceSettings",
    "ModeOverrideSettings",
    "PowerSettings",
    "ScalerSettings",
    "TargetSettings",
    "WorkloadSettings",
]


class TargetSettings(Group):
    kind: Literal["Deployment", "StatefulSet", "ScaledObject"] = Field(
        "Deployment", description="Deployments are the common case; KEDA users name a ScaledObject."
    )
    name: str = Field(min_length=1, description="Object name in the workload's namespace.")


class LoadSourceSettings(Group):
    promql: str | None = Field(
        None, min_length=1, description="Demand as a PromQL expression (requests/s, queue depth)."
    )
    trace: str | None = Field(
        None, min_length=1, description="Name of a recorded trace or `sample:<profile>`."
    )
    unit: str = Field("requests/s", description="What the load counts; shown with forecasts.")
    match: dict[str, str] | None = Field(
        None,
        min_length=1,
        description="Labels picking this workload's one series out of a grouped `promql` "
        "(e.g. sum by (namespace, workload) (...)); workloads with the same `promql` share one "
        "range query per tick. Unset: `promql` is this workload's own series.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> LoadSourceSettings:
        if (self.promql is None) == (self.trace is None):
            raise ValueError("load needs exactly one of `promql` or `trace`")
        if self.match is not None and self.promql is None:
            raise ValueError("`match` picks a series of a grouped `promql`; it needs `promql`")
        return self


class PowerSettings(Group):
    idle_watts: float = Field(
        10.0, ge=0, le=100_000, description="A small container idles near 10 W of its share."
    )
    busy_watts: float = Field(
        30.0, ge=0, le=100_000, description="About three times idle at full utilisation."
    )
    measured_promql: str | None = Field(
        None,
        min_length=1,
        description="Total watts of the workload (Kepler/NVML series); overrides the linear model.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PowerSettings:
        if self.idle_watts > self.busy_watts:
            raise ValueError(
                f"idle_watts ({self.idle_watts}) must not exceed busy_watts ({self.busy_watts})"
            )
        return self


class CiScheduleSettings(Group):
    cron: str = Field(min_length=1, description="Five-field crontab of the CI run's start.")
    timezone: str = Field("UTC", description="IANA zone the cron is read in.")
    duration_seconds: float = Field(
        1200.0, gt=0, le=7 * 86400, description="Twenty minutes: a typical CI pipeline's run."
    )
    extra_load: float = Field(ge=0, description="Load the run adds, in the workload's load unit.")


class ModeOverrideSettings(Group):
    mode: Literal["eco", "performance"]
    until: datetime | None = Field(None, description="Force the mode until this instant.")
    cron: str | None = Field(None, min_length=1, description="Or: recurring windows starting here.")
    timezone: str = Field("UTC", description="IANA zone the cron is read in.")
    duration_seconds: float | None = Field(
        None, gt=0, description="Length of each recurring window."
    )
    reason: str = Field("", description="Shown in the decision's reasons.")

    @model_validator(mode="after")
    def _one_kind(self) -> ModeOverrideSettings:
        if (self.until is None) == (self.cron is None):
            raise ValueError("an override needs exactly one of `until` or `cron`")
        if self.cron is not None and self.duration_seconds is None:
            raise ValueError("a cron override needs `duration_seconds`")
        if self.until is not None and self.until.tzinfo is None:
            raise ValueError("`until` needs a timezone (e.g. 2026-01-01T00:00:00Z)")
        return self


class ElasticSettings(Group):
    total_work: float = Field(ge=0, description="Work units left to do (e.g. CPU-seconds, jobs).")
    deadline: datetime = Field(description="When the work must be finished (with a timezone).")
    throughput_per_replica: tuple[float, ...] = Field(
        (1.0,),
        min_length=1,
        description="Work/s the n-th replica adds (non-increasing); the last value repeats.",
    )

    @model_validator(mode="after")
    def _checks(self) -> ElasticSettings:
        if self.deadline.tzinfo is None:
            raise ValueError("`deadline` needs a timezone (e.g. 2026-01-01T06:00:00Z)")
        prof = self.throughput_per_replica
        if any(t <= 0 for t in prof) or any(b > a for a, b in itertools.pairwise(prof)):
            raise ValueError("throughput_per_replica must be positive and non-increasing")
        return self


class WorkloadSettings(Group):
    name: str = Field(min_length=1, description="Unique workload name (used in metrics labels).")
    namespace: str = Field("default", min_length=1, description="Kubernetes namespace.")
    target: TargetSettings
    load: LoadSourceSettings
    capacity_per_replica: float = Field(
        gt=0, description="Load one replica serves at its target utilisation."
    )
    min_replicas: int = Field(1, ge=0, le=10_000, description="One keeps a service reachable.")
    max_replicas: int = Field(10, ge=1, le=10_000, description="A safe cap until tuned.")
    headroom: float | None = Field(
        None, ge=0, le=10, description="Performance headroom override (fraction, 0.2 = 20 %)."
    )
    power: PowerSettings = PowerSettings()
    region: str = Field(min_length=1, description="Grid region the workload runs in.")
    ci_schedules: tuple[CiScheduleSettings, ...] = ()
    overrides: tuple[ModeOverrideSettings, ...] = ()
    workload_class: Literal["interactive", "elastic"] = Field(
        "interactive", alias="class", description="Interactive follows demand; elastic plans work."
    )
    elastic: ElasticSettings | None = None
    budget_reduction_percent: float | None = Field(
        None, gt=0, lt=100, description="Emit this % less than performance-only, over the window."
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _checks(self) -> WorkloadSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                f"({self.max_replicas})"
            )
        if (self.workload_class == "elastic") != (self.elastic is not None):
            raise ValueError("`class: elastic` and an `elastic:` section go together")
        return self


class ScalerSettings(Group):
    tick_interval_seconds: float = Field(
        60.0, gt=0, description="One decision a minute, the HPA's own sync period is 15 s."
    )
    load_step_seconds: float = Field(
        300.0, gt=0, le=86400, description="Five-minute load steps smooth scrape jitter."
    )
    load_history_seconds: float = Field(
        7 * 86400.0,
        gt=0,
        description="A week: daily models get several seasons to backtest and refit on.",
    )
    tick_history_seconds: float = Field(
        25 * 3600.0,
        gt=0,
        description="Each tick reads a day and an hour: a daily model conditions on the last day.",
    )
    load_stale_after_seconds: float = Field(
        900.0, gt=0, description="Three missed five-minute steps make the load input stale."
    )
    performance_quantile: float = Field(
        0.95, gt=0, lt=1, description="Plan for the 95th percentile of demand: SLOs first."
    )
    eco_quantile: float = Field(
        0.75, gt=0, lt=1, description="Eco plans for the 75th percentile of demand."
    )
    performance_headroom: float = Field(
        0.2, ge=0, le=10, description="20 % spare capacity is a common HPA target (80 %)."
    )
    eco_headroom: float = Field(0.1, ge=0, le=10, description="Eco keeps half the headroom.")
    eco_min_headroom: float = Field(
        0.05, ge=0, le=10, description="Eco never under the median forecast plus 5 %."
    )
    scale_up_lead_seconds: float = Field(
        120.0, ge=0, description="Two minutes: typical pod start plus readiness."
    )
    scale_down_stabilisation_seconds: float = Field(
        300.0, ge=0, description="The HPA's default scale-down stabilisation window."
    )
    max_step_replicas: int = Field(
        4, ge=1, le=10_000, description="The HPA's default scale-up step is 4 pods."
    )
    eco_enter_percentile: float = Field(
        70.0, ge=0, le=100, description="Eco in the dirtiest 30 % of the region's own forecast."
    )
    eco_exit_percentile: float = Field(
        50.0, ge=0, le=100, description="Leave eco below the median: hysteresis against flapping."
    )
    budget_eco_enter_percentile: float = Field(
        40.0, ge=0, le=100, description="When a budget is behind, eco from the 40th percentile."
    )
    absolute_cap_g_per_kwh: float | None = Field(
        None, gt=0, description="Optional: always eco above this intensity. Off by default."
    )
    carbon_window_seconds: float = Field(
        3600.0, gt=0, description="Modes look one hour ahead: providers publish hourly."
    )
    carbon_horizon_seconds: float = Field(
        86400.0, gt=0, description="A day of forecast is the region's own distribution."
    )
    min_dwell_seconds: float = Field(
        900.0, ge=0, description="Fifteen minutes in a mode before switching again."
    )
    elastic_slot_seconds: float = Field(
        900.0, gt=0, description="Elastic plans in 15-minute slots (provider resolution or finer)."
    )
    budget_window_seconds: float = Field(
        86400.0, gt=0, description="Relative budgets are checked over the last day."
    )
    refit_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Refit in-process by default; more spreads heavy models over processes.",
    )
    workloads: tuple[WorkloadSettings, ...] = Field(
        (), description="The workloads to scale; none means the sample scenario in `run`."
    )
    state_file: Path | None = Field(
        None,
        description="Off by default (stateless, like the HPA); set a path so decisions and "
        "savings counters survive restarts (atomic writes, at most one tick lost).",
    )
    state_store: Literal["none", "file", "configmap"] = Field(
        "none",
        description="Where decisions and savings counters persist: none (stateless, like "
        "the HPA), file (state_file; implied when only state_file is set) or configmap (in "
        "the cluster, so a rescheduled pod keeps them).",
    )
    state_configmap_name: str = Field(
        "gridshift-scaler-state",
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The name deploy/scaler/rbac.yaml grants access to (resourceNames).",
    )
    state_configmap_namespace: str = Field(
        "carbon-system",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="The scaler's own namespace in deploy/ (its Role lives there).",
    )

    @model_validator(mode="before")
    @classmethod
    def _file_store_implied(cls, data: object) -> object:
        # `state_file` alone keeps its meaning from before `state_store` existed
        if isinstance(data, dict) and data.get("state_file") and "state_store" not in data:
            return {**data, "state_store": "file"}
        return data

    @model_validator(mode="after")
    def _checks(self) -> ScalerSettings:
        if self.state_store == "file" and self.state_file is None:
            raise ValueError("state_store 'file' needs state_file (the checkpoint's path)")
        if self.state_store != "file" and self.state_file is not None:
            raise ValueError(
                f"state_file is only used with state_store 'file', not {self.state_store!r}: "
                "unset one of them"
            )
        if self.eco_exit_percentile > self.eco_enter_percentile:
            raise ValueError("eco_exit_percentile must not exceed eco_enter_percentile")
        if self.eco_quantile > self.performance_quantile:
            raise ValueError("eco_quantile must not exceed performance_quantile")
        if not self.eco_min_headroom <= self.eco_headroom <= self.performance_headroom:
            raise ValueError("need eco_min_headroom <= eco_headroom <= performance_headroom")
        if self.tick_history_seconds > self.load_history_seconds:
            raise ValueError("tick_history_seconds must not exceed load_history_seconds")
        if self.carbon_horizon_seconds < self.carbon_window_seconds:
            raise ValueError("carbon_horizon_seconds must be at least carbon_window_seconds")
        names = [w.name for w in self.workloads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"workload names must be unique, repeated: {dupes}")
        return self
