"""The real HPA (kube-controller-manager) scales a Deployment from gridshift's External
Metrics API, reached through the real aggregator.

Aspects: deploy/overlays/scaler-hpa applied with kubectl; the APIService becomes Available
(the aggregator's discovery probe with its front-proxy client certificate, which the scaler
trusts through kube-system/extension-apiserver-authentication); the scaler runs as its own
service account (deploy/'s RBAC: TokenReview/SubjectAccessReview, the authentication
ConfigMap); the HPA controller runs as kube-system/horizontal-pod-autoscaler and reads
`gridshift_desired_replicas` with deploy/scaler/example-hpa.yaml's selector; the Deployment's
replicas and its ReplicaSet follow gridshift's decision up, and down when the decision falls;
the HPA reports the metric it read; the aggregator loaded the APIService's OpenAPI (v2 and v3)
without logging an error about it. No kubelet: the replica counts are what is checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.install import (
    DEPLOY,
    config_workload,
    deployment,
    running_scaler,
    scaler_config,
    wait_api_service,
    wire_metrics_api,
)
from tests.cluster.plane import KubePlane, free_port, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

NAMESPACE = "shop-hpa"


def workload(replicas: int) -> dict[str, Any]:
    """A workload gridshift decides exactly `replicas` for (min = max)."""
    return config_workload(NAMESPACE, replicas=(replicas, replicas))


def example_hpa(namespace: str) -> dict[str, Any]:
    hpa = yaml.safe_load((DEPLOY / "scaler" / "example-hpa.yaml").read_text())
    hpa["metadata"]["namespace"] = namespace
    # scale down without the example's 60 s window, so the test sees it within a few syncs
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = 0
    return dict(hpa)


def replicas_of(plane: KubePlane) -> tuple[int, int]:
    """(Deployment spec.replicas, sum of its ReplicaSets' spec.replicas)."""
    dep = plane.apps.read_namespaced_deployment("web", NAMESPACE)
    sets = plane.apps.list_namespaced_replica_set(NAMESPACE, label_selector="app=web").items
    return dep.spec.replicas, sum(rs.spec.replicas or 0 for rs in sets)


def assert_aggregator_loaded_openapi(plane: KubePlane, log: Path, start: int) -> None:
    """The aggregated metrics API's OpenAPI is in the apiserver's merged documents, and the
    apiserver logged no error about the APIService since `start`, when it became Available
    (an APIService without
    /openapi/v2 and /openapi/v3 makes the OpenAPI aggregation controller log
    `"Unhandled Error" ... v1beta1.external.metrics.k8s.io` once or twice a minute)."""

    def merged() -> bool:
        v2 = plane.get("/openapi/v2")
        return any(path.startswith("/apis/external.metrics.k8s.io/") for path in v2["paths"])

    wait_until(merged, timeout_s=90, what="external.metrics.k8s.io in /openapi/v2")
    v3 = plane.get("/openapi/v3")
    assert "apis/external.metrics.k8s.io/v1beta1" in v3["paths"], sorted(v3["paths"])
    with log.open("rb") as f:
        f.seek(start)
        lines = f.read().decode(errors="replace").splitlines()
    errors = [
        line
        for line in lines
        if "external.metrics.k8s.io" in line and ("Unhandled Error" in line or line.startswith("E"))
    ]
    assert not errors, "\n".join(errors[:5])


@pytest.fixture
def shop(plane: KubePlane, scaler_hpa: str) -> Iterator[str]:
    with plane.namespace(NAMESPACE) as name:
        yield name


def test_real_hpa_scales_a_deployment_from_gridshifts_external_metric(
    plane: KubePlane, shop: str, fresh_scaler_state: None, tmp_path: Path
) -> None:
    plane.apply(deployment("web", shop, 1))
    plane.apply(example_hpa(shop))
    port = free_port()
    wire_metrics_api(plane, port=port)
    up = scaler_config(plane, tmp_path, workloads=[workload(4)], identity="a", metrics_port=port)
    with running_scaler(plane, up):
        wait_api_service(plane)
        # (before this, the availability controller logs the Service as refused: expected)
        apiserver_log = plane.processes["kube-apiserver"].log
        log_start = apiserver_log.stat().st_size
        metric = plane.get(
            f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{shop}/gridshift_desired_replicas"
            "?labelSelector=workload%3Dweb"
        )
        assert [i["value"] for i in metric["items"]] == ["4"]
        assert wait_until(
            lambda: replicas_of(plane) == (4, 4), timeout_s=120, what="4 replicas from the HPA"
        )
        hpa_path = f"/apis/autoscaling/v2/namespaces/{shop}/horizontalpodautoscalers/web"

        def per_replica() -> str | None:
            (current,) = plane.get(hpa_path)["status"]["currentMetrics"]
            assert current["external"]["metric"]["name"] == "gridshift_desired_replicas"
            value: str = current["external"]["current"]["averageValue"]
            return value if value == "1" else None

        # the status shows ceil(sum / status.replicas): 4 at 1 replica, then 1 at 4
        wait_until(per_replica, timeout_s=60, what="HPA status: averageValue 1 at 4 replicas")
        hpa = plane.get(hpa_path)
        active = {c["type"]: c for c in hpa["status"]["conditions"]}["ScalingActive"]
        assert active["status"] == "True", active
        assert_aggregator_loaded_openapi(plane, apiserver_log, log_start)

    down = scaler_config(plane, tmp_path, workloads=[workload(2)], identity="a", metrics_port=port)
    with running_scaler(plane, down):
        wait_until(
            lambda: replicas_of(plane) == (2, 2), timeout_s=120, what="2 replicas from the HPA"
        )
    events = plane.core.list_namespaced_event(shop, field_selector="involvedObject.name=web").items
    rescales = [e.message for e in events if e.reason == "SuccessfulRescale"]
    assert any("New size: 4" in m for m in rescales), rescales
    assert any("New size: 2" in m for m in rescales), rescales
