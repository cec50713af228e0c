"""The settings root: one pydantic-settings `Settings`, groups as frozen models.

Layers, lowest first: defaults < YAML file (`--config FILE` or `GRIDSHIFT_CONFIG`) <
environment (`GRIDSHIFT_*`, nested with `__`) < command-line flags. Loading and provenance
live in `config.loading`; this module only declares the shape, bounds and defaults.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from forecasts.sources.prometheus import PrometheusConnection

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
