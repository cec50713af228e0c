"""`KubeRuntime` (the watcher, elector and controller threads of one process) and `KubeCollector`
(`gridshift_kube_*` metrics).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from forecasts.platform.reflector import Reflector
from scaler.kube.api import RequestCounts
from scaler.kube.controller import KubeController
from scaler.kube.leader import LeaderElector
from scaler.kube.replicas import KubeReplicaReader
from scaler.kube.resources import ScalerResource
from scaler.kube.shards import ShardElector
from scaler.kube.watch import ScalerResourceWatcher
from scaler.kube.workloads import ClusterWorkloads
from scaler.snapshot import Snapshot

log = logging.getLogger(__name__)


class KubeRuntime:
    """The Kubernetes side of `gridshift run`: watcher, elector and a sync loop, as threads,
    and `replicas`, the reader the scaler loop uses for actual replicas each tick.

    `start()` launches them; the sync loop calls `KubeController.sync` whenever a new snapshot
    is published (checked every `poll_interval_seconds`) and right after gaining leadership.
    `close()` stops everything and releases the Lease (graceful shutdown).
    """

    def __init__(
        self,
        *,
        watcher: ScalerResourceWatcher,
        elector: LeaderElector,
        controller: KubeController,
        current_snapshot: Callable[[], Snapshot | None],
        stop: threading.Event,
        replicas: KubeReplicaReader,
        workloads: ClusterWorkloads | None = None,
        poll_interval_seconds: float = 1.0,
        max_retry_backoff_seconds: float = 30.0,
        timer: Callable[[], float] = time.monotonic,
        request_counts: RequestCounts | None = None,
        target_watchers: Sequence[Reflector] = (),
    ) -> None:
        self.watcher = watcher
        #: what this process sent the API server (None: a client that does not count)
        self.request_counts = request_counts
        #: list + watch of the scale targets `replicas` reads from (`ScaleTargetCache`)
        self.target_watchers = tuple(target_watchers)
        self.replicas = replicas
        #: the scaler loop's workload source (config-file workloads + CarbonAwareScalers)
        self.workloads = workloads
        self.elector = elector
        self.controller = controller
        self._current = current_snapshot
        self._stop = stop
        self._poll = poll_interval_seconds
        self._max_backoff = max_retry_backoff_seconds
        self._timer = timer
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self._threads: list[threading.Thread] = []
        self._synced: Snapshot | None = None
        self._was_leading = False
        self.sync_errors = 0
        self.last_sync_seconds = 0.0
        self.slowest_sync_seconds = 0.0

    def resources(self) -> dict[tuple[str, str], ScalerResource]:
        """The watched, valid CarbonAwareScalers by (namespace, name), for the tick loop."""
        return self.watcher.cache.items()

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self.sync_once()
            self._stop.wait(self._poll)

    def sync_once(self) -> bool:
        """One pass of the sync loop: sync when leading and there is a new snapshot, a new
        leadership term, or a failed write whose retry is due (backing off exponentially
        from the poll interval to `max_retry_backoff_seconds`, so an API server that
        rate-limits is not hammered). True when it synced."""
        snapshot = self._current()
        leading = self.elector.leading
        if leading and not self._was_leading:
            self.controller.forget()
        retry_due = bool(self.controller.pending) and self._timer() >= self._retry_at
        synced = False
        if (
            snapshot is not None
            and leading
            and (snapshot is not self._synced or not self._was_leading or retry_due)
        ):
            started = time.monotonic()
            try:
                self.controller.sync(snapshot)
                self._synced = snapshot
                synced = True
            except Exception:
                self.sync_errors += 1
                log.exception("Kubernetes sync failed")
            self.last_sync_seconds = time.monotonic() - started
            self.slowest_sync_seconds = max(self.slowest_sync_seconds, self.last_sync_seconds)
            if self.controller.pending:
                self._retry_delay = min(self._max_backoff, max(self._poll, 2 * self._retry_delay))
                self._retry_at = self._timer() + self._retry_delay
            else:
                self._retry_delay = 0.0
        self._was_leading = leading
        return synced

    def start(self) -> None:
        for name, target in (
            ("cr-watch", self.watcher.run),
            ("leader-election", self.elector.run),
            ("kube-sync", self._sync_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        for i, reflector in enumerate(self.target_watchers):
            thread = threading.Thread(target=reflector.run, name=f"target-watch-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout_seconds: float = 10.0) -> None:
        self._stop.set()
        self.watcher.stop()
        for reflector in self.target_watchers:
            reflector.stop()
        self.elector.stop()
        for thread in self._threads:
            thread.join(timeout=timeout_seconds)
        self._threads.clear()


class KubeCollector(Collector):
    """The Kubernetes side's health as metrics (`register_kube_metrics`)."""

    def __init__(self, runtime: KubeRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self._runtime
        identity = rt.elector.lock.identity
        leader = GaugeMetricFamily(
            "gridshift_kube_leader",
            "1 while this replica holds the Lease and acts (status, actuation); 0 otherwise.",
            labels=["identity"],
        )
        leader.add_metric([identity], 1.0 if rt.elector.leading else 0.0)
        yield leader
        errors = CounterMetricFamily(
            "gridshift_kube_api_errors",
            "Failed Kubernetes API calls (errors, timeouts, resets, garbled answers) by "
            "operation: lease, watch, status, actuation, sync.",
            labels=["operation"],
        )
        for operation, count in (
            ("lease", rt.elector.lock.errors),
            ("watch", rt.watcher.errors),
            ("status", rt.controller.status_errors),
            ("actuation", rt.controller.actuation_errors),
            ("sync", rt.sync_errors),
        ):
            errors.add_metric([operation], float(count))
        yield errors
        elector = rt.elector
        if isinstance(elector, ShardElector):
            owned = GaugeMetricFamily(
                "gridshift_kube_shard_owned",
                "1 for each shard whose Lease this replica holds (the sharded scaler).",
                labels=["shard"],
            )
            for shard in range(elector.shards):
                owned.add_metric([str(shard)], 1.0 if shard in elector.owned else 0.0)
            yield owned
            yield GaugeMetricFamily(
                "gridshift_kube_shard_members",
                "Live members (replicas holding their member Lease) this replica sees.",
                value=float(len(elector.members)),
            )
            moves = CounterMetricFamily(
                "gridshift_kube_shard_moves",
                "Shards this replica acquired (takeover) or released to their new owner (handoff).",
                labels=["direction"],
            )
            moves.add_metric(["takeover"], float(elector.takeovers))
            moves.add_metric(["handoff"], float(elector.handoffs))
            yield moves
        if rt.request_counts is not None:
            requests = CounterMetricFamily(
                "gridshift_kube_api_requests",
                "Requests sent to the Kubernetes API server by verb and resource (this replica's "
                "share of the API server's load).",
                labels=["verb", "resource"],
            )
            for (verb, resource), count in sorted(rt.request_counts.snapshot().items()):
                requests.add_metric([verb, resource], float(count))
            yield requests
        yield GaugeMetricFamily(
            "gridshift_kube_sync_pending_resources",
            "CarbonAwareScalers whose last actuation or status write failed (retried).",
            value=float(len(rt.controller.pending)),
        )
        yield GaugeMetricFamily(
            "gridshift_kube_sync_duration_seconds",
            "Wall time of the last status/actuation sync round.",
            value=rt.last_sync_seconds,
        )


def register_kube_metrics(registry: CollectorRegistry, runtime: KubeRuntime) -> KubeCollector:
    collector = KubeCollector(runtime)
    registry.register(collector)
    return collector
