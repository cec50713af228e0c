"""`KubeController` status writes on the real API server (tests/cluster, behind the recording
proxy, a namespace per test), with the real client: written only on change, whoever decides.

Aspects: the same decision tick after tick (new reasons' figures and grams each tick) is not
written again until `status_refresh_seconds` have passed, and then once; a changed decision is
written at once; a replica that takes over a CR whose status already carries its decision
writes nothing; sharded (`owns`), only the owned CRs are written, and a CR whose shard moved
away is written again when the shard comes back only if its decision changed; with
`status_write_concurrency` several CRs are synced at once and each is written exactly once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from kubernetes import client as k8s

from forecasts.time import FrozenClock
from scaler.kube import Actuator, KubeController, ScalerResourceCache, StatusWriter
from scaler.snapshot import Mode, Snapshot, WorkloadStatus

pytestmark = pytest.mark.cluster

T0 = datetime(2026, 12, 5, 9, tzinfo=UTC)
CRS = "/apis/gridshift.io/v1alpha1/namespaces/{ns}/carbonawarescalers"


def cr(name):
    return {
        "apiVersion": "gridshift.io/v1alpha1",
        "kind": "CarbonAwareScaler",
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 10,
            "region": "GB",
        },
    }


def snapshot(ns, at, replicas=3, *, names=("web",), tick=0):
    return Snapshot(
        taken_at=at,
        workloads={
            n: WorkloadStatus(
                name=n,
                namespace=ns,
                region="GB",
                desired_replicas=replicas,
                mode=Mode.ECO,
                reasons=(f"demand {40 + tick} / 20 per replica",),
                decided_at=at,
                saved_g=1.0 + tick,
            )
            for n in names
        },
    )


def controller(api, cache, clock, *, owns=None, refresh=300.0):
    return KubeController(
        cache=cache,
        status_writer=StatusWriter(k8s.CustomObjectsApi(api.client())),
        actuator=Actuator(api.client(), clock=clock),
        is_leader=lambda: True,
        clock=clock,
        owns=owns,
        status_refresh_seconds=refresh,
    )


def test_the_same_decision_is_written_once_then_on_the_refresh_clock(api):
    clock = FrozenClock(T0)
    cache = ScalerResourceCache()
    cache.replace_all([api.put_object(CRS, cr("web"))])
    ctl = controller(api, cache, clock)
    assert ctl.sync(snapshot(api.ns, clock.now())) == 1
    # a minute per tick: same decision, new figures; the refresh is due after 300 s spread
    # per CR over [0.75, 1.25) x 300 s, so not within the first 3 minutes
    for tick in range(1, 4):
        clock.advance(timedelta(minutes=1))
        assert ctl.sync(snapshot(api.ns, clock.now(), tick=tick)) == 0, tick
    clock.advance(timedelta(minutes=4))
    assert ctl.sync(snapshot(api.ns, clock.now(), tick=20)) == 1, "the figures, refreshed"
    assert ctl.sync(snapshot(api.ns, clock.now(), tick=21)) == 0, "and not again at once"
    status = api.get_object(f"{CRS}/web")["status"]
    assert (status["savedGrams"], status["lastDecision"]["decidedAt"]) == (
        21.0,
        "2026-12-05T09:00:00Z",
    )
    clock.advance(timedelta(minutes=1))
    assert ctl.sync(snapshot(api.ns, clock.now(), replicas=4, tick=22)) == 1, (
        "a new decision: at once"
    )
    assert ctl.status_writes == {"first": 1, "refresh": 1, "change": 1}


def test_a_replica_taking_over_writes_nothing_the_cr_already_says(api):
    clock = FrozenClock(T0)
    cache = ScalerResourceCache()
    cache.replace_all([api.put_object(CRS, cr("web"))])
    assert controller(api, cache, clock).sync(snapshot(api.ns, clock.now())) == 1
    cache.replace_all([api.get_object(f"{CRS}/web")])  # the new owner's watch sees the status
    clock.advance(timedelta(minutes=1))
    successor = controller(api, cache, clock)
    assert successor.sync(snapshot(api.ns, clock.now(), tick=1)) == 0
    assert successor.sync(snapshot(api.ns, clock.now(), replicas=5, tick=2)) == 1


def test_sharded_writes_only_what_it_owns(api):
    clock = FrozenClock(T0)
    cache = ScalerResourceCache()
    cache.replace_all([api.put_object(CRS, cr(n)) for n in ("web", "api")])
    owned = {"web"}
    ctl = controller(api, cache, clock, owns=lambda _ns, name: name in owned)
    snap = snapshot(api.ns, clock.now(), names=("web", "api"))
    assert ctl.sync(snap) == 1
    assert "status" not in api.get_object(f"{CRS}/api")
    owned.clear()
    assert ctl.sync(snapshot(api.ns, clock.now(), 6, names=("web", "api"))) == 0, (
        "shard gone: no writes"
    )
    cache.replace_all([api.get_object(f"{CRS}/{n}") for n in ("web", "api")])
    owned.update({"web", "api"})
    assert ctl.sync(snap) == 1, "back: web's status already says it; api is new"


def test_concurrent_writes_write_each_cr_once(api):
    clock = FrozenClock(T0)
    cache = ScalerResourceCache()
    names = tuple(f"w{i:02d}" for i in range(24))
    cache.replace_all([api.put_object(CRS, cr(n)) for n in names])
    ctl = KubeController(
        cache=cache,
        status_writer=StatusWriter(k8s.CustomObjectsApi(api.client())),
        actuator=Actuator(api.client(), clock=clock),
        is_leader=lambda: True,
        clock=clock,
        status_refresh_seconds=300,
        status_write_concurrency=6,
    )
    assert ctl.sync(snapshot(api.ns, clock.now(), names=names)) == len(names)
    assert ctl.sync(snapshot(api.ns, clock.now(), names=names)) == 0
    assert ctl.status_writes == {"first": len(names), "change": 0, "refresh": 0}
    patches = [r for r in api.requests if r.method == "PATCH" and r.path.endswith("/status")]
    assert sorted(r.path.split("/")[-2] for r in patches) == list(names)
    assert all(api.get_object(f"{CRS}/{n}")["status"]["desiredReplicas"] == 3 for n in names)
