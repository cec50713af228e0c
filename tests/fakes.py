"""Fakes for gridshift's roles (`Fake<Role>`), each passing the role's contract tests."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta

from forecasts.regions import RegionMap
from forecasts.series import CarbonSeries, Quality
from forecasts.sources.errors import SourceError, SourceRequestError

__all__ = ["FakeCarbonSource"]


class FakeCarbonSource:
    """A scripted `CarbonSource`: one series per region holding measured/estimated points
    (served by `latest`/`history`) and forecast points (served by `forecast`).

    Set `error` to make every call raise it; `calls` records (method, region)."""

    def __init__(
        self,
        name: str,
        *,
        regions: RegionMap,
        data: Mapping[str, CarbonSeries] | None = None,
        error: SourceError | None = None,
    ) -> None:
        self._name = name
        self._regions = regions
        self._data = dict(data or {})
        self.error = error
        self.calls: list[tuple[str, str]] = []

    @property
    def name(self) -> str:
        return self._name

    def _series(self, method: str, region: str) -> CarbonSeries:
        self.calls.append((method, region))
        try:
            canonical = (
                self._regions.zone(region, provider=self._name) and self._regions.get(region).name
            )
        except ValueError as exc:
            raise SourceRequestError(str(exc), source=self._name) from None
        if self.error is not None:
            raise self.error
        series = self._data.get(canonical)
        if series is None:
            raise SourceRequestError(f"no data scripted for {canonical}", source=self._name)
        return series

    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        series = self._series("latest", region)
        past = [p for p in series.points if p.quality is not Quality.FORECAST and p.at <= at]
        keep = (past[-1],) if past and at < past[-1].at + series.resolution else ()
        return replace(series, points=keep)

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        series = self._series("history", region)
        keep = tuple(
            p for p in series.points if p.quality is not Quality.FORECAST and start <= p.at < end
        )
        return replace(series, points=keep)

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        series = self._series("forecast", region)
        keep = tuple(
            p
            for p in series.points
            if p.quality is Quality.FORECAST
            and p.at + series.resolution > at
            and p.at < at + horizon
        )
        return replace(series, points=keep)
