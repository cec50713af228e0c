"""THE composition root: the one place that reads settings and builds collaborators.

Every `build_*` function takes the (validated) settings plus keyword-only collaborators whose
production defaults are made here and nowhere else (STYLE §6): no module-level clients, no
global registries. Commands in `config/cmd_*.py` call `load_settings` once, then the builders.

Sections are owned by different engineers; add yours as its own block so merges stay easy.

Scaler: `build_scaler` builds the scaler's loop, its APScheduler service, the snapshot
holder, the Prometheus collector (on the registry passed in) and the status ASGI app.

The composition root: builds every long-lived object from `Settings`.

Each component owner keeps its builders in its own section; `gridshift run` calls them.

Scaler on Kubernetes (External Metrics API, KEDA external scaler, CRD/lease runtime):
`start_scaler_services(settings, holder=..., clock=...)` starts whatever the settings
enable and returns a context manager whose `close()` shuts all of it down gracefully
(servers stop accepting, the Lease is released).

The composition root: every production object is built here and only here.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import httpx
import urllib3
from fastapi import FastAPI
from kubernetes import client as k8s
from kubernetes import client as kube_client
from kubernetes import config as k8s_config
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette

from config.loading import LoadedConfig, Override, load_config
from config.settings import (
    CarbonSettings,
    ExtenderSettings,
    KedaSettings,
    KubeSettings,
    MetricsApiSettings,
    PrometheusSettings,
    Settings,
    WorkloadSettings,
)
from config.version import __version__
from extender.agent import GpuAgent, KubeNodeAnnotator
from extender.gpu_prometheus import GpuExporter, PrometheusGpuPower
from extender.inventory import KubeNodeInventory
from extender.nodes import RegionRules
from extender.nvml import Nvml, load_pynvml
from extender.refresh import GpuPowerSource, NodeInventory, SnapshotRefresher
from extender.scoring import ScoringPolicy
from extender.server import create_app
from extender.snapshot import SnapshotHolder as ExtenderSnapshotHolder
from forecasts.forecast import Forecaster
from forecasts.models.catalog import build_load_forecaster
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
from forecasts.sources.routing import PrefixRoutedLoadSource, RegionRoutedCarbonSource
from forecasts.sources.sample import (
    SAMPLE_NOTE,
    SAMPLE_REGIONS,
    SampleCarbonSource,
    SampleLoadSource,
)
from forecasts.sources.tls import ReloadStats, TlsCollector
from forecasts.time import Clock
from scaler.apiauth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    ReloadingTlsContext,
)
from scaler.extender_watch import ExtenderWatch
from scaler.history import RecordingHolder, SnapshotHistory
from scaler.keda import KedaExternalScaler, KedaScalerServer, ReloadingServerCredentials
from scaler.kube import (
    Actuator,
    AuthenticationConfigRefresher,
    DelegatedAccessReviewer,
    DelegatedTokenReviewer,
    KubeController,
    KubeReplicaReader,
    KubeRuntime,
    LeaderElector,
    LeaseLock,
    ScalerResourceCache,
    ScalerResourceWatcher,
    StatusWriter,
    load_authentication_config_map,
    register_kube_metrics,
)
from scaler.loop import LoopSettings, ScalerLoop, ScalerService
from scaler.metrics import register_scaler_metrics
from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer
from scaler.policy import PolicyParams
from scaler.snapshot import SnapshotHolder
from scaler.state import ConfigMapStateStore, FileStateStore, StateStore
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
    "ExtenderRuntime",
    "HttpClientFactory",
    "RunSources",
    "ScalerApp",
    "ScalerServices",
    "build_agent",
    "build_carbon_source",
    "build_carbon_sources",
    "build_extender",
    "build_keda_server",
    "build_kube_api_client",
    "build_kube_runtime",
    "build_metrics_api_server",
    "build_prometheus_source",
    "build_region_map",
    "build_run_sources",
    "build_scaler",
    "build_state_store",
    "default_http_client",
    "default_last_known_path",
    "kube_api_client",
    "kube_core_api",
    "load_forecaster_from",
    "load_settings",
    "load_settings_with_sources",
    "loop_settings_from",
    "parse_listen",
    "policy_params_from",
    "region_rules",
    "scoring_policy",
    "start_scaler_services",
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
        LoadSpec(
            LoadSourceKind.PROMQL,
            ws.load.promql,
            ws.load.unit,
            match=tuple(sorted((ws.load.match or {}).items())),
        )
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
    extender_watch: ExtenderWatch | None = None
    state_store: StateStore | None = None


def load_forecaster_from(settings: Settings) -> Forecaster:
    """The load model per `forecast.load_model`, sized for the scaler's lead: the next tick
    plus the scale-up lead time plus two load steps of slack, in load steps."""
    sc = settings.scaler
    step = timedelta(seconds=sc.load_step_seconds)
    lead = sc.tick_interval_seconds + sc.scale_up_lead_seconds + 2 * sc.load_step_seconds
    return build_load_forecaster(
        settings.forecast.load_model,
        step=step,
        horizon=math.ceil(lead / sc.load_step_seconds),
        history_steps=int(sc.load_history_seconds // sc.load_step_seconds),
        origins=settings.forecast.selection_origins,
    )


def build_state_store(
    settings: Settings,
    *,
    api_client: k8s.ApiClient | None = None,
    logger: logging.Logger | None = None,
) -> StateStore | None:
    """The checkpoint store `scaler.state_store` names (None = stateless). The ConfigMap
    store uses `api_client`, else one from the `kube` settings (kubeconfig / in-cluster)."""
    s = settings.scaler
    if s.state_store == "file":
        assert s.state_file is not None  # ScalerSettings guarantees it
        return FileStateStore(s.state_file, logger=logger)
    if s.state_store == "configmap":
        client = api_client if api_client is not None else build_kube_api_client(settings.kube)
        return ConfigMapStateStore(
            k8s.CoreV1Api(client),
            namespace=s.state_configmap_namespace,
            name=s.state_configmap_name,
            request_timeout_seconds=settings.kube.request_timeout_seconds,
            logger=logger,
        )
    return None


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
    api_client: k8s.ApiClient | None = None,
) -> ScalerApp:
    """Build the scaler. `clock` is scaler time (the wall clock, an accelerated one, or a
    stepping clock for replays); `wall_clock` paces APScheduler (default: `clock`)."""
    log = logger or logging.getLogger("gridshift.scaler")
    history = SnapshotHistory(settings.server.history_points)
    holder = RecordingHolder(history)
    if forecaster is None:
        forecaster = load_forecaster_from(settings)
    state_store = build_state_store(settings, api_client=api_client, logger=log)
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
        state_store=state_store,
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
    watch = (
        None
        if settings.server.extender_metrics_url is None
        else ExtenderWatch(
            settings.server.extender_metrics_url,
            client=httpx.Client(timeout=httpx.Timeout(5.0), follow_redirects=False),
            clock=wall_clock or clock,
            interval_seconds=settings.server.extender_poll_seconds,
            logger=log,
        )
    )
    app = create_status_app(
        holder,
        registry=registry,
        on_shutdown=service.shutdown,
        history=history,
        extender=None if watch is None else watch.view,
    )
    return ScalerApp(loop, service, holder, app, registry, watch, state_store)


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


log = logging.getLogger(__name__)


# ---------------------------------------------------------------- scaler on Kubernetes
def parse_listen(listen: str, *, field_name: str = "listen") -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError names the setting."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not host:
        raise ValueError(f"{field_name}: expected host:port, got {listen!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{field_name}: port {port} out of range 0..65535")
    return host.strip("[]"), port


def kube_api_client(configuration: k8s.Configuration) -> k8s.ApiClient:
    """An ApiClient whose transport never sleeps out a `Retry-After` by itself.

    urllib3's default retry policy honours `Retry-After` on 429/503 three times, sleeping
    outside any request timeout: a 429 storm with `Retry-After: 60` would park the leader
    election, a sync or a tick for minutes. Here a 429/503 comes back at once as an
    ApiException and the caller's own loop (election rounds, sync retries, relists, the next
    tick) paces the retry. Connection errors are retried three times as by default, a read
    error (timeout, dropped connection) once: a hung API server costs an idempotent call
    twice its timeout, not four times."""
    configuration.retries = urllib3.Retry(3, read=1, respect_retry_after_header=False)
    return k8s.ApiClient(configuration)


def build_kube_api_client(settings: KubeSettings) -> k8s.ApiClient:
    """A client from the in-cluster service account, else the kubeconfig (no globals)."""
    configuration = k8s.Configuration()
    if settings.kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return kube_api_client(configuration)
        except k8s_config.ConfigException:
            log.info("not in a cluster; using ~/.kube/config")
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubeconfig), client_configuration=configuration
        )
    return kube_api_client(configuration)


def build_metrics_api_server(
    settings: MetricsApiSettings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    api_client: k8s.ApiClient | None = None,
) -> MetricsApiServer:
    needs_cluster = (
        settings.authentication_from_cluster
        or settings.delegated_authentication
        or settings.delegated_authorization
    )
    if needs_cluster and api_client is None:
        raise ValueError(
            "metrics_api: authentication_from_cluster / delegated_* need Kubernetes access "
            "(pass api_client or enable kube)"
        )
    if settings.authentication_from_cluster:
        assert api_client is not None
        auth_config = AuthenticationConfig.from_config_map(
            load_authentication_config_map(k8s.CoreV1Api(api_client))
        )
    else:
        auth_config = AuthenticationConfig.from_files(
            requestheader_client_ca_file=settings.requestheader_client_ca_file,
            requestheader_allowed_names=settings.requestheader_allowed_names,
            client_ca_file=settings.client_ca_file,
        )
    token_reviewer = (
        DelegatedTokenReviewer(api_client, cache_ttl_seconds=settings.review_cache_ttl_seconds)
        if settings.delegated_authentication and api_client is not None
        else None
    )
    access_reviewer = (
        DelegatedAccessReviewer(api_client, cache_ttl_seconds=settings.review_cache_ttl_seconds)
        if settings.delegated_authorization and api_client is not None
        else None
    )
    authenticator = Authenticator(auth_config, token_reviewer=token_reviewer)
    tls = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        tls = ReloadingTlsContext(
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            client_ca_pem=lambda: authenticator.config.trusted_ca_pem(),
            check_interval_seconds=settings.tls_reload_check_interval_seconds,
        )
    elif not settings.allow_anonymous:
        log.warning("metrics API without TLS: only anonymous requests can arrive, all refused")
    host, port = parse_listen(settings.listen, field_name="metrics_api.listen")
    api = ExternalMetricsApi(
        holder, clock=clock, max_snapshot_age_seconds=settings.max_snapshot_age_seconds
    )
    server = MetricsApiServer(
        api,
        host=host,
        port=port,
        authenticator=authenticator,
        authorizer=Authorizer(
            access_reviewer=access_reviewer, allow_anonymous=settings.allow_anonymous
        ),
        tls=tls,
    )
    if settings.authentication_from_cluster:
        assert api_client is not None
        server.add_background(
            AuthenticationConfigRefresher(
                k8s.CoreV1Api(api_client),
                authenticator,
                on_change=tls.invalidate if tls is not None else lambda: None,
                interval_seconds=settings.authentication_refresh_interval_seconds,
            )
        )
    return server


def build_keda_server(
    settings: KedaSettings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    max_snapshot_age_seconds: float | None = None,
    stop: threading.Event | None = None,
) -> KedaScalerServer:
    stop = stop or threading.Event()
    parse_listen(settings.listen, field_name="keda.listen")
    scaler = KedaExternalScaler(
        holder,
        stream_poll_interval_seconds=settings.stream_poll_interval_seconds,
        stop=stop,
        clock=clock,
        max_snapshot_age_seconds=max_snapshot_age_seconds,
    )
    tls = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        tls = ReloadingServerCredentials(
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            client_ca_file=settings.tls_client_ca_file,
            check_interval_seconds=settings.tls_reload_check_interval_seconds,
        )
    return KedaScalerServer(
        scaler,
        address=settings.listen,
        stop=stop,
        server_credentials=tls.credentials if tls is not None else None,
        tls_stats=tls,
    )


def build_kube_runtime(
    settings: KubeSettings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    api_client: k8s.ApiClient,
    wall_clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> KubeRuntime:
    """`clock` is scaler time (actuation records); leases are timed on `wall_clock` (default
    `clock`), since other replicas and the API server count real seconds even when
    `gridshift run --speed` accelerates scaler time."""
    stop = threading.Event()
    custom = k8s.CustomObjectsApi(api_client)
    cache = ScalerResourceCache()
    lock = LeaseLock(
        custom,
        namespace=settings.lease_namespace,
        name=settings.lease_name,
        identity=settings.identity or socket.gethostname(),
        clock=wall_clock or clock,
        lease_duration_seconds=settings.lease_duration_seconds,
        renew_deadline_seconds=settings.renew_deadline_seconds,
        request_timeout_seconds=settings.request_timeout_seconds,
    )
    elector = LeaderElector(lock, retry_period_seconds=settings.retry_period_seconds, stop=stop)
    timeout_s = settings.request_timeout_seconds
    controller = KubeController(
        cache=cache,
        status_writer=StatusWriter(custom, request_timeout_seconds=timeout_s),
        actuator=Actuator(api_client, clock=clock, request_timeout_seconds=timeout_s),
        is_leader=lambda: elector.leading,
        clock=clock,
    )
    watcher = ScalerResourceWatcher(
        custom,
        cache,
        namespace=settings.watch_namespace,
        watch_timeout_seconds=settings.watch_timeout_seconds,
        request_timeout_seconds=timeout_s,
        stop=stop,
    )
    runtime = KubeRuntime(
        watcher=watcher,
        elector=elector,
        controller=controller,
        current_snapshot=holder.current,
        stop=stop,
        replicas=KubeReplicaReader(
            api_client, resources=cache.items, request_timeout_seconds=timeout_s
        ),
        poll_interval_seconds=min(1.0, settings.retry_period_seconds),
    )
    if registry is not None:
        register_kube_metrics(registry, runtime)
    return runtime


@dataclass
class ScalerServices:
    """What `start_scaler_services` started; closing stops it all, newest first."""

    metrics_api: MetricsApiServer | None = None
    keda: KedaScalerServer | None = None
    kube: KubeRuntime | None = None
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def close(self) -> None:
        self._exit.close()

    def describe(self) -> list[str]:
        """One line per running service, for the start-up banner."""
        lines: list[str] = []
        if self.metrics_api is not None:
            lines.append(
                f"external metrics API: {self.metrics_api.url}/apis/external.metrics.k8s.io"
            )
        if self.keda is not None:
            scheme = "TLS" if self.keda.secure else "plaintext"
            lines.append(f"KEDA external scaler (gRPC, {scheme}): port {self.keda.port}")
        if self.kube is not None:
            lines.append(
                "Kubernetes: watching CarbonAwareScalers, leader election on, "
                "reading actual replicas each tick"
            )
        return lines

    def __enter__(self) -> ScalerServices:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_scaler_services(
    settings: Settings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    api_client: k8s.ApiClient | None = None,
    wall_clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
) -> ScalerServices:
    """Start the metrics API, the KEDA scaler and the Kubernetes runtime per `settings`;
    their TLS listeners' certificate metrics and the Kubernetes side's `gridshift_kube_*`
    metrics go to `registry` when given.

    The one hook for `gridshift run`:
    `stack.enter_context(start_scaler_services(settings, holder=holder, clock=clock))`.
    """
    services = ScalerServices()
    # the metrics API's cluster authentication matters only while it serves: disabled (the
    # KEDA install), nothing reads extension-apiserver-authentication or reviews tokens
    metrics_api = settings.metrics_api
    metrics_api_needs_cluster = metrics_api.enabled and (
        metrics_api.authentication_from_cluster
        or metrics_api.delegated_authentication
        or metrics_api.delegated_authorization
    )
    try:
        if api_client is None and (settings.kube.enabled or metrics_api_needs_cluster):
            api_client = build_kube_api_client(settings.kube)
        if settings.metrics_api.enabled:
            services.metrics_api = build_metrics_api_server(
                settings.metrics_api, holder=holder, clock=clock, api_client=api_client
            )
            services.metrics_api.start()
            services._exit.callback(services.metrics_api.stop)
            log.info("External Metrics API on %s", services.metrics_api.url)
        if settings.keda.enabled:
            services.keda = build_keda_server(
                settings.keda,
                holder=holder,
                clock=clock,
                max_snapshot_age_seconds=settings.metrics_api.max_snapshot_age_seconds,
            )
            services.keda.start()
            services._exit.callback(services.keda.stop)
            log.info("KEDA external scaler on %s", settings.keda.listen)
        listeners: dict[str, ReloadStats] = {}
        if services.metrics_api is not None and services.metrics_api.tls is not None:
            listeners["metrics_api"] = services.metrics_api.tls
        if services.keda is not None and services.keda.tls_stats is not None:
            listeners["keda"] = services.keda.tls_stats
        if registry is not None and listeners:
            registry.register(TlsCollector(listeners))
        if settings.kube.enabled:
            assert api_client is not None
            services.kube = build_kube_runtime(
                settings.kube,
                holder=holder,
                clock=clock,
                api_client=api_client,
                wall_clock=wall_clock,
                registry=registry,
            )
            services.kube.start()
            services._exit.callback(services.kube.close)
    except BaseException:
        services.close()
        raise
    return services


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
        batch_size=settings.batch_size,
        short_gap_steps=settings.short_gap_steps,
        transport=transport,
    )


# ============================================================================ run (sources)
@dataclass(frozen=True, slots=True)
class RunSources:
    """The adapters `gridshift run`/`replay` feed the scaler loop, and the data note to show."""

    carbon: CarbonSource
    load: LoadSource
    note: str


def build_run_sources(
    settings: Settings,
    *,
    clock: Clock,
    seed: int = 0,
    http_client_factory: HttpClientFactory = default_http_client,
) -> RunSources:
    """Carbon routed by region (SAMPLE DATA regions to the sample generator, the rest to the
    configured providers with fallback) and load routed by query (`sample:` traces to the
    sample generator, PromQL to Prometheus). Real adapters are built only when used."""
    workloads = settings.scaler.workloads
    sample_regions = {w.region for w in workloads if w.region in SAMPLE_REGIONS}
    real_regions = {w.region for w in workloads} - sample_regions
    sample_loads = [
        w.name for w in workloads if w.load.trace is not None and w.load.trace.startswith("sample:")
    ]
    csv_traces = [
        w.name for w in workloads if w.load.trace is not None and w.name not in sample_loads
    ]
    if csv_traces:
        raise ValueError(
            "workloads "
            + ", ".join(csv_traces)
            + " load CSV traces, which `gridshift run` does not play against the wall clock; "
            "use `gridshift replay --scenario FILE`, a `sample:<profile>` trace or PromQL"
        )
    needs_prometheus = any(w.load.promql is not None for w in workloads) or any(
        w.power.measured_promql is not None for w in workloads
    )
    sample_carbon = SampleCarbonSource(seed=seed)
    carbon: CarbonSource
    if real_regions:
        real = build_carbon_source(settings, clock=clock, http_client_factory=http_client_factory)
        carbon = RegionRoutedCarbonSource(
            by_region={r: sample_carbon for r in SAMPLE_REGIONS}, default=real
        )
    else:
        carbon = sample_carbon
    load: LoadSource
    sample_load = SampleLoadSource(seed=seed)
    if needs_prometheus:
        load = PrefixRoutedLoadSource(
            routes=[("sample:", sample_load)],
            default=build_prometheus_source(settings.prometheus, clock=clock),
        )
    else:
        load = sample_load
    note = SAMPLE_NOTE if (sample_regions or sample_loads) else ""
    return RunSources(carbon=carbon, load=load, note=note)


log = logging.getLogger(__name__)


def kube_core_api() -> kube_client.CoreV1Api:
    """In-cluster credentials when running in a pod, else the local kubeconfig."""
    from kubernetes import config as kube_config  # heavy (auth plugins); only when serving

    configuration = kube_client.Configuration()
    try:
        kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    except kube_config.ConfigException:
        try:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        except (kube_config.ConfigException, OSError) as exc:
            raise RuntimeError(
                f"no Kubernetes credentials (not in a pod, and no usable kubeconfig: {exc})"
            ) from exc
    return kube_client.CoreV1Api(kube_api_client(configuration))


def scoring_policy(s: ExtenderSettings) -> ScoringPolicy:
    return ScoringPolicy(
        carbon_weight=s.carbon_weight,
        gpu_energy_weight=s.gpu_energy_weight,
        neutral_score=s.neutral_score,
        stale_after_seconds=s.stale_after_seconds,
        gpu_stale_after_seconds=s.gpu_stale_after_seconds,
    )


def region_rules(s: ExtenderSettings) -> RegionRules:
    return RegionRules(
        region_labels=s.region_labels,
        zone_labels=s.zone_labels,
        aliases=dict(s.region_aliases),
        default_region=s.default_region,
    )


@dataclass
class ExtenderRuntime:
    """The webhook app plus the background jobs that feed its snapshot."""

    app: Starlette
    holder: ExtenderSnapshotHolder
    refresher: SnapshotRefresher
    inventory: KubeNodeInventory | None
    refresh_interval_seconds: float
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        jobs: list[tuple[str, Any]] = []
        inventory = self.inventory
        if inventory is not None:
            jobs.append(("node-inventory", lambda: inventory.run(self._stop)))
        jobs.append(
            (
                "snapshot-refresh",
                lambda: self.refresher.run(
                    self._stop, interval_seconds=self.refresh_interval_seconds
                ),
            )
        )
        for name, target in jobs:
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self.inventory is not None:
            self.inventory.stop()
        for t in self._threads:
            t.join(timeout=5)


def _gpu_power_source(settings: Settings, *, clock: Clock) -> GpuPowerSource | None:
    choice = settings.extender.gpu_source
    if choice not in ("dcgm", "kepler"):
        return None
    http = HttpSource(
        name=f"prometheus-{choice}",
        client=httpx.Client(
            base_url=settings.prometheus.url, timeout=settings.prometheus.timeout_seconds
        ),
        clock=clock,
        cache_ttl_seconds=1e-6,
    )
    return PrometheusGpuPower(http, exporter=GpuExporter(choice))


def build_extender(
    settings: Settings,
    *,
    clock: Clock,
    registry: CollectorRegistry,
    carbon: CarbonSource | None,
    kube_api: kube_client.CoreV1Api | None,
    nodes: NodeInventory | None = None,
    gpu_power: GpuPowerSource | None = None,
) -> ExtenderRuntime:
    """The extender: webhook app, node inventory (when `kube_api`), snapshot job.

    `nodes` overrides the inventory (tests, benchmarks); `gpu_power` overrides the
    DCGM/Kepler source chosen by `extender.gpu_source`."""
    s = settings.extender
    rules = region_rules(s)
    policy = scoring_policy(s)
    holder = ExtenderSnapshotHolder()
    inventory: KubeNodeInventory | None = None
    if nodes is None:
        if kube_api is None:
            raise ValueError("build_extender needs kube_api (or a NodeInventory as nodes)")
        inventory = KubeNodeInventory(
            kube_api,
            rules=rules,
            registry=registry,
            label_selector=s.node_label_selector,
            watch_timeout_seconds=s.watch_timeout_seconds,
            request_timeout_seconds=s.inventory_request_timeout_seconds,
        )
        nodes = inventory
    if carbon is None:
        log.warning("no carbon source configured: carbon scores are neutral")
    refresher = SnapshotRefresher(
        holder=holder,
        clock=clock,
        nodes=nodes,
        carbon=carbon,
        registry=registry,
        regions=s.regions,
        gpu_power=gpu_power if gpu_power is not None else _gpu_power_source(settings, clock=clock),
        carbon_interval_seconds=s.carbon_refresh_interval_seconds,
        forecast_horizon=timedelta(seconds=s.forecast_horizon_seconds),
        freeze_gc=s.freeze_gc,
    )
    app = create_app(
        holder,
        clock=clock,
        policy=policy,
        rules=rules,
        registry=registry,
        max_body_bytes=s.max_body_bytes,
    )
    return ExtenderRuntime(
        app=app,
        holder=holder,
        refresher=refresher,
        inventory=inventory,
        refresh_interval_seconds=s.refresh_interval_seconds,
    )


def build_agent(
    settings: Settings,
    *,
    clock: Clock,
    registry: CollectorRegistry,
    node_name: str | None,
    nvml_lib: Any = None,
    kube_api: kube_client.CoreV1Api | None = None,
) -> GpuAgent:
    """The GPU agent. Without `node_name` or `kube_api` it only exports metrics."""
    s = settings.extender
    annotator = KubeNodeAnnotator(kube_api) if kube_api is not None and node_name else None
    return GpuAgent(
        Nvml(nvml_lib if nvml_lib is not None else load_pynvml()),
        clock=clock,
        registry=registry,
        node_name=node_name,
        annotator=annotator,
        window=timedelta(seconds=s.agent_window_seconds),
        annotation_interval_seconds=s.agent_annotation_interval_seconds,
        annotation_max_age_seconds=s.agent_annotation_max_age_seconds,
        min_change_fraction=s.agent_min_change_fraction,
    )
