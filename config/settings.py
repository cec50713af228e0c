"""The settings root: one pydantic-settings `Settings`, groups as frozen models.

Layers, lowest first: defaults < YAML file (`--config FILE` or `GRIDSHIFT_CONFIG`) <
environment (`GRIDSHIFT_*`, nested with `__`) < command-line flags. Loading and provenance
live in `config.loading`; this module only declares the shape, bounds and defaults.
"""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "CarbonSettings",
    "CiScheduleSettings",
    "ElasticSettings",
    "ExtenderSettings",
    "ForecastSettings",
    "LoadSourceSettings",
    "ModeOverrideSettings",
    "PowerSettings",
    "PrometheusSettings",
    "ScalerSettings",
    "ServerSettings",
    "Settings",
    "TargetSettings",
    "WorkloadSettings",
]


class _Group(BaseModel):
    # hide_input_in_errors: a raw ValidationError printed anywhere never shows a (secret) value;
    # config.errors renders the values itself, masked.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class PrometheusSettings(_Group):
    url: str = Field(
        "http://127.0.0.1:9090",
        description="Prometheus base URL; a proxy or test server can stand in.",
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Per-request timeout; range queries are bounded by it."
    )


class CarbonSettings(_Group):
    stale_after_seconds: float = Field(
        7200.0,
        gt=0,
        description="Two hours: providers publish hourly, so one missed update is fine.",
    )


class ForecastSettings(_Group):
    refit_interval_seconds: float = Field(
        3600.0, gt=0, description="Hourly refits keep models current without taxing the CPU."
    )


class TargetSettings(_Group):
    kind: Literal["Deployment", "StatefulSet", "ScaledObject"] = Field(
        "Deployment", description="Deployments are the common case; KEDA users name a ScaledObject."
    )
    name: str = Field(min_length=1, description="Object name in the workload's namespace.")


class LoadSourceSettings(_Group):
    promql: str | None = Field(
        None, min_length=1, description="Demand as a PromQL expression (requests/s, queue depth)."
    )
    trace: str | None = Field(
        None, min_length=1, description="Name of a recorded trace or `sample:<profile>`."
    )
    unit: str = Field("requests/s", description="What the load counts; shown with forecasts.")

    @model_validator(mode="after")
    def _one_source(self) -> LoadSourceSettings:
        if (self.promql is None) == (self.trace is None):
            raise ValueError("load needs exactly one of `promql` or `trace`")
        return self


class PowerSettings(_Group):
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


class CiScheduleSettings(_Group):
    cron: str = Field(min_length=1, description="Five-field crontab of the CI run's start.")
    timezone: str = Field("UTC", description="IANA zone the cron is read in.")
    duration_seconds: float = Field(
        1200.0, gt=0, le=7 * 86400, description="Twenty minutes: a typical CI pipeline's run."
    )
    extra_load: float = Field(ge=0, description="Load the run adds, in the workload's load unit.")


class ModeOverrideSettings(_Group):
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


class ElasticSettings(_Group):
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


class WorkloadSettings(_Group):
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


class ScalerSettings(_Group):
    tick_interval_seconds: float = Field(
        60.0, gt=0, description="One decision a minute, the HPA's own sync period is 15 s."
    )
    load_step_seconds: float = Field(
        300.0, gt=0, le=86400, description="Five-minute load steps smooth scrape jitter."
    )
    load_history_seconds: float = Field(
        3 * 86400.0, gt=0, description="Three days: enough for daily seasonal models to refit."
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

    @model_validator(mode="after")
    def _checks(self) -> ScalerSettings:
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


class ExtenderSettings(_Group):
    listen: str = Field(
        "127.0.0.1:8888", description="Loopback by default; set 0.0.0.0:8888 in-cluster."
    )


class ServerSettings(_Group):
    listen: str = Field("127.0.0.1:8080", description="Metrics/status on loopback by default.")


class Settings(BaseSettings):
    """The whole configuration. Read once, in `config.wiring` (`load_settings`).

    `Settings()` alone is the defaults: the file, environment and flag layers, unknown-key
    checks, secrets from files and provenance are `config.loading`'s job, which reads
    `env_prefix`/`env_nested_delimiter` from here.
    """

    model_config = SettingsConfigDict(
        env_prefix="GRIDSHIFT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only explicit values: pydantic-settings' own env source would silently ignore
        # unknown GRIDSHIFT_* names and bypass provenance, so config.loading reads the env.
        return (init_settings,)

    prometheus: PrometheusSettings = PrometheusSettings()
    carbon: CarbonSettings = CarbonSettings()
    forecast: ForecastSettings = ForecastSettings()
    scaler: ScalerSettings = ScalerSettings()
    extender: ExtenderSettings = ExtenderSettings()
    server: ServerSettings = ServerSettings()
