"""Actual replicas from a list + watch of Deployments and StatefulSets (`ScaleTargetCache`,
kube.watch_scale_targets) on the real API server, behind the recording proxy.

Aspects: once listed, a Deployment's and a StatefulSet's replicas are read with no request at
all (the proxy sees none for them); a change the controllers make arrives through the watch; a
target that does not exist is a 404 SourceError, also without a request; before the first list
the reader GETs the scale subresource as before; other kinds (an HPA) are still read with one
GET; the client counts every request it sends by verb and resource (RequestCounts)."""

from __future__ import annotations

import threading

import pytest
from kubernetes import client as k8s

from config.wiring.kube import GridshiftApiClient
from forecasts.platform.errors import SourceRequestError
from scaler.kube.replicas import KubeReplicaReader, ScaleTargetCache, scale_target_watchers
from scaler.kube.resources import TargetRef
from tests.cluster.install import deployment
from tests.cluster.plane import wait_until

pytestmark = pytest.mark.cluster

DEPLOYS = "/apis/apps/v1/namespaces/{ns}/deployments"
STSS = "/apis/apps/v1/namespaces/{ns}/statefulsets"
WEB = TargetRef("apps/v1", "Deployment", "web")
DB = TargetRef("apps/v1", "StatefulSet", "db")


def stateful_set(name, namespace, replicas):
    spec = deployment(name, namespace, replicas)
    spec["kind"] = "StatefulSet"
    spec["spec"] |= {"serviceName": name, "podManagementPolicy": "Parallel"}
    return spec


def test_deployments_and_statefulsets_are_read_from_the_watch(api):
    api.put_object(DEPLOYS, deployment("web", api.ns, 3))
    api.put_object(STSS, stateful_set("db", api.ns, 2))
    client = GridshiftApiClient(api.client().configuration)
    cache = ScaleTargetCache()
    reader = KubeReplicaReader(client, targets=cache)
    before = len(api.requests)
    assert reader.replicas_of(api.ns, WEB) in (0, 3), "not listed yet: one GET"
    assert [r.path for r in api.requests[before:]][-1].endswith("/deployments/web/scale")
    stop = threading.Event()
    watchers = scale_target_watchers(
        client,
        cache,
        namespace=api.ns,
        request_timeout_seconds=5,
        watch_timeout_seconds=30,
        stop=stop,
    )
    threads = [threading.Thread(target=w.run, daemon=True) for w in watchers]
    for t in threads:
        t.start()
    try:
        wait_until(
            lambda: cache.synced("Deployment") and cache.synced("StatefulSet"),
            timeout_s=30,
            what="both kinds listed",
        )
        wait_until(
            lambda: reader.replicas_of(api.ns, WEB) == 3 and reader.replicas_of(api.ns, DB) == 2,
            timeout_s=30,
            what="the controllers' replica counts, through the watch",
        )
        before = len(api.requests)
        for _ in range(100):
            assert reader.replicas_of(api.ns, WEB) == 3
        with pytest.raises(SourceRequestError) as missing:
            reader.replicas_of(api.ns, TargetRef("apps/v1", "Deployment", "gone"))
        assert missing.value.status == 404
        reads = [r for r in api.requests[before:] if "/watch" not in r.path]
        assert [r for r in reads if not r.query.get("watch")] == [], "no request per read"
        k8s.AppsV1Api(client).patch_namespaced_deployment_scale(
            "web", api.ns, {"spec": {"replicas": 5}}
        )
        wait_until(lambda: reader.replicas_of(api.ns, WEB) == 5, timeout_s=30, what="the new count")
    finally:
        stop.set()
        for w in watchers:
            w.stop()
    counts = client.request_counts.snapshot()
    assert counts[("get", "deployments/scale")] == 1
    assert counts[("patch", "deployments/scale")] == 1
    assert counts[("list", "deployments")] >= 1
    assert counts[("list", "statefulsets")] >= 1
    assert counts[("watch", "deployments")] >= 1
