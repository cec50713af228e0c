"""scaler.kube against the real API server (tests/cluster: kube-apiserver v1.37.2 with the
Deployment, StatefulSet and HPA controllers, behind `tests.faultproxy.FaultProxy`, which
records the requests and injects the 409/5xx/410 faults) with the REAL kubernetes client, each
test in a namespace of its own: CR list+watch (events, the server's own bookmarks, 410 Gone ->
relist, an invalid spec refused by the CRD's schema),
status merge patches (409 -> re-read and retry, 404), actuation of HPA / ScaledObject /
scale subresource (Deployment and custom resource) and dry-run touching nothing, Lease
acquire / renew / expiry takeover / conflict / release, the controller acting only as leader
and never leaving a CR silent (AwaitingDecision, Ready=False + one Warning Event per problem,
decision and mode-change Events), every write naming gridshift (user agent, fieldManager),
delegated TokenReview / SubjectAccessReview with caching, and actual replicas: the scale
subresource of Deployments, StatefulSets and custom kinds, a ScaledObject's own target, an
HPA's currentReplicas, a CarbonAwareScaler's target taking precedence; 404/403/5xx and a
malformed ScaledObject as per-workload SourceErrors; a dead API server tried once per read;
the tick reading them and surviving failures; managedFields naming gridshift."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from config.wiring import kube_api_client
from forecasts.platform.errors import SourceRequestError, SourceUnavailable
from forecasts.time import FrozenClock
from scaler.apiauth import RequestAttributes, UserInfo
from scaler.core.policy import PolicyParams
from scaler.core.workload import LoadSourceKind, LoadSpec, PowerModel, TargetKind, Workload
from scaler.core.workload import TargetRef as WorkloadTarget
from scaler.kube import (
    Actuator,
    DelegatedAccessReviewer,
    DelegatedTokenReviewer,
    KubeController,
    KubeReplicaReader,
    KubeRuntime,
    LeaderElector,
    LeaseLock,
    ScalerResourceCache,
    ScalerResourceWatcher,
    StatusWriter,
    parse_scaler_resource,
    register_kube_metrics,
    status_for,
)
from scaler.loop import ScalerLoop
from scaler.snapshot import Mode, Snapshot, SnapshotHolder, WorkloadStatus
from tests.cluster.install import deployment
from tests.cluster.plane import KubePlane, wait_until
from tests.cluster.proxied import ProxiedApi
from tests.fakes import FakeDailyCarbonSource, FakeLoadSource

pytestmark = pytest.mark.cluster

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# collections of the test's namespace (ProxiedApi fills in {ns})
CRS = "/apis/gridshift.io/v1alpha1/namespaces/{ns}/carbonawarescalers"
HPAS = "/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
SOS = "/apis/keda.sh/v1alpha1/namespaces/{ns}/scaledobjects"
DEPLOYS = "/apis/apps/v1/namespaces/{ns}/deployments"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
STSS = "/apis/apps/v1/namespaces/{ns}/statefulsets"
TRAINERS = "/apis/example.com/v1/namespaces/{ns}/trainers"


def cr(name="web", *, mode="none", dry_run=False, max_replicas=10, min_replicas=1, **target):
    return {
        "apiVersion": "gridshift.io/v1alpha1",
        "kind": "CarbonAwareScaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            | target,
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "region": "eu-west-1",
            "actuation": {"mode": mode, "dryRun": dry_run},
        },
    }


def decision(name="web", replicas=3, mode=Mode.ECO, stale=(), ns="shop"):
    return WorkloadStatus(
        name=name,
        namespace=ns,
        region="eu-west-1",
        desired_replicas=replicas,
        mode=mode,
        reasons=("carbon high",),
        decided_at=T0,
        stale_inputs=stale,
        saved_g=12.5,
    )


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


# ------------------------------------------------------------------ watch
def test_the_crd_refuses_an_invalid_spec(api):
    """What the watcher would keep aside as invalid (maxReplicas 0) never reaches it: the
    CRD's schema refuses it with 422 naming the field (the stand-in stored anything)."""
    with pytest.raises(k8s.ApiException) as refused:
        k8s.CustomObjectsApi(api.client()).create_namespaced_custom_object(
            "gridshift.io", "v1alpha1", api.ns, "carbonawarescalers", cr("bad", max_replicas=0)
        )
    assert refused.value.status == 422
    assert "spec.maxReplicas" in str(refused.value.body)


def test_watch_lists_then_follows_events_bookmarks_and_relists_on_410(api):
    api.put_object(CRS, cr("web"))
    cache = ScalerResourceCache()
    custom = k8s.CustomObjectsApi(api.client())
    # 3 s: kube-apiserver sends its bookmark 2 s before a watch's timeout (and every minute)
    watcher = ScalerResourceWatcher(custom, cache, namespace=api.ns, watch_timeout_seconds=3)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: (api.ns, "web") in cache.items())
        api.put_object(CRS, cr("api", max_replicas=5))
        wait_for(lambda: (api.ns, "api") in cache.items())
        assert cache.items()[(api.ns, "api")].max_replicas == 5
        # kube-apiserver sends a watch's BOOKMARK about once a minute: hand one in
        mark = api.plane.get(api.path(CRS))["metadata"]["resourceVersion"]
        api.fail_next(
            "GET",
            "/carbonawarescalers",
            query_contains="watch=",
            stream_line=json.dumps(
                {
                    "type": "BOOKMARK",
                    "object": {
                        "kind": "CarbonAwareScaler",
                        "apiVersion": "gridshift.io/v1alpha1",
                        "metadata": {"resourceVersion": mark},
                    },
                }
            ),
        )
        wait_for(lambda: watcher.bookmarks > 0)
        api.delete_object(f"{CRS}/web")
        wait_for(lambda: (api.ns, "web") not in cache.items())
        # the next watch ends with an ERROR 410 (history compacted) -> the loop relists
        relists = watcher.relists
        api.fail_next("GET", "/carbonawarescalers", 410, query_contains="watch=")
        wait_for(lambda: watcher.relists > relists)
        api.put_object(CRS, cr("late"))
        wait_for(lambda: (api.ns, "late") in cache.items())
    finally:
        watcher.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
    watches = [r for r in api.requests if r.query.get("watch") == ["true"]]
    assert watches, "the client watched"
    assert all(r.query.get("allowWatchBookmarks") == ["true"] for r in watches)
    assert all(r.query.get("resourceVersion", [""])[0] not in ("", "0") for r in watches)


def test_watch_gone_forces_a_relist(api):
    """A watch from a resourceVersion older than the API server's watch cache holds ends
    with the server's own 410 (too old resource version), and a relist recovers."""
    api.put_object(CRS, cr("web"))
    cache = ScalerResourceCache()
    watcher = ScalerResourceWatcher(
        k8s.CustomObjectsApi(api.client()), cache, namespace=api.ns, watch_timeout_seconds=3
    )
    watcher.list_once()
    api.put_object(CRS, cr("api"))
    with pytest.raises(k8s.ApiException) as info:
        watcher.watch_once("1")
    assert info.value.status == 410
    watcher.list_once()
    assert set(cache.items()) == {(api.ns, "web"), (api.ns, "api")}
    assert watcher.relists == 2


def test_stop_ends_a_silent_watch_at_once(api):
    """The real API server sends nothing on a quiet watch until its timeoutSeconds (minutes;
    the stand-in sent a bookmark every 0.2 s), and the proxy answers `Connection: close`, as
    HTTP/1.0-minded intermediaries do: stop() must still end the watch at once (it waited for
    the timeout, which made `gridshift run` outlive a pod's 30 s grace period on SIGTERM)."""
    configuration = k8s.Configuration()
    configuration.host = api.url
    watcher = ScalerResourceWatcher(
        k8s.CustomObjectsApi(kube_api_client(configuration)),
        ScalerResourceCache(),
        namespace=api.ns,
        watch_timeout_seconds=60,
    )
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()

    def watching() -> int:
        return len([r for r in api.requests if r.query.get("watch") == ["true"]])

    # a watch in progress (the first may meet the CRD's watch cache still starting: 429)
    wait_until(lambda: watcher.relists >= 1 and watching(), timeout_s=20, what="a watch")
    time.sleep(1.0)
    errors, watches = watcher.errors, watching()
    started = time.monotonic()
    watcher.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 1.0
    assert watcher.errors == errors, "a stop is not a failed watch"
    assert watching() == watches, "and no new watch after it"


# ------------------------------------------------------------------ status
def test_status_patch_and_conflict_retry(api):
    stored = api.put_object(CRS, cr("web"))
    resource = parse_scaler_resource(stored)
    writer = StatusWriter(k8s.CustomObjectsApi(api.client()))
    status = status_for(decision(ns=api.ns), resource=resource, now=T0)
    api.put_object(CRS, cr("web", max_replicas=12))  # someone changed it: our RV is stale
    new_rv = writer.write(resource, status)
    assert writer.conflicts == 1
    obj = api.get_object(f"{CRS}/web")
    assert obj["metadata"]["resourceVersion"] == new_rv
    assert obj["status"]["mode"] == "eco"
    assert obj["status"]["lastDecision"] == {
        "desiredReplicas": 3,
        "mode": "eco",
        "decidedAt": "2025-03-01T12:00:00Z",
    }
    assert obj["spec"]["maxReplicas"] == 12, "a status patch never touches the spec"
    patches = [r for r in api.requests if r.method == "PATCH"]
    assert all(r.headers["Content-Type"] == "application/merge-patch+json" for r in patches)
    assert all(r.path.endswith("/web/status") for r in patches)


def test_status_gives_up_after_repeated_conflicts_and_404_means_gone(api):
    resource = parse_scaler_resource(api.put_object(CRS, cr("web")))
    writer = StatusWriter(k8s.CustomObjectsApi(api.client()), max_attempts=2)
    api.fail_next("PATCH", "/web/status", 409, times=5)
    with pytest.raises(RuntimeError, match="still conflicting"):
        writer.write(resource, {"mode": "eco"})
    api.delete_object(f"{CRS}/web")
    assert StatusWriter(k8s.CustomObjectsApi(api.client())).write(resource, {}) is None


# ------------------------------------------------------------------ actuation
def seed_hpa(api: ProxiedApi) -> None:
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


def seed_targets(api: ProxiedApi) -> None:
    """An HPA, a ScaledObject and a Deployment `web` (the real controllers act on the HPA and
    the Deployment; no KEDA operator runs)."""
    seed_hpa(api)
    api.put_object(
        SOS,
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"name": "web"},
                "minReplicaCount": 0,
                "maxReplicaCount": 10,
                "triggers": [{"type": "cpu", "metadata": {"value": "50"}}],
            },
        },
    )
    api.put_object(DEPLOYS, deployment("web", api.ns, 2))


@pytest.mark.parametrize(
    ("mode", "decided", "path", "expected"),
    [
        pytest.param(
            "hpa",
            decision(replicas=3, mode=Mode.ECO),
            f"{HPAS}/web",
            {"minReplicas": 1, "maxReplicas": 3},
            id="hpa eco caps the ceiling",
        ),
        pytest.param(
            "hpa",
            decision(replicas=6, mode=Mode.PERFORMANCE),
            f"{HPAS}/web",
            {"minReplicas": 6, "maxReplicas": 10},
            id="hpa performance raises floor",
        ),
        pytest.param(
            "scaledObject",
            decision(replicas=0, mode=Mode.ECO),
            f"{SOS}/web",
            {"minReplicaCount": 1, "maxReplicaCount": 1},
            id="scaledobject eco",
        ),
        pytest.param(
            "scale",
            decision(replicas=7),
            f"{DEPLOYS}/web",
            {"replicas": 7},
            id="deployment scale subresource",
        ),
        pytest.param(
            "scale",
            decision(replicas=70),
            f"{DEPLOYS}/web",
            {"replicas": 10},
            id="scale clamped to maxReplicas",
        ),
    ],
)
def test_actuation_patches_the_opted_in_object(api, mode, decided, path, expected):
    seed_targets(api)
    resource = parse_scaler_resource(api.put_object(CRS, cr("web", mode=mode)))
    actuator = Actuator(api.client(), clock=FrozenClock(T0))
    result = actuator.actuate(resource, dataclasses.replace(decided, namespace=api.ns))
    assert result is not None
    assert result.applied, result.error
    spec = api.get_object(path)["spec"]
    assert {k: spec[k] for k in expected} == expected
    (patch,) = [r for r in api.requests if r.method == "PATCH"]
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    if mode == "scale":
        assert patch.path == api.path(f"{DEPLOYS}/web/scale")


def test_writes_name_gridshift_as_user_agent_and_field_manager(api):
    """Through the production client (config.wiring.kube_api_client): every request says
    `User-Agent: gridshift/<version>`, every write `?fieldManager=gridshift` (the API server
    records both in audit logs and managedFields)."""
    from config.version import __version__
    from config.wiring import kube_api_client

    seed_targets(api)
    configuration = k8s.Configuration()
    configuration.host = api.url
    client = kube_api_client(configuration)
    resource = parse_scaler_resource(api.put_object(CRS, cr("web", mode="hpa")))
    result = Actuator(client, clock=FrozenClock(T0)).actuate(
        resource, decision(replicas=4, ns=api.ns)
    )
    assert result is not None
    assert result.applied, result.error
    custom = k8s.CustomObjectsApi(client)
    StatusWriter(custom).write(resource, {"desiredReplicas": 4})
    lock = LeaseLock(
        custom,
        namespace=api.ns,
        name="gridshift-scaler",
        identity="a",
        clock=FrozenClock(T0),
    )
    assert lock.try_acquire_or_renew()
    writes = [r for r in api.requests if r.method in ("POST", "PUT", "PATCH")]
    assert {r.method for r in writes} >= {"PATCH", "POST"}
    for r in api.requests:
        assert r.headers["User-Agent"] == f"gridshift/{__version__}", r.path
    for r in writes:
        assert r.query.get("fieldManager") == ["gridshift"], (r.method, r.path)
    # and the API server records it: managedFields name gridshift, not OpenAPI-Generator
    for path in (f"{HPAS}/web", f"{CRS}/web", f"{LEASES}/gridshift-scaler"):
        managers = {m["manager"] for m in api.get_object(path)["metadata"]["managedFields"]}
        assert "gridshift" in managers, (path, managers)
        assert not any(m.startswith("OpenAPI-Generator") for m in managers), (path, managers)


def test_custom_resource_scale_subresource(api):
    api.put_object(
        TRAINERS,
        {
            "apiVersion": "example.com/v1",
            "kind": "Trainer",
            "metadata": {"name": "web"},
            "spec": {"replicas": 1},
        },
    )
    resource = parse_scaler_resource(
        api.put_object(CRS, cr("web", mode="scale", apiVersion="example.com/v1", kind="Trainer"))
    )
    result = Actuator(api.client(), clock=FrozenClock(T0)).actuate(
        resource, decision(replicas=4, ns=api.ns)
    )
    assert result is not None
    assert result.applied
    assert api.get_object(f"{TRAINERS}/web")["spec"] == {"replicas": 4}


def test_dry_run_records_and_touches_nothing(api):
    seed_targets(api)
    resource = parse_scaler_resource(api.put_object(CRS, cr("web", mode="hpa", dry_run=True)))
    actuator = Actuator(api.client(), clock=FrozenClock(T0))
    before = len(api.requests)
    result = actuator.actuate(resource, decision(replicas=3, ns=api.ns))
    assert result is not None
    assert (result.dry_run, result.applied) == (True, False)
    assert result.patch == {"spec": {"minReplicas": 1, "maxReplicas": 3}}
    assert api.requests[before:] == [], "shadow mode sends no request at all"
    assert api.get_object(f"{HPAS}/web")["spec"]["maxReplicas"] == 10
    assert actuator.history == [result]


def test_actuation_failure_is_recorded_not_raised(api):
    resource = parse_scaler_resource(api.put_object(CRS, cr("web", mode="hpa")))
    result = Actuator(api.client(), clock=FrozenClock(T0)).actuate(resource, decision(ns=api.ns))
    assert result is not None
    assert not result.applied
    assert result.error.startswith("404")


# ------------------------------------------------------------------ leases
def lease_pair(api, clock):
    custom = k8s.CustomObjectsApi(api.client())

    def make(who):
        return LeaseLock(
            custom,
            namespace=api.ns,
            name="gridshift-scaler",
            identity=who,
            clock=clock,
            lease_duration_seconds=15,
            renew_deadline_seconds=10,
        )

    return make("replica-a"), make("replica-b")


def test_lease_acquire_renew_expiry_takeover_and_release(api):
    clock = FrozenClock(T0)
    a, b = lease_pair(api, clock)
    assert a.try_acquire_or_renew() is True
    assert b.try_acquire_or_renew() is False
    lease = api.get_object(f"{LEASES}/gridshift-scaler")
    assert lease["spec"]["holderIdentity"] == "replica-a"
    assert lease["spec"]["renewTime"] == "2025-03-01T12:00:00.000000Z"
    assert lease["spec"]["leaseDurationSeconds"] == 15
    clock.advance(timedelta(seconds=5))
    assert a.try_acquire_or_renew() is True
    assert api.get_object(f"{LEASES}/gridshift-scaler")["spec"]["renewTime"] == (
        "2025-03-01T12:00:05.000000Z"
    )
    assert b.try_acquire_or_renew() is False  # b saw a change: its expiry timer restarts
    # a stops renewing (crash/partition); it must consider itself not leading after 10 s
    clock.advance(timedelta(seconds=11))
    assert a.is_leader() is False
    assert b.try_acquire_or_renew() is False, "15 s since b last saw a change: not yet"
    clock.advance(timedelta(seconds=5))
    assert b.try_acquire_or_renew() is True
    spec = api.get_object(f"{LEASES}/gridshift-scaler")["spec"]
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("replica-b", 1)
    assert a.try_acquire_or_renew() is False, "a comes back and finds b holding"
    assert not a.is_leader()
    assert b.is_leader()
    assert b.release() is True
    assert api.get_object(f"{LEASES}/gridshift-scaler")["spec"]["holderIdentity"] == ""
    assert a.try_acquire_or_renew() is True, "an empty holder is free at once"


def test_lease_conflict_loses_the_round(api):
    clock = FrozenClock(T0)
    a, _b = lease_pair(api, clock)
    assert a.try_acquire_or_renew()
    api.fail_next("PUT", "/leases/gridshift-scaler", 409)
    clock.advance(timedelta(seconds=2))
    assert a.try_acquire_or_renew() is False
    assert a.is_leader() is False, "a conflict means someone else wrote: stop acting"


def test_simultaneous_create_only_one_wins(api):
    clock = FrozenClock(T0)
    _a, b = lease_pair(api, clock)
    api.fail_next("POST", "/leases", 409)  # b's create loses to a concurrent create
    assert b.try_acquire_or_renew() is False


def test_two_electors_never_lead_at_once(api):
    clock = FrozenClock(T0)
    a, b = lease_pair(api, clock)
    events = []
    ea = LeaderElector(
        a,
        on_started_leading=lambda: events.append("a+"),
        on_stopped_leading=lambda: events.append("a-"),
    )
    eb = LeaderElector(
        b,
        on_started_leading=lambda: events.append("b+"),
        on_stopped_leading=lambda: events.append("b-"),
    )
    for _ in range(30):
        for elector in (ea, eb):
            elector.step()
            assert not (ea.leading and eb.leading)
        clock.advance(timedelta(seconds=2))
    assert events == ["a+"]
    # a partitioned: only b keeps stepping
    for _ in range(12):
        eb.step()
        clock.advance(timedelta(seconds=2))
        assert not (a.is_leader() and eb.leading)
    ea.step()
    assert events == ["a+", "b+", "a-"]


def test_elector_run_releases_on_shutdown(api):
    clock = FrozenClock(T0)
    a, _ = lease_pair(api, clock)
    stop = threading.Event()
    elector = LeaderElector(a, retry_period_seconds=0.01, stop=stop)
    thread = threading.Thread(target=elector.run)
    thread.start()
    wait_for(lambda: elector.leading)
    stop.set()
    thread.join(timeout=5)
    assert api.get_object(f"{LEASES}/gridshift-scaler")["spec"]["holderIdentity"] == ""


# ------------------------------------------------------------------ controller
def test_controller_acts_only_as_leader_and_patches_only_changes(api):
    seed_targets(api)
    cache = ScalerResourceCache()
    custom = k8s.CustomObjectsApi(api.client())
    cache.replace_all([api.put_object(CRS, cr("web", mode="hpa", dry_run=True))])
    leading = {"now": False}
    controller = KubeController(
        cache=cache,
        status_writer=StatusWriter(custom),
        actuator=Actuator(api.client(), clock=FrozenClock(T0)),
        is_leader=lambda: leading["now"],
        clock=FrozenClock(T0),
    )
    snap = Snapshot(taken_at=T0, workloads={f"{api.ns}/web": decision(replicas=3, ns=api.ns)})
    assert controller.sync(snap) == 0, "followers write nothing"
    assert [r for r in api.requests if r.method != "GET"] == []
    leading["now"] = True
    assert controller.sync(snap) == 1
    assert controller.sync(snap) == 0, "unchanged decision: no second patch"
    status = api.get_object(f"{CRS}/web")["status"]
    assert status["lastActuation"]["dryRun"] is True
    assert status["lastActuation"]["patch"] == '{"spec":{"maxReplicas":3,"minReplicas":1}}'
    assert status["savedGrams"] == 12.5
    assert [c["type"] for c in status["conditions"]] == ["Ready", "InputsStale"]
    changed = Snapshot(taken_at=T0, workloads={f"{api.ns}/web": decision(replicas=4, ns=api.ns)})
    assert controller.sync(changed) == 1
    assert api.get_object(f"{CRS}/web")["status"]["desiredReplicas"] == 4


def test_controller_never_leaves_a_cr_silent(api):
    """A valid CR the loop has not decided for yet says so (Ready=Unknown); one the loop
    cannot use gets Ready=False with the reason and one Warning Event (not one per sync);
    once decided it gets Ready=True and a decision Event, and a mode change is an Event."""
    from scaler.kube.events import EventRecorder
    from scaler.kube.workloads import WorkloadProblem

    seed_targets(api)
    cache = ScalerResourceCache()
    cache.replace_all([api.put_object(CRS, d) for d in (cr("web"), cr("api"))])
    problems = {(api.ns, "api"): WorkloadProblem("UnknownRegion", "spec.region: 'x' is unknown")}
    clock = FrozenClock(T0)
    controller = KubeController(
        cache=cache,
        status_writer=StatusWriter(k8s.CustomObjectsApi(api.client())),
        actuator=Actuator(api.client(), clock=clock),
        is_leader=lambda: True,
        clock=clock,
        events=EventRecorder(k8s.CoreV1Api(api.client()), clock=clock, instance="a"),
        problems=lambda: problems,
    )

    def ready(name):
        (condition,) = [
            c
            for c in api.get_object(f"{CRS}/{name}")["status"]["conditions"]
            if c["type"] == "Ready"
        ]
        return condition["status"], condition["reason"]

    def events(name):
        posted = [r.body for r in api.requests if r.method == "POST" and "/events" in r.path]
        return [(e["type"], e["reason"]) for e in posted if e["involvedObject"]["name"] == name]

    empty = Snapshot(taken_at=T0, workloads={})
    assert controller.sync(empty) == 2
    assert ready("web") == ("Unknown", "AwaitingDecision")
    assert ready("api") == ("False", "UnknownRegion")
    clock.advance(timedelta(minutes=1))
    assert controller.sync(Snapshot(taken_at=T0, workloads={})) == 0, "nothing new to say"
    assert events("api") == [("Warning", "UnknownRegion")], "one Event, not one per sync"
    key = f"{api.ns}/web"
    assert controller.sync(Snapshot(taken_at=T0, workloads={key: decision(ns=api.ns)})) == 1
    assert ready("web") == ("True", "DecisionPublished")
    perf = decision(replicas=5, mode=Mode.PERFORMANCE, ns=api.ns)  # from 3 replicas in eco
    controller.sync(Snapshot(taken_at=T0, workloads={key: perf}))
    assert events("web") == [
        ("Normal", "ScalingDecision"),
        ("Normal", "ModeChanged"),
        ("Normal", "ScalingDecision"),
    ]
    stored = k8s.CoreV1Api(api.client()).list_namespaced_event(api.ns).items
    ours = [e for e in stored if e.involved_object.kind == "CarbonAwareScaler"]
    assert sorted((e.involved_object.name, e.reason) for e in ours) == sorted(
        [("api", "UnknownRegion"), *(("web", r) for _, r in events("web"))]
    ), "the API server kept every Event gridshift posted"


def leader_runtime(api, clock, timer=time.monotonic):
    """A KubeRuntime (not started) for an HPA-actuated `web` deciding 6 replicas in
    performance mode, whose elector is stepped by hand on `clock`."""
    seed_targets(api)
    perf = decision(replicas=6, mode=Mode.PERFORMANCE, ns=api.ns)
    holder = SnapshotHolder(Snapshot(taken_at=T0, workloads={f"{api.ns}/web": perf}))
    custom = k8s.CustomObjectsApi(api.client())
    cache = ScalerResourceCache()
    cache.replace_all([api.put_object(CRS, cr("web", mode="hpa"))])
    lock = LeaseLock(custom, namespace=api.ns, name="gridshift-scaler", identity="a", clock=clock)
    elector = LeaderElector(lock)
    controller = KubeController(
        cache=cache,
        status_writer=StatusWriter(custom),
        actuator=Actuator(api.client(), clock=clock),
        is_leader=lambda: elector.leading,
        clock=clock,
    )
    return KubeRuntime(
        watcher=ScalerResourceWatcher(custom, cache),
        elector=elector,
        controller=controller,
        current_snapshot=holder.current,
        stop=threading.Event(),
        replicas=KubeReplicaReader(api.client(), resources=cache.items),
        poll_interval_seconds=1.0,
        timer=timer,
    )


def test_failed_actuation_is_retried_without_waiting_for_a_new_decision(api):
    clock = FrozenClock(T0)
    seconds = [0.0]
    runtime = leader_runtime(api, clock, timer=lambda: seconds[0])
    registry = CollectorRegistry()
    register_kube_metrics(registry, runtime)
    assert runtime.elector.step()
    api.fail_next("PATCH", "/horizontalpodautoscalers/web", 503, times=2)
    assert runtime.sync_once()
    assert runtime.controller.pending == {(api.ns, "web")}
    assert api.get_object(f"{HPAS}/web")["spec"]["minReplicas"] == 1
    assert registry.get_sample_value("gridshift_kube_sync_pending_resources") == 1.0
    assert not runtime.sync_once(), "the retry waits out its backoff (1 s)"
    seconds[0] = 1.0
    assert runtime.sync_once(), "same snapshot, but a failed write is retried"
    assert runtime.controller.pending == {(api.ns, "web")}
    seconds[0] = 2.5
    assert not runtime.sync_once(), "the backoff doubled to 2 s"
    seconds[0] = 3.0
    assert runtime.sync_once()
    assert api.get_object(f"{HPAS}/web")["spec"]["minReplicas"] == 6
    assert runtime.controller.pending == frozenset()
    assert not runtime.sync_once(), "nothing new, nothing pending: no request"
    errors = {"operation": "actuation"}
    assert registry.get_sample_value("gridshift_kube_api_errors_total", errors) == 2.0
    assert registry.get_sample_value("gridshift_kube_sync_pending_resources") == 0.0
    assert registry.get_sample_value("gridshift_kube_leader", {"identity": "a"}) == 1.0


def test_a_new_leadership_term_reasserts_the_decision(api):
    clock = FrozenClock(T0)
    runtime = leader_runtime(api, clock)
    assert runtime.elector.step()
    runtime.sync_once()
    assert api.get_object(f"{HPAS}/web")["spec"]["minReplicas"] == 6
    # a's renewals fail past its renew deadline: it stops leading ...
    api.fail_next("GET", "/leases/gridshift-scaler", 503)
    clock.advance(timedelta(seconds=11))
    assert not runtime.elector.step()
    runtime.sync_once()
    # ... meanwhile another leader lowered the HPA floor; a regains the Lease, same decision
    hpa = api.get_object(f"{HPAS}/web")
    hpa["spec"]["minReplicas"] = 2
    api.put_object(HPAS, hpa)
    assert runtime.elector.step()
    runtime.sync_once()
    assert api.get_object(f"{HPAS}/web")["spec"]["minReplicas"] == 6


# ------------------------------------------------------------------ delegated auth
def grant_metric_reading(plane: KubePlane, namespace: str, subject: dict[str, str]) -> None:
    """A Role `metrics-reader` in `namespace` letting `subject` get and list gridshift's
    external metric `gridshift_desired_replicas` there, and its RoleBinding."""
    rbac: Any = k8s.RbacAuthorizationV1Api(plane.api)
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "metrics-reader"},
            "rules": [
                {
                    "apiGroups": ["external.metrics.k8s.io"],
                    "resources": ["gridshift_desired_replicas"],
                    "verbs": ["get", "list"],
                }
            ],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "metrics-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "metrics-reader",
            },
            "subjects": [subject],
        },
    )


def test_token_review_and_access_review_with_cache(api):
    """Real TokenReviews (a service account's TokenRequest token, and a bad one) and
    SubjectAccessReviews against RBAC (a Role granting `hpa` list on the metric)."""
    core = api.plane.core  # typed Any: the tests read models as the server filled them
    core.create_namespaced_service_account(api.ns, {"metadata": {"name": "hpa"}})
    good = core.create_namespaced_service_account_token(
        "hpa", api.ns, {"spec": {"audiences": [], "expirationSeconds": 600}}
    ).status.token
    grant_metric_reading(
        api.plane, api.ns, {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "hpa"}
    )

    def posted(resource):
        return len([r for r in api.requests if r.method == "POST" and r.path.endswith(resource)])

    tokens = DelegatedTokenReviewer(api.client())
    user = tokens.review(good)
    assert user is not None
    assert user.name == f"system:serviceaccount:{api.ns}:hpa"
    assert {"system:serviceaccounts", f"system:serviceaccounts:{api.ns}"} <= set(user.groups)
    assert tokens.review(good) == user
    assert tokens.review("bad") is None
    assert posted("tokenreviews") == 2, "second lookup of the same token came from the cache"
    access = DelegatedAccessReviewer(api.client())
    attrs = RequestAttributes(
        verb="list",
        path="/x",
        resource_request=True,
        api_group="external.metrics.k8s.io",
        api_version="v1beta1",
        resource="gridshift_desired_replicas",
        namespace=api.ns,
    )
    hpa = UserInfo("hpa", ("system:authenticated",))

    def allowed(attributes):  # RBAC caches the new binding a moment
        return wait_until(
            lambda: access.allowed(hpa, attributes), timeout_s=10, what="the role binding"
        )

    assert allowed(attrs) is True
    assert access.allowed(hpa, attrs) is True
    assert access.allowed(hpa, dataclasses.replace(attrs, verb="delete")) is False
    reviews = [r for r in api.requests if r.path.endswith("subjectaccessreviews")]
    assert len(reviews) == 2, "the allowed answer came from the cache the second time"
    assert reviews[0].body["spec"]["resourceAttributes"]["resource"] == (
        "gridshift_desired_replicas"
    )


def test_authentication_config_is_read_from_the_api_servers_own_config_map(api):
    """kube-system/extension-apiserver-authentication as kube-apiserver writes it: the
    front-proxy CA and allowed names it was started with. (A rotation is tested on the
    stand-in, tests/integration/test_kube_stand_in.py: kube-apiserver owns that ConfigMap
    and rewrites it, so a test cannot stage a rotation on the real one.)"""
    from scaler.apiauth import AuthenticationConfig, Authenticator
    from scaler.kube import AuthenticationConfigRefresher, load_authentication_config_map

    core = k8s.CoreV1Api(api.client())
    authenticator = Authenticator(
        AuthenticationConfig.from_config_map(load_authentication_config_map(core))
    )
    requestheader = authenticator.config.requestheader
    assert requestheader is not None
    front_proxy_ca = api.plane.front_proxy_ca_file.read_text()
    assert requestheader.client_ca_pem.strip() == front_proxy_ca.strip()
    assert AuthenticationConfigRefresher(core, authenticator).refresh_once() is False


# ------------------------------------------------------------------ actual replicas
def workload(name, kind=TargetKind.DEPLOYMENT, target=None, *, ns="shop"):
    return Workload(
        name=name,
        namespace=ns,
        target=WorkloadTarget(kind, target or name),
        load=LoadSpec(LoadSourceKind.PROMQL, f"{name}_rps"),
        capacity_per_replica=10.0,
        min_replicas=1,
        max_replicas=10,
        power=PowerModel(10.0, 30.0),
        region="eu-west-1",
    )


def stateful_set(name, namespace, replicas):
    """Parallel pod management: the controller creates every pod at once (OrderedReady would
    wait for each to be Ready, which no pod ever is without a kubelet)."""
    spec = deployment(name, namespace, replicas)
    spec["kind"] = "StatefulSet"
    spec["spec"] |= {"serviceName": name, "podManagementPolicy": "Parallel"}
    return spec


def scale_status(api, path, replicas):
    """Wait for the controller to report `replicas` in the scale subresource."""
    wait_until(
        lambda: (
            (api.get_object(f"{path}/scale") or {}).get("status", {}).get("replicas") == replicas
        ),
        timeout_s=30,
        what=f"{path} status.replicas == {replicas}",
    )


def put_scaled_object(api, name, spec):
    api.put_object(
        SOS,
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": name},
            "spec": {**spec, "triggers": [{"type": "cpu", "metadata": {"value": "50"}}]},
        },
    )


def test_actual_replicas_of_every_kind_of_target(api):
    """The real controllers report: the Deployment and StatefulSet controllers count the pods
    they created (none ever runs), the HPA controller its target's replicas; the Trainer's
    status is written as its operator would."""
    api.put_object(DEPLOYS, deployment("web", api.ns, 3))
    api.put_object(STSS, stateful_set("trainer", api.ns, 4))
    api.put_object(DEPLOYS, deployment("report-worker", api.ns, 1))
    api.put_object(DEPLOYS, deployment("api-target", api.ns, 7))
    put_scaled_object(api, "report", {"scaleTargetRef": {"name": "report-worker"}})
    api.put_object(
        TRAINERS,
        {
            "apiVersion": "example.com/v1",
            "kind": "Trainer",
            "metadata": {"name": "gpt"},
            "spec": {"replicas": 6},
            "status": {"replicas": 5, "selector": "app=gpt"},
        },
    )
    api.put_object(
        HPAS,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "api"},
            "spec": {
                "minReplicas": 1,
                "maxReplicas": 9,
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "api-target",
                },
            },
        },
    )
    scale_status(api, f"{DEPLOYS}/web", 3)
    scale_status(api, f"{STSS}/trainer", 4)
    scale_status(api, f"{DEPLOYS}/report-worker", 1)
    wait_until(
        lambda: api.get_object(f"{HPAS}/api").get("status", {}).get("currentReplicas") == 7,
        timeout_s=30,
        what="the HPA controller's currentReplicas",
    )

    def namespaced(obj):
        obj["metadata"]["namespace"] = api.ns
        return obj

    custom = cr("custom", apiVersion="example.com/v1", kind="Trainer")
    custom["spec"]["scaleTargetRef"]["name"] = "gpt"
    hpa = cr("api", apiVersion="autoscaling/v2", kind="HorizontalPodAutoscaler")
    cache = ScalerResourceCache()
    cache.replace_all([namespaced(custom), namespaced(hpa)])
    reader = KubeReplicaReader(api.client(), resources=cache.items)
    ns = api.ns
    got = reader.read(
        [
            workload("web", ns=ns),
            workload("train", TargetKind.STATEFUL_SET, "trainer", ns=ns),
            workload("report", TargetKind.SCALED_OBJECT, ns=ns),
            workload("custom", ns=ns),  # its CarbonAwareScaler points at the Trainer "gpt"
            workload("api", ns=ns),  # its CarbonAwareScaler points at an HPA
        ]
    )
    assert got == {"web": 3, "train": 4, "report": 1, "custom": 5, "api": 7}
    gets = [r.path for r in api.requests if r.method == "GET"]
    assert api.path(f"{DEPLOYS}/web/scale") in gets
    assert api.path(f"{STSS}/trainer/scale") in gets
    assert api.path(f"{SOS}/report") in gets
    assert api.path(f"{DEPLOYS}/report-worker/scale") in gets
    assert api.path(f"{TRAINERS}/gpt/scale") in gets
    assert api.path(f"{HPAS}/api") in gets
    assert reader.name == "kube"


def test_scale_subresource_answers_like_the_api_server(api):
    """Right after creation, before the Deployment controller reports: status.replicas 0
    (omitted from the JSON), the selector as a string."""
    api.put_object(DEPLOYS, deployment("web", api.ns, 3))
    scale = k8s.AppsV1Api(api.client()).read_namespaced_deployment_scale("web", api.ns)
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec is not None
    assert scale.status is not None
    assert scale.spec.replicas == 3
    assert scale.status.selector == "app=web"
    assert KubeReplicaReader(api.client()).read([workload("web", ns=api.ns)])["web"] in (0, 3)
    scale_status(api, f"{DEPLOYS}/web", 3)
    assert KubeReplicaReader(api.client()).read([workload("web", ns=api.ns)]) == {"web": 3}


def test_read_failures_are_source_errors_per_workload(api):
    for name, replicas in (("web", 2), ("cart", 1), ("api", 1)):
        api.put_object(DEPLOYS, deployment(name, api.ns, replicas))
        scale_status(api, f"{DEPLOYS}/{name}", replicas)
    api.fail_next("GET", "/deployments/cart/scale", 500)
    api.fail_next("GET", "/deployments/api/scale", 403)
    ns = api.ns
    got = KubeReplicaReader(api.client()).read(
        [workload(name, ns=ns) for name in ("web", "gone", "cart", "api")]
    )
    assert got["web"] == 2
    assert isinstance(got["gone"], SourceRequestError)
    assert f"Deployment {ns}/gone not found" in str(got["gone"])
    assert isinstance(got["cart"], SourceUnavailable)
    assert got["cart"].status == 500
    assert isinstance(got["api"], SourceRequestError)
    assert "RBAC needs get on deployments/scale" in str(got["api"])
    # the failures were one-off: the next tick reads them again
    again = KubeReplicaReader(api.client()).read([workload("cart", ns=ns), workload("api", ns=ns)])
    assert again == {"cart": 1, "api": 1}


def test_a_scaled_object_without_scale_target_is_refused_by_keda_s_crd(api):
    """What the reader reports as a malformed ScaledObject (SourceDataError, on the stand-in in
    tests/integration/test_kube_stand_in.py) cannot be stored with KEDA's own CRD:
    scaleTargetRef is required."""
    with pytest.raises(k8s.ApiException) as refused:
        k8s.CustomObjectsApi(api.client()).create_namespaced_custom_object(
            "keda.sh",
            "v1alpha1",
            api.ns,
            "scaledobjects",
            {
                "apiVersion": "keda.sh/v1alpha1",
                "kind": "ScaledObject",
                "metadata": {"name": "bad"},
                "spec": {"triggers": [{"type": "cpu", "metadata": {"value": "50"}}]},
            },
        )
    assert refused.value.status == 422
    assert "scaleTargetRef" in str(refused.value.body)


def test_a_dead_api_server_is_tried_once_per_tick_not_per_workload():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    configuration = k8s.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.retries = 0
    reader = KubeReplicaReader(k8s.ApiClient(configuration), request_timeout_seconds=1.0)
    got = reader.read([workload("web"), workload("cart"), workload("api")])
    errors = list(got.values())
    assert all(isinstance(e, SourceUnavailable) and e.status is None for e in errors), got
    assert errors[0] is errors[1] is errors[2]
    assert "API server unreachable" in str(errors[0])


def test_the_tick_reads_actual_replicas_and_survives_the_api_server_failing(api):
    api.put_object(DEPLOYS, deployment("web", api.ns, 4))
    scale_status(api, f"{DEPLOYS}/web", 4)
    holder = SnapshotHolder()
    loop = ScalerLoop(
        [workload("web", ns=api.ns)],
        carbon=FakeDailyCarbonSource({"eu-west-1": [300.0] * 24}),
        load=FakeLoadSource(levels={"web_rps": 30.0}),
        clock=FrozenClock(T0),
        holder=holder,
        params=PolicyParams(),
        replica_reader=KubeReplicaReader(api.client()),
    )
    first = loop.tick().workloads["web"]
    assert (first.actual_replicas, first.actual_replicas_note) == (4, "")
    api.fail_next("GET", "/deployments/web/scale", 503)
    second = loop.tick()
    assert second.workloads["web"].actual_replicas is None
    assert "read failed" in second.workloads["web"].actual_replicas_note
    assert second.source_errors_total["kube"] == 1
    assert holder.current() is second


def test_only_workloads_gridshift_actuates_for_real_are_in_effect(api):
    """Accounting uses actual replicas only where gridshift sets the target: a
    CarbonAwareScaler with an actuation mode and no dry run."""

    def namespaced(obj):
        obj["metadata"]["namespace"] = api.ns
        return obj

    cache = ScalerResourceCache()
    cache.replace_all(
        [
            namespaced(cr("live", mode="scale")),
            namespaced(cr("shadow", mode="scale", dry_run=True)),
            namespaced(cr("metric-only")),  # mode none: an HPA of its own reads our metric
        ]
    )
    reader = KubeReplicaReader(api.client(), resources=cache.items)
    names = ["live", "shadow", "metric-only", "no-resource"]
    assert reader.in_effect([workload(n, ns=api.ns) for n in names]) == frozenset({"live"})
