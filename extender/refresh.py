"""The background job that builds the extender's snapshot (the only part that waits on I/O).

Each `refresh()` takes the inventory's current node facts, re-fetches carbon for every region
in use when it is due (latest value plus gridshift's carbon forecast, `CarbonForecasting`:
the provider's forecast where it has one, its own model where not, as in `gridshift run`),
merges GPU power from Prometheus when configured, and publishes one immutable
`ExtenderSnapshot`. A failed fetch keeps the region's previous series, which then ages into
staleness; it is logged and counted.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from extender.core.energy import GpuEnergy
from extender.core.scoring import NodeFacts
from extender.snapshot import ExtenderSnapshot, SnapshotHolder
from forecasts.platform.errors import SourceError, SourceRequestError
from forecasts.series import CarbonSeries
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.carbon.forecasting import CarbonForecasting
from forecasts.time import Clock

__all__ = ["GpuPowerSource", "NodeInventory", "SnapshotRefresher", "merge_series"]

log = logging.getLogger(__name__)


class NodeInventory(Protocol):
    """Current node facts (the inventory)."""

    def facts(self) -> Mapping[str, NodeFacts]: ...

    @property
    def synced(self) -> bool: ...


class GpuPowerSource(Protocol):
    """GPU power per node name from an exporter (DCGM, Kepler)."""

    @property
    def name(self) -> str: ...

    def node_power(self, *, at: datetime) -> Mapping[str, GpuEnergy]: ...


def merge_series(latest: CarbonSeries, forecast: CarbonSeries | None) -> CarbonSeries:
    """One series with the latest values and the forecast (more trusted points win)."""
    if forecast is None or not forecast.points or forecast.unit is not latest.unit:
        return latest
    return CarbonSeries.build(
        region=latest.region,
        points=[(p.at, p.value, p.quality) for p in (*latest.points, *forecast.points)],
        unit=latest.unit,
        signal=latest.signal,
        provider=latest.provider,
        fetched_at=max(latest.fetched_at, forecast.fetched_at),
        resolution=min(latest.resolution, forecast.resolution),
        emission_factor=latest.emission_factor,
    )


class SnapshotRefresher:
    def __init__(
        self,
        *,
        holder: SnapshotHolder,
        clock: Clock,
        nodes: NodeInventory,
        carbon: CarbonSource | None,
        registry: CollectorRegistry,
        regions: Iterable[str] = (),
        gpu_power: GpuPowerSource | None = None,
        carbon_interval_seconds: float = 300.0,
        forecast_horizon: timedelta = timedelta(hours=24),
        carbon_forecast: CarbonForecasting | None = None,
        freeze_gc: bool = False,
    ) -> None:
        self._freeze_gc = freeze_gc
        self._holder = holder
        self._clock = clock
        self._nodes = nodes
        self._carbon = carbon
        self._forecasting = carbon_forecast or (
            CarbonForecasting(carbon) if carbon is not None else None
        )
        self._gpu_power = gpu_power
        self._static_regions = tuple(regions)
        self._carbon_interval_s = carbon_interval_seconds
        self._horizon = forecast_horizon
        self._series: dict[str, CarbonSeries] = {}
        self._errors: dict[str, str] = {}
        self._fetched_at: dict[str, datetime] = {}
        self._gpu: Mapping[str, GpuEnergy] = {}
        self._no_forecast: dict[str, datetime] = {}
        self.refreshes = 0  # completed refreshes (the extender's "ticks")
        self._fetch_errors = Counter(
            "gridshift_extender_source_errors",
            "Failed fetches by the snapshot job, by source and region",
            ["source", "region"],
            registry=registry,
        )
        self._refresh_seconds = Histogram(
            "gridshift_extender_refresh_duration_seconds",
            "Time to build one extender snapshot (network included)",
            registry=registry,
            buckets=(0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60),
        )

    def refresh(self) -> ExtenderSnapshot:
        with self._refresh_seconds.time():
            now = self._clock.now()
            nodes = dict(self._nodes.facts())
            regions = {f.region for f in nodes.values() if f.region} | set(self._static_regions)
            if self._carbon is not None:
                for region in sorted(regions):
                    last = self._fetched_at.get(region)
                    due = last is None or (now - last).total_seconds() >= self._carbon_interval_s
                    if due:
                        self._fetch_carbon(self._carbon, region, now=now)
            if self._gpu_power is not None:
                try:
                    self._gpu = dict(self._gpu_power.node_power(at=now))
                except SourceError as exc:
                    log.warning("GPU power from %s failed: %s", self._gpu_power.name, exc)
                    self._fetch_errors.labels(self._gpu_power.name, "").inc()
                for name, energy in self._gpu.items():
                    facts = nodes.get(name)
                    if facts is not None and facts.gpu is None:
                        nodes[name] = replace(facts, gpu=energy)
            pending = (
                frozenset(r for r in regions if r not in self._fetched_at)
                if self._carbon is not None
                else frozenset()
            )
            snapshot = ExtenderSnapshot(
                taken_at=now,
                nodes=nodes,  # a private dict: plain dict lookups are the hot path
                carbon=MappingProxyType({r: s for r, s in self._series.items() if r in regions}),
                carbon_errors=MappingProxyType(dict(self._errors)),
                nodes_synced=self._nodes.synced,
                carbon_pending=pending,
            )
            self._holder.publish(snapshot)
        if self._freeze_gc:
            # The snapshot is long-lived and large (thousands of nodes); left in the cyclic
            # GC's generations, every full collection walks it while holding the GIL, which
            # showed up as 90 ms request tails. Collect what is young, then freeze it: the
            # snapshot is still freed by reference counting when the next one replaces it.
            gc.collect()
            gc.freeze()
        return snapshot

    def _fetch_carbon(self, source: CarbonSource, region: str, *, now: datetime) -> None:
        try:
            latest = source.latest(region, at=now)
        except SourceError as exc:
            self._errors[region] = str(exc)
            self._fetch_errors.labels(source.name, region).inc()
            log.warning("carbon for %s: %s (keeping the previous value)", region, exc)
            # Retry at the next interval, not on every tick.
            self._fetched_at[region] = now
            return
        forecast: CarbonSeries | None = None
        since = self._no_forecast.get(region)
        if since is not None and now - since >= timedelta(days=1):
            del self._no_forecast[region]  # history grows: a forecast may be possible now
            since = None
        if since is None and self._forecasting is not None:
            try:
                forecast = self._forecasting.forecast(region, at=now, horizon=self._horizon)
            except SourceRequestError as exc:
                self._no_forecast[region] = now
                log.info(
                    "%s has no forecast for %s (%s); using latest values only",
                    source.name,
                    region,
                    exc,
                )
            except SourceError as exc:
                self._fetch_errors.labels(source.name, region).inc()
                log.warning("carbon forecast for %s: %s", region, exc)
        self._series[region] = merge_series(latest, forecast)
        self._errors.pop(region, None)
        self._fetched_at[region] = now

    def run(
        self,
        stop: threading.Event,
        *,
        interval_seconds: float,
        until_ready_interval_seconds: float = 0.2,
    ) -> None:
        """Refresh every `interval_seconds` until `stop` is set; errors never end the loop.

        Until a snapshot is ready (nodes listed, carbon fetched for their regions) it refreshes
        every `until_ready_interval_seconds`, so readiness follows the inventory's first list
        within a fraction of a second instead of one whole interval later."""
        ready = False
        while not stop.is_set():
            try:
                ready = self.refresh().ready
                self.refreshes += 1
            except Exception:  # the job must outlive any bug in one refresh
                log.exception("extender snapshot refresh failed")
            stop.wait(
                interval_seconds if ready else min(interval_seconds, until_ready_interval_seconds)
            )
