"""extender.server over the ASGI app (Starlette TestClient, no sockets): the wire format
kube-scheduler uses (Go field names in both nodeCacheCapable modes, older lowercase payloads,
mode detection by the non-null field, carbon rejections in FailedAndUnresolvableNodes, each
node once, integer scores), failure semantics (4xx + Error for malformed/empty/oversized
bodies, 500 + Error on internal errors, 200 only on success), /regions/rank, health and
readiness, and the metrics (latency histogram, decisions, neutral reasons, freshness)."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from prometheus_client import CollectorRegistry

from extender.core.nodes import RegionRules, node_facts
from extender.core.scoring import ScoringPolicy
from extender.server import create_app
from extender.snapshot import ExtenderSnapshot, SnapshotHolder
from forecasts.platform.serving import parse_listen
from forecasts.time import FrozenClock
from tests.fakes import hourly_series

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "extender"
POD: dict[str, Any] = json.loads((FIXTURES / "pod.json").read_text())
NODE: dict[str, Any] = json.loads((FIXTURES / "node.json").read_text())
RULES = RegionRules(aliases={"eu-west-1": "IE", "eu-central-1": "DE", "eu-west-3": "FR"})
REGION_OF = {"gpu-ie-1": "eu-west-1", "gpu-de-1": "eu-central-1", "gpu-fr-1": "eu-west-3"}


def node(name: str, cloud_region: str) -> dict[str, Any]:
    n = copy.deepcopy(NODE)
    n["metadata"]["name"] = name
    n["metadata"]["labels"]["kubernetes.io/hostname"] = name
    n["metadata"]["labels"]["topology.kubernetes.io/region"] = cloud_region
    return n


NODES = [node(n, r) for n, r in REGION_OF.items()]


def snapshot() -> ExtenderSnapshot:
    carbon = {
        "IE": hourly_series("IE", NOW - timedelta(minutes=30), [300, 280, 250, 260]),
        "DE": hourly_series("DE", NOW - timedelta(minutes=30), [550, 600, 620, 640]),
        "FR": hourly_series("FR", NOW - timedelta(minutes=30), [50, 55, 60, 65]),
    }
    nodes = {f.name: f for f in (node_facts(n, rules=RULES) for n in NODES)}
    return ExtenderSnapshot(taken_at=NOW, nodes=nodes, carbon=carbon, nodes_synced=True)


class AsgiClient:
    """Calls the ASGI app in-process through httpx's ASGI transport (no sockets)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)


class Harness:
    def __init__(
        self,
        *,
        snap: ExtenderSnapshot | None,
        max_body_bytes: int = 1 << 20,
        policy: ScoringPolicy | None = None,
    ) -> None:
        self.registry = CollectorRegistry()
        self.holder = SnapshotHolder(snap)
        self.clock = FrozenClock(NOW)
        self.app = create_app(
            self.holder,
            clock=self.clock,
            policy=policy or ScoringPolicy(),
            rules=RULES,
            registry=self.registry,
            max_body_bytes=max_body_bytes,
        )
        self.client = AsgiClient(self.app)

    def post(self, verb: str, body: Any) -> Any:
        data = body if isinstance(body, bytes) else msgspec.json.encode(body)
        return self.client.post(
            f"/scheduler/{verb}", content=data, headers={"Content-Type": "application/json"}
        )

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        return self.registry.get_sample_value(name, labels or {})


@pytest.fixture
def h() -> Harness:
    return Harness(snap=snapshot())


def cache_args(names: list[str], pod: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"Pod": pod if pod is not None else POD, "Nodes": None, "NodeNames": names}


def full_args(nodes: list[dict[str, Any]], pod: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "Pod": pod if pod is not None else POD,
        "Nodes": {"metadata": {}, "items": nodes},
        "NodeNames": None,
    }


# ---------------------------------------------------------------------------- filter
def test_filter_cache_mode_reply_as_kube_scheduler_reads_it(h: Harness) -> None:
    # The pod caps at 400 g/kWh over its 3 h: DE averages 620 -> rejected, unresolvable.
    r = h.post("filter", cache_args(["gpu-ie-1", "gpu-de-1", "gpu-fr-1", "unknown-node"]))
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"Nodes", "NodeNames", "FailedNodes", "FailedAndUnresolvableNodes", "Error"}
    assert body["Nodes"] is None
    assert body["NodeNames"] == ["gpu-ie-1", "gpu-fr-1", "unknown-node"]
    assert body["FailedNodes"] == {}
    assert list(body["FailedAndUnresolvableNodes"]) == ["gpu-de-1"]
    assert "above cap 400" in body["FailedAndUnresolvableNodes"]["gpu-de-1"]
    assert body["Error"] == ""
    assert h.sample("gridshift_extender_filter_nodes_total", {"result": "rejected"}) == 1
    assert h.sample("gridshift_extender_decisions_total", {"verb": "filter", "outcome": "capped"})


@pytest.mark.parametrize("mode", ["cache", "full"])
def test_region_policy_reaches_the_filter_with_pod_overrides(mode: str) -> None:
    """Cluster-wide avoid (DE) applies to a pod without annotations; a pod's
    gridshift.io/avoid-regions (a cloud name, resolved) replaces it; avoiding every node
    fails open."""
    h = Harness(snap=snapshot(), policy=ScoringPolicy(avoid_regions=frozenset({"DE"})))
    plain = copy.deepcopy(POD)
    plain["metadata"]["annotations"] = {}
    own = copy.deepcopy(plain)
    own["metadata"]["annotations"] = {"gridshift.io/avoid-regions": "eu-west-3"}
    names = ["gpu-ie-1", "gpu-de-1", "gpu-fr-1"]

    def passed(pod: dict[str, Any], only: list[str] = names) -> list[str]:
        args = (
            cache_args(only, pod)
            if mode == "cache"
            else full_args([n for n in NODES if n["metadata"]["name"] in only], pod)
        )
        body = h.post("filter", args).json()
        if mode == "cache":
            return list(body["NodeNames"])
        return [n["metadata"]["name"] for n in body["Nodes"]["items"]]

    assert passed(plain) == ["gpu-ie-1", "gpu-fr-1"]
    assert passed(own) == ["gpu-ie-1", "gpu-de-1"]
    assert passed(plain, ["gpu-de-1"]) == ["gpu-de-1"], "fails open"


def test_filter_full_mode_echoes_surviving_node_objects_unchanged(h: Harness) -> None:
    r = h.post("filter", full_args(NODES))
    assert r.status_code == 200
    body = r.json()
    assert body["NodeNames"] is None
    assert body["Nodes"]["items"] == [NODES[0], NODES[2]]
    assert list(body["FailedAndUnresolvableNodes"]) == ["gpu-de-1"]


def test_filter_full_mode_without_a_cap_passes_and_echoes_everything(h: Harness) -> None:
    pod = copy.deepcopy(POD)
    del pod["metadata"]["annotations"]["gridshift.io/max-gco2-per-kwh"]
    r = h.post("filter", full_args([*NODES, NODES[0]], pod))
    body = r.json()
    assert body["Nodes"]["items"] == NODES  # the duplicate is accounted for once
    assert body["FailedAndUnresolvableNodes"] == {}


def test_filter_accepts_older_lowercase_payloads(h: Harness) -> None:
    r = h.post("filter", {"pod": POD, "nodes": None, "nodenames": ["gpu-de-1", "gpu-fr-1"]})
    assert r.status_code == 200
    assert r.json()["NodeNames"] == ["gpu-fr-1"]


def test_filter_accepts_any_key_casing_as_go_does(h: Harness) -> None:
    r = h.post("filter", {"POD": POD, "nodeNames": ["gpu-de-1", "gpu-fr-1"]})
    assert r.status_code == 200
    assert r.json()["NodeNames"] == ["gpu-fr-1"]
    r = h.post("prioritize", {"pOd": POD, "NODES": {"items": [NODES[2], NODES[1]]}})
    assert [e["Host"] for e in r.json()] == ["gpu-fr-1", "gpu-de-1"]


def test_full_mode_echo_is_byte_for_byte(h: Harness) -> None:
    odd = copy.deepcopy(NODES[2])
    odd["metadata"]["labels"]["unicode"] = "zoné-ß"
    raw = json.dumps(odd, indent=1, ensure_ascii=False).encode()  # not how msgspec would write it
    body = b'{"Pod": {}, "Nodes": {"metadata": {}, "items": [' + raw + b']}, "NodeNames": null}'
    r = h.post("filter", body)
    assert r.status_code == 200
    assert raw in r.content
    assert r.json()["Nodes"]["items"] == [odd]


def test_filter_without_data_never_rejects(h: Harness) -> None:
    empty = Harness(snap=None)
    r = empty.post("filter", cache_args(["gpu-ie-1", "gpu-de-1"]))
    assert r.status_code == 200
    assert r.json()["NodeNames"] == ["gpu-ie-1", "gpu-de-1"]
    assert r.json()["FailedAndUnresolvableNodes"] == {}


def test_filter_accounts_for_duplicate_names_once(h: Harness) -> None:
    r = h.post("filter", cache_args(["gpu-fr-1", "gpu-fr-1", "gpu-de-1"]))
    body = r.json()
    assert body["NodeNames"] == ["gpu-fr-1"]
    assert list(body["FailedAndUnresolvableNodes"]) == ["gpu-de-1"]


# ---------------------------------------------------------------------------- prioritize
def test_prioritize_cache_mode_integer_scores_best_gets_10(h: Harness) -> None:
    pod = copy.deepcopy(POD)
    del pod["metadata"]["annotations"]["gridshift.io/expected-duration"]
    r = h.post("prioritize", cache_args(["gpu-ie-1", "gpu-de-1", "gpu-fr-1"], pod))
    assert r.status_code == 200
    # now: IE 300, DE 550, FR 50; the GPU energy is equal on all three copies of the node,
    # so it does not dilute the carbon spread.
    assert r.json() == [
        {"Host": "gpu-ie-1", "Score": 5},
        {"Host": "gpu-de-1", "Score": 0},
        {"Host": "gpu-fr-1", "Score": 10},
    ]
    assert b'"Score":5' in r.content  # an int, not 5.0
    assert h.sample("gridshift_extender_request_duration_seconds_count", {"verb": "prioritize"})


def test_prioritize_full_mode_uses_the_request_labels(h: Harness) -> None:
    nodes = [node("x", "eu-west-3"), node("y", "eu-central-1")]
    r = h.post("prioritize", full_args(nodes))
    assert r.json() == [{"Host": "x", "Score": 10}, {"Host": "y", "Score": 0}]


def test_full_mode_takes_gpu_energy_from_the_inventory_when_the_request_has_none() -> None:
    from extender.core.energy import ANNOTATION_KEY, GpuEnergy
    from extender.core.scoring import NodeFacts

    lean = GpuEnergy(100.0, None, None, 8, NOW, 300.0)
    hungry = GpuEnergy(400.0, None, None, 8, NOW, 300.0)
    snap = ExtenderSnapshot(
        taken_at=NOW,
        nodes={"x": NodeFacts("x", gpu=hungry), "y": NodeFacts("y", gpu=lean)},
    )
    h = Harness(snap=snap)
    nodes = [node("x", "eu-west-3"), node("y", "eu-west-3")]
    for n in nodes:
        del n["metadata"]["annotations"][ANNOTATION_KEY]
    r = h.post("prioritize", full_args(nodes))
    assert r.json() == [{"Host": "x", "Score": 0}, {"Host": "y", "Score": 10}]


def test_prioritize_neutral_without_data_and_metric_says_so() -> None:
    h = Harness(snap=None)
    r = h.post("prioritize", cache_args(["a", "b"]))
    assert r.json() == [{"Host": "a", "Score": 5}, {"Host": "b", "Score": 5}]
    assert h.sample("gridshift_extender_neutral_scores_total", {"reason": "no_data"}) == 1


def test_prioritize_opt_out(h: Harness) -> None:
    pod = copy.deepcopy(POD)
    pod["metadata"]["annotations"] = {"gridshift.io/opt-out": "true"}
    r = h.post("prioritize", cache_args(["gpu-ie-1", "gpu-fr-1"], pod))
    assert {e["Score"] for e in r.json()} == {5}
    assert h.sample("gridshift_extender_neutral_scores_total", {"reason": "opt_out"}) == 1


def test_ignored_annotations_are_counted(h: Harness) -> None:
    pod = copy.deepcopy(POD)
    pod["metadata"]["annotations"] = {"gridshift.io/max-gco2-per-kwh": "lots"}
    assert h.post("filter", cache_args(["gpu-de-1"], pod)).json()["NodeNames"] == ["gpu-de-1"]
    assert h.sample("gridshift_extender_pod_annotation_problems_total") == 1


# ---------------------------------------------------------------------------- failures
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(b"", "empty request body", id="empty"),
        pytest.param(b"   \n", "empty request body", id="whitespace"),
        pytest.param(b"{not json", "not valid JSON", id="garbage"),
        pytest.param(b"[1, 2]", "must be a JSON object", id="array"),
        pytest.param(b'{"Pod": {}}', "neither Nodes nor NodeNames", id="both missing"),
        pytest.param(
            b'{"Pod": null, "Nodes": null, "NodeNames": null}', "neither Nodes", id="both null"
        ),
        pytest.param(
            b'{"NodeNames": "gpu-a"}', "NodeNames: Expected `array | null`, got `str`", id="str"
        ),
        pytest.param(b'{"NodeNames": [1]}', "NodeNames[0]: Expected `str`, got `int`", id="int"),
        pytest.param(
            b'{"Pod": {"metadata": {"annotations": {"a": 1}}}, "NodeNames": []}',
            "Pod.metadata.annotations[...]: Expected `str`, got `int`",
            id="annotation",
        ),
        pytest.param(
            b'{"Nodes": {"items": [{"metadata": {"name": "a"}}, {"metadata": {}}]}}',
            "Nodes.items[1].metadata.name",
            id="nameless node",
        ),
    ],
)
@pytest.mark.parametrize("verb", ["filter", "prioritize"])
def test_malformed_requests_get_400_with_error(h: Harness, verb, body, fragment) -> None:
    r = h.post(verb, body)
    assert r.status_code == 400
    assert fragment in r.json()["Error"]
    assert h.sample("gridshift_extender_requests_total", {"verb": verb, "code": "400"}) == 1
    # still serving
    assert h.post(verb, cache_args(["gpu-fr-1"])).status_code == 200


def test_oversized_bodies_get_413_by_declared_and_by_streamed_size() -> None:
    h = Harness(snap=snapshot(), max_body_bytes=10_000)
    big = msgspec.json.encode(cache_args([f"node-{i:05d}" for i in range(2000)]))
    r = h.post("filter", big)
    assert r.status_code == 413
    assert "exceeds the 10000-byte limit" in r.json()["Error"]

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    r = h.client.post("/scheduler/prioritize", content=chunks())
    assert r.status_code == 413
    assert h.post("prioritize", cache_args(["gpu-fr-1"])).status_code == 200


def test_internal_error_is_500_with_error_and_the_server_keeps_going(h: Harness) -> None:
    class Broken:
        def now(self) -> datetime:
            raise RuntimeError("clock on fire")

    broken = create_app(
        h.holder, clock=Broken(), policy=ScoringPolicy(), rules=RULES, registry=CollectorRegistry()
    )
    client = AsgiClient(broken)
    for verb in ("filter", "prioritize"):
        r = client.post(f"/scheduler/{verb}", content=msgspec.json.encode(cache_args(["a"])))
        assert r.status_code == 500
        assert "clock on fire" in r.json()["Error"]
    assert client.get("/healthz").status_code == 200


def test_wrong_method_is_405(h: Harness) -> None:
    assert h.client.get("/scheduler/filter").status_code == 405


# ---------------------------------------------------------------------------- side endpoints
def test_regions_rank(h: Harness) -> None:
    r = h.client.get("/regions/rank", params={"duration": "2h"})
    assert r.status_code == 200
    body = r.json()
    assert [x["region"] for x in body["regions"]] == ["FR", "IE", "DE"]
    fr = body["regions"][0]
    assert fr["rank"] == 1
    assert fr["intensity"] == pytest.approx((50 * 0.5 + 55 + 60 * 0.5) / 2)
    assert fr["unit"] == "gCO2eq/kWh"
    assert fr["status"] == "fresh"
    assert body["duration_seconds"] == 7200
    later = h.client.get(
        "/regions/rank", params={"duration": "1h", "start": "2026-03-02T13:30:00Z"}
    ).json()
    assert later["start"] == "2026-03-02T13:30:00+00:00"
    assert later["regions"][1]["intensity"] == pytest.approx(250)


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        pytest.param({"duration": "soon"}, "duration:", id="bad duration"),
        pytest.param({"duration": "0s"}, "between 0 and 30d", id="zero"),
        pytest.param({"start": "tomorrow"}, "start:", id="bad start"),
        pytest.param({"start": "2026-03-02T13:30:00"}, "start:", id="naive start"),
    ],
)
def test_regions_rank_bad_params(h: Harness, params, fragment) -> None:
    r = h.client.get("/regions/rank", params=params)
    assert r.status_code == 400
    assert fragment in r.json()["error"]


def test_health_readiness_and_index() -> None:
    h = Harness(snap=None)
    assert h.client.get("/healthz").json() == {"status": "ok"}
    assert h.client.get("/readyz").status_code == 503
    h.holder.publish(snapshot())
    assert h.client.get("/readyz").json() == {
        "status": "ready",
        "nodes_synced": True,
        "regions": ["DE", "FR", "IE"],
    }
    assert h.sample("gridshift_extender_ready") == 1
    assert "POST /scheduler/filter" in h.client.get("/").json()["endpoints"]


@pytest.mark.parametrize(
    ("synced", "pending", "reason"),
    [
        pytest.param(False, frozenset(), "node inventory has not listed", id="nodes not listed"),
        pytest.param(
            True, frozenset({"FR", "DE"}), "carbon not fetched yet for DE, FR", id="carbon not in"
        ),
        pytest.param(False, frozenset({"FR"}), "node inventory", id="neither"),
    ],
)
def test_not_ready_until_nodes_and_carbon_are_both_in(synced, pending, reason) -> None:
    """Before both inputs are in every node would score neutral and caps would pass: the
    Service must not route kube-scheduler here yet (issue: a 300 g/kWh cap bound to 400)."""
    base = snapshot()
    h = Harness(
        snap=ExtenderSnapshot(
            taken_at=NOW,
            nodes=base.nodes,
            carbon=base.carbon,
            nodes_synced=synced,
            carbon_pending=pending,
        )
    )
    r = h.client.get("/readyz")
    assert r.status_code == 503
    assert reason in r.json()["reason"]
    assert h.sample("gridshift_extender_ready") == 0


def test_metrics_endpoint_reports_freshness(h: Harness) -> None:
    h.post("prioritize", cache_args(["gpu-fr-1"]))
    h.clock.advance(timedelta(hours=3))
    text = h.client.get("/metrics").text
    assert 'gridshift_extender_request_duration_seconds_bucket{le="0.01",verb="prioritize"}' in text
    assert h.sample("gridshift_extender_snapshot_age_seconds") == 3 * 3600
    assert h.sample("gridshift_extender_carbon_fresh", {"region": "FR"}) == 0
    assert h.sample(
        "gridshift_extender_carbon_age_seconds", {"region": "FR", "provider": "fake"}
    ) == pytest.approx(3 * 3600 + 1800)
    assert h.sample("gridshift_extender_nodes") == 3


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        pytest.param("127.0.0.1:8888", ("127.0.0.1", 8888), id="v4"),
        pytest.param("[::]:8443", ("::", 8443), id="v6"),
        pytest.param("0.0.0.0:0", ("0.0.0.0", 0), id="any port"),
    ],
)
def test_parse_listen(listen, expected) -> None:
    assert parse_listen(listen) == expected


@pytest.mark.parametrize("listen", ["8888", ":8888", "host:http", "host:70000"])
def test_parse_listen_rejects(listen) -> None:
    with pytest.raises(ValueError, match="listen"):
        parse_listen(listen)


# ---------------------------------------------------------------------------- hostile input
def _gpu_pod(quantity: Any) -> dict[str, Any]:
    limits = {"nvidia.com/gpu": quantity}
    return {"metadata": {"name": "p"}, "spec": {"containers": [{"resources": {"limits": limits}}]}}


def _gpu_node(quantity: Any) -> dict[str, Any]:
    return {"metadata": {"name": "a"}, "status": {"allocatable": {"nvidia.com/gpu": quantity}}}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        pytest.param(cache_args(["a"], _gpu_pod("²")), "not a Kubernetes quantity", id="pod ²"),
        pytest.param(cache_args(["a"], _gpu_pod("9" * 5000)), "5000 digits", id="pod 5000 digits"),
        pytest.param(
            b'{"Pod":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
            "nested too deeply",
            id="arrays nested 1e5 deep",
        ),
        pytest.param(
            b'{"NodeNames":["a"],"Pod":{"metadata":{"annotations":'
            + b'{"a":' * 100_000
            + b"1"
            + b"}" * 100_000
            + b"}}}",
            "nested too deeply",
            id="objects nested 1e5 deep",
        ),
    ],
)
@pytest.mark.parametrize("verb", ["filter", "prioritize"])
def test_hostile_input_is_400_json_and_counted(h: Harness, verb, body, fragment) -> None:
    r = h.post(verb, body)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["Error"]
    assert h.sample("gridshift_extender_requests_total", {"verb": verb, "code": "400"}) == 1


@pytest.mark.parametrize("quantity", ["²", "9" * 5000], ids=["superscript two", "5000 digits"])
def test_hostile_node_quantity_is_400_when_prioritizing_a_gpu_pod(h: Harness, quantity) -> None:
    r = h.post("prioritize", full_args([_gpu_node(quantity)], _gpu_pod("1")))
    assert r.status_code == 400
    assert r.json()["Error"].startswith("Nodes.items[0].status: nvidia.com/gpu")


@pytest.mark.parametrize(
    "start",
    [
        pytest.param("0001-01-01T00:00:00+14:00", id="before year 1 in UTC"),
        pytest.param("9999-12-31T23:59:59-14:00", id="after year 9999 in UTC"),
        pytest.param("0001-01-01T00:00:00Z", id="two thousand years ago"),
    ],
)
def test_regions_rank_out_of_range_start_is_400(h: Harness, start) -> None:
    r = h.client.get("/regions/rank", params={"start": start, "duration": "30d"})
    assert r.status_code == 400
    assert r.json()["error"].startswith("start:")
    assert h.sample("gridshift_extender_requests_total", {"verb": "rank", "code": "400"}) == 1


def test_every_response_is_counted_by_code_5xx_included() -> None:
    class BrokenHolder:
        def current(self) -> None:
            raise RuntimeError("bug")

    registry = CollectorRegistry()
    app = create_app(
        BrokenHolder(),  # type: ignore[arg-type]
        clock=FrozenClock(NOW),
        policy=ScoringPolicy(),
        rules=RULES,
        registry=registry,
    )
    client = AsgiClient(app)
    r = client.get("/readyz")  # the handler does not catch: the exception escapes it
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"Error": "internal error: RuntimeError"}
    assert client.get("/nowhere").status_code == 404
    assert client.get("/scheduler/filter").status_code == 405
    sample = registry.get_sample_value
    assert sample("gridshift_extender_requests_total", {"verb": "readyz", "code": "500"}) == 1
    assert sample("gridshift_extender_requests_total", {"verb": "other", "code": "404"}) == 1
    assert sample("gridshift_extender_requests_total", {"verb": "filter", "code": "405"}) == 1
