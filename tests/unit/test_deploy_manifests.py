"""Every object under deploy/ validates: built-in kinds against the real Kubernetes OpenAPI
schemas (kubernetes-validate, strict, two minor versions), custom resources against their
CRD's openAPIV3Schema (ours from deploy/crd, KEDA's ScaledObject and TriggerAuthentication
from our fixture subsets; the example ScaledObject reaches us over mutual TLS).
Also: the CRD's printer columns and status subresource, the example CR passes our own
parser, the example HPA asks for a metric we serve with AverageValue 1, the example
ScaledObject's trigger metadata is accepted by the KEDA servicer, and the wiring between
APIService, Service and RBAC names is consistent; the four metrics-API grants
(auth-delegator, extension-apiserver-authentication reader, HPA external-metrics reader and
its binding) are in the scaler-hpa overlay and not in scaler-keda; each overlay's scaler probes
reach a port its container serves with the settings its env gives (through the real loader),
with the right scheme, on a path the real server there answers 200."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scaler.keda import parse_metadata
from scaler.kube import parse_scaler_resource
from scaler.metrics_api import METRIC_NAMES
from tests.deploy_probes import METRICS_API_RBAC, container_settings, probe_answer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
CRD_FILE = DEPLOY / "crd" / "carbonawarescalers.gridshift.io.yaml"
KEDA_SCHEMA = ROOT / "tests" / "fixtures" / "crds" / "keda-scaledobject.schema.yaml"
KEDA_AUTH_SCHEMA = ROOT / "tests" / "fixtures" / "crds" / "keda-triggerauthentication.schema.yaml"


def kustomize_patches():
    """Partial objects that kustomize merges into others (not complete objects)."""
    return {
        (k.parent / patch).resolve()
        for k in DEPLOY.rglob("kustomization.yaml")
        for patch in yaml.safe_load(k.read_text()).get("patchesStrategicMerge", [])
    }


def documents():
    docs = []
    patches = kustomize_patches()
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.resolve() in patches:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            # Kubernetes objects only: not promtool rule tests, plain rules files, kustomize
            # or kube-scheduler configuration (tests/unit/test_kustomize.py covers those)
            if doc and "kind" in doc and "name" in doc.get("metadata", {}):
                docs.append(
                    (f"{path.relative_to(DEPLOY)}:{doc['kind']}/{doc['metadata']['name']}", doc)
                )
    return docs


DOCS = documents()
# custom resources; PrometheusRule/ServiceMonitor: tests/unit/test_kustomize.py
CUSTOM_KINDS = {
    "CarbonAwareScaler",
    "DaskCluster",  # deploy/fleet: tests/unit/test_deploy_fleet.py
    "ScaledObject",
    "TriggerAuthentication",
    "PrometheusRule",
    "ServiceMonitor",
}


def crd_schema():
    crd = yaml.safe_load(CRD_FILE.read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def by_kind(kind):
    return [doc for _, doc in DOCS if doc["kind"] == kind]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_objects_validate_against_kubernetes_schemas(version):
    checked = 0
    for name, doc in DOCS:
        if doc["kind"] in CUSTOM_KINDS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} invalid for Kubernetes {version}: {exc.message}")
        checked += 1
    kinds = {doc["kind"] for _, doc in DOCS}
    assert {
        "CustomResourceDefinition",
        "APIService",
        "ClusterRole",
        "ClusterRoleBinding",
        "RoleBinding",
        "Role",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "Deployment",
        "Service",
    } <= kinds
    assert checked >= 15


def test_kubernetes_validate_really_rejects(tmp_path):
    bad = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "x"},
        "spec": {"maxReplicas": "ten"},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[0], strict=True)


def test_carbonawarescalers_validate_against_the_crd_schema():
    schema = crd_schema()
    examples = by_kind("CarbonAwareScaler")
    assert examples
    for doc in examples:
        jsonschema.Draft7Validator(schema).validate(doc)
        parsed = parse_scaler_resource(doc)
        assert parsed.actuation.mode in ("none", "hpa", "scaledObject", "scale")


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"maxReplicas": 0}, "maxReplicas"),
        ({"minReplicas": -1}, "minReplicas"),
        ({"actuation": {"mode": "yolo"}}, "mode"),
        ({"scaleTargetRef": {"name": "web"}}, "apiVersion"),
    ],
)
def test_crd_schema_rejects_bad_specs(patch, field):
    doc = by_kind("CarbonAwareScaler")[0]
    bad = {**doc, "spec": {**doc["spec"], **patch}}
    with pytest.raises(jsonschema.ValidationError, match=field):
        jsonschema.Draft7Validator(crd_schema()).validate(bad)


def test_status_written_by_the_controller_fits_the_status_schema():
    from datetime import UTC, datetime

    from scaler.kube import ActuationResult, status_for
    from scaler.snapshot import Mode, WorkloadStatus

    at = datetime(2025, 3, 1, 12, tzinfo=UTC)
    resource = parse_scaler_resource(
        {
            **by_kind("CarbonAwareScaler")[0],
            "metadata": {"name": "web", "namespace": "shop", "generation": 3},
        }
    )
    workload = WorkloadStatus(
        name="web",
        namespace="shop",
        region="eu-west-1",
        desired_replicas=2,
        mode=Mode.ECO,
        reasons=("r",),
        decided_at=at,
        stale_inputs=("carbon",),
        saved_g=1.5,
    )
    actuation = ActuationResult(
        mode="hpa",
        kind="HorizontalPodAutoscaler",
        namespace="shop",
        name="web",
        patch={"spec": {"maxReplicas": 2}},
        dry_run=True,
        applied=False,
        at=at,
    )
    status = status_for(workload, resource=resource, now=at, actuation=actuation)
    schema = crd_schema()["properties"]["status"]
    jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker()).validate(status)
    assert status["observedGeneration"] == 3


def test_crd_has_status_subresource_and_printer_columns():
    version = yaml.safe_load(CRD_FILE.read_text())["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Mode"] == ".status.mode"
    assert columns["Desired"] == ".status.desiredReplicas"
    assert columns["Saved-gCO2"] == ".status.savedGrams"


def test_scaledobject_validates_against_keda_schema_and_our_servicer():
    schema = yaml.safe_load(KEDA_SCHEMA.read_text())
    (so,) = by_kind("ScaledObject")
    jsonschema.Draft7Validator(schema).validate(so)
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] in ("external", "external-push")
    ref = SimpleNamespace(
        name=so["metadata"]["name"],
        namespace=so["metadata"]["namespace"],
        scalerMetadata=trigger["metadata"],
    )
    assert parse_metadata(ref).workload == "web"
    host, port = trigger["metadata"]["scalerAddress"].rsplit(":", 1)
    (service,) = [d for d in by_kind("Service") if d["metadata"]["name"] == host.split(".")[0]]
    assert int(port) in {p["port"] for p in service["spec"]["ports"]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(
            {**so, "spec": {**so["spec"], "minReplicaCount": "zero"}}
        )


def test_scaledobject_uses_mutual_tls_through_a_trigger_authentication():
    (so,) = by_kind("ScaledObject")
    (trigger,) = so["spec"]["triggers"]
    assert trigger["metadata"]["enableTLS"] == "true"
    (auth,) = by_kind("TriggerAuthentication")
    jsonschema.Draft7Validator(yaml.safe_load(KEDA_AUTH_SCHEMA.read_text())).validate(auth)
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert auth["metadata"]["namespace"] == so["metadata"]["namespace"]
    params = {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]}
    assert params == {"caCert", "tlsClientCert", "tlsClientKey"}  # KEDA's authParams names


def test_example_hpa_uses_a_served_metric_with_average_value_one():
    (hpa,) = by_kind("HorizontalPodAutoscaler")
    (metric,) = hpa["spec"]["metrics"]
    assert metric["external"]["metric"]["name"] in METRIC_NAMES
    assert metric["external"]["target"] == {"type": "AverageValue", "averageValue": "1"}


def test_apiservice_points_at_the_scaler_service_and_rbac_is_wired():
    (apiservice,) = by_kind("APIService")
    assert apiservice["metadata"]["name"] == "v1beta1.external.metrics.k8s.io"
    svc = apiservice["spec"]["service"]
    assert any(
        d["metadata"]["name"] == svc["name"] and d["metadata"]["namespace"] == svc["namespace"]
        for d in by_kind("Service")
    )
    refs = {
        (d["roleRef"]["kind"], d["roleRef"]["name"])
        for d in by_kind("ClusterRoleBinding") + by_kind("RoleBinding")
    }
    assert ("ClusterRole", "system:auth-delegator") in refs
    assert ("Role", "extension-apiserver-authentication-reader") in refs
    hpa_binding = [
        d
        for d in by_kind("ClusterRoleBinding")
        if d["subjects"][0]["name"] == "horizontal-pod-autoscaler"
    ]
    assert hpa_binding
    assert hpa_binding[0]["subjects"][0]["namespace"] == "kube-system"


def test_state_configmap_shipped_and_rbac_limited_to_it():
    from config.settings import ScalerSettings

    (state,) = [d for d in by_kind("ConfigMap") if d["metadata"]["name"].endswith("-state")]
    name = state["metadata"]["name"]
    assert name == ScalerSettings().state_configmap_name
    assert "data" not in state  # the scaler owns the data; kubectl apply never resets it
    rules = [
        rule
        for role in by_kind("Role") + by_kind("ClusterRole")
        for rule in role.get("rules", [])
        if "configmaps" in rule.get("resources", []) and "" in rule.get("apiGroups", [])
    ]
    writes = [r for r in rules if set(r["verbs"]) & {"update", "patch", "create", "delete"}]
    # the single checkpoint, and the sharded overlay's one per shard (exact set checked in
    # tests/integration/test_kustomize_overlays.py)
    assert sorted(r["resourceNames"] for r in writes) == [
        [name],
        [f"{name}-shard-{i}" for i in range(8)],
    ]
    for rule in writes:
        assert (rule["apiGroups"], rule["resources"]) == ([""], ["configmaps"])
        assert rule["verbs"] == ["get", "update"]
    (scaler,) = [d for d in by_kind("Deployment") if d["metadata"]["name"] == "gridshift-scaler"]
    env = {e["name"]: e for e in scaler["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GRIDSHIFT_SCALER__STATE_STORE"]["value"] == "configmap"
    assert env["GRIDSHIFT_SCALER__STATE_CONFIGMAP_NAME"]["value"] == name
    ns = env["GRIDSHIFT_SCALER__STATE_CONFIGMAP_NAMESPACE"]["valueFrom"]["fieldRef"]
    assert ns["fieldPath"] == "metadata.namespace"


# ---------------------------------------------------------------- per-overlay RBAC and probes
OVERLAYS = DEPLOY / "overlays"


def overlay_files(directory: Path) -> list[Path]:
    """The resource files a kustomization pulls in through `bases:`/`resources:`, depth
    first (patches are not resources). tests/integration/test_kustomize_overlays.py checks
    the same with `kubectl kustomize`."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    files: list[Path] = []
    for entry in kustomization.get("bases", []) + kustomization.get("resources", []):
        path = (directory / entry).resolve()
        files += overlay_files(path) if path.is_dir() else [path]
    return files


def overlay_objects(overlay: str) -> list[dict[str, Any]]:
    return [
        doc
        for path in overlay_files(OVERLAYS / overlay)
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def overlay_patches(overlay: str) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((OVERLAYS / overlay / "kustomization.yaml").read_text())
    return [
        doc
        for name in kustomization.get("patchesStrategicMerge", [])
        for doc in yaml.safe_load_all((OVERLAYS / overlay / name).read_text())
        if doc
    ]


def merge_by(
    key: str, base: list[dict[str, Any]], patch: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Strategic merge of a keyed list as the scaler patches use it: entries merge by `key`,
    `$patch: delete` removes one, new ones are appended."""
    out = {item[key]: dict(item) for item in base}
    for item in patch:
        if item.get("$patch") == "delete":
            out.pop(item[key], None)
        else:
            out[item[key]] = {**out.get(item[key], {}), **item}
    return list(out.values())


def scaler_container(overlay: str) -> dict[str, Any]:
    """The scaler container with the overlay's Deployment patches applied (env and ports
    merged by key, probes replaced): the subset of strategic merge those patches use."""
    (deployment,) = [d for d in overlay_objects(overlay) if d["kind"] == "Deployment"]
    container: dict[str, Any]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    for patch in overlay_patches(overlay):
        if patch["kind"] != "Deployment":
            continue
        for change in patch["spec"]["template"]["spec"].get("containers", []):
            assert change["name"] == container["name"]
            for field, value in change.items():
                if field == "env":
                    container["env"] = merge_by("name", container["env"], value)
                elif field == "ports":
                    container["ports"] = merge_by("containerPort", container["ports"], value)
                elif field != "name":
                    container[field] = value
    return container


def test_metrics_api_rbac_only_in_the_hpa_overlay():
    def kinds_and_names(overlay):
        return {(d["kind"], d["metadata"]["name"]) for d in overlay_objects(overlay)}

    assert kinds_and_names("scaler-hpa") >= METRICS_API_RBAC
    assert not kinds_and_names("scaler-keda") & METRICS_API_RBAC
    # what both need stays in the base
    shared = {("ClusterRole", "gridshift-scaler"), ("Role", "gridshift-scaler-leader-election")}
    assert kinds_and_names("scaler-keda") >= shared
    assert kinds_and_names("scaler-hpa") >= shared


@pytest.mark.parametrize(
    ("overlay", "metrics_api_enabled", "server"),
    [
        pytest.param("scaler-hpa", True, "status", id="hpa probes the status server"),
        pytest.param("scaler-keda", False, "status", id="keda probes the status server"),
    ],
)
def test_probes_reach_what_the_container_serves(overlay, metrics_api_enabled, server):
    container = scaler_container(overlay)
    assert container_settings(container).metrics_api.enabled is metrics_api_enabled
    for probe in ("readinessProbe", "livenessProbe"):
        listener, status = probe_answer(container, probe)
        assert (listener.server, status) == (server, 200), (overlay, probe)
    ports = {p["containerPort"] for p in container["ports"]}
    assert (6443 in ports) is metrics_api_enabled
