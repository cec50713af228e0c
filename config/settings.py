"""The settings root: one pydantic-settings `Settings`, groups as frozen models.

Layers, lowest first: defaults < YAML file (`--config FILE` or `GRIDSHIFT_CONFIG`) <
environment (`GRIDSHIFT_*`, nested with `__`) < command-line flags. Loading and provenance
live in `config.loading`; this module only declares the shape, bounds and defaults.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

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
