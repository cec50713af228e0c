"""A KEDA ScaledObject with gridshift's external-push trigger scales a Deployment through KEDA's
own HPA, on the real plane with KEDA v2.20.2's operator and metrics adapter.

Aspects: deploy/scaler/example-scaledobject.yaml (TriggerAuthentication + ScaledObject) applied
with only the scaler address changed to loopback and a 1 s polling interval; gridshift's KEDA
gRPC listener over mutual TLS as deploy/overlays/scaler-keda configures it (serving cert,
client CA); KEDA activates the Deployment from zero on gridshift's IsActive, creates
`keda-hpa-web` with gridshift's metric, and the real HPA controller, reading the metric
through the aggregator from KEDA's adapter (which asks KEDA's operator, which asks gridshift),
scales to gridshift's decision; the ScaledObject reports Ready and Active.
"""

from __future__ import annotations

import base64
import copy
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
)
from tests.cluster.keda import require_keda, running_keda
from tests.cluster.plane import KubePlane, free_port, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(400)]

NAMESPACE = "shop-keda"


def example_objects(namespace: str, *, port: int) -> list[dict[str, Any]]:
    docs = [
        copy.deepcopy(d)
        for d in yaml.safe_load_all((DEPLOY / "scaler" / "example-scaledobject.yaml").read_text())
        if d
    ]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        if doc["kind"] == "ScaledObject":
            (trigger,) = doc["spec"]["triggers"]
            assert trigger["metadata"]["scalerAddress"] == "gridshift-scaler.carbon-system.svc:6000"
            trigger["metadata"]["scalerAddress"] = f"localhost:{port}"
            doc["spec"]["pollingInterval"] = 1
    return docs


def tls_secret(plane: KubePlane, namespace: str) -> dict[str, Any]:
    """KEDA's side of the mutual TLS: the CA of gridshift's serving cert, KEDA's client cert."""
    client = plane.ca.issue_cert("keda-operator", common_name="keda-operator")

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "gridshift-keda-tls", "namespace": namespace},
        "data": {
            "ca.crt": b64(plane.ca_file.read_bytes()),
            "tls.crt": b64(client.cert_chain_pems[0].bytes()),
            "tls.key": b64(client.private_key_pem.bytes()),
        },
    }


@pytest.fixture
def shop(plane: KubePlane, scaler_hpa: str) -> Iterator[str]:
    require_keda()
    with plane.namespace(NAMESPACE) as name:
        yield name


def test_keda_scales_a_deployment_from_gridshifts_external_push_trigger(
    plane: KubePlane, shop: str, fresh_scaler_state: None, tmp_path: Path
) -> None:
    plane.apply(deployment("web", shop, 0))
    port = free_port()
    cert, key = plane.serving_cert("scaler-keda", "gridshift-scaler.carbon-system.svc", "localhost")
    workload = config_workload(shop, replicas=(3, 3), target_kind="ScaledObject")
    keda_tls = {
        "enabled": True,
        "listen": f"127.0.0.1:{port}",
        "tls_cert_file": str(cert),
        "tls_key_file": str(key),
        "tls_client_ca_file": str(plane.ca_file),
    }
    config = scaler_config(
        plane, tmp_path, workloads=[workload], identity="a", extra={"keda": keda_tls}
    )
    with running_keda(plane), running_scaler(plane, config):
        plane.apply([tls_secret(plane, shop), *example_objects(shop, port=port)])

        def replicas() -> int:
            return int(plane.apps.read_namespaced_deployment("web", shop).spec.replicas or 0)

        wait_until(lambda: replicas() == 3, timeout_s=180, what="3 replicas via KEDA")
        hpa = plane.get(
            f"/apis/autoscaling/v2/namespaces/{shop}/horizontalpodautoscalers/keda-hpa-web"
        )
        (metric,) = hpa["spec"]["metrics"]
        assert metric["type"] == "External"
        assert metric["external"]["metric"]["selector"]["matchLabels"] == {
            "scaledobject.keda.sh/name": "web"
        }
        scaled = plane.custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", shop, "scaledobjects", "web"
        )
        conditions = {c["type"]: c["status"] for c in scaled["status"]["conditions"]}
        assert conditions["Ready"] == "True", scaled["status"]
        assert conditions["Active"] == "True", scaled["status"]
