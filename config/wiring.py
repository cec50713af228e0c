"""THE composition root: the one place that reads settings and builds collaborators.

Every `build_*` function takes the (validated) settings plus keyword-only collaborators whose
production defaults are made here and nowhere else (STYLE §6): no module-level clients, no
global registries. Commands in `config/cmd_*.py` call `load_settings` once, then the builders.

Sections are owned by different engineers; add yours as its own block so merges stay easy.

Scaler: `build_scaler` builds the scaler's loop, its APScheduler service, the snapshot
holder, the Prometheus collector (on the registry passed in) and the status ASGI app.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import httpx
from fastapi import FastAPI
from prometheus_client.registry import CollectorRegistry

from config.loading import LoadedConfig, Override, load_config
from config.settings import CarbonSettings, PrometheusSettings, Settings, WorkloadSettings
from config.version import __version__
from forecasts.forecast import Forecaster
from forecasts.regions import NodeRule, Region, RegionMap
from forecasts.series import Signal
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.carbon.carbon_aware_sdk import CarbonAwareSdkSource
from forecasts.sources.carbon.electricitymaps import ElectricityMapsSource
from forecasts.sources.carbon.fallback import (
    FallbackSource,
    FileLastKnown,
    LastKnownStore,
)
from forecasts.sources.carbon.trace import TraceCarbonSource
from forecasts.sources.carbon.uk import UkCarbonIntensitySource
from forecasts.sources.carbon.watttime import WattTimeSource
from forecasts.sources.http import CircuitBreaker, HttpSource, RetryPolicy
from forecasts.sources.load import LoadSource
from forecasts.sources.prometheus import PrometheusLoadSource
from forecasts.time import Clock
from scaler.loop import LoopSettings, ScalerLoop, ScalerService
from scaler.metrics import register_scaler_metrics
from scaler.policy import PolicyParams
from scaler.snapshot import SnapshotHolder
from scaler.status_api import create_status_app
from scaler.workload import (
    CiSchedule,
    ElasticSpec,
    LoadSourceKind,
    LoadSpec,
    ModeOverride,
    PowerModel,
    TargetKind,
    TargetRef,
    Workload,
    WorkloadClass,
)

__all__ = [
    "HttpClientFactory",
    "ScalerApp",
    "build_carbon_source",
    "build_carbon_sources",
    "build_prometheus_source",
    "build_region_map",
    "build_scaler",
    "default_http_client",
    "default_last_known_path",
    "load_settings",
    "load_settings_with_sources",
    "loop_settings_from",
    "policy_params_from",
    "workload_from",
]


# ============================================================================ settings (config)
def load_settings_with_sources(
    *,
    config_file: str | Path | None = None,
    overrides: Sequence[Override] = (),
    environ: Mapping[str, str] | None = None,
    model: type[Settings] = Settings,
) -> LoadedConfig[Settings]:
    """Defaults < YAML file (`config_file` or `$GRIDSHIFT_CONFIG`) < `GRIDSHIFT_*` env <
    `overrides`, validated, with the layer of every value. Raises `config.errors.ConfigError`
    listing every problem. `environ` defaults to the process environment (read only here)."""
    return load_config(
        model=model,
        environ=os.environ if environ is None else environ,
        config_file=config_file,
        overrides=overrides,
    )


def load_settings(
    *,
    config_file: str | Path | None = None,
    overrides: Sequence[Override] = (),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The effective `Settings` (see `load_settings_with_sources` for the layers)."""
    return load_settings_with_sources(
        config_file=config_file, overrides=overrides, environ=environ
    ).settings


# ============================================================================ scaler
def workload_from(ws: WorkloadSettings) -> Workload:
    """Translate one workload's settings into the pure `Workload` value."""
    load = (
        LoadSpec(LoadSourceKind.PROMQL, ws.load.promql, ws.load.unit)
        if ws.load.promql is not None
        else LoadSpec(LoadSourceKind.TRACE, ws.load.trace or "", ws.load.unit)
    )
    return Workload(
        name=ws.name,
        namespace=ws.namespace,
        target=TargetRef(TargetKind(ws.target.kind), ws.target.name),
        load=load,
        capacity_per_replica=ws.capacity_per_replica,
        min_replicas=ws.min_replicas,
        max_replicas=ws.max_replicas,
        power=PowerModel(ws.power.idle_watts, ws.power.busy_watts, ws.power.measured_promql),
        region=ws.region,
        workload_class=WorkloadClass(ws.workload_class),
        headroom=ws.headroom,
        ci_schedules=tuple(
            CiSchedule(c.cron, c.timezone, timedelta(seconds=c.duration_seconds), c.extra_load)
            for c in ws.ci_schedules
        ),
        overrides=tuple(
            ModeOverride(
                mode=o.mode,
                until=o.until,
                cron=o.cron,
                timezone=o.timezone,
                duration=None
                if o.duration_seconds is None
                else timedelta(seconds=o.duration_seconds),
                reason=o.reason,
            )
            for o in ws.overrides
        ),
        elastic=None
        if ws.elastic is None
        else ElasticSpec(
            ws.elastic.total_work, ws.elastic.deadline, tuple(ws.elastic.throughput_per_replica)
        ),
        budget_reduction_percent=ws.budget_reduction_percent,
    )


def policy_params_from(settings: Settings, *, speed: float = 1.0) -> PolicyParams:
    """`speed` > 1 when scaler time runs faster than the wall clock (accelerated sample)."""
    s = settings.scaler

    def secs(x: float) -> timedelta:
        return timedelta(seconds=x)

    return PolicyParams(
        performance_quantile=s.performance_quantile,
        eco_quantile=s.eco_quantile,
        performance_headroom=s.performance_headroom,
        eco_headroom=s.eco_headroom,
        eco_min_headroom=s.eco_min_headroom,
        decision_step=secs(s.tick_interval_seconds * speed),
        scale_up_lead=secs(s.scale_up_lead_seconds),
        scale_down_stabilisation=secs(s.scale_down_stabilisation_seconds),
        max_step_replicas=s.max_step_replicas,
        eco_enter_percentile=s.eco_enter_percentile,
        eco_exit_percentile=s.eco_exit_percentile,
        budget_eco_enter_percentile=s.budget_eco_enter_percentile,
        absolute_cap_g_per_kwh=s.absolute_cap_g_per_kwh,
        carbon_window=secs(s.carbon_window_seconds),
        carbon_horizon=secs(s.carbon_horizon_seconds),
        min_dwell=secs(s.min_dwell_seconds),
        elastic_slot=secs(s.elastic_slot_seconds),
    )


def loop_settings_from(settings: Settings, *, data_note: str = "") -> LoopSettings:
    s = settings.scaler
    return LoopSettings(
        load_step=timedelta(seconds=s.load_step_seconds),
        load_history=timedelta(seconds=s.load_history_seconds),
        tick_history=timedelta(seconds=s.tick_history_seconds),
        load_stale_after=timedelta(seconds=s.load_stale_after_seconds),
        carbon_stale_after=timedelta(seconds=settings.carbon.stale_after_seconds),
        budget_window=timedelta(seconds=s.budget_window_seconds),
        data_note=data_note,
    )


@dataclass(frozen=True, slots=True)
class ScalerApp:
    loop: ScalerLoop
    service: ScalerService
    holder: SnapshotHolder
    app: FastAPI
    registry: CollectorRegistry


def build_scaler(
    settings: Settings,
    *,
    clock: Clock,
    registry: CollectorRegistry,
    carbon: CarbonSource,
    load: LoadSource,
    wall_clock: Clock | None = None,
    forecaster: Forecaster | None = None,
    speed: float = 1.0,
    data_note: str = "",
    logger: logging.Logger | None = None,
) -> ScalerApp:
    """Build the scaler. `clock` is scaler time (the wall clock, an accelerated one, or a
    stepping clock for replays); `wall_clock` paces APScheduler (default: `clock`)."""
    log = logger or logging.getLogger("gridshift.scaler")
    holder = SnapshotHolder()
    loop = ScalerLoop(
        [workload_from(w) for w in settings.scaler.workloads],
        carbon=carbon,
        load=load,
        clock=clock,
        holder=holder,
        params=policy_params_from(settings, speed=speed),
        settings=loop_settings_from(settings, data_note=data_note),
        forecaster=forecaster,
        logger=log,
    )
    executor = (
        ProcessPoolExecutor(
            max_workers=settings.scaler.refit_workers,
            # forkserver: never fork the threaded scheduler process itself
            mp_context=multiprocessing.get_context("forkserver"),
        )
        if settings.scaler.refit_workers > 1
        else None
    )
    service = ScalerService(
        loop,
        refit_executor=executor,
        tick_interval=timedelta(seconds=settings.scaler.tick_interval_seconds),
        refit_interval=timedelta(seconds=settings.forecast.refit_interval_seconds / speed),
        wall_clock=wall_clock or clock,
        logger=log,
    )
    register_scaler_metrics(registry, holder)
    app = create_status_app(holder, registry=registry, on_shutdown=service.shutdown)
    return ScalerApp(loop, service, holder, app, registry)


# ====================================================================== carbon intensity
class HttpClientFactory(Protocol):
    def __call__(self, base_url: str, *, timeout_seconds: float) -> httpx.Client: ...


def default_http_client(base_url: str, *, timeout_seconds: float) -> httpx.Client:
    """The production client: one per provider, explicit timeouts, no redirects followed
    (a redirect from an API is a misconfiguration we want to see)."""
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds),
        headers={"User-Agent": f"gridshift/{__version__}"},
        follow_redirects=False,
    )


def default_last_known_path() -> Path:
    return Path.home() / ".cache" / "gridshift" / "carbon.json"


def build_region_map(carbon: CarbonSettings) -> RegionMap:
    """The pure region model derived from the settings."""
    return RegionMap.of(
        Region(
            name=name,
            zones=dict(region.zones),
            rules=tuple(NodeRule(labels=dict(rule)) for rule in region.match),
            fallback_order=tuple(region.fallback_order or ()),
            description=region.description,
        )
        for name, region in carbon.regions.items()
    )


def build_carbon_sources(
    settings: Settings,
    *,
    clock: Clock,
    regions: RegionMap | None = None,
    http_client_factory: HttpClientFactory = default_http_client,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, CarbonSource], dict[str, str]]:
    """Every configured provider adapter by name, and why each missing one is missing."""
    carbon = settings.carbon
    regions = regions if regions is not None else build_region_map(carbon)
    h = carbon.http

    def http(name: str, base_url: str, timeout_seconds: float) -> HttpSource:
        return HttpSource(
            name=name,
            client=http_client_factory(base_url, timeout_seconds=timeout_seconds),
            clock=clock,
            retry=RetryPolicy(
                attempts=h.retry_attempts,
                base_delay_seconds=h.retry_base_delay_seconds,
                max_delay_seconds=h.retry_max_delay_seconds,
                max_retry_after_seconds=h.max_retry_after_seconds,
            ),
            breaker=CircuitBreaker(
                failure_threshold=h.breaker_failure_threshold,
                reset_timeout_seconds=h.breaker_reset_seconds,
            ),
            cache_ttl_seconds=h.cache_ttl_seconds,
            sleep=sleep,
        )

    sources: dict[str, CarbonSource] = {}
    missing: dict[str, str] = {}
    em = carbon.electricitymaps
    if em.token is not None:
        sources["electricitymaps"] = ElectricityMapsSource(
            http("electricitymaps", em.base_url, em.timeout_seconds),
            regions=regions,
            token=em.token,
            emission_factor=em.emission_factor,
            disable_estimations=em.disable_estimations,
        )
    else:
        missing["electricitymaps"] = "needs carbon.electricitymaps.token"
    wt = carbon.watttime
    if wt.username is not None and wt.password is not None:
        sources["watttime"] = WattTimeSource(
            http("watttime", wt.base_url, wt.timeout_seconds),
            regions=regions,
            username=wt.username,
            password=wt.password,
            signal_type=wt.signal_type,
            token_renew_after=timedelta(seconds=wt.token_renew_after_seconds),
        )
    else:
        missing["watttime"] = "needs carbon.watttime.username and .password"
    if carbon.uk.enabled:
        sources["uk"] = UkCarbonIntensitySource(
            http("uk", carbon.uk.base_url, carbon.uk.timeout_seconds), regions=regions
        )
    else:
        missing["uk"] = "disabled by carbon.uk.enabled=false"
    sdk = carbon.carbon_aware_sdk
    if sdk.base_url is not None:
        sources["carbon_aware_sdk"] = CarbonAwareSdkSource(
            http("carbon_aware_sdk", sdk.base_url, sdk.timeout_seconds),
            regions=regions,
            signal=Signal(sdk.signal),
        )
    else:
        missing["carbon_aware_sdk"] = "needs carbon.carbon_aware_sdk.base_url"
    if carbon.trace.path is not None:
        sources["trace"] = TraceCarbonSource(
            carbon.trace.path,
            regions=regions,
            clock=clock,
            emission_factor=carbon.trace.emission_factor,
            zeros_as_missing=carbon.trace.zeros_as_missing,
        )
    else:
        missing["trace"] = "needs carbon.trace.path"
    return sources, missing


def build_carbon_source(
    settings: Settings,
    *,
    clock: Clock,
    prefer: str | None = None,
    http_client_factory: HttpClientFactory = default_http_client,
    sleep: Callable[[float], None] = time.sleep,
    last_known: LastKnownStore | None = None,
) -> FallbackSource:
    """The carbon source the rest of gridshift uses: per region, the configured providers
    that have a zone for it, in fallback order (`prefer` first), then the last known value.

    Raises `ValueError` when `prefer` names a provider that is not configured.
    """
    carbon = settings.carbon
    regions = build_region_map(carbon)
    sources, missing = build_carbon_sources(
        settings,
        clock=clock,
        regions=regions,
        http_client_factory=http_client_factory,
        sleep=sleep,
    )
    if prefer is not None and prefer not in sources:
        reason = missing.get(prefer, "unknown provider")
        known = ", ".join(sorted({*sources, *missing}))
        raise ValueError(f"carbon source {prefer!r} is not available: {reason} (known: {known})")
    chains: dict[str, list[CarbonSource]] = {}
    for region in regions.regions:
        order = list(region.fallback_order or carbon.fallback_order)
        if prefer is not None:
            order = [prefer, *(name for name in order if name != prefer)]
        chains[region.name] = [
            sources[name] for name in order if name in sources and region.zone(name) is not None
        ]
    store = last_known
    if store is None:
        store = FileLastKnown(carbon.last_known_path or default_last_known_path())
    return FallbackSource(
        chains,
        regions=regions,
        clock=clock,
        last_known=store,
        last_known_max_age=timedelta(seconds=carbon.last_known_max_age_seconds),
    )


# ============================================================================ prometheus (prom)
def build_prometheus_source(
    settings: PrometheusSettings,
    *,
    clock: Clock,
    retry: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
) -> PrometheusLoadSource:
    """The Prometheus `LoadSource` (history, instant queries) from the `prometheus` group.

    Close it (`.close()`) when done; it owns one `httpx.Client`."""
    return PrometheusLoadSource.connect(
        settings.connection(),
        clock=clock,
        retry=retry,
        max_points_per_request=settings.max_points_per_request,
        short_gap_steps=settings.short_gap_steps,
        transport=transport,
    )
