"""Fakes for gridshift's roles (`Fake<Role>`), for unit tests of the loop and the adapters.

Each fake serves programmed values, can be told to fail with a `SourceError`, and records
its calls. `FakeCarbonSource` passes the same contract tests as the real carbon adapters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np
import pynvml

from extender.core.energy import GpuEnergy
from extender.core.scoring import NodeFacts
from forecasts.platform.errors import SourceError, SourceRequestError
from forecasts.regions import RegionMap
from forecasts.series import CarbonSeries, CarbonUnit, Quality, RegularSeries, Signal
from forecasts.time import floor_to, to_epoch_s

__all__ = [
    "FakeCarbonSource",
    "FakeDailyCarbonSource",
    "FakeGpu",
    "FakeGpuPowerSource",
    "FakeLoadSource",
    "FakeNodeAnnotator",
    "FakeNodeInventory",
    "FakeNvmlLibrary",
    "FakeReplicaReader",
    "FakeSeriesCarbonSource",
    "hourly_series",
]


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


@dataclass
class FakeDailyCarbonSource:
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
class FakeReplicaReader:
    """Actual replicas per workload name from `replicas`; a name in `fail` answers that
    `SourceError`; `raise_with` makes the whole read raise (a broken reader); names in
    `actuated` are in effect (gridshift sets their targets)."""

    replicas: dict[str, int] = field(default_factory=dict)
    fail: dict[str, SourceError] = field(default_factory=dict)
    raise_with: Exception | None = None
    name: str = "fake-kube"
    calls: int = 0
    actuated: frozenset[str] = frozenset()

    def in_effect(self, workloads: Sequence[Any]) -> frozenset[str]:
        return frozenset(w.name for w in workloads) & self.actuated

    def read(self, workloads: Sequence[Any]) -> dict[str, int | SourceError]:
        self.calls += 1
        if self.raise_with is not None:
            raise self.raise_with
        out: dict[str, int | SourceError] = {}
        for w in workloads:
            if w.name in self.fail:
                out[w.name] = self.fail[w.name]
            elif w.name in self.replicas:
                out[w.name] = self.replicas[w.name]
        return out


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


def hourly_series(
    region: str,
    start: datetime,
    values: Sequence[float],
    *,
    fetched_at: datetime | None = None,
    forecast_from: int | None = None,
    provider: str = "fake",
    unit: CarbonUnit = CarbonUnit.G_PER_KWH,
) -> CarbonSeries:
    """Hourly points from `start`; points from index `forecast_from` on are forecasts."""
    points = [
        (
            start + timedelta(hours=i),
            v,
            Quality.FORECAST
            if forecast_from is not None and i >= forecast_from
            else Quality.MEASURED,
        )
        for i, v in enumerate(values)
    ]
    return CarbonSeries.build(
        region=region,
        points=points,
        unit=unit,
        signal=Signal.AVERAGE,
        provider=provider,
        fetched_at=fetched_at or start,
        resolution=timedelta(hours=1),
    )


@dataclass
class FakeSeriesCarbonSource:
    """Serves fixed series per region; `errors[region]` raises instead; records calls."""

    series: dict[str, CarbonSeries] = field(default_factory=dict)
    forecasts: dict[str, CarbonSeries] = field(default_factory=dict)
    errors: dict[str, SourceError] = field(default_factory=dict)
    supports_forecast: bool = True
    calls: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "fake"

    def _get(self, region: str) -> CarbonSeries:
        if region in self.errors:
            raise self.errors[region]
        if region not in self.series:
            raise SourceRequestError(f"unknown region {region}", source=self.name, status=404)
        return self.series[region]

    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        self.calls.append(("latest", region))
        s = self._get(region)
        p = s.latest(at=at)
        return s.window(p.at, p.at + s.resolution) if p is not None else s.window(at, at)

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        self.calls.append(("history", region))
        return self._get(region).window(start, end)

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        self.calls.append(("forecast", region))
        if not self.supports_forecast:
            raise SourceRequestError("no forecast", source=self.name, status=404)
        self._get(region)
        f = self.forecasts.get(region)
        if f is None:
            raise SourceRequestError("no forecast for region", source=self.name, status=404)
        return f.window(at, at + horizon)


@dataclass
class FakeNodeInventory:
    nodes: dict[str, NodeFacts] = field(default_factory=dict)
    synced: bool = True

    def facts(self) -> Mapping[str, NodeFacts]:
        return MappingProxyType(dict(self.nodes))


@dataclass
class FakeGpuPowerSource:
    power: dict[str, GpuEnergy] = field(default_factory=dict)
    error: SourceError | None = None

    @property
    def name(self) -> str:
        return "fake-gpu"

    def node_power(self, *, at: datetime) -> Mapping[str, GpuEnergy]:
        if self.error is not None:
            raise self.error
        return self.power


@dataclass
class FakeNodeAnnotator:
    writes: list[tuple[str, str, str]] = field(default_factory=list)
    fail: Exception | None = None

    def annotate(self, node: str, *, key: str, value: str) -> None:
        if self.fail is not None:
            raise self.fail
        self.writes.append((node, key, value))


# ---------------------------------------------------------------------------- NVML
@dataclass
class FakeGpu:
    """One GPU as the fake NVML library reports it (NVML units: mW, mJ, bytes, %)."""

    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    power_mw: int | None = 300_000
    energy_mj: int | None = 0
    util_percent: int | None = 50
    mem_used: int = 10 * 2**30
    mem_total: int = 80 * 2**30
    limit_mw: int | None = 700_000
    mig: bool = False
    mig_devices: int = 0
    lost: bool = False


def _err(code: int) -> pynvml.NVMLError:
    return pynvml.NVMLError(code)


class FakeNvmlLibrary:
    """The part of `pynvml` the agent uses, over a list of `FakeGpu`s.

    `init_error` makes `nvmlInit` fail like a GPU-less host (LibraryNotFound by default)."""

    NVMLError = pynvml.NVMLError

    def __init__(self, gpus: Sequence[FakeGpu] = (), *, init_error: int | None = None) -> None:
        self.gpus = list(gpus)
        self.init_error = init_error
        self.initialised = 0
        self.hidden: set[int] = set()

    def _need_init(self) -> None:
        if self.initialised <= 0:
            raise _err(pynvml.NVML_ERROR_UNINITIALIZED)

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise _err(self.init_error)
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._need_init()
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._need_init()
        return "550.54.15"

    def nvmlDeviceGetCount(self) -> int:
        self._need_init()
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._need_init()
        if index in self.hidden:
            raise _err(pynvml.NVML_ERROR_NO_PERMISSION)
        return self.gpus[index]

    def _read(self, h: FakeGpu, get: Callable[[FakeGpu], Any]) -> Any:
        self._need_init()
        if h.lost:
            raise _err(pynvml.NVML_ERROR_GPU_IS_LOST)
        value = get(h)
        if value is None:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return value

    def nvmlDeviceGetUUID(self, h: FakeGpu) -> str:
        return str(self._read(h, lambda g: g.uuid))

    def nvmlDeviceGetName(self, h: FakeGpu) -> bytes:
        return str(self._read(h, lambda g: g.name)).encode()  # older bindings return bytes

    def nvmlDeviceGetPowerUsage(self, h: FakeGpu) -> int:
        return int(self._read(h, lambda g: g.power_mw))

    def nvmlDeviceGetTotalEnergyConsumption(self, h: FakeGpu) -> int:
        return int(self._read(h, lambda g: g.energy_mj))

    def nvmlDeviceGetEnforcedPowerLimit(self, h: FakeGpu) -> int:
        return int(self._read(h, lambda g: g.limit_mw))

    def nvmlDeviceGetMemoryInfo(self, h: FakeGpu) -> SimpleNamespace:
        return SimpleNamespace(
            total=self._read(h, lambda g: g.mem_total),
            used=h.mem_used,
            free=h.mem_total - h.mem_used,
        )

    def nvmlDeviceGetMigMode(self, h: FakeGpu) -> list[int]:
        return [1 if self._read(h, lambda g: g.mig) else 0, 0]

    def nvmlDeviceGetUtilizationRates(self, h: FakeGpu) -> SimpleNamespace:
        if h.mig:
            raise _err(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return SimpleNamespace(gpu=self._read(h, lambda g: g.util_percent), memory=0)

    def nvmlDeviceGetMaxMigDeviceCount(self, h: FakeGpu) -> int:
        self._need_init()
        return 7

    def nvmlDeviceGetMigDeviceHandleByIndex(self, h: FakeGpu, index: int) -> tuple[str, int]:
        self._need_init()
        if index >= h.mig_devices:
            raise _err(pynvml.NVML_ERROR_NOT_FOUND)
        return (h.uuid, index)
