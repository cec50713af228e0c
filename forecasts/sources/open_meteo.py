"""Open-Meteo weather forecasts as day-ahead inputs of the carbon forecast (live `ExogSource`).

`GET /v1/forecast?latitude=..&longitude=..&hourly=<variables>&wind_speed_unit=ms&timezone=GMT
&past_days=N&forecast_days=M` (api.open-meteo.com, no key, non-commercial use; with an API key
customer-api.open-meteo.com and `apikey=`). The answer holds `hourly_units` and `hourly`
arrays (`time` as `YYYY-MM-DDThh:mm` in GMT). A region is a few weighted lat/lon points: one
request per point (cached by the HTTP client per fetch hour), the columns averaged with the
weights. Columns and units match the GFS trace the replays use (`forecasts.sources.
forecast_traces`): wind m/s, temperature and dew point in K, irradiance W/m2, precipitation
mm. Every row is known from the fetch (`at`): a live forecast has no issue time per value;
past hours (`past_days`) are the provider's recent model values, as known now.

All I/O goes through `forecasts.platform.http.HttpSource` (timeouts, retries, 429/5xx,
breaker, size limits); errors are the `SourceError` tree: a wrong unit, a missing variable,
ragged arrays or a bad timestamp are `SourceDataError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import SecretStr

from forecasts.carbon_forecast import KnownSeries
from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.platform.http import HttpSource
from forecasts.sources.forecast_traces import WEATHER_COLUMNS
from forecasts.time import floor_to, to_epoch_s

__all__ = ["OPEN_METEO_VARIABLES", "OpenMeteoWeatherSource", "WeightedPoint"]

HOUR = timedelta(hours=1)
# gridshift's weather columns (the recorded GFS traces'), named once in forecast_traces
_WIND, _TEMPERATURE, _DEWPOINT, _RADIATION, _PRECIPITATION = WEATHER_COLUMNS
#: Open-Meteo variable -> (gridshift column, accepted unit, offset added to the value).
OPEN_METEO_VARIABLES: dict[str, tuple[str, str, float]] = {
    "wind_speed_10m": (_WIND, "m/s", 0.0),
    "temperature_2m": (_TEMPERATURE, "°C", 273.15),
    "dew_point_2m": (_DEWPOINT, "°C", 273.15),
    "shortwave_radiation": (_RADIATION, "W/m²", 0.0),
    "precipitation": (_PRECIPITATION, "mm", 0.0),
}
MAX_PAST_DAYS = 92
MAX_FORECAST_DAYS = 16


@dataclass(frozen=True, slots=True)
class WeightedPoint:
    """One location of a region and its weight (e.g. installed wind/solar capacity)."""

    latitude: float
    longitude: float
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not -90 <= self.latitude <= 90 or not -180 <= self.longitude <= 180:
            raise ValueError(f"point ({self.latitude}, {self.longitude}) is not on the globe")
        if not self.weight > 0:
            raise ValueError(f"weight must be positive, got {self.weight}")


class OpenMeteoWeatherSource:
    """Weather forecasts per region from Open-Meteo (see the module docstring)."""

    def __init__(
        self,
        http: HttpSource,
        *,
        points: Mapping[str, Sequence[WeightedPoint]],
        past_days: int = MAX_PAST_DAYS,
        forecast_days: int = 3,
        api_key: SecretStr | None = None,
    ) -> None:
        if not 0 <= past_days <= MAX_PAST_DAYS:
            raise ValueError(f"past_days must be in 0..{MAX_PAST_DAYS}, got {past_days}")
        if not 1 <= forecast_days <= MAX_FORECAST_DAYS:
            raise ValueError(f"forecast_days must be in 1..{MAX_FORECAST_DAYS}")
        for region, pts in points.items():
            if not pts:
                raise ValueError(f"region {region!r} has no weather points")
        self._http = http
        self._points = {r: tuple(p) for r, p in points.items()}
        self._past_days = past_days
        self._forecast_days = forecast_days
        self._api_key = api_key
        if api_key is not None:
            http.add_secret(api_key.get_secret_value())

    @property
    def name(self) -> str:
        return self._http.name

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self._http.close()

    def __repr__(self) -> str:
        return f"OpenMeteoWeatherSource(name={self.name!r}, regions={sorted(self._points)})"

    def exog(
        self, region: str, *, start: datetime, end: datetime, at: datetime
    ) -> KnownSeries | None:
        """The region's weather for the hours the API serves at `at` (`past_days` back,
        `forecast_days` ahead), each row known from the fetch hour; [start, end) is what
        the caller wants, the API's span is fixed by the two settings."""
        pts = self._points.get(region)
        if pts is None:
            raise SourceRequestError(
                f"no weather points for region {region!r} (have {', '.join(sorted(self._points))})",
                source=self.name,
            )
        fetched = floor_to(at, HOUR)
        grids = [self._point(p, fetched) for p in pts]
        t0 = max(g[0] for g in grids)
        n = min(g[0] + g[1].shape[0] for g in grids) - t0
        if n <= 0:
            raise SourceDataError("the points' hours do not overlap", source=self.name)
        weights = np.array([p.weight for p in pts])
        stack = np.stack([g[1][t0 - g[0] : t0 - g[0] + n] for g in grids])
        values = np.tensordot(weights / weights.sum(), stack, axes=1)
        return KnownSeries(
            start=datetime.fromtimestamp(t0 * 3600.0, tz=UTC),
            step=HOUR,
            values=values,
            known_s=np.full(n, to_epoch_s(fetched)),
            columns=tuple(c for c, _, _ in OPEN_METEO_VARIABLES.values()),
        )

    def _point(self, p: WeightedPoint, fetched: datetime) -> tuple[int, np.ndarray]:
        """(first hour as hours since the epoch, values with one row per hour)."""
        params: dict[str, Any] = {
            "latitude": f"{p.latitude:.4f}",
            "longitude": f"{p.longitude:.4f}",
            "hourly": ",".join(OPEN_METEO_VARIABLES),
            "wind_speed_unit": "ms",
            "timezone": "GMT",
            "past_days": self._past_days,
            "forecast_days": self._forecast_days,
        }
        if self._api_key is not None:
            params["apikey"] = self._api_key.get_secret_value()
        body = self._http.get_json(
            "v1/forecast",
            params=params,
            cache_key=("forecast", params["latitude"], params["longitude"], fetched.isoformat()),
        )
        return self._parse(body)

    def _parse(self, body: Any) -> tuple[int, np.ndarray]:
        if not isinstance(body, dict):
            raise SourceDataError(
                f"expected a JSON object, got {type(body).__name__}", source=self.name
            )
        if body.get("error"):
            raise SourceDataError(f"error answer: {body.get('reason', body)}", source=self.name)
        hourly, units = body.get("hourly"), body.get("hourly_units")
        if not isinstance(hourly, dict) or not isinstance(units, dict):
            raise SourceDataError("no 'hourly' and 'hourly_units' in the answer", source=self.name)
        offset = body.get("utc_offset_seconds", 0)
        if offset != 0:
            raise SourceDataError(
                f"times not in GMT (utc_offset_seconds={offset})", source=self.name
            )
        times = hourly.get("time")
        if not isinstance(times, list) or not times:
            raise SourceDataError("'hourly.time' is missing or empty", source=self.name)
        hours = np.empty(len(times), dtype=np.int64)
        for i, text in enumerate(times):
            try:
                at = datetime.fromisoformat(str(text)).replace(tzinfo=UTC)
            except ValueError:
                raise SourceDataError(
                    f"bad time {text!r} in 'hourly.time'", source=self.name
                ) from None
            hours[i] = round(to_epoch_s(at) / 3600.0)
        if (np.diff(hours) != 1).any():
            raise SourceDataError("'hourly.time' is not consecutive hours", source=self.name)
        cols = []
        for var, (_col, unit, add) in OPEN_METEO_VARIABLES.items():
            got = units.get(var)
            if got != unit:
                raise SourceDataError(
                    f"variable {var!r}: unit {got!r}, expected {unit!r}", source=self.name
                )
            raw = hourly.get(var)
            if not isinstance(raw, list) or len(raw) != len(times):
                raise SourceDataError(
                    f"variable {var!r}: {len(raw) if isinstance(raw, list) else 'no'} values "
                    f"for {len(times)} times",
                    source=self.name,
                )
            try:
                col = np.array([np.nan if v is None else float(v) for v in raw]) + add
            except (TypeError, ValueError):
                raise SourceDataError(
                    f"variable {var!r}: a value is not a number", source=self.name
                ) from None
            cols.append(col)
        return int(hours[0]), np.column_stack(cols)
