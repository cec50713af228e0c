"""The settings root: one pydantic-settings `Settings`, groups as frozen models.

Layers, lowest first: defaults < YAML file (`--config FILE` or `GRIDSHIFT_CONFIG`) <
environment (`GRIDSHIFT_*`, nested with `__`) < command-line flags. Loading and provenance
live in `config.loading`; this module only declares the shape, bounds and defaults.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CarbonSettings",
    "ExtenderSettings",
    "ForecastSettings",
    "PrometheusSettings",
    "ScalerSettings",
    "ServerSettings",
    "Settings",
]


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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


class ScalerSettings(_Group):
    tick_interval_seconds: float = Field(
        60.0, gt=0, description="One decision a minute, the HPA's own sync period is 15 s."
    )


class ExtenderSettings(_Group):
    listen: str = Field(
        "127.0.0.1:8888", description="Loopback by default; set 0.0.0.0:8888 in-cluster."
    )
    tls_cert_file: str | None = Field(
        None, description="PEM certificate; unset serves plain HTTP (fine behind a mesh)."
    )
    tls_key_file: str | None = Field(None, description="PEM key for tls_cert_file.")
    carbon_weight: float = Field(
        1.0, ge=0, le=100, description="Carbon is the point of the extender: full weight."
    )
    gpu_energy_weight: float = Field(
        0.5,
        ge=0,
        le=100,
        description="Half of carbon: GPU efficiency matters but grid mix differs more.",
    )
    neutral_score: int = Field(
        5, ge=0, le=10, description="Mid-scale, so missing data neither helps nor hurts a node."
    )
    stale_after_seconds: float = Field(
        7200.0,
        gt=0,
        description="Two hours: providers publish hourly, so one missed update is fine.",
    )
    gpu_stale_after_seconds: float = Field(
        900.0, gt=0, description="Three agent rewrites (every 300 s at most) may be missed."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        le=1024 * 1024 * 1024,
        description="16 MiB fits a 5,000-node NodeList with images; more is abuse.",
    )
    region_labels: tuple[str, ...] = Field(
        (
            "gridshift.io/region",
            "topology.kubernetes.io/region",
            "failure-domain.beta.kubernetes.io/region",
        ),
        min_length=1,
        description="Our own label first, then the well-known ones clouds set.",
    )
    zone_labels: tuple[str, ...] = Field(
        ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"),
        description="Well-known zone labels; zones may be aliased to carbon regions.",
    )
    region_aliases: dict[str, str] = Field(
        default_factory=dict,
        description="Cloud region/zone -> carbon region (eu-west-1: IE); none by default.",
    )
    default_region: str | None = Field(
        None, description="Region of unlabelled nodes; unset leaves them neutral."
    )
    regions: tuple[str, ...] = Field(
        (), description="Extra regions to rank for /regions/rank even without nodes there."
    )
    refresh_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="Node changes reach scores within ten seconds."
    )
    carbon_refresh_interval_seconds: float = Field(
        300.0, gt=0, description="Five minutes: providers update at most every 5-60 minutes."
    )
    forecast_horizon_seconds: float = Field(
        86400.0, gt=0, description="A day covers the expected durations of most batch jobs."
    )
    gpu_source: Literal["agent", "dcgm", "kepler", "none"] = Field(
        "agent", description="The gridshift agent's node annotations, unless you run DCGM."
    )
    node_label_selector: str | None = Field(
        None, description="Watch all nodes by default; narrow in very large clusters."
    )
    watch_timeout_seconds: int = Field(
        300, gt=0, le=3600, description="client-go's reflector uses 5-10 minute watches."
    )
    agent_listen: str = Field(
        "127.0.0.1:9402", description="Agent /metrics on loopback; 0.0.0.0:9402 in the pod."
    )
    agent_sample_interval_seconds: float = Field(
        5.0, gt=0, le=600, description="NVML power is a 1 s average: 5 s sampling is plenty."
    )
    agent_window_seconds: float = Field(
        300.0, gt=0, description="A five-minute rolling average smooths batch step noise."
    )
    agent_annotation_interval_seconds: float = Field(
        60.0, gt=0, description="At most one node PATCH a minute per node keeps API load low."
    )
    agent_annotation_max_age_seconds: float = Field(
        300.0,
        gt=0,
        description="Rewrite unchanged values every 5 min so readers see them as fresh.",
    )
    agent_min_change_fraction: float = Field(
        0.05, ge=0, le=1, description="Skip rewrites for changes under 5 %."
    )

    @model_validator(mode="after")
    def _agent_rewrites_before_stale(self) -> ExtenderSettings:
        if self.agent_annotation_max_age_seconds >= self.gpu_stale_after_seconds:
            raise ValueError(
                "agent_annotation_max_age_seconds must be below gpu_stale_after_seconds, "
                "or idle nodes' GPU facts would look stale"
            )
        if self.agent_annotation_interval_seconds > self.agent_annotation_max_age_seconds:
            raise ValueError(
                "agent_annotation_interval_seconds must not exceed agent_annotation_max_age_seconds"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self


class ServerSettings(_Group):
    listen: str = Field("127.0.0.1:8080", description="Metrics/status on loopback by default.")


class Settings(BaseSettings):
    """The whole configuration. Read once, in `config.wiring`."""

    model_config = SettingsConfigDict(
        env_prefix="GRIDSHIFT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    prometheus: PrometheusSettings = PrometheusSettings()
    carbon: CarbonSettings = CarbonSettings()
    forecast: ForecastSettings = ForecastSettings()
    scaler: ScalerSettings = ScalerSettings()
    extender: ExtenderSettings = ExtenderSettings()
    server: ServerSettings = ServerSettings()
