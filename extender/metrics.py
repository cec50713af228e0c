"""The extender webhook's own Prometheus metrics: request latency and counts, decisions,
filtered nodes, neutral scores and annotation problems (`ExtenderMetrics`, on a passed-in
registry), and the data freshness computed at scrape time from the current snapshot."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from extender.core.scoring import DataStatus, ScoringPolicy, region_intensities
from extender.snapshot import SnapshotHolder
from forecasts.time import Clock

__all__ = ["ExtenderMetrics"]


class _SnapshotCollector(Collector):
    """Data freshness, computed at scrape time from the current snapshot."""

    def __init__(self, holder: SnapshotHolder, clock: Clock, policy: ScoringPolicy) -> None:
        self._holder = holder
        self._clock = clock
        self._policy = policy

    def collect(self) -> Iterator[Metric]:
        snap = self._holder.current()
        age = GaugeMetricFamily(
            "gridshift_extender_snapshot_age_seconds",
            "Seconds since the extender's snapshot was built (-1: none yet)",
        )
        nodes = GaugeMetricFamily(
            "gridshift_extender_nodes", "Nodes known to the extender's inventory"
        )
        synced = GaugeMetricFamily(
            "gridshift_extender_nodes_synced", "1 once the node inventory has listed"
        )
        ready = GaugeMetricFamily(
            "gridshift_extender_ready",
            "1 once nodes are listed and their regions' carbon fetched (/readyz is 200)",
        )
        carbon_age = GaugeMetricFamily(
            "gridshift_extender_carbon_age_seconds",
            "Age of the newest carbon value at or before now, per region",
            labels=["region", "provider"],
        )
        fresh = GaugeMetricFamily(
            "gridshift_extender_carbon_fresh",
            "1 when the region's carbon value is fresh enough to score with, else 0",
            labels=["region"],
        )
        if snap is None:
            age.add_metric([], -1.0)
            nodes.add_metric([], 0.0)
            synced.add_metric([], 0.0)
            ready.add_metric([], 0.0)
        else:
            ready.add_metric([], 1.0 if snap.ready else 0.0)
            now = self._clock.now()
            age.add_metric([], (now - snap.taken_at).total_seconds())
            nodes.add_metric([], float(len(snap.nodes)))
            synced.add_metric([], 1.0 if snap.nodes_synced else 0.0)
            intens = region_intensities(snap.carbon, snap.carbon, now=now, policy=self._policy)
            for region, ri in sorted(intens.items()):
                if ri.age_seconds is not None:
                    carbon_age.add_metric([region, ri.provider], ri.age_seconds)
                fresh.add_metric([region], 1.0 if ri.status is DataStatus.FRESH else 0.0)
        yield from (age, nodes, synced, ready, carbon_age, fresh)


class ExtenderMetrics:
    """The webhook's own metrics, on a passed-in registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        holder: SnapshotHolder,
        clock: Clock,
        policy: ScoringPolicy,
    ) -> None:
        self.latency = Histogram(
            "gridshift_extender_request_duration_seconds",
            "Extender request latency by verb (body read to response built)",
            ["verb"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.requests = Counter(
            "gridshift_extender_requests",
            "Extender requests by verb and HTTP status code",
            ["verb", "code"],
            registry=registry,
        )
        self.decisions = Counter(
            "gridshift_extender_decisions",
            "Decisions by verb and outcome"
            " (filter: passed, capped, opted_out; prioritize: scored, neutral)",
            ["verb", "outcome"],
            registry=registry,
        )
        self.nodes = Counter(
            "gridshift_extender_filter_nodes",
            "Nodes seen by filter, by result (passed, rejected)",
            ["result"],
            registry=registry,
        )
        self.neutral = Counter(
            "gridshift_extender_neutral_scores",
            "Prioritize calls answered with one neutral score for every node, by reason",
            ["reason"],
            registry=registry,
        )
        self.annotation_problems = Counter(
            "gridshift_extender_pod_annotation_problems",
            "Pod annotations ignored because they did not parse",
            registry=registry,
        )
        registry.register(_SnapshotCollector(holder, clock, policy))
