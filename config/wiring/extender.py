"""The scheduler extender and the GPU agent: inventory, scoring policy, refresher, ASGI app; NVML
or Prometheus GPU power.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
from kubernetes import client as kube_client
from kubernetes.config import ConfigException
from prometheus_client.registry import CollectorRegistry
from starlette.applications import Starlette

from config.settings import (
    ExtenderSettings,
    KubeSettings,
    Settings,
)
from config.wiring.carbon import build_carbon_forecasting, build_region_resolver
from config.wiring.kube import build_kube_api_client
from extender.agent import GpuAgent, KubeNodeAnnotator
from extender.core.nodes import RegionRules
from extender.core.scoring import ScoringPolicy
from extender.gpu_prometheus import GpuExporter, PrometheusGpuPower
from extender.inventory import KubeNodeInventory
from extender.nvml import Nvml, load_pynvml
from extender.refresh import GpuPowerSource, NodeInventory, SnapshotRefresher
from extender.server import create_app
from extender.snapshot import SnapshotHolder as ExtenderSnapshotHolder
from forecasts.platform.http import HttpSource
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.prometheus import build_client
from forecasts.time import Clock

log = logging.getLogger(__name__)


def kube_core_api(settings: KubeSettings) -> kube_client.CoreV1Api:
    """The extender's and agent's Kubernetes client, credentials found as the scaler finds
    them (`build_kube_api_client`): `kube.kubeconfig` when set, else in-cluster credentials
    in a pod, else the local kubeconfig. RuntimeError, naming where it looked, when none works."""
    try:
        return kube_client.CoreV1Api(build_kube_api_client(settings))
    except (ConfigException, OSError) as exc:
        where = (
            f"kube.kubeconfig={settings.kubeconfig} is not usable"
            if settings.kubeconfig is not None
            else "not in a pod, and no usable kubeconfig"
        )
        raise RuntimeError(f"no Kubernetes credentials ({where}: {exc})") from exc


def scoring_policy(s: ExtenderSettings) -> ScoringPolicy:
    return ScoringPolicy(
        carbon_weight=s.carbon_weight,
        gpu_energy_weight=s.gpu_energy_weight,
        neutral_score=s.neutral_score,
        stale_after_seconds=s.stale_after_seconds,
        gpu_stale_after_seconds=s.gpu_stale_after_seconds,
        max_intensity_g_per_kwh=s.max_intensity_g_per_kwh,
        prefer_regions=frozenset(s.prefer_regions),
        avoid_regions=frozenset(s.avoid_regions),
        prefer_bonus=s.prefer_bonus,
    )


def region_rules(settings: Settings) -> RegionRules:
    """Node labels -> carbon region: the shared region model (`build_region_resolver`)."""
    return build_region_resolver(settings)


@dataclass
class ExtenderRuntime:
    """The webhook app plus the background jobs that feed its snapshot. `stop()` ends the
    jobs, then closes the outbound clients `build_extender` opened for them (`closing`)."""

    app: Starlette
    holder: ExtenderSnapshotHolder
    refresher: SnapshotRefresher
    inventory: KubeNodeInventory | None
    refresh_interval_seconds: float
    closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
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
        self.closing.close()  # after the jobs: a refresh in progress keeps its client


#: The GPU power poll is one query at a time from the refresh thread; a second connection
#: lets a new poll start while a timed-out one is still being torn down.
GPU_POWER_MAX_CONNECTIONS = 2


def build_gpu_power_source(
    settings: Settings, *, clock: Clock, transport: httpx.BaseTransport | None = None
) -> PrometheusGpuPower | None:
    """GPU power from the DCGM exporter or Kepler through the `prometheus` group's Prometheus
    (None unless `extender.gpu_source` names one), on the scaler's Prometheus client
    (`forecasts.sources.prometheus.build_client`: its timeout, auth and TLS settings, at most
    `GPU_POWER_MAX_CONNECTIONS` connections) inside an `HttpSource` (the whole call within a
    deadline, the body within its byte cap after decompression, secrets scrubbed). The caller
    closes it (`close()`)."""
    choice = settings.extender.gpu_source
    if choice not in ("dcgm", "kepler"):
        return None
    connection = settings.prometheus.connection()
    http = HttpSource(
        name=f"prometheus-{choice}",
        client=build_client(
            connection, transport=transport, max_connections=GPU_POWER_MAX_CONNECTIONS
        ),
        clock=clock,
        cache_ttl_seconds=1e-6,
        secrets=connection.secrets,
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
    DCGM/Kepler source chosen by `extender.gpu_source` (the caller's to close; the one built
    here is closed by the runtime's `stop()`)."""
    s = settings.extender
    closing = contextlib.ExitStack()
    if gpu_power is None:
        built_gpu_power = build_gpu_power_source(settings, clock=clock)
        if built_gpu_power is not None:
            closing.callback(built_gpu_power.close)
        gpu_power = built_gpu_power
    rules = region_rules(settings)
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
        gpu_power=gpu_power,
        carbon_interval_seconds=s.carbon_refresh_interval_seconds,
        forecast_horizon=timedelta(seconds=s.forecast_horizon_seconds),
        carbon_forecast=(
            build_carbon_forecasting(settings, carbon, clock=clock, closing=closing)
            if carbon is not None
            else None
        ),
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
        closing=closing,
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
