"""THE composition root: the one place that reads settings and builds collaborators.

Every `build_*` function takes the (validated) settings plus keyword-only collaborators whose
production defaults are made here and nowhere else (STYLE §6): no module-level clients, no
global registries. Commands in `config/cmd_*.py` call `load_settings` once, then the builders.

Sections are owned by different engineers; add yours as its own block so merges stay easy.

Scaler block: `build_scaler` builds the scaler's loop, its APScheduler service, the snapshot
holder, the Prometheus collector (on the registry passed in) and the status ASGI app.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from prometheus_client.registry import CollectorRegistry

from config.loading import LoadedConfig, Override, load_config
from config.settings import Settings, WorkloadSettings
from forecasts.forecast import Forecaster
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.load import LoadSource
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
    "ScalerApp",
    "build_scaler",
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


# ============================================================================ carbon
# build_carbon_source(settings.carbon, *, clock, http) lives here (carbon engineer).


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
