"""scaler.metrics and scaler.status_api over a real tick's snapshot.

Aspects: metric names (gridshift_ prefix, base units, _total counters) and values read with
`get_sample_value` on a fresh registry; the sample-data info series; no snapshot yet;
the status routes (/status, /status/{workload}, 404 with known names, /metrics, /healthz,
/readyz before and after the first tick), ORJSON bodies with reasons; actual replicas in
/status and as `gridshift_actual_replicas` only while known.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from prometheus_client.registry import CollectorRegistry

from scaler.metrics import register_scaler_metrics
from scaler.snapshot import SnapshotHolder
from scaler.status_api import create_status_app
from tests.fakes import FakeReplicaReader
from tests.unit.test_loop import make_loop, web


class AsgiClient:
    """In-process requests against the ASGI app (no socket)."""

    def __init__(self, app) -> None:
        self._app = app

    def get(self, path: str) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self._app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.get(path)

        return asyncio.run(go())


L = {"workload": "web", "namespace": "default", "region": "r1"}


@pytest.fixture
def ticked():
    loop, clock, holder = make_loop([web()])
    loop.refit()
    loop.tick()
    clock.advance(timedelta(minutes=30))
    loop.tick()
    registry = CollectorRegistry()
    register_scaler_metrics(registry, holder)
    return holder, registry


def test_metrics_values(ticked) -> None:
    holder, registry = ticked
    snap = holder.current()
    ws = snap.workloads["web"]
    get = registry.get_sample_value
    assert get("gridshift_desired_replicas", L) == 12.0
    assert get("gridshift_mode", {**L, "mode": "performance"}) == 1.0
    assert get("gridshift_mode", {**L, "mode": "eco"}) == 0.0
    assert get("gridshift_load", L) == 100.0
    assert get("gridshift_load_forecast", {**L, "quantile": "0.95"}) == pytest.approx(100.0)
    assert get("gridshift_input_stale", {**L, "input": "load"}) == 0.0
    signal = {**L, "signal": "average"}
    assert get("gridshift_emitted_grams_total", signal) == pytest.approx(ws.emitted_g)
    assert ws.emitted_g > 0
    assert get("gridshift_saved_grams_total", signal) == pytest.approx(ws.saved_g)
    assert get("gridshift_energy_joules_total", L) == pytest.approx(ws.energy_joules)
    rl = {"region": "r1", "provider": "fake-carbon", "signal": "average"}
    assert get("gridshift_carbon_intensity_grams_per_kwh", rl) == 100.0
    assert get("gridshift_carbon_forecast_percentile", rl) is not None
    assert get("gridshift_carbon_stale", rl) == 0.0
    assert get("gridshift_ticks_total") == 2.0
    assert get("gridshift_tick_duration_seconds") == pytest.approx(snap.tick_seconds)
    assert get("gridshift_scaler_data_info", {"data": "live", "note": ""}) == 1.0


def test_metrics_before_first_tick() -> None:
    registry = CollectorRegistry()
    register_scaler_metrics(registry, SnapshotHolder())
    assert (
        registry.get_sample_value(
            "gridshift_scaler_data_info", {"data": "none", "note": "no tick yet"}
        )
        == 1.0
    )
    assert registry.get_sample_value("gridshift_desired_replicas", L) is None


def test_status_routes(ticked) -> None:
    holder, registry = ticked
    client = AsgiClient(create_status_app(holder, registry=registry))
    body = client.get("/status").json()
    assert body["workloads"]["web"]["desired_replicas"] == 12
    assert body["workloads"]["web"]["reasons"][-1] == "target 12 (was 12)"
    assert body["regions"]["r1"]["intensity_g_per_kwh"] == 100.0
    assert body["totals"]["emitted_g"] > 0
    assert body["totals_by_region"]["r1"]["emitted_g"] == body["totals"]["emitted_g"]
    assert body["taken_at"].endswith("Z")
    one = client.get("/status/web").json()
    assert one["name"] == "web"
    assert one["mode"] == "performance"
    missing = client.get("/status/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": "unknown workload 'nope'", "workloads": ["web"]}
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "gridshift_desired_replicas{" in metrics.text
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200


def test_not_ready_before_first_tick() -> None:
    client = AsgiClient(create_status_app(SnapshotHolder(), registry=CollectorRegistry()))
    assert client.get("/healthz").status_code == 200
    for path in ("/readyz", "/status", "/status/web"):
        r = client.get(path)
        assert r.status_code == 503
        assert r.json()["error"] == "no tick has completed yet"


def test_actual_replicas_in_status_and_metrics_only_when_known() -> None:
    loop, clock, holder = make_loop([web()])
    registry = CollectorRegistry()
    register_scaler_metrics(registry, holder)
    client = AsgiClient(create_status_app(holder, registry=registry))
    loop.tick()
    assert registry.get_sample_value("gridshift_actual_replicas", L) is None
    body = client.get("/status/web").json()
    assert body["actual_replicas"] is None
    assert body["actual_replicas_note"] == "no cluster connection"

    reader = FakeReplicaReader(replicas={"web": 5})
    loop.use_replica_reader(reader)
    clock.advance(timedelta(minutes=1))
    loop.tick()
    assert registry.get_sample_value("gridshift_actual_replicas", L) == 5.0
    assert client.get("/status").json()["workloads"]["web"]["actual_replicas"] == 5
    assert "gridshift_actual_replicas{" in client.get("/metrics").text

    reader.replicas.clear()
    clock.advance(timedelta(minutes=1))
    loop.tick()
    assert registry.get_sample_value("gridshift_actual_replicas", L) is None
