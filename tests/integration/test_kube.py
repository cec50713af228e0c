"""scaler.kube against the fake API server (tests/apiserver.py) with the REAL kubernetes
client: CR list+watch (events, bookmarks, 410 Gone -> relist, invalid resources kept aside),
status merge patches (409 -> re-read and retry, 404), actuation of HPA / ScaledObject /
scale subresource (Deployment and custom resource) and dry-run touching nothing, Lease
acquire / renew / expiry takeover / conflict / release, the controller acting only as leader
and never leaving a CR silent (AwaitingDecision, Ready=False + one Warning Event per problem,
decision and mode-change Events), every write naming gridshift (user agent, fieldManager),
delegated TokenReview / SubjectAccessReview with caching, and actual replicas: the scale
subresource of Deployments, StatefulSets and custom kinds, a ScaledObject's own target, an
HPA's currentReplicas, a CarbonAwareScaler's target taking precedence; 404/403/5xx and a
malformed ScaledObject as per-workload SourceErrors; a dead API server tried once per read;
the tick reading them and surviving failures."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from forecasts.platform.errors import SourceDataError, SourceRequestError, SourceUnavailable
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
from tests.apiserver import FakeApiServer
from tests.fakes import FakeDailyCarbonSource, FakeLoadSource

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
CRS = "/apis/gridshift.io/v1alpha1/namespaces/shop/carbonawarescalers"
HPAS = "/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers"
SOS = "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects"
DEPLOYS = "/apis/apps/v1/namespaces/shop/deployments"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/carbon-system/leases"


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


def decision(name="web", replicas=3, mode=Mode.ECO, stale=()):
    return WorkloadStatus(
        name=name,
        namespace="shop",
        region="eu-west-1",
        desired_replicas=replicas,
        mode=mode,
        reasons=("carbon high",),
        decided_at=T0,
        stale_inputs=stale,
        saved_g=12.5,
    )


@pytest.fixture
def api():
    with FakeApiServer(bookmark_interval_seconds=0.05) as server:
        yield server


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("condition not reached")


# ------------------------------------------------------------------ watch
def test_watch_lists_then_follows_events_bookmarks_and_relists_on_410(api):
    api.put_object(CRS, cr("web"))
    api.put_object(CRS, cr("bad", max_replicas=0))
    cache = ScalerResourceCache()
    custom = k8s.CustomObjectsApi(api.client())
    watcher = ScalerResourceWatcher(custom, cache, watch_timeout_seconds=1)
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: ("shop", "web") in cache.items())
        assert "spec.maxReplicas" in cache.invalid()[("shop", "bad")]
        api.put_object(CRS, cr("api", max_replicas=5))
        wait_for(lambda: ("shop", "api") in cache.items())
        assert cache.items()[("shop", "api")].max_replicas == 5
        wait_for(lambda: watcher.bookmarks > 0)
        api.delete_object(f"{CRS}/web")
        wait_for(lambda: ("shop", "web") not in cache.items())
        # history compacted under the open watch -> ERROR 410 -> the loop relists
        relists = watcher.relists
        api.compact()
        api.put_object(CRS, cr("late"))
        wait_for(lambda: ("shop", "late") in cache.items())
        wait_for(lambda: watcher.relists > relists)
    finally:
        watcher.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()
    watches = [r for r in api.requests if r.query.get("watch") == ["true"]]
    assert watches, "the client watched"
    assert all(r.query.get("allowWatchBookmarks") == ["true"] for r in watches)
    assert all(r.query.get("resourceVersion", [""])[0] not in ("", "0") for r in watches)


def test_watch_gone_forces_a_relist(api):
    api.put_object(CRS, cr("web"))
    cache = ScalerResourceCache()
    watcher = ScalerResourceWatcher(
        k8s.CustomObjectsApi(api.client()), cache, watch_timeout_seconds=1
    )
    watcher.list_once()
    api.put_object(CRS, cr("api"))
    api.compact()
    with pytest.raises(k8s.ApiException) as info:
        watcher.watch_once()
    assert info.value.status == 410
    watcher.list_once()
    assert set(cache.items()) == {("shop", "web"), ("shop", "api")}
    assert watcher.relists == 2


# ------------------------------------------------------------------ status
def test_status_patch_and_conflict_retry(api):
    stored = api.put_object(CRS, cr("web"))
    resource = parse_scaler_resource(stored)
    writer = StatusWriter(k8s.CustomObjectsApi(api.client()))
    status = status_for(decision(), resource=resource, now=T0)
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
def seed_targets(api):
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
                "triggers": [],
            },
        },
    )
    api.put_object(
        DEPLOYS,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2},
        },
    )


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
    result = actuator.actuate(resource, decided)
    assert result is not None
    assert result.applied, result.error
    spec = api.get_object(path)["spec"]
    assert {k: spec[k] for k in expected} == expected
    (patch,) = [r for r in api.requests if r.method == "PATCH"]
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    if mode == "scale":
        assert patch.path == f"{DEPLOYS}/web/scale"


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
    result = Actuator(client, clock=FrozenClock(T0)).actuate(resource, decision(replicas=4))
    assert result is not None
    assert result.applied, result.error
    custom = k8s.CustomObjectsApi(client)
    StatusWriter(custom).write(resource, {"desiredReplicas": 4})
    lock = LeaseLock(
        custom,
        namespace="carbon-system",
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


def test_custom_resource_scale_subresource(api):
    api.put_object(
        "/apis/example.com/v1/namespaces/shop/trainers",
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
    result = Actuator(api.client(), clock=FrozenClock(T0)).actuate(resource, decision(replicas=4))
    assert result is not None
    assert result.applied
    assert api.get_object("/apis/example.com/v1/namespaces/shop/trainers/web")["spec"] == {
        "replicas": 4
    }


def test_dry_run_records_and_touches_nothing(api):
    seed_targets(api)
    resource = parse_scaler_resource(api.put_object(CRS, cr("web", mode="hpa", dry_run=True)))
    actuator = Actuator(api.client(), clock=FrozenClock(T0))
    before = len(api.requests)
    result = actuator.actuate(resource, decision(replicas=3))
    assert result is not None
    assert (result.dry_run, result.applied) == (True, False)
    assert result.patch == {"spec": {"minReplicas": 1, "maxReplicas": 3}}
    assert api.requests[before:] == [], "shadow mode sends no request at all"
    assert api.get_object(f"{HPAS}/web")["spec"]["maxReplicas"] == 10
    assert actuator.history == [result]


def test_actuation_failure_is_recorded_not_raised(api):
    resource = parse_scaler_resource(api.put_object(CRS, cr("web", mode="hpa")))
    result = Actuator(api.client(), clock=FrozenClock(T0)).actuate(resource, decision())
    assert result is not None
    assert not result.applied
    assert result.error.startswith("404")


# ------------------------------------------------------------------ leases
def lease_pair(api, clock):
    custom = k8s.CustomObjectsApi(api.client())

    def make(who):
        return LeaseLock(
            custom,
            namespace="carbon-system",
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
    snap = Snapshot(taken_at=T0, workloads={"shop/web": decision(replicas=3)})
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
    changed = Snapshot(taken_at=T0, workloads={"shop/web": decision(replicas=4)})
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
    bad = cr("bad")
    bad["spec"]["maxReplicas"] = 0
    cache.replace_all([api.put_object(CRS, d) for d in (cr("web"), cr("api"), bad)])
    problems = {("shop", "api"): WorkloadProblem("UnknownRegion", "spec.region: 'x' is unknown")}
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
    assert controller.sync(empty) == 3
    assert ready("web") == ("Unknown", "AwaitingDecision")
    assert ready("api") == ("False", "UnknownRegion")
    assert ready("bad") == ("False", "InvalidSpec")
    clock.advance(timedelta(minutes=1))
    assert controller.sync(Snapshot(taken_at=T0, workloads={})) == 0, "nothing new to say"
    assert events("api") == [("Warning", "UnknownRegion")], "one Event, not one per sync"
    assert events("bad") == [("Warning", "InvalidSpec")]
    assert controller.sync(Snapshot(taken_at=T0, workloads={"shop/web": decision()})) == 1
    assert ready("web") == ("True", "DecisionPublished")
    perf = decision(replicas=5, mode=Mode.PERFORMANCE)  # from 3 replicas in eco mode
    controller.sync(Snapshot(taken_at=T0, workloads={"shop/web": perf}))
    assert events("web") == [
        ("Normal", "ScalingDecision"),
        ("Normal", "ModeChanged"),
        ("Normal", "ScalingDecision"),
    ]


def leader_runtime(api, clock, timer=time.monotonic):
    """A KubeRuntime (not started) for an HPA-actuated `web` deciding 6 replicas in
    performance mode, whose elector is stepped by hand on `clock`."""
    seed_targets(api)
    holder = SnapshotHolder(
        Snapshot(taken_at=T0, workloads={"shop/web": decision(replicas=6, mode=Mode.PERFORMANCE)})
    )
    custom = k8s.CustomObjectsApi(api.client())
    cache = ScalerResourceCache()
    cache.replace_all([api.put_object(CRS, cr("web", mode="hpa"))])
    lock = LeaseLock(
        custom, namespace="carbon-system", name="gridshift-scaler", identity="a", clock=clock
    )
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
    assert runtime.controller.pending == {("shop", "web")}
    assert api.get_object(f"{HPAS}/web")["spec"]["minReplicas"] == 1
    assert registry.get_sample_value("gridshift_kube_sync_pending_resources") == 1.0
    assert not runtime.sync_once(), "the retry waits out its backoff (1 s)"
    seconds[0] = 1.0
    assert runtime.sync_once(), "same snapshot, but a failed write is retried"
    assert runtime.controller.pending == {("shop", "web")}
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
def test_token_review_and_access_review_with_cache(api):
    seen = {"tokenreviews": 0, "subjectaccessreviews": 0}

    def token_review(body):
        seen["tokenreviews"] += 1
        ok = body["spec"]["token"] == "good"
        return {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "status": {
                "authenticated": ok,
                "user": {
                    "username": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
                    "groups": ["system:serviceaccounts"],
                }
                if ok
                else {},
            },
        }

    def access_review(body):
        seen["subjectaccessreviews"] += 1
        attrs = body["spec"]["resourceAttributes"]
        allowed = attrs["verb"] == "list" and attrs["group"] == "external.metrics.k8s.io"
        return {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "status": {"allowed": allowed},
        }

    api.handlers.update(tokenreviews=token_review, subjectaccessreviews=access_review)
    tokens = DelegatedTokenReviewer(api.client())
    user = tokens.review("good")
    assert user is not None
    assert user.groups == ("system:serviceaccounts",)
    assert tokens.review("good") == user
    assert tokens.review("bad") is None
    assert seen["tokenreviews"] == 2, "second lookup of the same token came from the cache"
    access = DelegatedAccessReviewer(api.client())
    attrs = RequestAttributes(
        verb="list",
        path="/x",
        resource_request=True,
        api_group="external.metrics.k8s.io",
        api_version="v1beta1",
        resource="gridshift_desired_replicas",
        namespace="shop",
    )
    hpa = UserInfo("hpa", ("system:serviceaccounts",))
    assert access.allowed(hpa, attrs) is True
    assert access.allowed(hpa, attrs) is True
    assert access.allowed(hpa, dataclasses.replace(attrs, verb="delete")) is False
    assert seen["subjectaccessreviews"] == 2
    sar = next(r for r in api.requests if r.path.endswith("subjectaccessreviews"))
    assert sar.body["spec"]["resourceAttributes"]["resource"] == "gridshift_desired_replicas"


def test_authentication_config_refresh_picks_up_a_rotated_ca(api):
    import trustme

    from scaler.apiauth import AuthenticationConfig, Authenticator
    from scaler.kube import AuthenticationConfigRefresher

    old_ca, new_ca = trustme.CA(), trustme.CA()
    path = "/api/v1/namespaces/kube-system/configmaps"

    def publish(ca, names='["front-proxy-client"]'):
        api.put_object(
            path,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "extension-apiserver-authentication"},
                "data": {
                    "requestheader-client-ca-file": ca.cert_pem.bytes().decode(),
                    "requestheader-allowed-names": names,
                },
            },
        )

    publish(old_ca)
    core = k8s.CoreV1Api(api.client())
    from scaler.kube import load_authentication_config_map

    authenticator = Authenticator(
        AuthenticationConfig.from_config_map(load_authentication_config_map(core))
    )
    changes = []
    refresher = AuthenticationConfigRefresher(
        core, authenticator, on_change=lambda: changes.append(1)
    )
    assert refresher.refresh_once() is False
    publish(new_ca)
    assert refresher.refresh_once() is True
    assert changes == [1]
    assert authenticator.config.requestheader is not None
    assert "BEGIN CERTIFICATE" in authenticator.config.requestheader.client_ca_pem
    assert authenticator.config.requestheader.client_ca_pem == new_ca.cert_pem.bytes().decode()
    publish(new_ca, names="not json")
    with pytest.raises(ValueError, match="requestheader-allowed-names"):
        refresher.refresh_once()
    assert authenticator.config.requestheader.client_ca_pem == new_ca.cert_pem.bytes().decode()


# ------------------------------------------------------------------ actual replicas
STSS = "/apis/apps/v1/namespaces/shop/statefulsets"
TRAINERS = "/apis/example.com/v1/namespaces/shop/trainers"


def workload(name, kind=TargetKind.DEPLOYMENT, target=None):
    return Workload(
        name=name,
        namespace="shop",
        target=WorkloadTarget(kind, target or name),
        load=LoadSpec(LoadSourceKind.PROMQL, f"{name}_rps"),
        capacity_per_replica=10.0,
        min_replicas=1,
        max_replicas=10,
        power=PowerModel(10.0, 30.0),
        region="eu-west-1",
    )


def put_workload_object(api, path, kind, name, *, spec_replicas, status_replicas=None):
    obj = {
        "apiVersion": path.split("/apis/")[1].rsplit("/namespaces", 1)[0],
        "kind": kind,
        "metadata": {"name": name},
        "spec": {"replicas": spec_replicas, "selector": {"matchLabels": {"app": name}}},
    }
    if status_replicas is not None:
        obj["status"] = {"replicas": status_replicas}
    api.put_object(path, obj)


def put_scaled_object(api, name, spec):
    api.put_object(
        SOS,
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": name},
            "spec": {**spec, "triggers": []},
        },
    )


def test_actual_replicas_of_every_kind_of_target(api):
    put_workload_object(api, DEPLOYS, "Deployment", "web", spec_replicas=3, status_replicas=2)
    put_workload_object(api, STSS, "StatefulSet", "trainer", spec_replicas=4, status_replicas=4)
    put_workload_object(api, DEPLOYS, "Deployment", "report-worker", spec_replicas=1)
    put_scaled_object(api, "report", {"scaleTargetRef": {"name": "report-worker"}})
    api.settle_replicas(DEPLOYS)  # the Deployment controller catches up: web 3, report 1
    put_workload_object(api, TRAINERS, "Trainer", "gpt", spec_replicas=6, status_replicas=5)
    api.put_object(
        HPAS,
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "api"},
            "spec": {"maxReplicas": 9, "scaleTargetRef": {"kind": "Deployment", "name": "x"}},
            "status": {"currentReplicas": 7, "desiredReplicas": 8},
        },
    )

    def namespaced(obj):
        obj["metadata"]["namespace"] = "shop"
        return obj

    custom = cr("custom", apiVersion="example.com/v1", kind="Trainer")
    custom["spec"]["scaleTargetRef"]["name"] = "gpt"
    hpa = cr("api", apiVersion="autoscaling/v2", kind="HorizontalPodAutoscaler")
    cache = ScalerResourceCache()
    cache.replace_all([namespaced(custom), namespaced(hpa)])
    reader = KubeReplicaReader(api.client(), resources=cache.items)
    got = reader.read(
        [
            workload("web"),
            workload("train", TargetKind.STATEFUL_SET, "trainer"),
            workload("report", TargetKind.SCALED_OBJECT),
            workload("custom"),  # its CarbonAwareScaler points at the Trainer "gpt"
            workload("api"),  # its CarbonAwareScaler points at an HPA
        ]
    )
    assert got == {"web": 3, "train": 4, "report": 1, "custom": 5, "api": 7}
    gets = [r.path for r in api.requests if r.method == "GET"]
    assert f"{DEPLOYS}/web/scale" in gets
    assert f"{STSS}/trainer/scale" in gets
    assert f"{SOS}/report" in gets
    assert f"{DEPLOYS}/report-worker/scale" in gets
    assert f"{TRAINERS}/gpt/scale" in gets
    assert f"{HPAS}/api" in gets
    assert reader.name == "kube"


def test_scale_subresource_answers_like_the_api_server(api):
    put_workload_object(api, DEPLOYS, "Deployment", "web", spec_replicas=3)
    scale = k8s.AppsV1Api(api.client()).read_namespaced_deployment_scale("web", "shop")
    assert (scale.kind, scale.api_version) == ("Scale", "autoscaling/v1")
    assert scale.spec is not None
    assert scale.status is not None
    assert scale.spec.replicas == 3
    assert scale.status.replicas == 0  # no controller has reported yet
    assert scale.status.selector == "app=web"
    assert KubeReplicaReader(api.client()).read([workload("web")]) == {"web": 0}


def test_read_failures_are_source_errors_per_workload(api):
    put_workload_object(api, DEPLOYS, "Deployment", "web", spec_replicas=2, status_replicas=2)
    put_workload_object(api, DEPLOYS, "Deployment", "cart", spec_replicas=1, status_replicas=1)
    put_workload_object(api, DEPLOYS, "Deployment", "api", spec_replicas=1, status_replicas=1)
    put_scaled_object(api, "bad", {})  # no scaleTargetRef
    api.fail_next("GET", "/deployments/cart/scale", 500)
    api.fail_next("GET", "/deployments/api/scale", 403)
    got = KubeReplicaReader(api.client()).read(
        [
            workload("web"),
            workload("gone"),
            workload("cart"),
            workload("api"),
            workload("bad", TargetKind.SCALED_OBJECT),
        ]
    )
    assert got["web"] == 2
    assert isinstance(got["gone"], SourceRequestError)
    assert "Deployment shop/gone not found" in str(got["gone"])
    assert isinstance(got["cart"], SourceUnavailable)
    assert got["cart"].status == 500
    assert isinstance(got["api"], SourceRequestError)
    assert "RBAC needs get on deployments/scale" in str(got["api"])
    assert isinstance(got["bad"], SourceDataError)
    assert "scaleTargetRef" in str(got["bad"])
    # the failures were one-off: the next tick reads them again
    again = KubeReplicaReader(api.client()).read([workload("cart"), workload("api")])
    assert again == {"cart": 1, "api": 1}


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
    put_workload_object(api, DEPLOYS, "Deployment", "web", spec_replicas=5, status_replicas=4)
    holder = SnapshotHolder()
    loop = ScalerLoop(
        [workload("web")],
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
        obj["metadata"]["namespace"] = "shop"
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
    assert reader.in_effect([workload(n) for n in names]) == frozenset({"live"})
