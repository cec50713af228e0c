"""`forecast`: model choice, refits and the weather inputs of the carbon model."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from config.groups.base import Group

__all__ = [
    "ForecastSettings",
    "LoadModelName",
    "OpenMeteoSettings",
    "WeatherPointSettings",
]


#: The names `forecasts.models.catalog.LOAD_MODEL_CHOICES` accepts (kept equal by a test; a
#: Literal here keeps settings validation free of the models' heavy imports).
LoadModelName = Literal[
    "auto",
    "seasonal_naive_day",
    "seasonal_naive_week",
    "seasonal_regression",
    "ets",
    "sarimax",
    "prophet",
]


class WeatherPointSettings(Group):
    latitude: float = Field(ge=-90, le=90, description="Degrees north.")
    longitude: float = Field(ge=-180, le=180, description="Degrees east.")
    weight: float = Field(
        1.0, gt=0, description="Share of the region (e.g. its wind/solar capacity there)."
    )


class OpenMeteoSettings(Group):
    base_url: str = Field(
        "https://api.open-meteo.com",
        description="The free, non-commercial endpoint; customer-api.open-meteo.com with a key.",
    )
    api_key: SecretStr | None = Field(None, description="Only for the commercial endpoint.")
    timeout_seconds: float = Field(10.0, gt=0, description="One forecast call is small.")
    past_days: int = Field(
        92, ge=0, le=92, description="The most it serves: the carbon model trains on it."
    )
    forecast_days: int = Field(3, ge=1, le=16, description="Covers a 48 h carbon horizon.")
    points: dict[str, list[WeatherPointSettings]] = Field(
        default_factory=dict,
        description="Per carbon region, a few weighted locations; none = no weather inputs.",
    )


class ForecastSettings(Group):
    carbon_refit_interval_seconds: float = Field(
        86400.0,
        gt=0,
        description="A day: the carbon plan backtests six weeks of history; daily is current.",
    )
    open_meteo: OpenMeteoSettings = OpenMeteoSettings()
    refit_interval_seconds: float = Field(
        3600.0, gt=0, description="Hourly refits keep models current without taxing the CPU."
    )
    load_model: LoadModelName = Field(
        "auto",
        description="auto: each workload's model is chosen by a backtest at every refit and"
        " never one that loses to seasonal naive; or name one model for all workloads.",
    )
    selection_origins: int = Field(
        4, ge=1, le=48, description="Four backtest origins: a stable choice, cheap at refit."
    )
