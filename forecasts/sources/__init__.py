"""The I/O edge of the forecasts package: the only code that talks to Prometheus, the carbon
APIs and the wall clock. Adapters return domain values and raise `SourceError`s."""

from forecasts.platform.errors import (
    SourceDataError,
    SourceError,
    SourceRequestError,
    SourceUnavailable,
)

__all__ = ["SourceDataError", "SourceError", "SourceRequestError", "SourceUnavailable"]
