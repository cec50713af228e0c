"""GB Carbon Intensity API adapter (`../shared/reference/uk-carbon-intensity.md`).

No auth. Half-hour periods, UTC, path datetimes `YYYY-MM-DDThh:mmZ`. A region's zone is
`national` (Great Britain) or a regional id `1`..`17` (e.g. 13 London, 12 South England).

- National: `intensity/{from}/{to}` (at most 14 days per call) and `intensity/{from}/fw24h|fw48h`.
  `actual` (an estimated outturn) -> `Quality.MEASURED`; where it is null the `forecast` value is
  used, marked `Quality.FORECAST`. `forecast()` always uses the `forecast` field.
- Regional: `regional/intensity/{from}/{to}/regionid/{id}` and `.../{from}/fw48h/regionid/{id}`;
  regional values are forecasts only (`Quality.FORECAST`). Both shapes of `data` seen in the
  wild are accepted: a list holding the region object, or the region object itself.
- Every period must be 30 minutes long; anything else is refused as a unit/resolution mismatch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from forecasts.platform.errors import SourceDataError, SourceRequestError
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

__all__ = ["REGION_IDS", "UkCarbonIntensitySource"]

HALF_HOUR = timedelta(minutes=30)
MAX_RANGE = timedelta(days=14)
NATIONAL = "national"
REGION_IDS = {
    1: "North Scotland",
    2: "South Scotland",
    3: "North West England",
    4: "North East England",
    5: "Yorkshire",
    6: "North Wales",
    7: "South Wales",
    8: "West Midlands",
    9: "East Midlands",
    10: "East England",
    11: "South West England",
    12: "South England",
    13: "London",
    14: "South East England",
    15: "England",
    16: "Scotland",
    17: "Wales",
}


class UkCarbonIntensitySource:
    """`CarbonSource` over api.carbonintensity.org.uk (national and the 17 regions)."""

    def __init__(self, http: HttpSource, *, regions: RegionMap) -> None:
        self._http = http
        self._regions = regions

    @property
    def name(self) -> str:
        return self._http.name

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self._http.close()

    def __repr__(self) -> str:
        return f"UkCarbonIntensitySource(name={self.name!r})"

    # ------------------------------------------------------------------ the role
    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        slot = floor_to(at, HALF_HOUR)
        series = self._range(region, slot - HALF_HOUR, slot + HALF_HOUR)
        point = series.latest(at=at)
        return replace(series, points=(point,) if point else ())

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        series = self._range(region, floor_to(start, HALF_HOUR), end)
        return replace(series, points=tuple(p for p in series.points if start <= p.at < end))

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        regionid = self._regionid(region)
        slot = floor_to(at, HALF_HOUR)
        window = "fw24h" if horizon <= timedelta(hours=24) else "fw48h"
        frm = fmt_iso_z(slot, seconds=False)
        if regionid is None:
            items = self._national(f"intensity/{frm}/{window}", cache=(window, frm))
        else:
            path = f"regional/intensity/{frm}/{window}/regionid/{regionid}"
            items = self._regional(path, regionid, cache=(window, frm))
        raw = [
            (when, value, Quality.FORECAST)
            for when, value, _actual in items
            if slot <= when < at + horizon
        ]
        return self._series(region, raw)

    # ------------------------------------------------------------------ helpers
    def _range(self, region: str, start: datetime, end: datetime) -> CarbonSeries:
        regionid = self._regionid(region)
        raw: list[RawPoint] = []
        for lo, hi in chunks(start, end, size=MAX_RANGE):
            frm, to = fmt_iso_z(lo, seconds=False), fmt_iso_z(hi, seconds=False)
            if regionid is None:
                items = self._national(f"intensity/{frm}/{to}", cache=("range", frm, to))
            else:
                path = f"regional/intensity/{frm}/{to}/regionid/{regionid}"
                items = self._regional(path, regionid, cache=("range", frm, to))
            for when, forecast, actual in items:
                if actual is not None:
                    raw.append((when, actual, Quality.MEASURED))
                else:
                    raw.append((when, forecast, Quality.FORECAST))
        return self._series(region, raw)

    def _regionid(self, region: str) -> int | None:
        zone = zone_of(lambda: self._regions.zone(region, provider=self.name), source=self.name)
        text = zone.strip().lower()
        if text in (NATIONAL, "gb", "0"):
            return None
        try:
            regionid = int(text)
        except ValueError:
            regionid = -1
        if regionid not in REGION_IDS:
            raise SourceRequestError(
                f"zone {zone!r} of region {region!r} is neither 'national' nor a UK region id "
                "1..17",
                source=self.name,
            )
        return regionid

    def _get(self, path: str, cache: tuple[str, ...]) -> Mapping[str, Any]:
        body = self._http.get_json(
            path, headers={"Accept": "application/json"}, cache_key=(path, *cache)
        )
        doc = as_mapping(body, source=self.name, where=path)
        check_unit(doc, source=self.name, where=path)
        return doc

    def _national(
        self, path: str, *, cache: tuple[str, ...]
    ) -> list[tuple[datetime, float | None, float | None]]:
        doc = self._get(path, cache)
        data = as_list(doc.get("data"), source=self.name, where="data")
        return [
            self._period(item, where=f"data[{i}]", national=True) for i, item in enumerate(data)
        ]

    def _regional(
        self, path: str, regionid: int, *, cache: tuple[str, ...]
    ) -> list[tuple[datetime, float | None, float | None]]:
        doc = self._get(path, cache)
        data = doc.get("data")
        where = "data"
        if isinstance(data, list):
            if not data:
                return []
            if len(data) != 1:
                raise SourceDataError(
                    f"data: expected one region object, got {len(data)}", source=self.name
                )
            data, where = data[0], "data[0]"
        obj = as_mapping(data, source=self.name, where=where)
        got = obj.get("regionid")
        if got is not None and got != regionid:
            raise SourceDataError(
                f"{where}.regionid: asked for region {regionid} but the answer is for {got!r}",
                source=self.name,
            )
        periods = as_list(obj.get("data"), source=self.name, where=f"{where}.data")
        return [
            self._period(item, where=f"{where}.data[{i}]", national=False)
            for i, item in enumerate(periods)
        ]

    def _period(
        self, entry: Any, *, where: str, national: bool
    ) -> tuple[datetime, float | None, float | None]:
        item = as_mapping(entry, source=self.name, where=where)
        check_unit(item, source=self.name, where=where)
        start = parse_instant(item.get("from"), source=self.name, where=f"{where}.from")
        end = parse_instant(item.get("to"), source=self.name, where=f"{where}.to")
        if end - start != HALF_HOUR:
            raise SourceDataError(
                f"{where}: period {item.get('from')}..{item.get('to')} is not 30 minutes "
                "long; refusing a resolution this adapter does not understand",
                source=self.name,
            )
        intensity = as_mapping(item.get("intensity"), source=self.name, where=f"{where}.intensity")
        check_unit(intensity, source=self.name, where=f"{where}.intensity")
        forecast = parse_intensity(
            intensity.get("forecast"), source=self.name, where=f"{where}.intensity.forecast"
        )
        actual = (
            parse_intensity(
                intensity.get("actual"), source=self.name, where=f"{where}.intensity.actual"
            )
            if national
            else None
        )
        return start, forecast, actual

    def _series(self, region: str, raw: list[RawPoint]) -> CarbonSeries:
        return CarbonSeries.build(
            region=self._regions.get(region).name,
            points=raw,
            unit=CarbonUnit.G_PER_KWH,
            signal=Signal.AVERAGE,
            provider=self.name,
            fetched_at=self._http.clock.now(),
            resolution=HALF_HOUR,
        )
