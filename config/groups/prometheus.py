"""`prometheus`: where load history is read, and how (auth, TLS, batching, gaps)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field, SecretStr, field_validator, model_validator

from config.groups.base import Group

if TYPE_CHECKING:
    from forecasts.sources.prometheus import PrometheusConnection

__all__ = [
    "PrometheusSettings",
]


class PrometheusSettings(Group):
    url: str = Field(
        "http://127.0.0.1:9090",
        description="Prometheus base URL; a proxy or test server can stand in.",
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Per-request timeout; range queries are bounded by it."
    )
    bearer_token: SecretStr | None = Field(
        None, description="Sent as `Authorization: Bearer`; none for an open in-cluster server."
    )
    basic_auth_username: str | None = Field(
        None, description="HTTP basic auth user (reverse proxies); unset means no basic auth."
    )
    basic_auth_password: SecretStr | None = Field(
        None, description="HTTP basic auth password; only with basic_auth_username."
    )
    ca_file: Path | None = Field(
        None, description="PEM bundle to verify a private CA; unset uses the system store."
    )
    insecure_skip_verify: bool = Field(
        False, description="Off: TLS is verified unless someone opts out knowingly (dev only)."
    )
    max_points_per_request: int = Field(
        11000,
        ge=2,
        le=11001,
        description="Prometheus refuses more than 11,001 points per series; longer ranges "
        "are split into several requests.",
    )
    short_gap_steps: int = Field(
        3,
        ge=0,
        le=1000,
        description="Gaps up to 3 steps (a few missed scrapes) are interpolated; longer "
        "ones stay NaN (marked). 0 disables interpolation.",
    )
    batch_size: int = Field(
        1,
        ge=1,
        le=10_000,
        description="Workload queries per tagged batch (`label_replace(q) or ...`). 1 (off): "
        "Prometheus 2.42 took 10x longer for batches of 500 than for the same queries one by "
        "one on loopback; raise it only where each request's round trip dominates. Grouped "
        "loads (`load.match`) are the fast way to one query per tick.",
    )
    scrape_interval_seconds: float = Field(
        15.0,
        gt=0,
        description="The scrape interval of the load metrics (Prometheus' own default is "
        "60 s, most Kubernetes setups use 15-30 s); rate() windows span 4 of them.",
    )

    def connection(self) -> PrometheusConnection:
        """The adapter's plain connection value (the wiring passes it to
        `PrometheusLoadSource.connect`)."""
        from forecasts.sources.prometheus import PrometheusConnection

        basic = None
        if self.basic_auth_username is not None:
            password = self.basic_auth_password
            basic = (self.basic_auth_username, password.get_secret_value() if password else "")
        token = self.bearer_token
        return PrometheusConnection(
            url=self.url,
            timeout_seconds=self.timeout_seconds,
            bearer_token=token.get_secret_value() if token is not None else None,
            basic_auth=basic,
            ca_file=self.ca_file,
            insecure_skip_verify=self.insecure_skip_verify,
        )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {url!r}")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _auth_and_tls_consistent(self) -> PrometheusSettings:
        if self.bearer_token is not None and self.basic_auth_username is not None:
            raise ValueError("set either bearer_token or basic_auth_username, not both")
        if self.basic_auth_password is not None and self.basic_auth_username is None:
            raise ValueError("basic_auth_password needs basic_auth_username")
        if self.ca_file is not None and self.insecure_skip_verify:
            raise ValueError("ca_file has no effect with insecure_skip_verify: set only one")
        return self
