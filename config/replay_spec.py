"""The replay scenario file's schema (YAML, validated by pydantic): period, regions and their
carbon, recorded forecast inputs, workloads (interactive and elastic jobs), the forecast, HPA
and KEDA baselines, and scaler overrides. `config.replay_scenario` reads a file against it and
builds the replay inputs; the README ("Replay scenarios") documents the format.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from forecasts.time import ensure_utc
from scaler.replay.model import PolicyName

__all__ = [
    "CARBON_MODELS",
    "CsvSource",
    "ElasticJobsSpec",
    "ForecastSpec",
    "HpaSpec",
    "KedaSpec",
    "LwaJobsSpec",
    "PeriodSpec",
    "PowerSpec",
    "RecordedForecastSpec",
    "RegionSpec",
    "SampleSource",
    "ScenarioFile",
    "WorkloadSpec",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CsvSource(_Model):
    csv: str = Field(description="CSV path (shared:REL, or relative to the scenario file).")
    column: str
    region: str | None = Field(None, description="Keep only rows whose `region` equals this.")
    time_column: str = "timestamp_utc"
    scale: float = Field(1.0, gt=0, description="Multiply values (e.g. requests/hour -> load).")
    shift_weeks: int = Field(0, description="Re-date the trace by whole weeks (keeps weekdays).")
    zero_is_missing: bool = False
    forecast_column: str | None = Field(
        None, description="A recorded provider forecast column in the same file (carbon only)."
    )


class SampleSource(_Model):
    sample: str = Field(description="SAMPLE DATA profile or region name.")


class PeriodSpec(_Model):
    start: datetime
    end: datetime
    step: str = "1h"
    warmup: str = Field("14d", description="History before start the scaler may learn from.")

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        if v.tzinfo is None:
            raise ValueError("needs a timezone, e.g. 2021-01-01T00:00:00Z")
        return ensure_utc(v)


class RecordedForecastSpec(_Model):
    """A recorded forecast file with when each value became known (shared/data's DACF and
    GFS folders: a valid day's values known `known_after` its midnight UTC)."""

    csv: str = Field(description="CSV path (shared:REL, or relative to the scenario file).")
    column: str = Field("ci_forecast_da_direct", description="provider: the forecast column.")
    known_after: str = Field(
        "4h",
        description="Each UTC day's values known this long after 00:00 (negative: before it).",
    )
    sources: tuple[str, ...] | None = Field(
        None,
        description="generation: only these sources (wind, solar), as MW, rather than every "
        "source as shares (a subset published earlier than the rest).",
    )


class RegionSpec(_Model):
    name: str = Field(min_length=1)
    carbon: CsvSource | SampleSource
    provider_forecast: RecordedForecastSpec | None = Field(
        None, description="A recorded provider forecast with issue times (DACF folder)."
    )
    weather: RecordedForecastSpec | None = Field(
        None, description="Recorded weather forecasts (GFS folder: rows 24 h early)."
    )
    generation: RecordedForecastSpec | None = Field(
        None, description="Recorded per-source generation forecasts (DACF folder)."
    )


class PowerSpec(_Model):
    idle_watts: float = Field(ge=0)
    busy_watts: float = Field(gt=0)


class LwaJobsSpec(_Model):
    """`jobs` jobs spread at random over the workdays of the period, submitted on the hour
    between `workday_start_hour` and `workday_end_hour` UTC, durations drawn uniformly in
    whole hours from [min_hours, max_hours) (Wiesner et al. 2021, scenario II)."""

    jobs: int = Field(gt=0, le=100_000)
    min_hours: int = Field(4, ge=1)
    max_hours: int = Field(90, ge=2)
    workday_start_hour: int = Field(9, ge=0, le=23)
    workday_end_hour: int = Field(17, ge=1, le=24)
    seed: int = 0


class ElasticJobsSpec(_Model):
    throughput_per_replica: tuple[float, ...] | None = Field(
        None, description="Work/s each added replica adds (non-increasing); default (1.0,)."
    )
    sublinear_factor: float | None = Field(
        None, gt=0, le=1, description="Each added replica adds this share of the previous one's."
    )
    work_hours_at_base: float | None = Field(
        None, gt=0, description="Hours the job takes at base_replicas (not with `generate`)."
    )
    base_replicas: int = Field(1, ge=1)
    submit_every: str | None = None
    submit_at: tuple[datetime, ...] = ()
    generate: LwaJobsSpec | None = Field(
        None, description="Random jobs as in Let's Wait Awhile's ML scenario (seeded)."
    )
    deadline_after: str | None = None
    deadline: Literal["next_workday"] | None = Field(
        None,
        description="next_workday (Let's Wait Awhile's rule on the finish time at base scale "
        "from submission): Saturday -> Monday 09:00; Sunday or after 17:00 -> next day 09:00; "
        "before 09:00 -> 09:00 that day; otherwise no slack",
    )

    @model_validator(mode="after")
    def _checks(self) -> ElasticJobsSpec:
        if (
            sum([self.submit_every is not None, bool(self.submit_at), self.generate is not None])
            != 1
        ):
            raise ValueError("give exactly one of submit_every, submit_at or generate")
        if (self.generate is None) == (self.work_hours_at_base is None):
            raise ValueError("give work_hours_at_base, or generate (which draws durations)")
        if (self.deadline_after is None) == (self.deadline is None):
            raise ValueError("give exactly one of deadline_after or deadline")
        if self.throughput_per_replica is not None and self.sublinear_factor is not None:
            raise ValueError("give throughput_per_replica or sublinear_factor, not both")
        return self


class WorkloadSpec(_Model):
    name: str = Field(min_length=1)
    workload_class: Literal["interactive", "elastic"] = Field("interactive", alias="class")
    region: str
    load: CsvSource | SampleSource | None = None
    capacity_per_replica: float = Field(1.0, gt=0)
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(ge=1)
    headroom: float | None = Field(None, ge=0, le=10)
    power: PowerSpec
    elastic: ElasticJobsSpec | None = None

    @model_validator(mode="after")
    def _checks(self) -> WorkloadSpec:
        if self.workload_class == "interactive" and self.load is None:
            raise ValueError("an interactive workload needs `load`")
        if (self.workload_class == "elastic") != (self.elastic is not None):
            raise ValueError("`class: elastic` and an `elastic:` section go together")
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


CarbonModelName = Literal["gridshift", "own", "provider", "perfect"]
#: What `forecast.carbon_model` (and `gridshift replay --carbon-model`) may name.
CARBON_MODELS: tuple[str, ...] = get_args(CarbonModelName)


class ForecastSpec(_Model):
    carbon_model: CarbonModelName = Field(
        "gridshift",
        description="How gridshift forecasts carbon: `gridshift` (its one forecast: own model, "
        "provider forecast and a blend, chosen by rolling backtest), `own` (its own model "
        "only, the provider forecast ignored), `provider` (the recorded provider forecast as "
        "it arrived), or `perfect` (the recorded intensity as its own forecast: the assumption "
        "of Let's Wait Awhile's and CarbonScaler's error-free runs; an upper bound).",
    )
    day_ahead_inputs: bool = Field(
        True, description="Use the regions' weather/generation forecasts as model inputs."
    )
    carbon_history: str = Field(
        "150d", description="Carbon history before the period (the forecast plan uses ~144 d)."
    )
    carbon_refit: str = Field(
        "1d", description="Re-choose and refit the carbon forecast plan this often."
    )
    load_model: Literal["seasonal_naive_day", "seasonal_naive_week", "profile_persistence"] = (
        "profile_persistence"
    )
    load_profile: Literal["day", "week"] = Field(
        "week", description="profile_persistence load model: a daily or a weekly profile."
    )
    load_profile_seasons: int = Field(
        3, ge=1, le=60, description="profile_persistence load model: seasons in the median."
    )
    noise_percent: float = Field(0.0, ge=0, le=100)
    seed: int = 0


class HpaSpec(_Model):
    target_utilisation: float = Field(0.7, gt=0, le=1)
    tolerance: float = Field(0.1, ge=0, lt=1)
    downscale_stabilisation: str = "5m"
    lag_intervals: int = Field(1, ge=0)


class KedaSpec(_Model):
    max_replicas_fractions: tuple[float, ...] = (1.0, 0.6, 0.1)


class ScenarioFile(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    period: PeriodSpec
    regions: tuple[RegionSpec, ...] = Field(min_length=1)
    workloads: tuple[WorkloadSpec, ...] = Field(min_length=1)
    policies: tuple[PolicyName, ...] = tuple(PolicyName)
    forecast: ForecastSpec = ForecastSpec()
    hpa: HpaSpec = HpaSpec()
    keda: KedaSpec = KedaSpec()
    scaler: dict[str, Any] = Field(
        default_factory=dict, description="Overrides of the scaler settings (policy knobs)."
    )
    notes: tuple[str, ...] = ()
