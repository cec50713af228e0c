"""extender.inventory with the real `kubernetes` client against a local API stand-in:
paginated LIST with resourceVersion, WATCH events applied (ADDED/MODIFIED/DELETED),
BOOKMARK advancing the version, the next watch resuming from it with bookmarks asked for,
410 Gone as an ERROR event or on a LIST continue -> relist, the run loop recovering, and the
agent's node annotation PATCH (strategic merge) read back by the inventory. A hung API server
(`tests.faultproxy` HANG) costs a LIST at most `extender.inventory_request_timeout_seconds`,
urllib3's re-send included, before it is counted as an error (wired by `build_extender`)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from kubernetes import client as kube_client
from prometheus_client import CollectorRegistry

from config.settings import ExtenderSettings, Settings
from config.wiring import build_extender, kube_api_client
from extender.agent import KubeNodeAnnotator
from extender.core.energy import ANNOTATION_KEY
from extender.core.nodes import RegionRules
from extender.inventory import KubeNodeInventory
from forecasts.platform.reflector import ResourceExpired
from forecasts.time import FrozenClock
from tests.faultproxy import Fault, FaultProxy
from tests.integration.kube_api import FakeApiServer, bookmark, event, gone, make_node

pytestmark = pytest.mark.integration

RULES = RegionRules(aliases={"eu-west-1": "IE", "eu-central-1": "DE"})


@pytest.fixture
def server():
    with FakeApiServer() as s:
        s.nodes = {
            "gpu-1": make_node("gpu-1", "eu-west-1", rv="90"),
            "gpu-2": make_node("gpu-2", "eu-central-1", rv="91"),
            "gpu-3": make_node("gpu-3", "eu-west-1", rv="92", gpus=4),
        }
        s.list_rv = "100"
        yield s


def inventory(
    server: FakeApiServer, registry: CollectorRegistry | None = None
) -> KubeNodeInventory:
    return KubeNodeInventory(
        server.api(),
        rules=RULES,
        registry=registry or CollectorRegistry(),
        page_size=2,
        watch_timeout_seconds=5,
        retry_seconds=0.01,
    )


def test_list_pages_and_version(server: FakeApiServer) -> None:
    inv = inventory(server)
    assert not inv.synced
    assert inv.relist() == "100"
    assert inv.synced
    facts = inv.facts()
    assert {n: (f.region, f.gpu_capacity) for n, f in facts.items()} == {
        "gpu-1": ("IE", 8),
        "gpu-2": ("DE", 8),
        "gpu-3": ("IE", 4),
    }
    assert facts["gpu-1"].gpu is not None  # the agent annotation in the fixture
    lists = server.calls()
    assert [q.get("limit") for _, q in lists] == [["2"], ["2"]]
    assert lists[1][1]["continue"] == ["2"]


def test_watch_applies_events_and_resumes_from_the_bookmark(server: FakeApiServer) -> None:
    registry = CollectorRegistry()
    inv = inventory(server, registry)
    rv = inv.relist()
    moved = make_node("gpu-1", "eu-central-1", rv="102")
    server.watch_sessions.append(
        [
            event("ADDED", make_node("gpu-4", "eu-west-1", rv="101")),
            event("MODIFIED", moved),
            event("DELETED", make_node("gpu-2", "eu-central-1", rv="103")),
            bookmark("110"),
        ]
    )
    before = inv.facts()
    rv = inv.watch_once(rv)
    assert rv == "110"
    facts = inv.facts()
    assert set(facts) == {"gpu-1", "gpu-3", "gpu-4"}
    assert facts["gpu-1"].region == "DE"
    assert set(before) == {"gpu-1", "gpu-2", "gpu-3"}  # views are immutable snapshots
    ((_, watch_q),) = [c for c in server.calls() if c[1].get("watch")]
    assert watch_q["resourceVersion"] == ["100"]
    assert watch_q["allowWatchBookmarks"] == ["true"]
    assert watch_q["timeoutSeconds"] == ["5"]
    inv.watch_once(rv)
    last_watch = [c for c in server.calls() if c[1].get("watch")][-1]
    assert last_watch[1]["resourceVersion"] == ["110"]
    for kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        assert (
            registry.get_sample_value("gridshift_extender_inventory_events_total", {"type": kind})
            == 1
        )


def test_an_idle_watch_outlasts_the_request_timeout(server: FakeApiServer) -> None:
    inv = KubeNodeInventory(
        server.api(),
        rules=RULES,
        registry=CollectorRegistry(),
        watch_timeout_seconds=5,
        request_timeout_seconds=0.2,
    )
    rv = inv.relist()
    server.watch_sessions.append([{"sleep": 0.6}, bookmark("120")])
    assert inv.watch_once(rv) == "120"


def test_gone_error_event_raises_expired(server: FakeApiServer) -> None:
    inv = inventory(server)
    rv = inv.relist()
    server.watch_sessions.append([gone(rv)])
    with pytest.raises(ResourceExpired, match="too old resource version"):
        inv.watch_once(rv)


def test_expired_continue_token_raises_expired(server: FakeApiServer) -> None:
    server.expired_continue.add("2")
    with pytest.raises(ResourceExpired):
        inventory(server).relist()


def wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def relists_then_follows(server: FakeApiServer, inv: KubeNodeInventory, registry) -> None:
    """Run `inv` until it has relisted once more and then applied a new watch event."""
    stop = threading.Event()
    t = threading.Thread(target=inv.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: registry.get_sample_value("gridshift_extender_inventory_lists_total") == 2)
        wait_for(lambda: {"gpu-1", "gpu-2", "gpu-3"} <= set(inv.facts()))
        server.nodes["gpu-5"] = make_node("gpu-5", "eu-west-1", rv="300")
        server.watch_sessions.append([event("ADDED", server.nodes["gpu-5"])])
        wait_for(lambda: "gpu-5" in inv.facts())
    finally:
        stop.set()
        inv.stop()
        t.join(timeout=5)
    assert not t.is_alive()


def test_run_loop_relists_after_410_and_keeps_watching(server: FakeApiServer) -> None:
    registry = CollectorRegistry()
    inv = inventory(server, registry)
    server.watch_sessions.extend(
        [
            [event("DELETED", make_node("gpu-3", "eu-west-1", rv="101")), gone("101")],
        ]
    )
    # after the 410 the loop relists: state comes back from the server's list
    relists_then_follows(server, inv, registry)
    assert (
        registry.get_sample_value("gridshift_extender_inventory_errors_total", {"kind": "gone"})
        == 1
    )


@pytest.mark.parametrize(
    "garbled",
    [
        pytest.param('{"type": "ADDED", "object": {"metadata": {"na', id="cut-off line"),
        pytest.param('{"type": "ADDED"}', id="event without object"),
        pytest.param("<html>proxy error</html>", id="not JSON"),
    ],
)
def test_run_loop_survives_a_garbled_watch_stream(server: FakeApiServer, garbled: str) -> None:
    registry = CollectorRegistry()
    inv = inventory(server, registry)
    server.watch_sessions.append([{"raw": garbled}])
    relists_then_follows(server, inv, registry)
    errors = registry.get_sample_value("gridshift_extender_inventory_errors_total", {"kind": "api"})
    assert errors is not None
    assert errors >= 1


def test_run_loop_survives_an_unreachable_api_server() -> None:
    with FakeApiServer() as s:
        api = s.api()
    inv = KubeNodeInventory(
        api,
        rules=RULES,
        registry=CollectorRegistry(),
        retry_seconds=0.01,
        request_timeout_seconds=0.5,
    )
    stop = threading.Event()
    t = threading.Thread(target=inv.run, args=(stop,), daemon=True)
    t.start()
    time.sleep(0.3)
    stop.set()
    t.join(timeout=5)
    assert not t.is_alive()
    assert not inv.synced


def test_a_hung_list_is_counted_within_the_configured_timeout(server: FakeApiServer) -> None:
    budget_s = 1.0
    port = int(server.url.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port) as proxy:
        proxy.fault = Fault.HANG
        configuration = kube_client.Configuration()
        configuration.host = proxy.url
        registry = CollectorRegistry()
        settings = Settings(
            extender=ExtenderSettings(gpu_source="none", inventory_request_timeout_seconds=budget_s)
        )
        runtime = build_extender(
            settings,
            clock=FrozenClock(datetime(2026, 3, 2, tzinfo=UTC)),
            registry=registry,
            carbon=None,
            # as `gridshift extender` builds it: urllib3 re-sends a GET once on a read timeout
            kube_api=kube_client.CoreV1Api(kube_api_client(configuration)),
        )
        inv = runtime.inventory
        assert inv is not None
        stop = threading.Event()
        t = threading.Thread(target=inv.run, args=(stop,), daemon=True)

        def errors() -> float:
            value = registry.get_sample_value(
                "gridshift_extender_inventory_errors_total", {"kind": "api"}
            )
            return value or 0.0

        started = time.monotonic()
        t.start()
        try:
            wait_for(lambda: errors() >= 1, timeout=5 * budget_s)
            counted_after_s = time.monotonic() - started
            sent = proxy.connections
        finally:
            stop.set()
            t.join(timeout=5)
    assert not t.is_alive()
    assert not inv.synced
    assert sent == 2  # the LIST and urllib3's one re-send both hung
    assert 0.8 * budget_s <= counted_after_s < budget_s + 0.3
    print(f"hung node LIST counted as an error after {counted_after_s:.2f} s (budget {budget_s} s)")


def test_agent_annotation_patch_reaches_the_inventory(server: FakeApiServer) -> None:
    value = '{"v":1,"w":111.0,"gpus":8,"at":1772452800}'
    KubeNodeAnnotator(server.api()).annotate("gpu-2", key=ANNOTATION_KEY, value=value)
    ((name, content_type, body),) = server.patches
    assert name == "gpu-2"
    assert content_type == "application/strategic-merge-patch+json"
    assert body == {"metadata": {"annotations": {ANNOTATION_KEY: value}}}
    inv = inventory(server)
    inv.relist()
    gpu = inv.facts()["gpu-2"].gpu
    assert gpu is not None
    assert gpu.power_watts == 111.0
