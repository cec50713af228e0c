"""The CarbonAwareScaler CRD (deploy/crd) on the real API server.

Aspects: the OpenAPI schema and the CEL rule reject bad resources with 422 and the field and
message (table rows, server-side dry run: what `kubectl apply --dry-run=server` sees);
defaults are applied (minReplicas 1, actuation mode none, dryRun false); the scaler writes
`.status` through the status subresource (a spec write cannot set status, a status write
cannot change spec), with deploy/'s RBAC; `kubectl get cas` prints the CRD's printer columns
filled from that status (Target, Region, Mode, Desired, Actuation, Saved-gCO2, Ready); a
dry-run HPA actuation is recorded in status and patches nothing.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from tests.cluster.install import (
    DEPLOY,
    config_workload,
    deployment,
    running_scaler,
    scaler_config,
    write_carbon_trace,
)
from tests.cluster.plane import KubePlane, wait_until
from tests.cluster.test_hpa import example_hpa

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

NAMESPACE = "shop-crd"
GROUP, VERSION, PLURAL = "gridshift.io", "v1alpha1", "carbonawarescalers"


def example() -> dict[str, Any]:
    cr = yaml.safe_load((DEPLOY / "scaler" / "example-carbonawarescaler.yaml").read_text())
    cr["metadata"]["namespace"] = NAMESPACE
    return dict(cr)


def with_spec(**changes: Any) -> dict[str, Any]:
    cr = copy.deepcopy(example())
    cr["metadata"]["name"] = "bad"
    for key, value in changes.items():
        if value is None:
            cr["spec"].pop(key, None)
        else:
            cr["spec"][key] = value
    return cr


def create(plane: KubePlane, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
    result: dict[str, Any] = plane.custom.create_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, PLURAL, body, dry_run="All" if dry_run else None
    )
    return result


@pytest.fixture(scope="module")
def shop(plane: KubePlane, scaler_hpa: str) -> Iterator[str]:
    with plane.namespace(NAMESPACE) as name:
        yield name


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        pytest.param(
            with_spec(minReplicas=5, maxReplicas=2),
            "spec",
            "minReplicas must be <= maxReplicas",
            id="CEL: min above max",
        ),
        pytest.param(
            with_spec(maxReplicas=0),
            "spec.maxReplicas",
            "should be greater than or equal to 1",
            id="max zero",
        ),
        pytest.param(
            with_spec(minReplicas=-1),
            "spec.minReplicas",
            "should be greater than or equal to 0",
            id="negative min",
        ),
        pytest.param(
            with_spec(maxReplicas=None), "spec.maxReplicas", "Required value", id="no max"
        ),
        pytest.param(
            with_spec(scaleTargetRef=None), "spec.scaleTargetRef", "Required value", id="no target"
        ),
        pytest.param(
            with_spec(scaleTargetRef={"apiVersion": "apps/v1", "kind": "Deployment", "name": ""}),
            "spec.scaleTargetRef.name",
            "should be at least 1 chars long",
            id="empty target name",
        ),
        pytest.param(
            with_spec(actuation={"mode": "replace"}),
            "spec.actuation.mode",
            'supported values: "none", "hpa", "scaledObject", "scale"',
            id="unknown actuation mode",
        ),
        pytest.param(
            with_spec(ciSchedules=[{"cron": "* *", "extraLoad": 1}]),
            "spec.ciSchedules[0].cron",
            "should be at least 9 chars long",
            id="short cron",
        ),
        pytest.param(
            with_spec(workloadClass="elastic"),
            "spec",
            "spec.elastic is required exactly when workloadClass is elastic",
            id="CEL: elastic without its work",
        ),
        pytest.param(
            with_spec(power={"idleWatts": 50, "busyWatts": 10}),
            "spec.power",
            "idleWatts must not exceed busyWatts",
            id="CEL: idle above busy",
        ),
        pytest.param(
            with_spec(modeOverrides=[{"mode": "eco", "cron": "0 1 * * *"}]),
            "spec.modeOverrides[0]",
            "a cron override needs durationSeconds",
            id="CEL: cron override without duration",
        ),
        pytest.param(
            with_spec(budget={"reductionPercent": 100}),
            "spec.budget.reductionPercent",
            "reductionPercent must be in (0, 100)",
            id="CEL: budget of 100 %",
        ),
        pytest.param(
            with_spec(region="r" * 64),
            "spec.region",
            "may not be more than 63 bytes",
            id="long region",
        ),
    ],
)
def test_invalid_resources_are_refused_with_field_and_message(
    plane: KubePlane, shop: str, body: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(ApiException) as refused:
        create(plane, body, dry_run=True)
    assert refused.value.status == 422
    status = json.loads(refused.value.body or "{}")
    assert status["reason"] == "Invalid"
    causes = status["details"]["causes"]
    assert any(c["field"] == field and message in c["message"] for c in causes), causes


def test_defaults_are_applied(plane: KubePlane, shop: str) -> None:
    body = with_spec(minReplicas=None, actuation={})
    body["metadata"]["name"] = "defaults"
    stored = create(plane, body, dry_run=True)
    assert stored["spec"]["minReplicas"] == 1
    assert stored["spec"]["actuation"] == {"mode": "none", "dryRun": False}


def test_scaler_writes_status_and_kubectl_prints_the_columns(
    plane: KubePlane, shop: str, fresh_scaler_state: None, tmp_path: Path
) -> None:
    plane.apply(deployment("web", shop, 1))
    plane.apply(example_hpa(shop))
    cr = example()
    # the config-file workload of the same namespace/name is the base (its SAMPLE DATA load:
    # no Prometheus needed); the CR overrides it field by field
    del cr["spec"]["load"]
    cr["spec"].update(minReplicas=3, maxReplicas=3, actuation={"mode": "hpa", "dryRun": True})
    # a spec write cannot set status (the status subresource is separate)
    cr["status"] = {"desiredReplicas": 99}
    created = create(plane, cr)
    assert "status" not in created or created["status"].get("desiredReplicas") != 99
    base = config_workload(shop, replicas=(1, 10), region="IE")
    # carbon for the CR's eu-west-1 (IE by the carbon regions' match rules) from a trace
    carbon = {
        "trace": {"path": str(write_carbon_trace(tmp_path / "carbon.csv", {"IE": 300}))},
        "uk": {"enabled": False},
    }
    config = scaler_config(
        plane, tmp_path, workloads=[base], identity="a", extra={"carbon": carbon}
    )
    with running_scaler(plane, config) as scaler:

        def status() -> dict[str, Any] | None:
            obj = plane.custom.get_namespaced_custom_object(GROUP, VERSION, shop, PLURAL, "web")
            got: dict[str, Any] | None = obj.get("status")
            # the first tick may decide before the CR watch has listed it (the config-file
            # base alone, 1..10); from then on the CR's bounds hold
            done = got and "lastActuation" in got and got.get("desiredReplicas") == 3
            return got if done else None

        try:
            got = wait_until(status, timeout_s=60, what="status with the dry-run actuation")
        except AssertionError:
            obj = plane.custom.get_namespaced_custom_object(GROUP, VERSION, shop, PLURAL, "web")
            raise AssertionError(
                f"status {obj.get('status')}; scaler: {''.join(scaler.output)[-3000:]}"
            ) from None
    assert got["desiredReplicas"] == 3  # the CR's bounds, not the base's
    assert got["mode"] in ("eco", "performance")
    assert got["observedGeneration"] == created["metadata"]["generation"]
    ready = {c["type"]: c for c in got["conditions"]}["Ready"]
    assert ready["status"] == "True", got["conditions"]
    actuation = got["lastActuation"]
    assert actuation["dryRun"] is True
    assert actuation["applied"] is False
    assert actuation["target"] == "HorizontalPodAutoscaler/web"
    hpa = plane.get(f"/apis/autoscaling/v2/namespaces/{shop}/horizontalpodautoscalers/web")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 20)  # untouched

    crd = yaml.safe_load((DEPLOY / "crd" / "carbonawarescalers.gridshift.io.yaml").read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    table = plane.kubectl("get", "cas", "-n", shop).stdout.splitlines()
    header = table[0].split()
    # kubectl shows the columns of priority 0 (the rest with -o wide)
    assert header == ["NAME", *(c["name"].upper() for c in columns if not c.get("priority"))]
    row = dict(zip(header, table[1].split(), strict=True))
    assert row["NAME"] == "web"
    assert row["TARGET"] == "web"
    assert row["REGION"] == "eu-west-1"
    assert row["MODE"] == got["mode"]
    assert row["DESIRED"] == "3"
    assert row["ACTUATION"] == "hpa"
    assert float(row["SAVED-GCO2"]) == pytest.approx(got["savedGrams"])
    assert row["READY"] == "True"
