"""gridshift's carbon forecast per region, from a `CarbonSource` (and optionally day-ahead
inputs): the one path `gridshift run`, `gridshift replay` and the extender forecast with.

`CarbonForecasting.forecast(region, at=, horizon=)` gathers what is known at `at` (the
source's measured history, its forecast if it has one, the day-ahead inputs) and hands it to
the pure `forecasts.carbon_forecast`: a plan chosen by rolling backtest (own model, provider,
correction, blend, calibration) is fitted once per `refit_every` on the history before the
refit instant, and every call forecasts from the newest data with it.

Modes: `auto` (the above), `provider` (the source's forecast as given where it has one, the
own model where not: recorded-forecast and perfect-foresight replays) and `own` (ignore the
provider's forecast).
A provider forecast's past values come from the source's `provider_record` when it keeps one
for the region (recorded traces: exactly as they arrived), else from the forecasts this object
received.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from forecasts.carbon_forecast import (
    CarbonForecastSettings,
    CarbonInputs,
    CarbonPlan,
    KnownSeries,
    forecast_carbon,
    plan_carbon_forecast,
)
from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.series import CarbonSeries, CarbonUnit, Quality, RegularSeries, Signal
from forecasts.sources.carbon.base import CarbonSource
from forecasts.time import floor_to, from_epoch_s, to_epoch_s

__all__ = [
    "CarbonForecasting",
    "ExogSource",
    "ForecastMode",
    "ProviderRecord",
    "RegularHistory",
]

HOUR = timedelta(hours=1)
ForecastMode = Literal["auto", "provider", "own"]


@runtime_checkable
class ProviderRecord(Protocol):
    """A source that knows every forecast value it ever published and when (recorded traces);
    None for a region it keeps no such record of."""

    def provider_record(self, region: str) -> KnownSeries | None: ...


@runtime_checkable
class RegularHistory(Protocol):
    """A source that serves measured history on an hourly grid directly (recorded traces)."""

    def history_series(self, region: str, *, start: datetime, end: datetime) -> RegularSeries: ...


class ExogSource(Protocol):
    """Day-ahead inputs per region (weather, generation forecasts) with when each was known."""

    def exog(
        self, region: str, *, start: datetime, end: datetime, at: datetime
    ) -> KnownSeries | None:
        """Inputs for [start, end) with when each row became known, as known at `at`."""
        ...


class CarbonForecasting:
    """See the module docstring. Plans are cached per (region, refit instant); forecasts per
    (region, at, horizon) (replays ask many times at the same instant)."""

    def __init__(
        self,
        carbon: CarbonSource,
        *,
        exog: ExogSource | None = None,
        mode: ForecastMode = "auto",
        settings: CarbonForecastSettings | None = None,
        refit_every: timedelta = timedelta(days=1),
        recent: timedelta = timedelta(days=16),
        noise_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if refit_every <= timedelta(0):
            raise ValueError(f"refit_every must be positive, got {refit_every}")
        if noise_fraction < 0:
            raise ValueError(f"noise_fraction must be >= 0, got {noise_fraction}")
        self._carbon = carbon
        self._exog = exog
        self._mode: ForecastMode = mode
        self._settings = settings or CarbonForecastSettings()
        self._refit_every = refit_every
        self._recent = recent
        self._noise = noise_fraction
        self._seed = seed
        self._plans: dict[tuple[str, datetime], CarbonPlan] = {}
        self._cache: dict[tuple[str, datetime, timedelta], CarbonSeries] = {}
        #: per region, the provider forecast values received: hour -> (value, first known)
        self._received: dict[str, dict[float, tuple[float, float]]] = {}
        self._no_provider: dict[str, datetime] = {}

    @property
    def mode(self) -> ForecastMode:
        return self._mode

    def describe(self) -> str:
        return {
            "auto": "gridshift's carbon forecast (own model, provider, blend by backtest)",
            "provider": "the provider's forecast as given",
            "own": "gridshift's own model (provider forecast ignored)",
        }[self._mode]

    # ------------------------------------------------------------------ inputs
    def _history(self, region: str, start: datetime, end: datetime) -> RegularSeries:
        if isinstance(self._carbon, RegularHistory):
            grid = self._carbon.history_series(region, start=start, end=end)
            if grid.step == HOUR:
                return grid
        hist = self._carbon.history(region, start=start, end=end)
        if len(hist.points):
            start = max(start, floor_to(hist.points[0].at, HOUR))
        return RegularSeries.from_points(
            hist.epoch_s, hist.values, step=HOUR, unit=str(hist.unit), start=start, end=end
        )

    def _provider_as_given(
        self, region: str, *, at: datetime, horizon: timedelta
    ) -> CarbonSeries | None:
        """The source's forecast, or None where it has none (asked again a day later)."""
        since = self._no_provider.get(region)
        if since is not None and at - since < timedelta(days=1):
            return None
        try:
            return self._carbon.forecast(region, at=at, horizon=horizon)
        except SourceRequestError:
            self._no_provider[region] = at
            return None

    def _provider_now(self, region: str, at: datetime, horizon: timedelta) -> KnownSeries | None:
        """The provider's forecast as known at `at` (past values included), or None."""
        if isinstance(self._carbon, ProviderRecord):
            record = self._carbon.provider_record(region)
            if record is not None:
                return record
        fc = self._provider_as_given(region, at=at, horizon=horizon)
        if fc is None:
            return None
        got = self._received.setdefault(region, {})
        now_s = to_epoch_s(at)
        for t, v in zip(fc.epoch_s, fc.values, strict=True):
            slot = math.floor(t / 3600.0) * 3600.0
            if slot not in got or slot >= now_s:
                got[slot] = (float(v), now_s)
        if len(got) > 24 * 400:
            for old in sorted(got)[: len(got) - 24 * 400]:
                del got[old]
        if not got:
            return None
        slots = sorted(got)
        start = from_epoch_s(slots[0])
        n = round((slots[-1] - slots[0]) / 3600.0) + 1
        values = np.full(n, np.nan)
        known = np.full(n, np.inf)
        for s in slots:
            i = round((s - slots[0]) / 3600.0)
            values[i], known[i] = got[s]
        return KnownSeries(start=start, step=HOUR, values=values, known_s=known)

    def _inputs(
        self, region: str, start: datetime, end: datetime, horizon: timedelta
    ) -> CarbonInputs:
        provider = None if self._mode == "own" else self._provider_now(region, end, horizon)
        exog = None
        if self._exog is not None and self._mode != "provider":
            exog = self._exog.exog(region, start=start, end=end + horizon, at=end)
        return CarbonInputs(self._history(region, start, end), provider=provider, exog=exog)

    # ------------------------------------------------------------------ the forecast
    def plan(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonPlan:
        """The plan in use at `at`: fitted on the history before the last refit instant."""
        anchor = floor_to(at, self._refit_every)
        key = (region, anchor)
        hit = self._plans.get(key)
        if hit is not None:
            return hit
        start = anchor - HOUR * self._settings.history_steps
        inputs = self._inputs(region, start, anchor, horizon)
        if np.isfinite(inputs.history.values).sum() < 24:
            raise SourceDataError(
                f"not enough carbon history for {region} before {anchor} to forecast",
                source=self._carbon.name,
            )
        try:
            plan = plan_carbon_forecast(inputs, settings=self._settings)
        except ValueError as exc:
            raise SourceDataError(
                f"carbon forecast for {region}: {exc}", source="gridshift"
            ) from exc
        if len(self._plans) > 256:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        """Forecast points for the hours from the one containing `at` over `horizon`."""
        first = floor_to(at, HOUR)
        key = (region, at, horizon)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        steps = max(1, math.ceil((at + horizon - first) / HOUR))
        out = None
        if self._mode == "provider":
            out = self._provider_as_given(region, at=at, horizon=horizon)
            if out is not None and len(out.points) < steps:
                # a day-ahead forecast ends with the day it was issued for (and is absent
                # before it arrives): the own model fills the steps it has no value for
                out = self._filled(region, out, at=at, first=first, steps=steps, horizon=horizon)
        if out is None:
            try:
                out = self._own(region, at=at, first=first, steps=steps, horizon=horizon)
            except SourceDataError as exc:
                # too little history for a model: the provider's forecast as given, if any
                given = None
                if self._mode == "auto":
                    given = self._provider_as_given(region, at=at, horizon=horizon)
                if given is None:
                    raise SourceRequestError(
                        f"no forecast for {region} yet: no provider forecast and {exc}",
                        source=self._carbon.name,
                    ) from exc
                out = given
        out = self._degrade(out, region, first)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = out
        return out

    def _filled(
        self,
        region: str,
        given: CarbonSeries,
        *,
        at: datetime,
        first: datetime,
        steps: int,
        horizon: timedelta,
    ) -> CarbonSeries:
        """The provider's values as given, the own model on the steps it has none for
        (carrying on from the provider's last value: no level jump); `given` itself when
        there is too little history for an own model."""
        try:
            plan = self.plan(region, at=at, horizon=horizon)
        except SourceDataError:
            return given
        as_given = replace(plan, provider_weight=1.0, half_life_steps=None)
        return self._own(region, at=at, first=first, steps=steps, horizon=horizon, plan=as_given)

    def _own(
        self,
        region: str,
        *,
        at: datetime,
        first: datetime,
        steps: int,
        horizon: timedelta,
        plan: CarbonPlan | None = None,
    ) -> CarbonSeries:
        plan = plan or self.plan(region, at=at, horizon=horizon)
        inputs = self._inputs(region, first - self._recent, first, horizon)
        if np.isfinite(inputs.history.values).sum() < 24:
            raise SourceDataError(
                f"not enough recent carbon history for {region} before {first}",
                source=self._carbon.name,
            )
        try:
            fc = forecast_carbon(inputs, plan, horizon=steps)
        except ValueError as exc:
            raise SourceDataError(
                f"carbon forecast for {region}: {exc}", source="gridshift"
            ) from exc
        series = CarbonSeries.build(
            region=region,
            points=(
                (t, float(v), Quality.FORECAST) for t, v in zip(fc.times(), fc.mean, strict=True)
            ),
            unit=CarbonUnit.G_PER_KWH,
            signal=Signal.AVERAGE,
            provider=f"gridshift {fc.model} on {self._carbon.name}",
            fetched_at=at,
            resolution=HOUR,
        )
        return replace(series, note=f"forecast by gridshift ({fc.model}) from {self._carbon.name}")

    def _degrade(self, series: CarbonSeries, region: str, first: datetime) -> CarbonSeries:
        """Seeded multiplicative noise on every point (sensitivity runs), clipped at 0."""
        if self._noise <= 0 or not series.points:
            return series
        rng = np.random.default_rng(
            [self._seed, zlib.crc32(region.encode()), int(to_epoch_s(first))]
        )
        noisy = np.clip(
            series.values * (1.0 + rng.normal(0.0, self._noise, len(series.points))), 0.0, None
        )
        return replace(
            series,
            points=tuple(
                replace(p, value=float(v)) for p, v in zip(series.points, noisy, strict=True)
            ),
        )
