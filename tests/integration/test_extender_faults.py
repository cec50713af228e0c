"""Fault injection for the extender: the API-server stand-in and the carbon API behind
`tests.faultproxy.FaultProxy`, the real wiring (`build_extender`), uvicorn on 127.0.0.1.

Aspects, for each fault (latency, reset, 5xx, 429 storm, truncated body, hang) on both
dependencies at once: the webhook answers every filter and prioritize call 200 within budget
(p99 under 1 s) from its snapshot; once the carbon it holds has run out every node gets the
neutral score and a pod's carbon cap fails open (nothing rejected on unknown data), with
`gridshift_extender_carbon_fresh` 0; the last known nodes are kept; the snapshot job counts
the failures (`gridshift_extender_source_errors_total`, inventory errors) and logs them.
When the dependencies return (the provider with data for the present), carbon is fresh and
scores again and the inventory relists, by themselves.
Rows go to `tests/artifacts/faults_extender.md` (the scaler's: `faults_scaler.md`).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kubernetes import client as kube_client
from prometheus_client import CollectorRegistry

from config.settings import ExtenderSettings, Settings
from config.wiring import ExtenderRuntime, build_extender, kube_api_client
from extender.snapshot import ExtenderSnapshot
from forecasts.platform.http import CircuitBreaker, HttpSource, RetryPolicy
from forecasts.platform.serving import build_server
from forecasts.sources.carbon.uk import UkCarbonIntensitySource
from forecasts.time import FrozenClock
from tests.apiserver import NODES, FakeApiServer, make_node
from tests.faultproxy import Fault, FaultProxy, write_fault_table
from tests.integration.carbon_replay import uk_replay_server
from tests.integration.prom_fixture import free_port
from tests.unit.carbon.conftest import REGIONS, ReplayServer, Reply, fixture_bytes
from tests.unit.carbon.conftest import T0 as CARBON_T0

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROWS: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _write_table() -> Iterator[None]:
    yield
    write_fault_table("faults_extender.md", ROWS)


POD = json.loads((ROOT / "tests" / "fixtures" / "extender" / "pod.json").read_text())
CAPPED_POD = json.loads(json.dumps(POD))
CAPPED_POD["metadata"]["annotations"]["gridshift.io/max-gco2-per-kwh"] = "1"
NAMES = [f"gb-{i}" for i in range(3)] + [f"london-{i}" for i in range(3)]
REQUESTS = 200
SHIFT = timedelta(hours=50)  # the fault moves the test clock this far past the recording


def shifted(recorded: bytes, by: timedelta) -> bytes:
    """The recorded UK answer with every `2025-01-20T12:00Z` instant moved by `by`."""

    def move(m: re.Match[bytes]) -> bytes:
        at = datetime.strptime(m.group(0).decode(), "%Y-%m-%dT%H:%MZ").replace(tzinfo=UTC)
        return (at + by).strftime("%Y-%m-%dT%H:%MZ").encode()

    return re.sub(rb"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}Z", move, recorded)


FAULTS = [Fault.LATENCY, Fault.RESET, Fault.HTTP_5XX, Fault.STORM_429, Fault.TRUNCATED, Fault.HANG]


@pytest.fixture
def replay() -> Iterator[ReplayServer]:
    with uk_replay_server() as server:
        yield server


def current(runtime: ExtenderRuntime) -> ExtenderSnapshot:
    snap = runtime.holder.current()
    assert snap is not None
    return snap


def _wait(condition, what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[max(0, round(0.99 * len(ordered)) - 1)]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_extender_answers_in_budget_with_every_dependency_faulty(
    fault: Fault, replay: ReplayServer
) -> None:
    api = FakeApiServer()
    for n in NAMES:
        api.put_object(NODES, make_node(n, "GB" if n.startswith("gb") else "london"))
    host, port = replay.httpd.server_address[:2]
    with (
        api,
        FaultProxy("127.0.0.1", int(api.url.rsplit(":", 1)[1])) as kube_proxy,
        FaultProxy(str(host), int(port)) as carbon_proxy,
    ):
        clock = FrozenClock(CARBON_T0 + timedelta(minutes=10))
        configuration = kube_client.Configuration()
        configuration.host = kube_proxy.url
        kube = kube_client.CoreV1Api(kube_api_client(configuration))
        http_client = httpx.Client(base_url=carbon_proxy.url, timeout=httpx.Timeout(0.3))
        carbon = UkCarbonIntensitySource(
            HttpSource(
                name="uk",
                client=http_client,
                clock=clock,
                retry=RetryPolicy(attempts=2),
                breaker=CircuitBreaker(failure_threshold=2, reset_timeout_seconds=0.2),
                cache_ttl_seconds=0.0,
                sleep=lambda _s: None,
            ),
            regions=REGIONS,
        )
        settings = Settings(
            extender=ExtenderSettings(
                refresh_interval_seconds=0.1,
                carbon_refresh_interval_seconds=60,
                gpu_source="none",
                watch_timeout_seconds=2,
            )
        )
        registry = CollectorRegistry()

        def metric(name: str, **labels: str) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        runtime = build_extender(
            settings, clock=clock, registry=registry, carbon=carbon, kube_api=kube
        )
        listen_port = free_port()
        server = build_server(runtime.app, listen=f"127.0.0.1:{listen_port}", log_level="warning")
        thread = threading.Thread(target=server.run, daemon=True)
        runtime.start()
        thread.start()
        base = f"http://127.0.0.1:{listen_port}/scheduler"
        body = {"Pod": POD, "Nodes": None, "NodeNames": NAMES}
        capped = {"Pod": CAPPED_POD, "Nodes": None, "NodeNames": NAMES}
        neutral = settings.extender.neutral_score
        try:
            _wait(lambda: server.started, "the server")
            _wait(
                lambda: (
                    (s := runtime.holder.current()) is not None
                    and len(s.nodes) == len(NAMES)
                    and {"GB", "london"} <= set(s.carbon)
                ),
                "a healthy snapshot",
            )
            with httpx.Client(timeout=5) as web:
                healthy = web.post(f"{base}/prioritize", json=body).json()
                assert {h["Score"] for h in healthy} != {neutral}  # carbon really scores
                fresh = web.post(f"{base}/filter", json=capped).json()
                assert fresh["NodeNames"] == [], "with fresh carbon a 1 g/kWh cap rejects all"

                lists = metric("gridshift_extender_inventory_lists_total")
                kube_proxy.fault = fault
                carbon_proxy.fault = fault
                # the forecast held in the snapshot runs out: carbon is now unknown
                clock.advance(SHIFT)
                _wait(lambda: "GB" in current(runtime).carbon_errors, "the failure")
                latencies = []
                for i in range(REQUESTS):
                    verb = "prioritize" if i % 2 == 0 else "filter"
                    started = time.monotonic()
                    r = web.post(f"{base}/{verb}", json=body if i % 2 == 0 else capped)
                    latencies.append(time.monotonic() - started)
                    assert r.status_code == 200
                    if verb == "prioritize":
                        assert {h["Score"] for h in r.json()} == {neutral}
                    else:  # no fresh carbon: the cap cannot be checked, nothing is rejected
                        assert r.json()["NodeNames"] == NAMES
                worst_p99 = p99(latencies)
                assert worst_p99 < 1.0
                assert len(current(runtime).nodes) == len(NAMES), "last known nodes kept"
                errors = metric("gridshift_extender_source_errors_total", source="uk", region="GB")
                assert errors >= 1
                assert metric("gridshift_extender_carbon_fresh", region="GB") == 0.0
                # the nodes' GPU energy is still known (and equal): "all_equal", not "no_data"
                neutral_calls = sum(
                    metric("gridshift_extender_neutral_scores_total", reason=reason)
                    for reason in ("no_data", "all_equal")
                )
                assert neutral_calls >= REQUESTS // 2
                inventory_errors = metric("gridshift_extender_inventory_errors_total", kind="api")

                # the provider comes back with data for the (test clock's) present
                for prefix, case in (
                    ("/intensity/", "national_fw48h"),
                    ("/regional/", "regional_object"),
                ):
                    answer = shifted(fixture_bytes("uk", case), SHIFT)
                    replay.route(prefix, Reply(body=answer))
                kube_proxy.fault = Fault.PASS
                carbon_proxy.fault = Fault.PASS
                cleared = time.monotonic()
                time.sleep(0.3)  # the breaker half-opens
                clock.advance(timedelta(minutes=2))  # the next carbon fetch is due
                _wait(
                    lambda: metric("gridshift_extender_carbon_fresh", region="GB") == 1.0,
                    "fresh carbon again",
                )
                carbon_back_s = time.monotonic() - cleared
                scores = web.post(f"{base}/prioritize", json=body).json()
                assert {h["Score"] for h in scores} != {neutral}, "carbon scores again"
                assert web.post(f"{base}/filter", json=capped).json()["NodeNames"] == []
                _wait(
                    lambda: metric("gridshift_extender_inventory_lists_total") > lists,
                    "the inventory listing again",
                )
                inventory_back_s = time.monotonic() - cleared
                assert len(current(runtime).nodes) == len(NAMES)
        finally:
            server.should_exit = True
            runtime.stop()
            thread.join(10)
            http_client.close()
    ROWS.append(
        f"| {fault.value} (API server + carbon API together) | extender | "
        f"{REQUESTS}/{REQUESTS} filter+prioritize answered 200, p99 {worst_p99 * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms; once carbon expired every score neutral "
        f"({neutral}, `carbon_fresh` 0) and the 1 g/kWh cap failed open; last known nodes "
        f"kept; {errors:.0f} carbon fetch errors, {inventory_errors:.0f} inventory API errors "
        f"counted; fresh carbon scoring again {carbon_back_s:.1f} s and nodes relisted "
        f"{inventory_back_s:.1f} s after the fault cleared |\n"
    )
