"""The settings root: one pydantic-settings `Settings`; its groups are frozen models, one module
per group in `config.groups` (all importable from here).

Layers, lowest first: defaults < YAML file (`--config FILE` or `GRIDSHIFT_CONFIG`) <
environment (`GRIDSHIFT_*`, nested with `__`) < command-line flags, each a pydantic-settings
source (`config.sources`) listed in `Settings.settings_customise_sources`; `config.loading`
runs one load and reports problems and provenance. This module declares the shape, bounds
and defaults.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.groups.carbon import (
    CARBON_PROVIDERS,
    CarbonAwareSdkSettings,
    CarbonHttpSettings,
    CarbonRegionSettings,
    CarbonSettings,
    CarbonTraceSettings,
    ElectricityMapsSettings,
    UkCarbonIntensitySettings,
    WattTimeSettings,
)
from config.groups.extender import ExtenderSettings
from config.groups.forecast import (
    ForecastSettings,
    LoadModelName,
    OpenMeteoSettings,
    WeatherPointSettings,
)
from config.groups.kube import KubeSettings
from config.groups.prometheus import PrometheusSettings
from config.groups.scaler import (
    CiScheduleSettings,
    ElasticSettings,
    LoadSourceSettings,
    ModeOverrideSettings,
    PowerSettings,
    ScalerSettings,
    TargetSettings,
    WorkloadSettings,
)
from config.groups.serving import KedaSettings, MetricsApiSettings, ServerSettings
from config.sources import layer_sources

__all__ = [
    "CARBON_PROVIDERS",
    "CarbonAwareSdkSettings",
    "CarbonHttpSettings",
    "CarbonRegionSettings",
    "CarbonSettings",
    "CarbonTraceSettings",
    "CiScheduleSettings",
    "ElasticSettings",
    "ElectricityMapsSettings",
    "ExtenderSettings",
    "ForecastSettings",
    "KedaSettings",
    "KubeSettings",
    "LoadModelName",
    "LoadSourceSettings",
    "MetricsApiSettings",
    "ModeOverrideSettings",
    "OpenMeteoSettings",
    "PowerSettings",
    "PrometheusSettings",
    "ScalerSettings",
    "ServerSettings",
    "Settings",
    "TargetSettings",
    "UkCarbonIntensitySettings",
    "WattTimeSettings",
    "WeatherPointSettings",
    "WorkloadSettings",
]


class Settings(BaseSettings):
    """The whole configuration. Read once, in `config.wiring` (`load_settings`).

    Its settings sources (`settings_customise_sources`) are the layers of `config.sources`:
    `config.loading.load_config` activates them for one load and reports every layer's
    problems and the provenance of every value; `Settings()` alone is the declared defaults.
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
        # Highest precedence first: keyword arguments, --set and command flags, GRIDSHIFT_*
        # environment, the YAML file (secret files are read in each of those layers), then
        # the declared defaults. pydantic-settings' own env source would silently skip unknown
        # GRIDSHIFT_* names and record no provenance, so config.sources writes each layer.
        return (init_settings, *layer_sources(settings_cls))

    prometheus: PrometheusSettings = PrometheusSettings()
    carbon: CarbonSettings = CarbonSettings()
    forecast: ForecastSettings = ForecastSettings()
    scaler: ScalerSettings = ScalerSettings()
    extender: ExtenderSettings = ExtenderSettings()
    server: ServerSettings = ServerSettings()
    metrics_api: MetricsApiSettings = MetricsApiSettings()
    keda: KedaSettings = KedaSettings()
    kube: KubeSettings = KubeSettings()
