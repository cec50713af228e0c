"""Electricity Maps API v3 adapter (`../shared/reference/electricitymaps.md`).

- `latest`: `GET carbon-intensity/latest`; `history`: `GET carbon-intensity/past-range`, paged in
  windows of at most 10 days; `forecast`: `GET carbon-intensity/forecast` with `horizonHours`.
- Auth: header `auth-token`. Location: `zone=<zoneKey>` plus `shouldUseFallbackCallerLookup=false`
  (an error beats silently answering for the caller's IP location).
- Values are gCO2eq/kWh, average (consumption-based) intensity, with life-cycle or direct factors
  (`emissionFactorType`); an answer in other factors than asked, or for another zone, is refused.
- `isEstimated: true` -> `Quality.ESTIMATED`; forecast items -> `Quality.FORECAST`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import SecretStr

from forecasts.platform.errors import SourceDataError
from forecasts.platform.http import HttpSource
from forecasts.regions import RegionMap
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon._wire import (
    RawPoint,
    as_list,
    as_mapping,
    check_unit,
    chunks,
    fmt_iso_z,
    parse_instant,
    parse_intensity,
    zone_of,
)
from forecasts.time import floor_to

__all__ = ["ElectricityMapsSource"]

EmissionFactor = Literal["lifecycle", "direct"]

PAST_RANGE_WINDOW = timedelta(days=10)
FORECAST_HORIZONS_HOURS = (6, 24, 48, 72)
_GRANULARITY = {
    "5_minutes": timedelta(minutes=5),
    "15_minutes": timedelta(minutes=15),
    "hourly": timedelta(hours=1),
}


class ElectricityMapsSource:
    """`CarbonSource` over Electricity Maps v3. The token is only ever sent as a header."""

    def __init__(
        self,
        http: HttpSource,
        *,
        regions: RegionMap,
        token: SecretStr,
        emission_factor: EmissionFactor = "lifecycle",
        disable_estimations: bool = False,
    ) -> None:
        self._http = http
        self._regions = regions
        self._token = token
        self._factor: EmissionFactor = emission_factor
        self._disable_estimations = disable_estimations
        http.add_secret(token.get_secret_value())

    @property
    def name(self) -> str:
        return self._http.name

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self._http.close()

    def __repr__(self) -> str:
        return f"ElectricityMapsSource(name={self.name!r}, emission_factor={self._factor!r})"

    # ------------------------------------------------------------------ the role
    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        zone = self._zone(region)
        body = self._get("carbon-intensity/latest", zone, cache=("latest",))
        item = as_mapping(body, source=self.name, where="latest")
        points = [self._point(item, zone=zone, where="latest")]
        series = self._series(region, points, _resolution_of([item]))
        point = series.latest(at=at)
        return replace(series, points=(point,) if point else ())

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        zone = self._zone(region)
        raw: list[RawPoint] = []
        items_seen: list[Mapping[str, Any]] = []
        for lo, hi in chunks(start, end, size=PAST_RANGE_WINDOW):
            extra = {"start": fmt_iso_z(lo), "end": fmt_iso_z(hi)}
            body = self._get(
                "carbon-intensity/past-range",
                zone,
                extra=extra,
                cache=("past-range", *extra.values()),
            )
            doc = as_mapping(body, source=self.name, where="past-range")
            self._check_zone(doc, zone, where="past-range")
            data = as_list(doc.get("data"), source=self.name, where="past-range.data")
            for i, entry in enumerate(data):
                item = as_mapping(entry, source=self.name, where=f"past-range.data[{i}]")
                items_seen.append(item)
                raw.append(self._point(item, zone=zone, where=f"past-range.data[{i}]"))
        raw = [p for p in raw if start <= p[0] < end]
        return self._series(region, raw, _resolution_of(items_seen))

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        zone = self._zone(region)
        hours = math.ceil(horizon / timedelta(hours=1))
        ask = next((h for h in FORECAST_HORIZONS_HOURS if h >= hours), FORECAST_HORIZONS_HOURS[-1])
        extra = {"horizonHours": str(ask)}
        body = self._get(
            "carbon-intensity/forecast", zone, extra=extra, cache=("forecast", str(ask))
        )
        doc = as_mapping(body, source=self.name, where="forecast")
        self._check_zone(doc, zone, where="forecast")
        self._check_unit(doc, where="forecast")
        data = as_list(doc.get("forecast"), source=self.name, where="forecast.forecast")
        raw: list[RawPoint] = []
        items: list[Mapping[str, Any]] = []
        for i, entry in enumerate(data):
            where = f"forecast.forecast[{i}]"
            item = as_mapping(entry, source=self.name, where=where)
            items.append(item)
            self._check_unit(item, where=where)
            when = parse_instant(item.get("datetime"), source=self.name, where=f"{where}.datetime")
            value = parse_intensity(
                item.get("carbonIntensity"), source=self.name, where=f"{where}.carbonIntensity"
            )
            raw.append((when, value, Quality.FORECAST))
        resolution = _resolution_of(items)
        lo = floor_to(at, resolution)
        raw = [p for p in raw if lo <= p[0] < at + horizon]
        return self._series(region, raw, resolution)

    # ------------------------------------------------------------------ helpers
    def _zone(self, region: str) -> str:
        return zone_of(lambda: self._regions.zone(region, provider=self.name), source=self.name)

    def _get(
        self,
        path: str,
        zone: str,
        *,
        extra: Mapping[str, str] | None = None,
        cache: tuple[str, ...],
    ) -> Any:
        params: dict[str, str] = {
            "zone": zone,
            "emissionFactorType": self._factor,
            "shouldUseFallbackCallerLookup": "false",
        }
        if self._disable_estimations:
            params["disableEstimations"] = "true"
        params.update(extra or {})
        return self._http.get_json(
            path,
            params=params,
            headers={"auth-token": self._token.get_secret_value()},
            cache_key=(zone, self._factor, *cache),
        )

    def _point(self, item: Mapping[str, Any], *, zone: str, where: str) -> RawPoint:
        self._check_zone(item, zone, where=where)
        self._check_unit(item, where=where)
        factor = item.get("emissionFactorType")
        if factor is not None and factor != self._factor:
            raise SourceDataError(
                f"{where}.emissionFactorType: asked for {self._factor!r} factors "
                f"but got {factor!r}",
                source=self.name,
            )
        when = parse_instant(item.get("datetime"), source=self.name, where=f"{where}.datetime")
        value = parse_intensity(
            item.get("carbonIntensity"), source=self.name, where=f"{where}.carbonIntensity"
        )
        estimated = item.get("isEstimated")
        if estimated is not None and not isinstance(estimated, bool):
            raise SourceDataError(
                f"{where}.isEstimated: expected true/false, got {estimated!r}", source=self.name
            )
        return (when, value, Quality.ESTIMATED if estimated else Quality.MEASURED)

    def _check_zone(self, doc: Mapping[str, Any], zone: str, *, where: str) -> None:
        got = doc.get("zone")
        if got is not None and got != zone:
            raise SourceDataError(
                f"{where}.zone: asked for zone {zone!r} but the answer is for {got!r}",
                source=self.name,
            )

    def _check_unit(self, doc: Mapping[str, Any], *, where: str) -> None:
        check_unit(doc, source=self.name, where=where)

    def _series(self, region: str, raw: list[RawPoint], resolution: timedelta) -> CarbonSeries:
        return CarbonSeries.build(
            region=self._regions.get(region).name,
            points=raw,
            unit=CarbonUnit.G_PER_KWH,
            signal=Signal.AVERAGE,
            provider=self.name,
            fetched_at=self._http.clock.now(),
            resolution=resolution,
            emission_factor=self._factor,
        )


def _resolution_of(items: list[Mapping[str, Any]]) -> timedelta:
    """`temporalGranularity` when the answer states it, else hourly (the API default)."""
    for item in items:
        granularity = item.get("temporalGranularity")
        if isinstance(granularity, str) and granularity in _GRANULARITY:
            return _GRANULARITY[granularity]
    return timedelta(hours=1)
