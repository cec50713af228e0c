"""`server`, `metrics_api`, `keda`: what `gridshift run` serves, on which listeners."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from config.groups.base import Group

__all__ = [
    "KedaSettings",
    "MetricsApiSettings",
    "ServerSettings",
]


class ServerSettings(Group):
    listen: str = Field("127.0.0.1:8080", description="Metrics/status on loopback by default.")
    history_points: int = Field(
        720,
        ge=1,
        le=100_000,
        description="Snapshots kept for the dashboard's charts: 3 h at the 15 s tick, ~100 kB.",
    )
    extender_metrics_url: str | None = Field(
        None,
        description="An extender's /metrics for the dashboard's extender panel; off by default "
        "(the scaler does not need an extender).",
    )
    extender_poll_seconds: float = Field(
        15.0, gt=0, le=3600, description="Matches a typical Prometheus scrape interval."
    )


class MetricsApiSettings(Group):
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


class KedaSettings(Group):
    """The KEDA external scaler (gRPC externalscaler.ExternalScaler)."""

    enabled: bool = Field(True, description="Cheap to serve; KEDA users need no second server.")
    listen: str = Field(
        "127.0.0.1:6000",
        description="Loopback by default (6000, as in KEDA's external-scaler samples; 9090 is"
        " Prometheus'); 0.0.0.0:6000 in-cluster.",
    )
    stream_poll_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="How fast StreamIsActive notices a new decision."
    )
    max_streams: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Open StreamIsActive streams at most (KEDA opens one per external-push"
        " ScaledObject; each holds a thread); past it RESOURCE_EXHAUSTED.",
    )
    tls_cert_file: Path | None = Field(
        None,
        description="Serving cert (PEM) for the gRPC listener; None = plaintext (KEDA's "
        "default; set it with enableTLS/caCert on the trigger). Re-read when it changes.",
    )
    tls_key_file: Path | None = Field(None, description="Private key for tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        None,
        description="CA that KEDA's client certificate (tlsClientCert) must chain to; set = "
        "mutual TLS, callers without such a certificate are refused. None = any TLS client.",
    )
    tls_reload_check_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="cert-manager renews days ahead; 10 s is plenty."
    )

    @model_validator(mode="after")
    def _tls_files_consistent(self) -> KedaSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("keda.tls_cert_file and keda.tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "keda.tls_client_ca_file needs keda.tls_cert_file/tls_key_file: "
                "client certificates are only checked over TLS"
            )
        return self
