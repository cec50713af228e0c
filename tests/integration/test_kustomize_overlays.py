"""Every kustomize overlay renders with `kubectl kustomize` and validates.

Aspects: the five overlays (scaler-hpa, scaler-keda, scaler-sharded, extender, gpu-agent) render;
every built-in object validates against the real Kubernetes OpenAPI schemas of two minor versions
(kubernetes-validate, strict); no overlay renders a prometheus-operator object, and the optional
component deploy/components/monitoring added to a scaler overlay renders the ServiceMonitor and
PrometheusRule, valid against our schemas written from prometheus-operator's published CRD fields;
the HPA and sharded overlays have the APIService and the KEDA overlay has none; the sharded overlay
runs the scaler as a StatefulSet (no Deployment) with kube.shards and a member Lease named in its
RBAC for every replica, a shard Lease for every shard, and a checkpoint ConfigMap per shard (shipped
empty, get/update granted on exactly those names); least privilege
and hardening on every workload (non-root, read-only root filesystem, all capabilities dropped, no
privilege escalation, seccomp RuntimeDefault, requests and limits, liveness and readiness probes);
every Deployment and StatefulSet has a matching PodDisruptionBudget; every overlay has a
NetworkPolicy selecting its pods; RBAC grants no wildcards and no secrets access; the four
metrics-API grants (auth-delegator, extension-apiserver-authentication reader, HPA external-metrics
reader and binding) render only in scaler-hpa and scaler-sharded; each scaler's probes reach a port
its container serves with the settings its env gives, with the right scheme, on a path the real
server there answers 200 (KEDA: the metrics API is off, so the status server); every Service
targetPort and NetworkPolicy port names a container port. The validated objects of each overlay and
version are written to tests/artifacts/validated-<overlay>-<version>.txt.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy_probes import METRICS_API_RBAC, container_settings, probe_answer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ROOT / "deploy" / "overlays"
MONITORING = ROOT / "deploy" / "components" / "monitoring"
ARTIFACTS = ROOT / "tests" / "artifacts"
CRD_SCHEMAS = ROOT / "tests" / "fixtures" / "crds"
KUBERNETES_VERSIONS = ("1.30.0", "1.33.0")
CUSTOM_SCHEMAS = {
    "ServiceMonitor": CRD_SCHEMAS / "servicemonitor.schema.yaml",
    "PrometheusRule": CRD_SCHEMAS / "prometheusrule.schema.yaml",
}
NAMES = ("scaler-hpa", "scaler-keda", "scaler-sharded", "extender", "gpu-agent")
SCALERS = ("scaler-hpa", "scaler-keda", "scaler-sharded")


@cache
def render(overlay: str) -> tuple[dict[str, Any], ...]:
    return render_dir(OVERLAYS / overlay)


def render_dir(directory: Path) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl missing: apt-get install kubernetes-client (make install-system)")
    out = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return tuple(d for d in yaml.safe_load_all(out.stdout) if d)


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet")]


def test_overlays_are_the_five_documented_ones() -> None:
    assert sorted(p.name for p in OVERLAYS.iterdir() if p.is_dir()) == sorted(NAMES)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", NAMES)
def test_rendered_objects_validate(overlay: str, version: str) -> None:
    lines = []
    for doc in render(overlay):
        kind, name = doc["kind"], doc["metadata"]["name"]
        if kind in CUSTOM_SCHEMAS:
            schema = yaml.safe_load(CUSTOM_SCHEMAS[kind].read_text())
            try:
                jsonschema.validate(doc, schema)
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{overlay}: {kind}/{name}: {exc.message}")
            how = "CRD-field schema (tests/fixtures/crds)"
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{overlay}: {kind}/{name} invalid for Kubernetes {version}: {exc}")
            how = f"Kubernetes {version} (strict)"
        lines.append(f"{overlay}\t{kind}/{name}\t{how}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"validated-{overlay}-{version}.txt").write_text("\n".join(lines) + "\n")
    assert len(lines) >= 6


def test_validation_really_rejects() -> None:
    (deployment,) = [d for d in render("scaler-keda") if d["kind"] == "Deployment"]
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)
    monitor = yaml.safe_load((MONITORING / "servicemonitor.yaml").read_text())
    monitor = {**monitor, "spec": {**monitor["spec"], "endpoint": []}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, yaml.safe_load(CUSTOM_SCHEMAS["ServiceMonitor"].read_text()))


def scaler_pod(overlay: str) -> dict[str, Any]:
    (scaler,) = [w for w in workloads(render(overlay)) if w["metadata"]["name"] == SCALER]
    return dict(scaler)


SCALER = "gridshift-scaler"


def test_apiservice_only_in_the_metrics_api_overlays() -> None:
    for overlay in ("scaler-hpa", "scaler-sharded"):
        names = [d["metadata"]["name"] for d in render(overlay) if d["kind"] == "APIService"]
        assert names == ["v1beta1.external.metrics.k8s.io"], overlay
    assert not [d for d in render("scaler-keda") if d["kind"] == "APIService"]
    for overlay in SCALERS:
        kinds = {d["kind"] for d in render(overlay)}
        assert "CustomResourceDefinition" in kinds


@pytest.mark.parametrize("overlay", NAMES)
def test_overlays_need_no_prometheus_operator(overlay: str) -> None:
    """`kubectl apply -k` of an overlay must work on a cluster without prometheus-operator:
    no monitoring.coreos.com object is rendered (they are in deploy/components/monitoring)."""
    groups = {d["apiVersion"].split("/")[0] for d in render(overlay)}
    assert "monitoring.coreos.com" not in groups


@pytest.mark.parametrize("overlay", ["scaler-hpa", "scaler-keda"])
def test_monitoring_component_adds_the_operator_objects(overlay: str, tmp_path: Path) -> None:
    """The user overlay deploy/components/monitoring/kustomization.yaml documents renders the
    ServiceMonitor and PrometheusRule beside the overlay, each valid for prometheus-operator,
    and the ServiceMonitor selects the scaler's Service by a port that Service has."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": [os.path.relpath(OVERLAYS / overlay, tmp_path)],
                "components": [os.path.relpath(MONITORING, tmp_path)],
            }
        )
    )
    docs = render_dir(tmp_path)
    extra = [d for d in docs if d["kind"] in CUSTOM_SCHEMAS]
    assert sorted(d["kind"] for d in extra) == ["PrometheusRule", "ServiceMonitor"]
    for doc in extra:
        jsonschema.validate(doc, yaml.safe_load(CUSTOM_SCHEMAS[doc["kind"]].read_text()))
    assert len(docs) == len(render(overlay)) + 2
    (monitor,) = [d for d in extra if d["kind"] == "ServiceMonitor"]
    (service,) = [d for d in docs if d["kind"] == "Service"]
    labels = service["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"] for p in service["spec"]["ports"]}
    assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports


@pytest.mark.parametrize("overlay", NAMES)
def test_workloads_are_hardened(overlay: str) -> None:
    docs = render(overlay)
    assert workloads(docs)
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        for c in pod["containers"]:
            where = f"{overlay}: {w['kind']}/{w['metadata']['name']}/{c['name']}"
            csc = c.get("securityContext", {})
            assert csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, where
            assert csc.get("runAsUser", psc.get("runAsUser", 0)) != 0, where
            assert csc.get("readOnlyRootFilesystem") is True, where
            assert csc.get("allowPrivilegeEscalation") is False, where
            assert csc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not csc.get("capabilities", {}).get("add"), where
            seccomp = csc.get("seccompProfile", psc.get("seccompProfile", {}))
            assert seccomp.get("type") == "RuntimeDefault", where
            res = c.get("resources", {})
            assert {"cpu", "memory"} <= set(res.get("requests", {})), where
            assert {"cpu", "memory"} <= set(res.get("limits", {})), where
            assert "livenessProbe" in c, where
            assert "readinessProbe" in c, where
            assert not c.get("securityContext", {}).get("privileged"), where


@pytest.mark.parametrize("overlay", NAMES)
def test_pdbs_and_network_policies_select_the_pods(overlay: str) -> None:
    docs = render(overlay)
    pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert policies, f"{overlay} has no NetworkPolicy"
    for w in workloads(docs):
        labels = w["spec"]["template"]["metadata"]["labels"]

        def selects(sel: dict[str, str], labels: dict[str, str] = labels) -> bool:
            return all(labels.get(k) == v for k, v in sel.items())

        assert any(selects(p["spec"]["podSelector"]["matchLabels"]) for p in policies), overlay
        if w["kind"] in ("Deployment", "StatefulSet"):
            assert any(selects(p["spec"]["selector"]["matchLabels"]) for p in pdbs), overlay


@pytest.mark.parametrize("overlay", NAMES)
def test_rbac_is_least_privilege(overlay: str) -> None:
    for role in (d for d in render(overlay) if d["kind"] in ("ClusterRole", "Role")):
        for rule in role.get("rules", []):
            where = f"{overlay}: {role['kind']}/{role['metadata']['name']}: {rule}"
            assert "*" not in rule.get("verbs", []), where
            assert "*" not in rule.get("resources", []), where
            assert "*" not in rule.get("apiGroups", []), where
            assert "secrets" not in rule.get("resources", []), where


def test_metrics_api_rbac_only_in_the_hpa_overlay() -> None:
    def rbac(overlay: str) -> set[tuple[str, str]]:
        return {
            (d["kind"], d["metadata"]["name"])
            for d in render(overlay)
            if d["apiVersion"].startswith("rbac.authorization.k8s.io/")
        }

    assert rbac("scaler-hpa") >= METRICS_API_RBAC
    assert not rbac("scaler-keda") & METRICS_API_RBAC
    # nothing else differs: the scaler's own grants are the same in both
    assert rbac("scaler-hpa") - METRICS_API_RBAC == rbac("scaler-keda")
    assert rbac("scaler-sharded") - rbac("scaler-hpa") == {
        ("Role", "gridshift-scaler-shards"),
        ("RoleBinding", "gridshift-scaler-shards"),
        ("Role", "gridshift-scaler-shard-state"),
        ("RoleBinding", "gridshift-scaler-shard-state"),
    }
    (reader,) = [d for d in render("scaler-hpa") if d["metadata"]["name"].endswith("auth-reader")]
    assert reader["metadata"]["namespace"] == "kube-system"


@pytest.mark.parametrize(
    ("overlay", "metrics_api_enabled", "server"),
    [
        pytest.param("scaler-hpa", True, "status", id="hpa"),
        pytest.param("scaler-keda", False, "status", id="keda"),
        pytest.param("scaler-sharded", True, "status", id="sharded"),
    ],
)
def test_scaler_probes_reach_what_the_container_serves(
    overlay: str, metrics_api_enabled: bool, server: str
) -> None:
    (container,) = scaler_pod(overlay)["spec"]["template"]["spec"]["containers"]
    settings = container_settings(container)
    assert settings.metrics_api.enabled is metrics_api_enabled
    for probe in ("readinessProbe", "livenessProbe"):
        listener, status = probe_answer(container, probe)
        assert (listener.server, status) == (server, 200), (overlay, probe)
    env = {e["name"] for e in container["env"]}
    metrics_api_env = {n for n in env if n.startswith("GRIDSHIFT_METRICS_API__")}
    if not metrics_api_enabled:  # off, and nothing left that reads as if it were configured
        assert metrics_api_env == {"GRIDSHIFT_METRICS_API__ENABLED"}
        assert not settings.metrics_api.authentication_from_cluster


@pytest.mark.parametrize("overlay", SCALERS)
def test_service_and_network_policy_ports_name_container_ports(overlay: str) -> None:
    docs = render(overlay)
    (container,) = scaler_pod(overlay)["spec"]["template"]["spec"]["containers"]
    named = {p["name"] for p in container["ports"]}
    for service in (d for d in docs if d["kind"] == "Service"):
        targets = {p["targetPort"] for p in service["spec"]["ports"]}
        assert targets <= named, (overlay, targets - named)
    (policy,) = [d for d in docs if d["kind"] == "NetworkPolicy"]
    allowed = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert allowed <= named, (overlay, allowed - named)
    assert ("metrics-api" in named) is (overlay != "scaler-keda")


def test_the_sharded_overlay_names_a_lease_and_a_checkpoint_for_every_shard() -> None:
    docs = render("scaler-sharded")
    assert [d["kind"] for d in workloads(docs)] == ["StatefulSet"]
    scaler = scaler_pod("scaler-sharded")
    (container,) = scaler["spec"]["template"]["spec"]["containers"]
    settings = container_settings(container)
    assert (settings.kube.enabled, settings.scaler.state_store) == (True, "configmap")
    shards, replicas = settings.kube.shards, scaler["spec"]["replicas"]
    # one checkpoint ConfigMap per shard, shipped empty, the Role limited to exactly those
    state = f"{settings.scaler.state_configmap_name}-shard-"
    maps = [d for d in docs if d["kind"] == "ConfigMap"]
    assert {d["metadata"]["name"] for d in maps} == {f"{state}{i}" for i in range(shards)}
    assert all("data" not in d for d in maps)
    assert {d["metadata"]["namespace"] for d in maps} == {scaler["metadata"]["namespace"]}
    (state_role,) = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("shard-state")
    ]
    (rule,) = state_role["rules"]
    assert (rule["resources"], rule["verbs"]) == (["configmaps"], ["get", "update"])
    assert set(rule["resourceNames"]) == {f"{state}{i}" for i in range(shards)}
    assert shards >= replicas > 1
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("shards")]
    named = {n for rule in role["rules"] for n in rule.get("resourceNames", [])}
    lease = settings.kube.lease_name
    assert named == {f"{lease}-shard-{i}" for i in range(shards)} | {
        f"{lease}-member-{SCALER}-{i}" for i in range(replicas)
    }
    assert ["list"] in [r["verbs"] for r in role["rules"] if "resourceNames" not in r]
