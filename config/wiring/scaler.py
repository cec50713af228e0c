"""The scaler: `build_scaler` builds the loop, its APScheduler service, the snapshot holder, the
Prometheus collector (on the registry passed in) and the status ASGI app; workloads, policy and
loop settings from `Settings`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from kubernetes import client as k8s
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette

from config.settings import (
    Settings,
    WorkloadSettings,
)
from config.wiring.carbon import build_carbon_forecasting
from config.wiring.kube import build_kube_api_client
from extender.core.scoring import (
    ANNOTATION_AVOID_REGIONS,
    ANNOTATION_MAX_INTENSITY,
    ANNOTATION_PREFER_REGIONS,
)
from forecasts.forecast import Forecaster
from forecasts.models.catalog import build_load_forecaster
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.load import LoadSource
from forecasts.time import Clock
from scaler.core.history import RecordingHolder, SnapshotHistory
from scaler.core.policy import PolicyParams
from scaler.core.shards import shard_of
from scaler.core.workload import (
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
from scaler.extender_watch import ExtenderWatch
from scaler.loop import LoopSettings, ScalerLoop
from scaler.metrics import register_scaler_metrics
from scaler.service import ScalerService
from scaler.snapshot import SnapshotHolder
from scaler.state import ConfigMapStateStore, FileStateStore, ShardStateStore, StateStore
from scaler.status_api import create_status_app

log = logging.getLogger(__name__)


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
    app: Starlette
    registry: CollectorRegistry
    extender_watch: ExtenderWatch | None = None
    state_store: StateStore | None = None
    #: the other clients `build_scaler` opened for the loop (the Open-Meteo weather inputs')
    closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def close(self) -> None:
        """Close what `build_scaler` opened beside the loop: the extender watch's thread and
        HTTP client (a watch that never started too), then `closing`."""
        if self.extender_watch is not None:
            self.extender_watch.stop()
        self.closing.close()


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
        core = k8s.CoreV1Api(client)

        def configmap(name: str) -> ConfigMapStateStore:
            return ConfigMapStateStore(
                core,
                namespace=s.state_configmap_namespace,
                name=name,
                request_timeout_seconds=settings.kube.request_timeout_seconds,
                logger=logger,
            )

        shards = settings.kube.shards
        if shards > 0:  # the sharded scaler: one ConfigMap per shard, written by its holder
            return ShardStateStore(
                [configmap(f"{s.state_configmap_name}-shard-{i}") for i in range(shards)],
                shard_of=lambda namespace, name: shard_of(namespace, name, shards),
                logger=logger,
            )
        return configmap(s.state_configmap_name)
    return None


def region_policy_view(settings: Settings) -> dict[str, Any]:
    """The scheduling region policy as the dashboard shows it (the extender applies it)."""
    ext = settings.extender
    return {
        "max_intensity_g_per_kwh": ext.max_intensity_g_per_kwh,
        "prefer_regions": list(ext.prefer_regions),
        "avoid_regions": list(ext.avoid_regions),
        "prefer_bonus": ext.prefer_bonus,
        "pod_annotations": [
            ANNOTATION_MAX_INTENSITY,
            ANNOTATION_PREFER_REGIONS,
            ANNOTATION_AVOID_REGIONS,
        ],
    }


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
    closing = contextlib.ExitStack()
    loop = ScalerLoop(
        [workload_from(w) for w in settings.scaler.workloads],
        carbon=carbon,
        load=load,
        clock=clock,
        holder=holder,
        params=policy_params_from(settings, speed=speed),
        settings=loop_settings_from(settings, data_note=data_note),
        forecaster=forecaster,
        carbon_forecast=build_carbon_forecasting(settings, carbon, clock=clock, closing=closing),
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
        region_policy=region_policy_view(settings),
    )
    return ScalerApp(loop, service, holder, app, registry, watch, state_store, closing)
