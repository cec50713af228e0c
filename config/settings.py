"""The settings root: one pydantic-settings `Settings`, groups as frozen models.

Layers, lowest first: defaults < YAML file (`--config FILE` or `GRIDSHIFT_CONFIG`) <
environment (`GRIDSHIFT_*`, nested with `__`) < command-line flags. Loading and provenance
live in `config.loading`; this module only declares the shape, bounds and defaults.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = [
    "CarbonSettings",
    "ExtenderSettings",
    "ForecastSettings",
    "KedaSettings",
    "KubeSettings",
    "MetricsApiSettings",
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


class ServerSettings(_Group):
    listen: str = Field("127.0.0.1:8080", description="Metrics/status on loopback by default.")


class MetricsApiSettings(_Group):
    """The External Metrics API (external.metrics.k8s.io) served by `gridshift run`."""

    enabled: bool = Field(True, description="On by default: it is how plain HPAs consume us.")
    listen: str = Field(
        "127.0.0.1:6443",
        description="Loopback by default; set 0.0.0.0:6443 in-cluster behind the APIService.",
    )
    tls_cert_file: Path | None = Field(
        None, description="Serving cert (PEM); re-read when it changes. None = plain HTTP."
    )
    tls_key_file: Path | None = Field(None, description="Private key for tls_cert_file.")
    tls_reload_check_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="cert-manager renews days ahead; 10 s is plenty."
    )
    authentication_from_cluster: bool = Field(
        False,
        description="Read kube-system/extension-apiserver-authentication (front-proxy CA, "
        "allowed names, client CA) like k8s.io/apiserver does; off outside a cluster.",
    )
    authentication_refresh_interval_seconds: float = Field(
        60.0, gt=0, le=86400, description="Pick up front-proxy CA rotations within a minute."
    )
    requestheader_client_ca_file: Path | None = Field(
        None, description="Front-proxy CA when not read from the cluster ConfigMap."
    )
    requestheader_allowed_names: tuple[str, ...] = Field(
        ("front-proxy-client",),
        description="kubeadm's front-proxy client CN; empty = any cert from that CA.",
    )
    client_ca_file: Path | None = Field(
        None, description="CA for user client certificates when not read from the cluster."
    )
    delegated_authentication: bool = Field(
        False, description="Bearer tokens via TokenReview; needs system:auth-delegator."
    )
    delegated_authorization: bool = Field(
        False, description="SubjectAccessReview per request; off = any authenticated user."
    )
    review_cache_ttl_seconds: float = Field(
        10.0, gt=0, le=600, description="k8s.io/apiserver caches reviews for 10 s too."
    )
    allow_anonymous: bool = Field(
        False, description="Only for local development on loopback without TLS."
    )
    max_snapshot_age_seconds: float = Field(
        600.0,
        gt=0,
        description="Ten default ticks: older decisions answer 500 so the HPA holds its count.",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> MetricsApiSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self


class KedaSettings(_Group):
    """The KEDA external scaler (gRPC externalscaler.ExternalScaler)."""

    enabled: bool = Field(True, description="Cheap to serve; KEDA users need no second server.")
    listen: str = Field(
        "127.0.0.1:9090", description="Loopback by default; 0.0.0.0:9090 in-cluster."
    )
    stream_poll_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="How fast StreamIsActive notices a new decision."
    )


class KubeSettings(_Group):
    """Kubernetes I/O: CarbonAwareScaler watch, status, actuation and leader election."""

    enabled: bool = Field(False, description="Off outside a cluster; the Deployment turns it on.")
    kubeconfig: Path | None = Field(
        None, description="None = in-cluster service account, else ~/.kube/config."
    )
    watch_namespace: str | None = Field(
        None, description="None watches CarbonAwareScalers in all namespaces."
    )
    identity: str = Field(
        "", description="Leader-election identity; empty = host name (the pod name in-cluster)."
    )
    lease_name: str = Field("gridshift-scaler", min_length=1, description="One Lease per install.")
    lease_namespace: str = Field(
        "carbon-system", min_length=1, description="The namespace the scaler runs in."
    )
    lease_duration_seconds: int = Field(
        15, ge=2, le=600, description="client-go's default; a dead leader is replaced in 15 s."
    )
    renew_deadline_seconds: float = Field(
        10.0, gt=0, description="client-go's default; must stay below lease_duration_seconds."
    )
    retry_period_seconds: float = Field(
        2.0, gt=0, le=60, description="client-go's default renew/acquire cadence."
    )
    watch_timeout_seconds: int = Field(
        300, ge=1, le=3600, description="Re-issue watches every 5 min, as informers do."
    )

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> KubeSettings:
        if not self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                f"renew_deadline_seconds ({self.renew_deadline_seconds}) must be < "
                f"lease_duration_seconds ({self.lease_duration_seconds})"
            )
        if not self.retry_period_seconds < self.renew_deadline_seconds:
            raise ValueError(
                f"retry_period_seconds ({self.retry_period_seconds}) must be < "
                f"renew_deadline_seconds ({self.renew_deadline_seconds})"
            )
        return self


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
    metrics_api: MetricsApiSettings = MetricsApiSettings()
    keda: KedaSettings = KedaSettings()
    kube: KubeSettings = KubeSettings()
