"""The `CarbonSource` role every carbon provider adapter plays."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from forecasts.series import CarbonSeries

__all__ = ["CarbonSource", "ClosableSource"]


class CarbonSource(Protocol):
    """Grid carbon intensity for named regions (gridshift region names, mapped to the
    provider's zone by the adapter). All methods return clean `CarbonSeries` or raise a
    `forecasts.sources.SourceError`."""

    @property
    def name(self) -> str: ...

    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        """The most recent value(s) as of `at` (usually one point)."""
        ...

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        """Measured/estimated values with instants in [start, end)."""
        ...

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        """The provider's forecast from `at` over `horizon` (points of quality FORECAST).

        Sources without a forecast raise `SourceRequestError`; callers then forecast from
        history with `forecasts.models`."""
        ...


@runtime_checkable
class ClosableSource(Protocol):
    """A source holding a client (the HTTP providers): `close()` releases it, once its
    owner stops using the source."""

    def close(self) -> None: ...
