"""WattTime API v3 adapter (`../shared/reference/watttime.md`).

- Auth: `GET /login` with HTTP Basic -> `{"token"}`; data calls send `Authorization: Bearer`.
  Tokens live 30 minutes: renewed proactively after `token_renew_after` (25 min by default)
  and once on a 401 (`HttpSource`'s `on_unauthorized`).
- `latest`: first point of `GET /v3/forecast?horizon_hours=0` (WattTime's advice for real-time
  use; a modelled nowcast, so `Quality.ESTIMATED`).
- `history`: `GET /v3/historical` in chunks of at most 32 days, with `include_imputed_marker`
  (imputed points -> `Quality.ESTIMATED`, others `MEASURED`).
- `forecast`: `GET /v3/forecast` (`co2_moer` only; `co2_aoer` has no forecast).
- `signal_index`: `GET /v3/signal-index`, kept as `CarbonUnit.PERCENTILE`, never as g/kWh.
- Units come from `meta.units`: `lbs_co2_per_mwh` is converted (x 0.45359237) to gCO2/kWh;
  any other unit is a `SourceDataError` (never a silently wrong unit).
- `co2_moer` is a marginal signal (`Signal.MARGINAL`), `co2_aoer` an average one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import SecretStr

from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.platform.http import HttpSource
from forecasts.regions import RegionMap
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon._wire import (
    RawPoint,
    as_list,
    as_mapping,
    chunks,
    fmt_iso_z,
    parse_duration_seconds,
    parse_instant,
    parse_number,
    zone_of,
)

__all__ = ["LBS_PER_MWH_TO_G_PER_KWH", "WattTimeSource"]

SignalType = Literal["co2_moer", "co2_aoer"]

LBS_PER_MWH_TO_G_PER_KWH = 0.45359237
HISTORICAL_WINDOW = timedelta(days=32)
MAX_FORECAST_HOURS = 72
log = logging.getLogger(__name__)

_LBS_UNITS = frozenset({"lbs_co2_per_mwh"})
_PERCENTILE_UNITS = frozenset({"percentile"})


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    obtained_at: datetime

    def __repr__(self) -> str:
        return f"_Token(obtained_at={self.obtained_at.isoformat()})"


class WattTimeSource:
    """`CarbonSource` over WattTime v3. Password and tokens never appear in messages."""

    def __init__(
        self,
        http: HttpSource,
        *,
        regions: RegionMap,
        username: str,
        password: SecretStr,
        signal_type: SignalType = "co2_moer",
        token_renew_after: timedelta = timedelta(minutes=25),
    ) -> None:
        if token_renew_after >= timedelta(minutes=30):
            raise ValueError("WattTime tokens live 30 minutes; renew them before that")
        self._http = http
        self._regions = regions
        self._username = username
        self._password = password
        self._signal_type: SignalType = signal_type
        self._renew_after = token_renew_after
        self._token: _Token | None = None
        http.add_secret(password.get_secret_value())

    @property
    def name(self) -> str:
        return self._http.name

    def close(self) -> None:
        """Close the HTTP client and its connections."""
        self._http.close()

    @property
    def signal(self) -> Signal:
        return Signal.MARGINAL if self._signal_type == "co2_moer" else Signal.AVERAGE

    def __repr__(self) -> str:
        return f"WattTimeSource(name={self.name!r}, signal_type={self._signal_type!r})"

    # ------------------------------------------------------------------ the role
    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        self._require_forecastable("latest")
        zone = self._zone(region)
        params = {"region": zone, "signal_type": self._signal_type, "horizon_hours": "0"}
        doc = self._data("v3/forecast", params, where="forecast")
        series = self._series(region, doc, quality=Quality.ESTIMATED, where="forecast")
        return replace(series, points=series.points[:1])

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        zone = self._zone(region)
        parts: list[CarbonSeries] = []
        for lo, hi in chunks(start, end, size=HISTORICAL_WINDOW):
            params = {
                "region": zone,
                "signal_type": self._signal_type,
                "start": fmt_iso_z(lo),
                # Both ends are inclusive on WattTime's side; the next chunk starts at `hi`.
                "end": fmt_iso_z(hi - timedelta(seconds=1)),
                "include_imputed_marker": "true",
            }
            doc = self._data("v3/historical", params, where="historical")
            parts.append(self._series(region, doc, quality=None, where="historical"))
        resolution = min((p.resolution for p in parts), default=timedelta(minutes=5))
        raw = [(p.at, p.value, p.quality) for s in parts for p in s.points if start <= p.at < end]
        return CarbonSeries.build(
            region=self._regions.get(region).name,
            points=raw,
            unit=CarbonUnit.G_PER_KWH,
            signal=self.signal,
            provider=self.name,
            fetched_at=self._http.clock.now(),
            resolution=resolution,
        )

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        self._require_forecastable("forecast")
        zone = self._zone(region)
        hours = min(MAX_FORECAST_HOURS, max(1, math.ceil(horizon / timedelta(hours=1))))
        params = {"region": zone, "signal_type": self._signal_type, "horizon_hours": str(hours)}
        doc = self._data("v3/forecast", params, where="forecast")
        series = self._series(region, doc, quality=Quality.FORECAST, where="forecast")
        return series.window(at, at + horizon)

    def signal_index(self, region: str, *, at: datetime) -> CarbonSeries:
        """Where the current value ranks (0 cleanest .. 100 dirtiest) against the coming 24 h.

        A percentile, not an intensity: the series' unit is `CarbonUnit.PERCENTILE`."""
        zone = self._zone(region)
        params = {"region": zone, "signal_type": self._signal_type}
        doc = self._data("v3/signal-index", params, where="signal-index")
        series = self._series(
            region, doc, quality=Quality.ESTIMATED, where="signal-index", percentile=True
        )
        point = series.latest(at=at) or (series.points[0] if series.points else None)
        return replace(series, points=(point,) if point else ())

    # ------------------------------------------------------------------ auth
    def _login(self) -> _Token:
        try:
            body = self._http.get_json(
                "login", auth=(self._username, self._password.get_secret_value())
            )
        except SourceDataError as exc:
            # nginx answers a bad login with an HTML page; treat it as refused credentials.
            raise SourceRequestError(
                f"login failed: the answer was not JSON ({exc.args[0]})", source=self.name
            ) from None
        except SourceRequestError as exc:
            raise SourceRequestError(
                f"login failed (check username and password): {exc.args[0]}",
                source=self.name,
                status=exc.status,
            ) from None
        doc = as_mapping(body, source=self.name, where="login")
        token = doc.get("token")
        if not isinstance(token, str) or not token:
            raise SourceDataError("login: answer has no 'token' string", source=self.name)
        self._http.add_secret(token)
        self._token = _Token(token, self._http.clock.now())
        return self._token

    def _bearer(self) -> dict[str, str]:
        token = self._token
        if token is None or self._http.clock.now() - token.obtained_at >= self._renew_after:
            token = self._login()
        return {"Authorization": f"Bearer {token.value}"}

    def _relogin(self) -> dict[str, str]:
        self._token = None
        return self._bearer()

    # ------------------------------------------------------------------ helpers
    def _require_forecastable(self, what: str) -> None:
        if self._signal_type != "co2_moer":
            raise SourceRequestError(
                f"{what}: WattTime publishes forecasts for co2_moer only, not {self._signal_type}",
                source=self.name,
            )

    def _zone(self, region: str) -> str:
        return zone_of(lambda: self._regions.zone(region, provider=self.name), source=self.name)

    def _data(self, path: str, params: Mapping[str, str], *, where: str) -> Mapping[str, Any]:
        body = self._http.get_json(
            path,
            params=params,
            headers=self._bearer(),
            on_unauthorized=self._relogin,
            cache_key=(path, *(f"{k}={v}" for k, v in sorted(params.items()))),
        )
        return as_mapping(body, source=self.name, where=where)

    def _series(
        self,
        region: str,
        doc: Mapping[str, Any],
        *,
        quality: Quality | None,
        where: str,
        percentile: bool = False,
    ) -> CarbonSeries:
        meta = as_mapping(doc.get("meta"), source=self.name, where=f"{where}.meta")
        factor, period = self._meta(meta, where=where, percentile=percentile)
        raw = self._points(doc, where=where, factor=factor, quality=quality, percentile=percentile)
        return CarbonSeries.build(
            region=self._regions.get(region).name,
            points=raw,
            unit=CarbonUnit.PERCENTILE if percentile else CarbonUnit.G_PER_KWH,
            signal=self.signal,
            provider=self.name,
            fetched_at=self._http.clock.now(),
            resolution=period,
        )

    def _meta(
        self, meta: Mapping[str, Any], *, where: str, percentile: bool
    ) -> tuple[float, timedelta]:
        """(factor to gCO2/kWh, data point period) from a response's `meta`; checks its units
        and signal type, logs the provider's warnings."""
        raw_units = meta.get("units")
        units = raw_units if isinstance(raw_units, str) else repr(raw_units)
        if percentile:
            if units not in _PERCENTILE_UNITS:
                raise SourceDataError(
                    f"{where}.meta.units: expected 'percentile' but got {units!r}",
                    source=self.name,
                )
            factor = 1.0
        elif units in _LBS_UNITS:
            factor = LBS_PER_MWH_TO_G_PER_KWH
        else:
            raise SourceDataError(
                f"{where}.meta.units: expected 'lbs_co2_per_mwh' but got {units!r}"
                + (" (a percentile is not an intensity)" if units in _PERCENTILE_UNITS else ""),
                source=self.name,
            )
        signal_type = meta.get("signal_type")
        if signal_type is not None and signal_type != self._signal_type:
            raise SourceDataError(
                f"{where}.meta.signal_type: asked for {self._signal_type!r} but got "
                f"{signal_type!r}",
                source=self.name,
            )
        period = parse_duration_seconds(
            meta.get("data_point_period_seconds", 300),
            source=self.name,
            where=f"{where}.meta.data_point_period_seconds",
            unit_seconds=1,
        )
        if period <= timedelta(0):
            raise SourceDataError(
                f"{where}.meta.data_point_period_seconds: expected a positive number of seconds",
                source=self.name,
            )
        for warning in as_list(
            meta.get("warnings", []), source=self.name, where=f"{where}.meta.warnings"
        ):
            log.warning("%s: provider warning: %s", self.name, warning)
        return factor, period

    def _points(
        self,
        doc: Mapping[str, Any],
        *,
        where: str,
        factor: float,
        quality: Quality | None,
        percentile: bool,
    ) -> list[RawPoint]:
        """The response's `data` items as points (values checked, scaled by `factor`); an
        item's quality is `quality`, or from its `imputed_data_used` flag."""
        data = as_list(doc.get("data"), source=self.name, where=f"{where}.data")
        raw: list[RawPoint] = []
        for i, entry in enumerate(data):
            item_where = f"{where}.data[{i}]"
            item = as_mapping(entry, source=self.name, where=item_where)
            when = parse_instant(
                item.get("point_time"), source=self.name, where=f"{item_where}.point_time"
            )
            value = parse_number(item.get("value"), source=self.name, where=f"{item_where}.value")
            if value is not None:
                if percentile and not 0 <= value <= 100:
                    raise SourceDataError(
                        f"{item_where}.value: percentile {value} outside 0..100", source=self.name
                    )
                if not percentile and value < 0:
                    raise SourceDataError(
                        f"{item_where}.value: negative emission rate {value}", source=self.name
                    )
                value *= factor
            if quality is None:
                imputed = item.get("imputed_data_used")
                point_quality = Quality.ESTIMATED if imputed is True else Quality.MEASURED
            else:
                point_quality = quality
            raw.append((when, value, point_quality))
        return raw
