"""In-memory stand-ins for the adapters' roles (`Fake<Role>`), for unit tests of the loop.

Each fake serves programmed values, can be told to fail with a `SourceError`, and records
its calls. They play the same roles as the real adapters (`CarbonSource`, `LoadSource`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from forecasts.series import CarbonSeries, CarbonUnit, Quality, RegularSeries, Signal
from forecasts.sources.errors import SourceError, SourceRequestError
from forecasts.time import floor_to, to_epoch_s

__all__ = ["FakeCarbonSource", "FakeLoadSource"]


@dataclass
class FakeCarbonSource:
    """Intensity per region from `profile(region, instant) -> g/kWh` on an hourly grid."""

    profile: dict[str, list[float]]  # region -> 24 hourly values (repeating daily)
    resolution: timedelta = timedelta(hours=1)
    name: str = "fake-carbon"
    signal: Signal = Signal.AVERAGE
    fail_with: SourceError | None = None
    has_forecast: bool = True
    calls: list[tuple[str, str]] = field(default_factory=list)

    def _value(self, region: str, at: datetime) -> float:
        values = self.profile[region]
        return values[int(to_epoch_s(at) // self.resolution.total_seconds()) % len(values)]

    def _series(
        self, region: str, start: datetime, end: datetime, quality: Quality, at: datetime
    ) -> CarbonSeries:
        if self.fail_with is not None:
            raise self.fail_with
        if region not in self.profile:
            raise SourceRequestError(f"unknown region {region}", source=self.name)
        t = floor_to(start, self.resolution)
        points = []
        while t < end:
            points.append((t, self._value(region, t), quality))
            t += self.resolution
        return CarbonSeries.build(
            region=region,
            points=points,
            unit=CarbonUnit.G_PER_KWH,
            signal=self.signal,
            provider=self.name,
            fetched_at=at,
            resolution=self.resolution,
        )

    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        self.calls.append(("latest", region))
        return self._series(region, at, at + timedelta(microseconds=1), Quality.MEASURED, at)

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        self.calls.append(("history", region))
        return self._series(region, start, end, Quality.MEASURED, end)

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        self.calls.append(("forecast", region))
        if not self.has_forecast:
            raise SourceRequestError("no forecast on this plan", source=self.name, status=403)
        return self._series(region, at, at + horizon, Quality.FORECAST, at)


@dataclass
class FakeLoadSource:
    """Load per query from `levels[query]` (a constant) or `daily[query]` (24 hourly values)."""

    levels: dict[str, float] = field(default_factory=dict)
    daily: dict[str, list[float]] = field(default_factory=dict)
    name: str = "fake-load"
    fail_with: SourceError | None = None
    missing_after: datetime | None = None  # steps at or after this are NaN (a scrape gap)
    calls: list[str] = field(default_factory=list)

    def history(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> RegularSeries:
        self.calls.append(query)
        if self.fail_with is not None:
            raise self.fail_with
        n = max(0, int(np.ceil((to_epoch_s(end) - to_epoch_s(start)) / step.total_seconds())))
        times = to_epoch_s(start) + step.total_seconds() * np.arange(n)
        if query in self.levels:
            values = np.full(n, self.levels[query])
        elif query in self.daily:
            hourly = np.asarray(self.daily[query])
            values = hourly[((times // 3600) % 24).astype(int)]
        else:
            raise SourceRequestError(f"unknown query {query!r}", source=self.name, status=400)
        if self.missing_after is not None:
            values = np.where(times >= to_epoch_s(self.missing_after), np.nan, values)
        return RegularSeries(start=start, step=step, values=values, unit="requests/s")
