"""The GPU agent (`gridshift agent`, a DaemonSet on GPU nodes).

Every tick it reads NVML, exports per-GPU Prometheus metrics, feeds a rolling `EnergyWindow`
and, at most once per `annotation_interval_seconds` and only when the value moved (or the
last write is getting old), PATCHes one compact annotation onto its node for the extender.
Without a GPU or a driver it logs one clear line, exports `gridshift_nvml_available 0` and
keeps serving its metrics.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Protocol

from kubernetes import client
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from extender.core.energy import (
    ANNOTATION_KEY,
    EnergyWindow,
    GpuEnergy,
    GpuSample,
    encode_annotation,
)
from extender.nvml import Nvml
from forecasts.time import Clock

__all__ = ["GpuAgent", "KubeNodeAnnotator", "NodeAnnotator", "create_agent_app"]

log = logging.getLogger(__name__)


class NodeAnnotator(Protocol):
    def annotate(self, node: str, *, key: str, value: str) -> None: ...


class KubeNodeAnnotator:
    """Writes one annotation with a strategic-merge PATCH of `metadata.annotations`."""

    def __init__(self, api: client.CoreV1Api, *, request_timeout_seconds: float = 10.0) -> None:
        self._api = api
        self._timeout = request_timeout_seconds

    def annotate(self, node: str, *, key: str, value: str) -> None:
        body = {"metadata": {"annotations": {key: value}}}
        self._api.patch_node(node, body, _request_timeout=self._timeout)


class _GpuCollector(Collector):
    def __init__(self, agent: GpuAgent) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        a = self._agent
        available = GaugeMetricFamily(
            "gridshift_nvml_available", "1 when NVML initialised and GPUs can be read, else 0"
        )
        available.add_metric([], 1.0 if a.nvml.available else 0.0)
        yield available
        labels = ["gpu", "uuid", "model"]
        fams = {
            "power": GaugeMetricFamily(
                "gridshift_gpu_power_watts", "GPU power draw (NVML)", labels=labels
            ),
            "limit": GaugeMetricFamily(
                "gridshift_gpu_power_limit_watts", "Enforced GPU power limit", labels=labels
            ),
            "util": GaugeMetricFamily(
                "gridshift_gpu_utilisation_ratio",
                "GPU busy fraction over NVML's sample period (absent under MIG)",
                labels=labels,
            ),
            "mem_used": GaugeMetricFamily(
                "gridshift_gpu_memory_used_bytes", "GPU memory in use", labels=labels
            ),
            "mem_total": GaugeMetricFamily(
                "gridshift_gpu_memory_total_bytes", "GPU memory size", labels=labels
            ),
            "mig": GaugeMetricFamily(
                "gridshift_gpu_mig_devices",
                "MIG devices on this GPU (0 when MIG is off)",
                labels=labels,
            ),
        }
        energy = CounterMetricFamily(
            "gridshift_gpu_energy_joules",
            "GPU energy since the driver was loaded (NVML; resets on driver reload)",
            labels=labels,
        )
        for s in a.last_samples:
            lv = [str(s.index), s.uuid, s.name]
            _add(fams["power"], lv, s.power_watts)
            _add(fams["limit"], lv, s.power_limit_watts)
            _add(
                fams["util"],
                lv,
                None if s.utilisation_percent is None else s.utilisation_percent / 100,
            )
            _add(fams["mem_used"], lv, s.memory_used_bytes)
            _add(fams["mem_total"], lv, s.memory_total_bytes)
            fams["mig"].add_metric(lv, float(s.mig_devices))
            if s.energy_joules is not None:
                energy.add_metric(lv, s.energy_joules)
        yield from fams.values()
        yield energy
        summary = a.last_summary
        avg = GaugeMetricFamily(
            "gridshift_node_gpu_power_watts",
            "Rolling average power per GPU on this node (what the annotation carries)",
        )
        per_work = GaugeMetricFamily(
            "gridshift_node_gpu_joules_per_work",
            "Energy per fully busy GPU-second over the rolling window",
        )
        if summary is not None:
            avg.add_metric([], summary.power_watts)
            if summary.joules_per_work is not None:
                per_work.add_metric([], summary.joules_per_work)
        yield avg
        yield per_work


def _add(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    if value is not None:
        family.add_metric(labels, float(value))


class GpuAgent:
    def __init__(
        self,
        nvml: Nvml,
        *,
        clock: Clock,
        registry: CollectorRegistry,
        node_name: str | None,
        annotator: NodeAnnotator | None,
        window: timedelta = timedelta(minutes=5),
        annotation_interval_seconds: float = 60.0,
        annotation_max_age_seconds: float = 300.0,
        min_change_fraction: float = 0.05,
    ) -> None:
        self.nvml = nvml
        self._clock = clock
        self._node = node_name
        self._annotator = annotator
        self._window = EnergyWindow(window=window)
        self._interval_s = annotation_interval_seconds
        self._max_age_s = annotation_max_age_seconds
        self._min_change = min_change_fraction
        self.last_samples: tuple[GpuSample, ...] = ()
        self.last_summary: GpuEnergy | None = None
        self.ticks = 0  # completed samples (stopping says how many)
        self._written: GpuEnergy | None = None
        self._written_at: datetime | None = None
        self._writes = Counter(
            "gridshift_agent_annotation_writes",
            "Node annotation PATCHes by result (ok, error)",
            ["result"],
            registry=registry,
        )
        registry.register(_GpuCollector(self))

    def start(self) -> bool:
        """Initialise NVML; on failure log one clear line and keep serving metrics."""
        if self.nvml.start():
            log.info("NVML ready (driver %s)", self.nvml.driver_version or "unknown")
            return True
        log.warning(
            "NVML unavailable (%s): no GPU power will be reported; "
            "gridshift_nvml_available is 0 and the agent keeps serving /metrics",
            self.nvml.unavailable_reason,
        )
        return False

    def tick(self) -> GpuEnergy | None:
        """Sample once, update metrics and the window, annotate when due."""
        if not self.nvml.available:
            return None
        now = self._clock.now()
        samples = self.nvml.sample()
        self.last_samples = samples
        self._window.add(samples, at=now)
        summary = self._window.summary()
        self.last_summary = summary
        if summary is not None and self._due(summary, now=now):
            self._annotate(summary, now=now)
        return summary

    def _due(self, summary: GpuEnergy, *, now: datetime) -> bool:
        if self._annotator is None or not self._node:
            return False
        if self._written_at is None:
            return True
        age = (now - self._written_at).total_seconds()
        if age < self._interval_s:
            return False
        if age >= self._max_age_s or self._written is None:
            return True
        return _moved(self._written.power_watts, summary.power_watts, self._min_change) or _moved(
            self._written.joules_per_work, summary.joules_per_work, self._min_change
        )

    def _annotate(self, summary: GpuEnergy, *, now: datetime) -> None:
        assert self._annotator is not None
        assert self._node
        try:
            self._annotator.annotate(
                self._node, key=ANNOTATION_KEY, value=encode_annotation(summary)
            )
        except Exception as exc:  # API errors of any kind must not stop sampling
            self._writes.labels("error").inc()
            log.warning("annotating node %s failed: %s", self._node, exc)
            self._written_at = now  # back off a full interval before trying again
            return
        self._writes.labels("ok").inc()
        self._written = summary
        self._written_at = now

    def run(self, stop: threading.Event, *, interval_seconds: float) -> None:
        while not stop.is_set():
            try:
                self.tick()
                self.ticks += 1
            except Exception:
                log.exception("GPU agent tick failed")
            stop.wait(interval_seconds)


def _moved(old: float | None, new: float | None, fraction: float) -> bool:
    if old is None or new is None:
        return (old is None) != (new is None)
    if not (math.isfinite(old) and math.isfinite(new)):
        return True
    return abs(new - old) > fraction * max(abs(old), 1e-9)


def create_agent_app(registry: CollectorRegistry) -> Starlette:
    """The agent's HTTP endpoints (`GET /metrics`, `GET /healthz`), served on the bounded
    listener (`forecasts.platform.listener`) like every other gridshift listener."""

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/metrics", metrics, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
        ]
    )
