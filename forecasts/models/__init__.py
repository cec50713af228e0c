"""Forecasting models, each in its own module, each a `forecasts.forecast.Forecaster`."""

from forecasts.models.seasonal_naive import SeasonalNaive

__all__ = ["SeasonalNaive"]
