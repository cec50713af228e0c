"""extender.inventory with the real `kubernetes` client against the real API server
(tests/cluster, behind `tests.faultproxy.FaultProxy`, which records requests and injects the
faults): paginated LIST with the server's opaque continue token and resourceVersion, WATCH
events applied (ADDED/MODIFIED/DELETED), the server's BOOKMARK advancing the version, the
next watch resuming from it with bookmarks asked for, an idle watch outliving the request
timeout, 410 Gone (the server's own for a too-old resourceVersion; injected as an ERROR event
or on a LIST continue) -> relist, the run loop recovering from a garbled stream and an
unreachable server, and the agent's node annotation PATCH (strategic merge) read back by the
inventory. A hung API server (`FaultProxy` HANG) costs a LIST at most
`extender.inventory_request_timeout_seconds`, urllib3's re-send included, before it is counted
as an error (wired by `build_extender`). Nodes are cluster-scoped: each test names its own and
looks only at those (other tests' nodes may exist)."""

from __future__ import annotations

import json
import socket
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
from tests.cluster.proxied import ProxiedApi
from tests.faultproxy import Fault

pytestmark = pytest.mark.cluster

RULES = RegionRules(aliases={"eu-west-1": "IE", "eu-central-1": "DE"})
MINE = ("gpu-1", "gpu-2", "gpu-3", "gpu-4", "gpu-5")


@pytest.fixture
def server(api: ProxiedApi) -> ProxiedApi:
    api.gpu_node("gpu-1", "eu-west-1")
    api.gpu_node("gpu-2", "eu-central-1")
    api.gpu_node("gpu-3", "eu-west-1", gpus=4)
    return api


def inventory(
    server: ProxiedApi, registry: CollectorRegistry | None = None, **kwargs
) -> KubeNodeInventory:
    return KubeNodeInventory(
        kube_client.CoreV1Api(server.client()),
        rules=RULES,
        registry=registry or CollectorRegistry(),
        **({"page_size": 2, "watch_timeout_seconds": 3, "retry_seconds": 0.01} | kwargs),
    )


def mine(inv: KubeNodeInventory) -> set[str]:
    return set(inv.facts()) & set(MINE)


def lists(server: ProxiedApi) -> list[dict[str, list[str]]]:
    return [
        r.query
        for r in server.requests
        if r.method == "GET" and r.path == "/api/v1/nodes" and not r.query.get("watch")
    ]


def watches(server: ProxiedApi) -> list[dict[str, list[str]]]:
    return [r.query for r in server.requests if r.path == "/api/v1/nodes" and r.query.get("watch")]


def test_list_pages_and_version(server: ProxiedApi) -> None:
    inv = inventory(server)
    assert not inv.synced
    rv = inv.relist()
    assert int(rv) > 0
    assert inv.synced
    facts = inv.facts()
    assert {n: (facts[n].region, facts[n].gpu_capacity) for n in mine(inv)} == {
        "gpu-1": ("IE", 8),
        "gpu-2": ("DE", 8),
        "gpu-3": ("IE", 4),
    }
    assert facts["gpu-1"].gpu is not None  # the agent annotation
    pages = lists(server)
    assert len(pages) >= 2
    assert all(q.get("limit") == ["2"] for q in pages)
    assert "continue" not in pages[0]
    assert all(q["continue"][0] for q in pages[1:]), "the server's opaque continue token"


def test_watch_applies_events_and_resumes_from_the_bookmark(server: ProxiedApi) -> None:
    registry = CollectorRegistry()
    inv = inventory(server, registry)
    rv = inv.relist()
    before = inv.facts()
    server.gpu_node("gpu-4", "eu-west-1")
    server.plane.core.patch_node(
        "gpu-1", {"metadata": {"labels": {"topology.kubernetes.io/region": "eu-central-1"}}}
    )
    server.plane.delete_node("gpu-2")
    after = inv.watch_once(rv)  # until the server ends the watch (3 s)
    assert int(after) > int(rv)
    assert mine(inv) == {"gpu-1", "gpu-3", "gpu-4"}
    assert inv.facts()["gpu-1"].region == "DE"
    assert {"gpu-1", "gpu-2", "gpu-3"} <= set(before)  # views are immutable snapshots
    (watch_q,) = watches(server)
    assert watch_q["resourceVersion"] == [rv]
    assert watch_q["allowWatchBookmarks"] == ["true"]
    assert watch_q["timeoutSeconds"] == ["3"]
    # kube-apiserver sends a watch's BOOKMARK about once a minute, so a test hands one in
    # (as the server writes it: kind and apiVersion, only metadata.resourceVersion)
    mark = server.plane.get("/api/v1/nodes?limit=1")["metadata"]["resourceVersion"]
    bookmark = {
        "type": "BOOKMARK",
        "object": {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": mark}},
    }
    server.fail_next(
        "GET", "/api/v1/nodes", query_contains="watch=", stream_line=json.dumps(bookmark)
    )
    assert inv.watch_once(after) == mark
    inv.watch_once(mark)
    assert watches(server)[-1]["resourceVersion"] == [mark]
    for kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK"):
        seen = registry.get_sample_value(
            "gridshift_extender_inventory_events_total", {"type": kind}
        )
        assert (seen or 0) >= 1, (kind, seen)


def test_an_idle_watch_outlasts_the_request_timeout(server: ProxiedApi) -> None:
    """Nothing happens for the whole 3 s watch, 15 times the 0.2 s request timeout: the
    watch still ends cleanly when the server ends it."""
    inv = inventory(server, request_timeout_seconds=0.2)
    rv = inv.relist()
    started = time.monotonic()
    assert inv.watch_once(rv) == rv
    assert time.monotonic() - started > 2.5


def test_gone_error_event_raises_expired(server: ProxiedApi) -> None:
    inv = inventory(server)
    inv.relist()
    # the ERROR event kube-apiserver ends a watch with once etcd compacted past it (the
    # server's own 410 for a CarbonAwareScaler watch: tests/cluster/test_kube.py)
    gone = {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": "too old resource version: 1 (200)",
            "reason": "Expired",
            "code": 410,
        },
    }
    server.fail_next("GET", "/api/v1/nodes", query_contains="watch=", stream_line=json.dumps(gone))
    with pytest.raises(ResourceExpired, match="too old resource version"):
        inv.watch_once("1")


def test_expired_continue_token_raises_expired(server: ProxiedApi) -> None:
    """An expired continue token (etcd compacted past it) answers the LIST 410 Expired."""
    server.fail_next("GET", "/api/v1/nodes", 410, query_contains="continue=")
    with pytest.raises(ResourceExpired):
        inventory(server).relist()


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def relists_then_follows(server: ProxiedApi, inv: KubeNodeInventory, registry) -> None:
    """Run `inv` until it has relisted once more and then applied a new watch event."""
    stop = threading.Event()
    t = threading.Thread(target=inv.run, args=(stop,), daemon=True)
    t.start()
    try:
        wait_for(lambda: registry.get_sample_value("gridshift_extender_inventory_lists_total") == 2)
        wait_for(lambda: {"gpu-1", "gpu-2", "gpu-3"} <= mine(inv))
        server.gpu_node("gpu-5", "eu-west-1")
        wait_for(lambda: "gpu-5" in inv.facts())
    finally:
        stop.set()
        inv.stop()
        t.join(timeout=10)
    assert not t.is_alive()


def test_run_loop_relists_after_410_and_keeps_watching(server: ProxiedApi) -> None:
    registry = CollectorRegistry()
    inv = inventory(server, registry)
    # the first watch ends with ERROR 410: the loop relists, state comes back from the list
    server.fail_next("GET", "/api/v1/nodes", 410, query_contains="watch=true")
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
def test_run_loop_survives_a_garbled_watch_stream(server: ProxiedApi, garbled: str) -> None:
    registry = CollectorRegistry()
    inv = inventory(server, registry)
    server.fail_next("GET", "/api/v1/nodes", query_contains="watch=true", stream_line=garbled)
    relists_then_follows(server, inv, registry)
    errors = registry.get_sample_value("gridshift_extender_inventory_errors_total", {"kind": "api"})
    assert errors is not None
    assert errors >= 1


def test_run_loop_survives_an_unreachable_api_server() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    configuration = kube_client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    inv = KubeNodeInventory(
        kube_client.CoreV1Api(kube_client.ApiClient(configuration)),
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


def test_a_hung_list_is_counted_within_the_configured_timeout(server: ProxiedApi) -> None:
    budget_s = 1.0
    proxy = server.proxy
    proxy.fault = Fault.HANG
    connections_before = proxy.connections
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
        sent = proxy.connections - connections_before
    finally:
        stop.set()
        t.join(timeout=5)
        proxy.fault = Fault.PASS
    assert not t.is_alive()
    assert not inv.synced
    assert sent == 2  # the LIST and urllib3's one re-send both hung
    assert 0.8 * budget_s <= counted_after_s < budget_s + 0.3
    print(f"hung node LIST counted as an error after {counted_after_s:.2f} s (budget {budget_s} s)")


def test_agent_annotation_patch_reaches_the_inventory(server: ProxiedApi) -> None:
    value = '{"v":1,"w":111.0,"gpus":8,"at":1772452800}'
    KubeNodeAnnotator(kube_client.CoreV1Api(server.client())).annotate(
        "gpu-2", key=ANNOTATION_KEY, value=value
    )
    (patch,) = [r for r in server.requests if r.method == "PATCH"]
    assert patch.path == "/api/v1/nodes/gpu-2"
    assert patch.headers["Content-Type"] == "application/strategic-merge-patch+json"
    assert patch.body == {"metadata": {"annotations": {ANNOTATION_KEY: value}}}
    node = server.plane.core.read_node("gpu-2")
    assert node.metadata.annotations[ANNOTATION_KEY] == value
    assert "node.alpha.kubernetes.io/ttl" in node.metadata.annotations, "merged, not replaced"
    inv = inventory(server)
    inv.relist()
    gpu = inv.facts()["gpu-2"].gpu
    assert gpu is not None
    assert gpu.power_watts == 111.0
