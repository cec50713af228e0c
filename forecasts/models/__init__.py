"""Forecasting models, each in its own module, each a `forecasts.forecast.Forecaster`.

`SeasonalNaive` (daily 24 / weekly 168), `SeasonalRegression` (direct least squares on
seasonal lags), `ETS` (Holt-Winters), `Sarimax` (with Fourier terms and regressors) and
`ProphetModel` (Prophet imported lazily). `forecasts.models.catalog` builds them by name.
"""

from forecasts.models.ets import ETS
from forecasts.models.prophet_model import ProphetModel
from forecasts.models.regression import SeasonalRegression
from forecasts.models.sarimax import Sarimax
from forecasts.models.seasonal_naive import SeasonalNaive

__all__ = [
    "ETS",
    "ProphetModel",
    "Sarimax",
    "SeasonalNaive",
    "SeasonalRegression",
]
