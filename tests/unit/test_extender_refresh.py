"""extender.refresh: one refresh builds the snapshot from the inventory, carbon (latest plus
forecast, merged) and optional GPU power; carbon is re-fetched only when due; failures keep
the previous series (which ages into staleness), are recorded and counted; a source without
forecasts is asked once; the run loop survives a failing refresh; a snapshot is ready only once
the inventory has listed and every region in use has had its first carbon fetch (a failed one
counts), and until then the loop refreshes at its short until-ready interval."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from extender.core.energy import GpuEnergy
from extender.core.scoring import NodeFacts
from extender.refresh import SnapshotRefresher, merge_series
from extender.snapshot import SnapshotHolder
from forecasts.platform.errors import SourceUnavailable
from forecasts.series import Quality
from forecasts.time import FrozenClock
from tests.fakes import FakeGpuPowerSource, FakeNodeInventory, FakeSeriesCarbonSource, hourly_series

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def setup(**kwargs):
    clock = FrozenClock(NOW)
    holder = SnapshotHolder()
    registry = CollectorRegistry()
    nodes = FakeNodeInventory(
        {
            "a": NodeFacts("a", region="FR"),
            "b": NodeFacts("b", region="DE"),
            "c": NodeFacts("c"),
        }
    )
    carbon = FakeSeriesCarbonSource(
        series={
            "FR": hourly_series("FR", NOW - timedelta(hours=2), [50, 55, 60]),
            "DE": hourly_series("DE", NOW - timedelta(hours=2), [400, 420, 440]),
            "GB": hourly_series("GB", NOW - timedelta(hours=2), [200, 210, 220]),
        },
        forecasts={"FR": hourly_series("FR", NOW + timedelta(hours=1), [40, 30], forecast_from=0)},
    )
    refresher = SnapshotRefresher(
        holder=holder,
        clock=clock,
        nodes=nodes,
        carbon=carbon,
        registry=registry,
        carbon_interval_seconds=300,
        **kwargs,
    )
    return clock, holder, registry, nodes, carbon, refresher


def test_refresh_publishes_nodes_and_merged_carbon_for_regions_in_use() -> None:
    _, holder, _, _, _, refresher = setup(regions=["GB"])
    snap = refresher.refresh()
    assert holder.current() is snap
    assert set(snap.nodes) == {"a", "b", "c"}
    assert set(snap.carbon) == {"FR", "DE", "GB"}
    fr = snap.carbon["FR"]
    assert [p.value for p in fr.points] == [60, 40, 30]
    assert [p.quality for p in fr.points][-1] is Quality.FORECAST
    assert snap.nodes_synced


def test_carbon_is_fetched_only_when_due() -> None:
    clock, _, _, _, carbon, refresher = setup()
    refresher.refresh()
    first = len(carbon.calls)
    clock.advance(timedelta(seconds=60))
    refresher.refresh()
    assert len(carbon.calls) == first
    clock.advance(timedelta(seconds=300))
    refresher.refresh()
    assert len(carbon.calls) > first


def test_failed_fetch_keeps_the_previous_series_and_counts() -> None:
    clock, _, registry, _, carbon, refresher = setup()
    good = refresher.refresh().carbon["DE"]
    carbon.errors["DE"] = SourceUnavailable("timed out", source="fake")
    clock.advance(timedelta(minutes=10))
    snap = refresher.refresh()
    assert snap.carbon["DE"] is good
    assert "timed out" in snap.carbon_errors["DE"]
    labels = {"source": "fake", "region": "DE"}
    assert registry.get_sample_value("gridshift_extender_source_errors_total", labels) == 1
    del carbon.errors["DE"]
    clock.advance(timedelta(minutes=10))
    assert "DE" not in refresher.refresh().carbon_errors


def test_source_without_forecasts_is_asked_once_per_region() -> None:
    clock, _, _, _, carbon, refresher = setup()
    carbon.supports_forecast = False
    refresher.refresh()
    clock.advance(timedelta(minutes=10))
    refresher.refresh()
    asked = [c for c in carbon.calls if c[0] == "forecast"]
    assert sorted(asked) == [("forecast", "DE"), ("forecast", "FR")]


def test_gpu_power_fills_nodes_without_agent_facts() -> None:
    agent = GpuEnergy(100.0, None, None, 1, NOW, 60.0)
    dcgm = GpuEnergy(300.0, None, None, 8, NOW, 0.0, source="prometheus-dcgm")
    gpu = FakeGpuPowerSource({"a": dcgm, "b": dcgm, "ghost": dcgm})
    _, _, registry, nodes, _, refresher = setup(gpu_power=gpu)
    nodes.nodes["a"] = NodeFacts("a", region="FR", gpu=agent)
    snap = refresher.refresh()
    assert snap.nodes["a"].gpu is agent
    assert snap.nodes["b"].gpu is dcgm
    assert "ghost" not in snap.nodes
    gpu.error = SourceUnavailable("down", source="prom")
    assert refresher.refresh().nodes["b"].gpu is dcgm  # last good reading kept
    labels = {"source": "fake-gpu", "region": ""}
    assert registry.get_sample_value("gridshift_extender_source_errors_total", labels) == 1


def test_merge_series_prefers_measured_points() -> None:
    latest = hourly_series("FR", NOW, [50])
    forecast = hourly_series("FR", NOW, [70, 80], forecast_from=0)
    merged = merge_series(latest, forecast)
    assert [(p.value, p.quality) for p in merged.points] == [
        (50, Quality.MEASURED),
        (80, Quality.FORECAST),
    ]
    assert merge_series(latest, None) is latest


def test_run_loop_survives_a_failing_refresh() -> None:
    _, holder, _, nodes, _, refresher = setup()
    calls = []

    class Exploding(FakeNodeInventory):
        def facts(self):
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("boom")
            stop.set()
            return super().facts()

    refresher._nodes = Exploding(nodes.nodes)
    stop = threading.Event()
    refresher.run(stop, interval_seconds=0.001)
    assert len(calls) == 2
    assert holder.current() is not None


def test_freeze_gc_moves_the_published_snapshot_out_of_the_cyclic_gc() -> None:
    import gc

    _, _, _, _, _, plain = setup()
    plain.refresh()
    assert gc.get_freeze_count() == 0
    _, _, _, _, _, freezing = setup(freeze_gc=True)
    snap = freezing.refresh()
    assert gc.get_freeze_count() > 0
    assert not gc.is_finalized(snap)
    assert snap.nodes["a"].region == "FR"  # still the live, published object


def test_ready_only_when_inventory_listed_and_carbon_fetched() -> None:
    _, _, _, nodes, carbon, refresher = setup()
    nodes.synced = False
    nodes.nodes = {}
    snap = refresher.refresh()
    assert not snap.ready
    assert "node inventory" in (snap.not_ready_reason or "")
    nodes.synced = True
    nodes.nodes = {"a": NodeFacts("a", region="FR"), "b": NodeFacts("b", region="DE")}
    carbon.errors["DE"] = SourceUnavailable("down", source="fake")
    snap = refresher.refresh()  # listed and fetched in the same refresh: ready at once
    assert snap.ready, snap.not_ready_reason
    assert snap.carbon_pending == frozenset()
    assert "DE" in snap.carbon_errors  # failed, but tried: neutral for DE, visibly


def test_without_a_carbon_source_only_the_inventory_counts() -> None:
    holder = SnapshotHolder()
    nodes = FakeNodeInventory({"a": NodeFacts("a", region="FR")}, synced=False)
    refresher = SnapshotRefresher(
        holder=holder,
        clock=FrozenClock(NOW),
        nodes=nodes,
        carbon=None,
        registry=CollectorRegistry(),
    )
    assert not refresher.refresh().ready
    nodes.synced = True
    assert refresher.refresh().ready


class _StopWhenReady(SnapshotHolder):
    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop
        self.published = 0

    def publish(self, snapshot) -> None:
        super().publish(snapshot)
        self.published += 1
        if snapshot.ready:
            self.stop.set()


def test_run_refreshes_at_the_short_interval_until_ready() -> None:
    """An hour-long interval, yet the loop reaches readiness at once: until ready it waits
    `until_ready_interval_seconds` (0 here), not the interval (the test would time out)."""
    stop = threading.Event()
    holder = _StopWhenReady(stop)
    calls = 0

    class ListsOnThirdLook(FakeNodeInventory):
        def facts(self):
            nonlocal calls
            calls += 1
            if calls >= 3:
                self.synced = True
                self.nodes = {"a": NodeFacts("a", region="FR")}
            return super().facts()

    nodes = ListsOnThirdLook({}, synced=False)
    refresher = SnapshotRefresher(
        holder=holder,
        clock=FrozenClock(NOW),
        nodes=nodes,
        carbon=FakeSeriesCarbonSource(
            series={"FR": hourly_series("FR", NOW - timedelta(hours=1), [50, 55])}
        ),
        registry=CollectorRegistry(),
    )
    refresher.run(stop, interval_seconds=3600, until_ready_interval_seconds=0)
    assert holder.published == 3
    current = holder.current()
    assert current is not None
    assert current.ready
