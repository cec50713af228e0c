"""The `LoadSource` role: demand history for one workload, on a regular grid.

The Prometheus adapter answers PromQL; trace and sample adapters answer the name of a
recorded or generated series. Every method returns a clean `RegularSeries` (NaN = a missing
step) or raises a `forecasts.sources.SourceError`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Protocol

from forecasts.series import RegularSeries

__all__ = ["LoadSource"]


class LoadSource(Protocol):
    @property
    def name(self) -> str: ...

    def history(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> RegularSeries:
        """Values of `query` on the grid `start + i*step` for instants before `end`."""
        ...
