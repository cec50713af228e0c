"""The bundled models by name, configured for a series' step (pure).

Seasons are a day and a week of steps (24 and 168 on hourly data, 48 and 336 half-hourly).
"""

from __future__ import annotations

from datetime import timedelta

from forecasts.forecast import Forecaster
from forecasts.models.auto import AutoSelect
from forecasts.models.ets import ETS
from forecasts.models.prophet_model import ProphetModel
from forecasts.models.regression import SeasonalRegression
from forecasts.models.sarimax import Sarimax
from forecasts.models.seasonal_naive import SeasonalNaive

__all__ = [
    "DEFAULT_SELECTION",
    "LOAD_MODEL_CHOICES",
    "MODEL_NAMES",
    "build_load_forecaster",
    "build_model",
    "season_steps",
]

#: Every name `build_model` accepts (naive names are generic: the day and week season).
MODEL_NAMES: tuple[str, ...] = (
    "seasonal_naive_day",
    "seasonal_naive_week",
    "seasonal_regression",
    "ets",
    "sarimax",
    "prophet",
)
#: Models that automatic selection backtests by default (fast enough per origin).
DEFAULT_SELECTION: tuple[str, ...] = (
    "seasonal_naive_day",
    "seasonal_naive_week",
    "seasonal_regression",
    "ets",
)


def season_steps(step: timedelta) -> tuple[int, int]:
    """(steps per day, steps per week) for a step that divides a day."""
    if step <= timedelta(0) or timedelta(days=1) % step != timedelta(0):
        raise ValueError(f"step must divide a day evenly, got {step}")
    day = timedelta(days=1) // step
    return day, 7 * day


def build_model(name: str, *, step: timedelta) -> Forecaster:
    """A configured model by name; `ValueError` naming the choices otherwise."""
    day, week = season_steps(step)
    if name == "seasonal_naive_day":
        return SeasonalNaive(day, label=name)
    if name == "seasonal_naive_week":
        return SeasonalNaive(week, label=name)
    if name == "seasonal_regression":
        return SeasonalRegression(
            season_steps=max(day, 2),
            week_steps=week if week > max(day, 2) else 0,
            max_horizon=2 * day,
            window_steps=12 * week,
        )
    if name == "ets":
        return ETS(season_steps=max(day, 2), window_steps=4 * week, label=name)
    if name == "sarimax":
        return Sarimax(fourier=((max(day, 2), 3), (week, 2)), window_steps=4 * week)
    if name == "prophet":
        return ProphetModel(window_steps=8 * week)
    raise ValueError(f"model: unknown {name!r} (choose from {', '.join(MODEL_NAMES)})")


#: What `forecast.load_model` may name: "auto" (per-series selection) or one model.
LOAD_MODEL_CHOICES: tuple[str, ...] = ("auto", *MODEL_NAMES)


def build_load_forecaster(
    name: str, *, step: timedelta, horizon: int, history_steps: int, origins: int = 4
) -> Forecaster:
    """The scaler's load forecaster. "auto" backtests the daily seasonal naive against a
    seasonal regression sized for the scaler's short lead (`horizon` steps) on each
    workload's own history at every refit and keeps the winner (never one that loses to
    the naive baseline); any other name is that model from `build_model`."""
    if name != "auto":
        return build_model(name, step=step)
    day, week = season_steps(step)
    baseline = SeasonalNaive(max(day, 1), label="seasonal_naive_day")
    regression = SeasonalRegression(
        season_steps=max(day, 2),
        week_steps=week if history_steps >= 3 * week else 0,
        max_horizon=max(horizon, 1),
        window_steps=history_steps,
        holdout_steps=max(day // 2, 2),
    )
    return AutoSelect(
        candidates=(baseline, regression),
        horizon=max(horizon, 1),
        origins=origins,
        stride=max(day // 12, 1),
        min_train=max(day + 1, 2),
    )
