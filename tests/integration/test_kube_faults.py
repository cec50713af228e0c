"""Fault injection on the scaler's Kubernetes side: `tests.faultproxy.FaultProxy` between
the REAL `kubernetes` client of `build_kube_runtime` (CR watch, Lease leader election,
HPA actuation, status writes) and the API-server stand-in `tests.apiserver.FakeApiServer`.

For each fault (latency past the client timeout, connection reset, 5xx, a 429 storm, a
truncated body, a hang), with two replicas sharing the API server:
- no thread stalls: election rounds keep coming, none longer than the renew deadline (the
  client timeouts bound every call), and a sync round stays within its timeouts;
- the leader that cannot renew stops acting by its renew deadline (before the Lease
  expires), so the replicas never both act, and nothing patches the HPA below its floor;
- `gridshift_kube_leader` drops to 0, `gridshift_kube_api_errors_total{operation="lease"}`
  counts the failures, a WARNING says the leadership was lost;
- when the fault clears, one replica leads again by itself and applies the decision held up
  during the fault; when that leader goes away, the other takes over and actuates.
A second test cuts only the leader's own path: the other replica takes over once the Lease
expires, and the cut-off one has stopped acting before that. A third puts the proxy between
the External Metrics API's delegated TokenReview/SubjectAccessReview and the API server:
a request with a token not yet reviewed fails fast (500, within the review timeout), one
reviewed before the fault is still served from the review caches, and fresh tokens are
accepted again once the fault clears. Last, a CR watch that receives a line that is not JSON
counts an error and relists instead of losing its thread, and the tick, which reads every
target's actual replicas from the API server, stays within its timeouts under each fault,
keeps every decision, shows actual replicas as unknown, and reads them again afterwards.
Outcomes go to `tests/artifacts/faults_kube.md` (the README's RELIABILITY table).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from config.settings import KubeSettings
from config.wiring import build_kube_runtime, kube_api_client
from forecasts.sources.clock import SystemClock
from forecasts.time import FrozenClock
from scaler.apiauth import AuthenticationConfig, Authenticator, Authorizer
from scaler.core.policy import PolicyParams
from scaler.kube import (
    DelegatedAccessReviewer,
    DelegatedTokenReviewer,
    KubeReplicaReader,
    KubeRuntime,
    ScalerResourceCache,
    ScalerResourceWatcher,
)
from scaler.loop import ScalerLoop
from scaler.metrics_api import ApiRequest, ExternalMetricsApi, MetricsApiServer
from scaler.snapshot import Mode, Snapshot, SnapshotHolder, WorkloadStatus
from tests.apiserver import FakeApiServer
from tests.cluster.test_kube import T0, cr, workload
from tests.fakes import FakeDailyCarbonSource, FakeLoadSource
from tests.faultproxy import Fault, FaultProxy, write_fault_table
from tests.snapshots import TAKEN_AT, sample_holder

pytestmark = pytest.mark.integration

# the stand-in's namespace "shop" (tests/cluster/test_kube.py runs these paths per namespace)
CRS = "/apis/gridshift.io/v1alpha1/namespaces/shop/carbonawarescalers"
HPAS = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers"
DEPLOYS = "/apis/apps/v1/namespaces/shop/deployments"


def seed_targets(api: FakeApiServer) -> None:
    """The HPA `web` (minReplicas 1, maxReplicas 10) over the Deployment `web`."""
    api.put_object(
        HPAS,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {
                "minReplicas": 1,
                "maxReplicas": 10,
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            },
        },
    )


def put_deployment(api: FakeApiServer, name: str, *, replicas: int) -> None:
    """A Deployment whose controller has caught up (status.replicas == spec.replicas)."""
    api.put_object(
        DEPLOYS,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
            "status": {"replicas": replicas},
        },
    )


FAULTS = [Fault.LATENCY, Fault.RESET, Fault.HTTP_5XX, Fault.STORM_429, Fault.TRUNCATED, Fault.HANG]
ROWS: list[str] = []
LEASE_S = 2
RENEW_S = 1.0
TIMEOUT_S = 0.5  # per call; Lease calls use min(this, RENEW_S / 4)
FAULT_S = 2.5  # longer than the Lease: it expires in everyone's view


@pytest.fixture(scope="module", autouse=True)
def _write_table() -> Iterator[None]:
    yield
    write_fault_table("faults_kube.md", ROWS)


def decision(replicas: int) -> Snapshot:
    at = SystemClock().now()
    workload = WorkloadStatus(
        name="web",
        namespace="shop",
        region="eu-west-1",
        desired_replicas=replicas,
        mode=Mode.PERFORMANCE,
        reasons=("carbon low",),
        decided_at=at,
    )
    return Snapshot(taken_at=at, workloads={"shop/web": workload})


@dataclass
class Replica:
    name: str
    runtime: KubeRuntime
    registry: CollectorRegistry

    @property
    def leading(self) -> bool:
        return self.runtime.elector.leading

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


def seed(api: FakeApiServer) -> None:
    api.put_object(CRS, cr("web", mode="hpa"))
    seed_targets(api)  # the HPA, with minReplicas 1


def start_replica(name: str, url: str, holder: SnapshotHolder) -> Replica:
    configuration = k8s.Configuration()
    configuration.host = url
    settings = KubeSettings(
        enabled=True,
        identity=name,
        watch_namespace="shop",
        lease_duration_seconds=LEASE_S,
        renew_deadline_seconds=RENEW_S,
        retry_period_seconds=0.2,
        watch_timeout_seconds=2,
        request_timeout_seconds=TIMEOUT_S,
    )
    registry = CollectorRegistry()
    runtime = build_kube_runtime(
        settings,
        holder=holder,
        clock=SystemClock(),
        api_client=kube_api_client(configuration),
        registry=registry,
    )
    runtime.start()
    return Replica(name, runtime, registry)


def wait(condition: Callable[[], bool], what: str, timeout_s: float = 10.0) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout_s, f"timed out waiting for {what}"
        time.sleep(0.02)
    return time.monotonic() - started


def hpa_floor(api: FakeApiServer) -> int:
    obj = api.get_object(f"{HPAS}/web")
    assert obj is not None
    return int(obj["spec"]["minReplicas"])


def desired_in_status(api: FakeApiServer) -> int | None:
    obj = api.get_object(f"{CRS}/web")
    assert obj is not None
    return (obj.get("status") or {}).get("desiredReplicas")


class Watchdog:
    """Samples every 10 ms: never two replicas acting at once, the HPA floor never lowered."""

    def __init__(self, api: FakeApiServer, replicas: list[Replica]) -> None:
        self.api, self.replicas = api, replicas
        self.both_leading = 0
        self.floors: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        if sum(r.leading for r in self.replicas) > 1:
            self.both_leading += 1
        floor = hpa_floor(self.api)
        if not self.floors or self.floors[-1] != floor:
            self.floors.append(floor)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self._sample()

    def __enter__(self) -> Watchdog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sample()


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_api_server_fault(fault: Fault, caplog: pytest.LogCaptureFixture) -> None:
    holder = SnapshotHolder(decision(6))
    with FakeApiServer(bookmark_interval_seconds=0.1) as api:
        seed(api)
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        with FaultProxy(host, int(port), latency_seconds=1.0) as proxy:
            a = start_replica("replica-a", proxy.url, holder)
            replicas = [a]
            try:
                wait(lambda: a.leading and hpa_floor(api) == 6, "a leading and actuating")
                b = start_replica("replica-b", proxy.url, holder)
                replicas.append(b)
                wait(lambda: b.runtime.elector.rounds >= 2, "b following")
                assert not b.leading
                with (
                    caplog.at_level(logging.WARNING, logger="scaler.kube"),
                    Watchdog(api, replicas) as dog,
                ):
                    proxy.fault = fault
                    faulted = time.monotonic()
                    rounds = a.runtime.elector.rounds
                    holder.publish(decision(8))  # a decision the fault holds up
                    stopped_s = wait(lambda: not a.leading, "a to stop acting", 5.0)
                    time.sleep(max(0.0, FAULT_S - (time.monotonic() - faulted)))
                    rounds_in_fault = a.runtime.elector.rounds - rounds
                    # a round lasts at most the renew deadline (client timeouts), then waits
                    # the retry period: at least two rounds in FAULT_S, none of them stuck
                    assert rounds_in_fault >= 2, "the election loop stalled"
                    assert not a.leading
                    assert not b.leading
                    assert a.metric("gridshift_kube_leader", identity="replica-a") == 0.0
                    lease_errors = a.metric("gridshift_kube_api_errors_total", operation="lease")
                    assert lease_errors is not None
                    assert lease_errors >= 1
                    assert "replica-a lost the leadership" in caplog.text

                    proxy.fault = Fault.PASS
                    recovered_s = wait(
                        lambda: any(r.leading for r in replicas) and hpa_floor(api) == 8,
                        "a leader applying the held-up decision",
                    )
                    leader, other = (a, b) if a.leading else (b, a)
                    assert leader.metric("gridshift_kube_leader", identity=leader.name) == 1.0
                    wait(lambda: desired_in_status(api) == 8, "the status of the decision")

                    # the leader goes away: the other replica takes over and actuates
                    leader.runtime.close()
                    replicas.remove(leader)
                    holder.publish(decision(9))
                    takeover_s = wait(
                        lambda: other.leading and hpa_floor(api) == 9, "the other taking over"
                    )
                slowest_round = max(r.runtime.elector.slowest_round_seconds for r in (a, b))
                slowest_sync = max(r.runtime.slowest_sync_seconds for r in (a, b))
                assert slowest_round < RENEW_S + 0.5, f"an election round took {slowest_round} s"
                assert slowest_sync < 4 * TIMEOUT_S + 0.5, f"a sync round took {slowest_sync} s"
                assert dog.both_leading == 0
                assert dog.floors == sorted(dog.floors), f"HPA floor lowered: {dog.floors}"
                patched = [
                    r.body["spec"]["minReplicas"]
                    for r in api.requests
                    if r.method == "PATCH" and r.path == f"{HPAS}/web"
                ]
                assert patched == sorted(patched), f"a patch lowered the floor: {patched}"
            finally:
                for replica in replicas:
                    replica.runtime.close()
    floors = "→".join(map(str, dog.floors))
    ROWS.append(
        f"| {fault.value} | scaler: Lease + HPA actuation (API server) | leader stopped "
        f"acting {stopped_s:.2f} s into the fault (renew deadline {RENEW_S:g} s, Lease "
        f"{LEASE_S} s), never two leaders, HPA floor never lowered ({floors}), "
        f"{rounds_in_fault} election rounds during {FAULT_S:g} s (slowest {slowest_round:.2f} s, "
        f"slowest sync {slowest_sync:.2f} s), {lease_errors:.0f} lease errors counted; "
        f"held-up decision applied {recovered_s:.2f} s after the fault cleared "
        f"(by {leader.name}); the other replica took over in {takeover_s:.2f} s |\n"
    )


@pytest.mark.parametrize("fault", [Fault.HANG, Fault.RESET], ids=lambda f: f.name)
def test_cut_off_leader_is_replaced_once_its_lease_expires(fault: Fault) -> None:
    holder = SnapshotHolder(decision(6))
    with FakeApiServer(bookmark_interval_seconds=0.1) as api:
        seed(api)
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        with FaultProxy(host, int(port)) as proxy:
            a = start_replica("replica-a", proxy.url, holder)  # through the proxy
            replicas = [a]
            try:
                wait(lambda: a.leading and hpa_floor(api) == 6, "a leading")
                b = start_replica("replica-b", api.url, holder)  # direct
                replicas.append(b)
                wait(lambda: b.runtime.elector.rounds >= 2, "b following")
                with Watchdog(api, replicas) as dog:
                    proxy.fault = fault
                    cut = time.monotonic()
                    a_stopped_s = wait(lambda: not a.leading, "a to stop acting", 5.0)
                    b_took_over_s = wait(lambda: b.leading, "b to take over", 5.0) + a_stopped_s
                    holder.publish(decision(7))
                    wait(lambda: hpa_floor(api) == 7, "b actuating")
                    assert not a.leading
                    proxy.fault = Fault.PASS
                    wait(lambda: a.runtime.elector.rounds >= 3, "a back")
                    time.sleep(0.5)
                    assert b.leading
                    assert not a.leading, "a came back and found b holding"
                    del cut
                assert dog.both_leading == 0
                assert b_took_over_s >= LEASE_S - 0.5, "b took over before the Lease expired"
                assert a_stopped_s < b_took_over_s
            finally:
                for replica in replicas:
                    replica.runtime.close()
    ROWS.append(
        f"| {fault.value} on the leader's path only | scaler: Lease | the cut-off leader "
        f"stopped acting after {a_stopped_s:.2f} s, the other replica took over after "
        f"{b_took_over_s:.2f} s (Lease {LEASE_S} s) and actuated; never two leaders; the old "
        "leader came back as a follower |\n"
    )


def metrics_api_via(url: str) -> MetricsApiServer:
    configuration = k8s.Configuration()
    configuration.host = url
    client = kube_api_client(configuration)
    return MetricsApiServer(
        ExternalMetricsApi(sample_holder(), clock=FrozenClock(TAKEN_AT)),
        host="127.0.0.1",
        port=0,
        authenticator=Authenticator(
            AuthenticationConfig(),
            token_reviewer=DelegatedTokenReviewer(client, request_timeout_seconds=TIMEOUT_S),
        ),
        authorizer=Authorizer(
            access_reviewer=DelegatedAccessReviewer(client, request_timeout_seconds=TIMEOUT_S)
        ),
    )


def review_handlers(api: FakeApiServer) -> None:
    def token_review(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": {"authenticated": True, "user": {"username": body["spec"]["token"]}},
        }

    def access_review(body: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "status": {"allowed": True},
        }

    api.handlers.update(tokenreviews=token_review, subjectaccessreviews=access_review)


METRIC = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/gridshift_desired_replicas"


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_metrics_api_reviews_under_api_server_fault(fault: Fault) -> None:
    with FakeApiServer() as api:
        review_handlers(api)
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        with (
            FaultProxy(host, int(port), latency_seconds=1.0) as proxy,
            metrics_api_via(proxy.url) as server,
        ):

            def get(token: str) -> tuple[int, float]:
                started = time.monotonic()
                answer = server.respond(
                    ApiRequest("GET", METRIC),
                    peer_certificate_der=None,
                    headers={"authorization": [f"Bearer {token}"]},
                )
                return answer.status, time.monotonic() - started

            assert get("hpa")[0] == 200
            proxy.fault = fault
            cached, _ = get("hpa")
            fresh, fresh_s = get("new-caller")
            assert cached == 200, "a caller reviewed before the fault is still served"
            assert fresh == 500
            assert fresh_s < 4 * TIMEOUT_S + 0.5
            proxy.fault = Fault.PASS
            assert get("another-caller")[0] == 200
    ROWS.append(
        f"| {fault.value} | scaler: External Metrics API (delegated TokenReview/"
        f"SubjectAccessReview) | a caller reviewed before the fault still answered 200 (review "
        f"caches); an unreviewed token got 500 in {fresh_s:.2f} s (review timeout "
        f"{TIMEOUT_S:g} s), never a parked thread; new callers accepted once it cleared |\n"
    )


class _GarbledWatch(BaseHTTPRequestHandler):
    """Lists return no CarbonAwareScalers; every watch sends one line that is not JSON."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if "watch=true" in self.path:
            body = b"<html>bad gateway</html>\n"
        else:
            body = b'{"items": [], "metadata": {"resourceVersion": "7"}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_cr_watch_survives_a_garbled_stream() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _GarbledWatch)
    httpd.daemon_threads = True
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{httpd.server_address[1]}"
    watcher = ScalerResourceWatcher(
        k8s.CustomObjectsApi(kube_api_client(configuration)),
        ScalerResourceCache(),
        error_backoff_seconds=0.01,
        request_timeout_seconds=TIMEOUT_S,
    )
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait(lambda: watcher.errors >= 2 and watcher.relists >= 3, "relists after bad lines")
        assert thread.is_alive(), "the watch thread must outlive a garbled answer"
    finally:
        watcher.stop()
        thread.join(5)
        httpd.shutdown()
        httpd.server_close()


TICK_WORKLOADS = ("web", "cart", "api")


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_tick_reading_actual_replicas_under_api_server_fault(
    fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeApiServer() as api:
        for name in TICK_WORKLOADS:
            put_deployment(api, name, replicas=4)
        host, port = api.url.removeprefix("http://").rsplit(":", 1)
        with FaultProxy(host, int(port), latency_seconds=1.0) as proxy:
            configuration = k8s.Configuration()
            configuration.host = proxy.url
            clock = FrozenClock(T0)
            loop = ScalerLoop(
                [workload(name) for name in TICK_WORKLOADS],
                carbon=FakeDailyCarbonSource({"eu-west-1": [300.0] * 24}),
                load=FakeLoadSource(levels={f"{name}_rps": 30.0 for name in TICK_WORKLOADS}),
                clock=clock,
                holder=SnapshotHolder(),
                params=PolicyParams(),
                replica_reader=KubeReplicaReader(
                    kube_api_client(configuration), request_timeout_seconds=TIMEOUT_S
                ),
            )
            loop.refit()
            before = loop.tick()
            assert {w.actual_replicas for w in before.workloads.values()} == {4}
            desired = {n: w.desired_replicas for n, w in before.workloads.items()}
            proxy.fault = fault
            clock.advance(timedelta(minutes=1))
            with caplog.at_level(logging.WARNING, logger="gridshift.scaler"):
                started = time.monotonic()
                during = loop.tick()
                tick_s = time.monotonic() - started
            assert tick_s < 2 * TIMEOUT_S + 0.5, f"the tick took {tick_s:.2f} s"
            for name, w in during.workloads.items():
                assert w.desired_replicas >= desired[name], "a decision dropped"
                assert w.actual_replicas is None
                assert "read failed" in w.actual_replicas_note
            kube_errors = during.source_errors_total["kube"]
            assert kube_errors >= 1
            assert "actual replicas of web" in caplog.text
            proxy.fault = Fault.PASS
            clock.advance(timedelta(minutes=1))
            after = loop.tick()
            assert {w.actual_replicas for w in after.workloads.values()} == {4}
    ROWS.append(
        f"| {fault.value} | scaler: tick (actual replicas of 3 targets, API server) | tick "
        f"took {tick_s:.2f} s (timeout {TIMEOUT_S:g} s), every decision kept, actual "
        f"replicas shown unknown with the error, {kube_errors} `kube` source errors counted; "
        "read again on the next tick |\n"
    )
