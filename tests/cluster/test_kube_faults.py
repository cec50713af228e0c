"""Fault injection on the scaler's Kubernetes side, on the real API server:
`tests.faultproxy.FaultProxy` (HTTP mode, tests/cluster/proxied.py) between the REAL
`kubernetes` client of `build_kube_runtime` (CR watch, Lease leader election, HPA actuation,
status writes) and kube-apiserver v1.37, each test in a namespace of its own (the Lease too).

For each fault (latency past the client timeout, connection reset, 5xx, a 429 storm, a
truncated body, a hang), with two replicas sharing the API server:
- no thread stalls: election rounds keep coming, none longer than the renew deadline (the
  client timeouts bound every call), and a sync round stays within its timeouts;
- the leader that cannot renew stops acting by its renew deadline (before the Lease
  expires), so the replicas never both act, and nothing patches the HPA below its floor
  (every version of the HPA, followed by a watch on the API server, and every PATCH sent);
- `gridshift_kube_leader` drops to 0, `gridshift_kube_api_errors_total{operation="lease"}`
  counts the failures, a WARNING says the leadership was lost;
- when the fault clears, one replica leads again by itself and applies the decision held up
  during the fault (the CR's status, written through the status subresource, says it);
  when that leader goes away, the other takes over and actuates.
A second test cuts only the leader's own path: the other replica (through a proxy of its
own) takes over once the Lease expires, and the cut-off one has stopped acting before that.
A third puts the proxy between the External Metrics API's delegated TokenReview/
SubjectAccessReview and the API server, with real service-account tokens and RBAC: a request
with a token not yet reviewed fails fast (500, within the review timeout), one reviewed
before the fault is still served from the review caches, and fresh tokens are accepted again
once the fault clears. Last, a CR watch that receives a line that is not JSON counts an error
and relists instead of losing its thread, and the tick, which reads every target's actual
replicas (as the Deployment controller reports them) from the API server, stays within its
timeouts under each fault, keeps every decision, shows actual replicas as unknown, and reads
them again afterwards. Outcomes go to `tests/artifacts/faults_kube.md` (the README's
RELIABILITY table). (On the API-server stand-in until issue 14: tests/apiserver.py.)
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from prometheus_client import CollectorRegistry
from urllib3.exceptions import ProtocolError

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
from tests.cluster.install import deployment
from tests.cluster.plane import KubePlane, wait_until
from tests.cluster.proxied import ProxiedApi, admin_ssl_context
from tests.cluster.test_kube import (
    CRS,
    HPAS,
    T0,
    cr,
    grant_metric_reading,
    seed_hpa,
    workload,
)
from tests.fakes import FakeDailyCarbonSource, FakeLoadSource
from tests.faultproxy import Fault, FaultProxy, write_fault_table
from tests.snapshots import TAKEN_AT, sample_holder

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]


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


def decision(replicas: int, ns: str) -> Snapshot:
    at = SystemClock().now()
    workload = WorkloadStatus(
        name="web",
        namespace=ns,
        region="eu-west-1",
        desired_replicas=replicas,
        mode=Mode.PERFORMANCE,
        reasons=("carbon low",),
        decided_at=at,
    )
    return Snapshot(taken_at=at, workloads={f"{ns}/web": workload})


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


def seed(api: ProxiedApi) -> None:
    api.put_object(CRS, cr("web", mode="hpa"))
    seed_hpa(api)  # the HPA, with minReplicas 1


def start_replica(name: str, url: str, holder: SnapshotHolder, ns: str) -> Replica:
    configuration = k8s.Configuration()
    configuration.host = url
    settings = KubeSettings(
        enabled=True,
        identity=name,
        watch_namespace=ns,
        lease_namespace=ns,
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


def hpa(api: ProxiedApi) -> Any:
    """The HPA `web` read straight from the API server (admin, not through the proxy)."""
    autoscaling: Any = k8s.AutoscalingV2Api(api.plane.api)
    return autoscaling.read_namespaced_horizontal_pod_autoscaler("web", api.ns)


def hpa_floor(api: ProxiedApi) -> int:
    return int(hpa(api).spec.min_replicas)


def desired_in_status(api: ProxiedApi) -> int | None:
    obj = api.get_object(f"{CRS}/web")
    assert obj is not None
    return (obj.get("status") or {}).get("desiredReplicas")


class Watchdog:
    """Never two replicas acting at once (their flags, sampled every 10 ms), and the HPA's
    floor over every version the API server stored (a watch from the version at the start)."""

    def __init__(self, api: ProxiedApi, replicas: list[Replica]) -> None:
        self.api, self.replicas = api, replicas
        self.both_leading = 0
        start = hpa(api)
        self.floors: list[int] = [int(start.spec.min_replicas)]
        self._version = start.metadata.resource_version
        self._stop = threading.Event()
        self._watch = k8s_watch.Watch()
        self._threads = [
            threading.Thread(target=self._sample, daemon=True),
            threading.Thread(target=self._follow, daemon=True),
        ]

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            if sum(r.leading for r in self.replicas) > 1:
                self.both_leading += 1

    def _follow(self) -> None:
        autoscaling: Any = k8s.AutoscalingV2Api(self.api.plane.api)
        with contextlib.suppress(ProtocolError):  # stop() cuts the stream mid-response
            for event in self._watch.stream(
                autoscaling.list_namespaced_horizontal_pod_autoscaler,
                self.api.ns,
                field_selector="metadata.name=web",
                resource_version=self._version,
                timeout_seconds=120,
            ):
                floor = int(event["object"].spec.min_replicas)
                if floor != self.floors[-1]:
                    self.floors.append(floor)

    def __enter__(self) -> Watchdog:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # the watch delivers within milliseconds; the last floor read directly must be in it
        last = hpa_floor(self.api)
        with contextlib.suppress(AssertionError):
            wait(lambda: self.floors[-1] == last, "the watch to deliver the last floor", 5.0)
        self._stop.set()
        self._watch.stop()
        for thread in self._threads:
            thread.join(5)


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_api_server_fault(api: ProxiedApi, fault: Fault, caplog: pytest.LogCaptureFixture) -> None:
    ns = api.ns
    holder = SnapshotHolder(decision(6, ns))
    seed(api)
    proxy = api.proxy
    proxy.latency_seconds = 1.0
    a = start_replica("replica-a", proxy.url, holder, ns)
    replicas = [a]
    try:
        wait(lambda: a.leading and hpa_floor(api) == 6, "a leading and actuating")
        b = start_replica("replica-b", proxy.url, holder, ns)
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
            holder.publish(decision(8, ns))  # a decision the fault holds up
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
            holder.publish(decision(9, ns))
            takeover_s = wait(
                lambda: other.leading and hpa_floor(api) == 9, "the other taking over"
            )
        slowest_round = max(r.runtime.elector.slowest_round_seconds for r in (a, b))
        slowest_sync = max(r.runtime.slowest_sync_seconds for r in (a, b))
        assert slowest_round < RENEW_S + 0.5, f"an election round took {slowest_round} s"
        assert slowest_sync < 4 * TIMEOUT_S + 0.5, f"a sync round took {slowest_sync} s"
        assert dog.both_leading == 0
        assert dog.floors == [6, 8, 9], f"HPA floors seen: {dog.floors}"
        patched = [
            r.body["spec"]["minReplicas"]
            for r in api.requests
            if r.method == "PATCH" and r.path == api.path(f"{HPAS}/web")
        ]
        assert patched == sorted(patched), f"a patch lowered the floor: {patched}"
        assert patched[-1] == 9
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
def test_cut_off_leader_is_replaced_once_its_lease_expires(api: ProxiedApi, fault: Fault) -> None:
    ns = api.ns
    holder = SnapshotHolder(decision(6, ns))
    seed(api)
    # b's own way to the API server, never faulted
    with FaultProxy.for_api_server(api.plane.server, admin_ssl_context(api.plane)) as other_path:
        a = start_replica("replica-a", api.url, holder, ns)  # through the faulted proxy
        replicas = [a]
        try:
            wait(lambda: a.leading and hpa_floor(api) == 6, "a leading")
            b = start_replica("replica-b", other_path.url, holder, ns)
            replicas.append(b)
            wait(lambda: b.runtime.elector.rounds >= 2, "b following")
            with Watchdog(api, replicas) as dog:
                api.proxy.fault = fault
                a_stopped_s = wait(lambda: not a.leading, "a to stop acting", 5.0)
                b_took_over_s = wait(lambda: b.leading, "b to take over", 5.0) + a_stopped_s
                holder.publish(decision(7, ns))
                wait(lambda: hpa_floor(api) == 7, "b actuating")
                assert not a.leading
                api.proxy.fault = Fault.PASS
                rounds = a.runtime.elector.rounds
                wait(lambda: a.runtime.elector.rounds >= rounds + 3, "a back")
                assert b.leading
                assert not a.leading, "a came back and found b holding"
            assert dog.both_leading == 0
            assert dog.floors == [6, 7], f"HPA floors seen: {dog.floors}"
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


@pytest.fixture(scope="module")
def callers(plane: KubePlane, kube_crds: None) -> Iterator[tuple[str, dict[str, str]]]:
    """A namespace whose service accounts `hpa`, `new-caller` and `another-caller` may read
    gridshift's external metrics there (RBAC), with a TokenRequest token each."""
    with plane.namespace(f"metric-callers-{uuid.uuid4().hex[:6]}") as ns:
        tokens = {}
        for name in ("hpa", "new-caller", "another-caller"):
            plane.core.create_namespaced_service_account(ns, {"metadata": {"name": name}})
            tokens[name] = plane.core.create_namespaced_service_account_token(
                name, ns, {"spec": {"audiences": [], "expirationSeconds": 3600}}
            ).status.token
        grant_metric_reading(
            plane,
            ns,
            {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Group",
                "name": f"system:serviceaccounts:{ns}",
            },
        )
        authorization: Any = k8s.AuthorizationV1Api(plane.api)
        review = {
            "spec": {
                "user": f"system:serviceaccount:{ns}:hpa",
                "groups": [f"system:serviceaccounts:{ns}"],
                "resourceAttributes": {
                    "namespace": ns,
                    "verb": "get",
                    "group": "external.metrics.k8s.io",
                    "resource": "gridshift_desired_replicas",
                },
            }
        }
        wait_until(  # RBAC's own cache takes the binding in a moment
            lambda: authorization.create_subject_access_review(review).status.allowed,
            timeout_s=10,
            what="the role binding in effect",
        )
        yield ns, tokens


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_metrics_api_reviews_under_api_server_fault(
    plane: KubePlane, callers: tuple[str, dict[str, str]], fault: Fault
) -> None:
    ns, tokens = callers
    metric = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/gridshift_desired_replicas"
    with (
        FaultProxy.for_api_server(
            plane.server, admin_ssl_context(plane), latency_seconds=1.0
        ) as proxy,
        metrics_api_via(proxy.url) as server,
    ):

        def get(caller: str) -> tuple[int, float]:
            started = time.monotonic()
            answer = server.respond(
                ApiRequest("GET", metric),
                peer_certificate_der=None,
                headers={"authorization": [f"Bearer {tokens[caller]}"]},
            )
            return answer.status, time.monotonic() - started

        assert get("hpa")[0] == 200
        reviews = len(proxy.requests)
        assert reviews == 2, "one TokenReview and one SubjectAccessReview"
        proxy.fault = fault
        cached, _ = get("hpa")
        fresh, fresh_s = get("new-caller")
        assert cached == 200, "a caller reviewed before the fault is still served"
        assert fresh == 500
        assert fresh_s < 4 * TIMEOUT_S + 0.5
        proxy.fault = Fault.PASS
        assert get("another-caller")[0] == 200
        later = proxy.requests[reviews:]  # in LATENCY, the ones the fault held up too
        reviewed = [r.body["spec"]["token"] for r in later if r.path.endswith("tokenreviews")]
        assert tokens["hpa"] not in reviewed, "the cached caller was not reviewed again"
        assert reviewed[-1] == tokens["another-caller"]
        assert later[-1].path.endswith("subjectaccessreviews")
    ROWS.append(
        f"| {fault.value} | scaler: External Metrics API (delegated TokenReview/"
        f"SubjectAccessReview) | a caller reviewed before the fault still answered 200 (review "
        f"caches); an unreviewed token got 500 in {fresh_s:.2f} s (review timeout "
        f"{TIMEOUT_S:g} s), never a parked thread; new callers accepted once it cleared |\n"
    )


def test_cr_watch_survives_a_garbled_stream(api: ProxiedApi) -> None:
    """Three watches in a row answer a line that is not JSON (a proxy's error page): each
    is an error and a relist, the thread lives on, and the fourth watch follows the API
    server again."""
    api.fail_next(
        "GET",
        "/carbonawarescalers",
        query_contains="watch=true",
        stream_line="<html>bad gateway</html>",
        times=3,
    )
    cache = ScalerResourceCache()
    watcher = ScalerResourceWatcher(
        k8s.CustomObjectsApi(api.client()),
        cache,
        namespace=api.ns,
        error_backoff_seconds=0.01,
        request_timeout_seconds=TIMEOUT_S,
    )
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait(lambda: watcher.errors >= 3 and watcher.relists >= 4, "relists after bad lines")
        assert thread.is_alive(), "the watch thread must outlive a garbled answer"
        api.put_object(CRS, cr("web"))
        wait(lambda: (api.ns, "web") in cache.items(), "the CR, seen by the next watch")
    finally:
        watcher.stop()
        thread.join(5)
    assert watcher.errors == 3


TICK_WORKLOADS = ("web", "cart", "api")


@pytest.fixture(scope="module")
def tick_targets(plane: KubePlane) -> Iterator[str]:
    """A namespace with the Deployments `web`, `cart` and `api` at 4 replicas, as the
    Deployment controller reports them (status.replicas: pods created, none ever runs)."""
    with plane.namespace(f"tick-targets-{uuid.uuid4().hex[:6]}") as ns:
        for name in TICK_WORKLOADS:
            plane.apply(deployment(name, ns, 4))

        def reported() -> bool:
            scales = [plane.apps.read_namespaced_deployment_scale(n, ns) for n in TICK_WORKLOADS]
            return all(scale.status.replicas == 4 for scale in scales)

        wait_until(reported, timeout_s=30, what="status.replicas == 4 for all three")
        yield ns


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_tick_reading_actual_replicas_under_api_server_fault(
    plane: KubePlane, tick_targets: str, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    ns = tick_targets
    with FaultProxy.for_api_server(
        plane.server, admin_ssl_context(plane), latency_seconds=1.0
    ) as proxy:
        configuration = k8s.Configuration()
        configuration.host = proxy.url
        clock = FrozenClock(T0)
        loop = ScalerLoop(
            [workload(name, ns=ns) for name in TICK_WORKLOADS],
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
