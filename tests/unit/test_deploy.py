"""deploy/: every manifest object validates against the real Kubernetes OpenAPI schemas
(kubernetes-validate, strict, three minor versions); the KubeSchedulerConfiguration is checked
against a typed model of the extender fields (kubernetes-protocols §1.9) and against our own
routes; GRIDSHIFT_* env and container args in the manifests are valid for our settings and CLI."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from config.cli import cli
from config.wiring import load_settings, region_rules
from extender.server import ENDPOINTS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
VERSIONS = ["1.30.0", "1.33.0", "1.37.0"]
SCHEDULER_CONFIG = DEPLOY / "extender" / "kube-scheduler-config.yaml"


CUSTOM_KINDS = {
    "CarbonAwareScaler",
    "DaskCluster",  # deploy/fleet: tests/unit/test_deploy_fleet.py
    "ScaledObject",
    "TriggerAuthentication",
    "ServiceMonitor",
    "PrometheusRule",
}
#: Partial objects kustomize merges into others.
PATCHES = {
    (k.parent / patch).resolve()
    for k in DEPLOY.rglob("kustomization.yaml")
    for patch in yaml.safe_load(k.read_text()).get("patchesStrategicMerge", [])
}


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path == SCHEDULER_CONFIG:
            continue
        for doc in yaml.safe_load_all(path.read_text()):
            # Kubernetes objects only (not kustomizations, patches, rule files or rule tests);
            # custom resources are checked against their CRDs' schemas in test_deploy_manifests.
            if (
                doc
                and "kind" in doc
                and "name" in doc.get("metadata", {})
                and doc["kind"] not in CUSTOM_KINDS
                and path.resolve() not in PATCHES
            ):
                out.append(
                    (f"{path.relative_to(DEPLOY)}:{doc['kind']}/{doc['metadata']['name']}", doc)
                )
    return out


DOCS = documents()


def test_the_expected_objects_exist() -> None:
    kinds = {d["kind"] for _, d in DOCS}
    assert {"Deployment", "Service", "DaemonSet", "ClusterRole", "ServiceAccount"} <= kinds


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("where", "doc"), DOCS, ids=[w for w, _ in DOCS])
def test_manifests_validate_against_kubernetes_schemas(version, where, doc) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_does_catch_mistakes() -> None:
    service = next(d for _, d in DOCS if d["kind"] == "Service")
    broken = {**service, "spec": {**service["spec"], "ports": [{"port": "https"}]}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[0], strict=True)


def containers() -> list[dict[str, Any]]:
    out = []
    for _, doc in DOCS:
        if doc["kind"] in ("Deployment", "DaemonSet"):
            out.extend(doc["spec"]["template"]["spec"]["containers"])
    return out


def test_gridshift_env_in_manifests_is_valid_settings(monkeypatch) -> None:
    seen = 0
    for c in containers():
        for e in c.get("env", []):
            if e["name"].startswith("GRIDSHIFT_") and "value" in e:
                monkeypatch.setenv(e["name"], e["value"])
                seen += 1
    assert seen
    s = load_settings()
    # the shipped extender places AWS/GCP/Azure regions by the carbon regions' match rules
    rules = region_rules(s)
    for cloud, region in (("eu-west-1", "IE"), ("eu-central-1", "DE"), ("eu-west-3", "FR")):
        assert rules.region_for({"topology.kubernetes.io/region": cloud}) == region


def test_container_args_name_real_commands_and_options() -> None:
    for c in containers():
        command, *flags = c["args"]
        cmd = cli.get_command(click.Context(cli), command)
        assert cmd is not None, command
        known = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
        for flag in flags:
            assert flag.split("=", 1)[0] in known, (command, flag)


def test_agent_daemonset_targets_gpu_nodes_without_reserving_gpus() -> None:
    (ds,) = [d for _, d in DOCS if d["kind"] == "DaemonSet"]
    spec = ds["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])
    (c,) = spec["containers"]
    assert "nvidia.com/gpu" not in str(c.get("resources", {}))
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


# ---------------------------------------------------------------------------- scheduler config
_GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class TLSConfig(_Strict):
    insecure: bool = False
    serverName: str | None = None
    certFile: str | None = None
    keyFile: str | None = None
    caFile: str | None = None
    certData: str | None = None
    keyData: str | None = None
    caData: str | None = None


class ManagedResource(_Strict):
    name: str
    ignoredByScheduler: bool = False


class Extender(_Strict):
    urlPrefix: str
    filterVerb: str | None = None
    preemptVerb: str | None = None
    prioritizeVerb: str | None = None
    weight: int | None = Field(None, gt=0)
    bindVerb: str | None = None
    enableHTTPS: bool = False
    tlsConfig: TLSConfig | None = None
    httpTimeout: str = "5s"
    nodeCacheCapable: bool = False
    managedResources: list[ManagedResource] = []
    ignorable: bool = False

    @model_validator(mode="after")
    def _rules(self) -> Extender:
        if self.prioritizeVerb and self.weight is None:
            raise ValueError("weight must be > 0 when prioritizeVerb is set")
        if not _GO_DURATION.match(self.httpTimeout):
            raise ValueError(f"httpTimeout {self.httpTimeout!r} is not a Go duration")
        names = [m.name for m in self.managedResources]
        if len(names) != len(set(names)):
            raise ValueError("managedResources names must be unique")
        return self


class SchedulerConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    apiVersion: str
    kind: str
    extenders: list[Extender]

    @model_validator(mode="after")
    def _rules(self) -> SchedulerConfig:
        if self.apiVersion != "kubescheduler.config.k8s.io/v1":
            raise ValueError(f"apiVersion {self.apiVersion}")
        if self.kind != "KubeSchedulerConfiguration":
            raise ValueError(f"kind {self.kind}")
        if sum(1 for e in self.extenders if e.bindVerb) > 1:
            raise ValueError("at most one extender may bind")
        return self


def test_scheduler_configuration_is_typed_and_matches_our_routes() -> None:
    config = SchedulerConfig.model_validate(yaml.safe_load(SCHEDULER_CONFIG.read_text()))
    (ext,) = config.extenders
    assert ext.ignorable is True
    assert ext.nodeCacheCapable is True
    assert ext.weight is not None
    assert ext.weight <= 10
    assert ext.enableHTTPS is True
    assert ext.tlsConfig is not None
    assert ext.tlsConfig.caFile  # with no CA, enableHTTPS silently means insecure
    assert ext.httpTimeout == "2s"
    url = urlparse(ext.urlPrefix)
    assert url.scheme == "https"
    for verb in (ext.filterVerb, ext.prioritizeVerb):
        assert f"POST {url.path.rstrip('/')}/{verb}" in ENDPOINTS
    # the extender's Service and the scheduler config agree on host and port
    svc = next(d for w, d in DOCS if d["kind"] == "Service" and w.startswith("extender/"))
    host = f"{svc['metadata']['name']}.{svc['metadata']['namespace']}.svc"
    assert url.hostname == host == ext.tlsConfig.serverName
    assert url.port in [p["port"] for p in svc["spec"]["ports"]]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        pytest.param({"weight": 0}, "greater than 0", id="weight 0"),
        pytest.param({"weight": None}, "weight must be > 0", id="no weight"),
        pytest.param({"httpTimeout": "2 seconds"}, "Go duration", id="timeout"),
        pytest.param({"nodeCachecapable": True}, "Extra inputs", id="typo"),
        pytest.param({"ignorable": "true"}, "valid boolean", id="string bool"),
    ],
)
def test_the_typed_check_catches_mistakes(change, fragment) -> None:
    data = yaml.safe_load(SCHEDULER_CONFIG.read_text())
    data["extenders"][0].update(change)
    if change.get("weight", 1) is None:
        del data["extenders"][0]["weight"]
    with pytest.raises(ValueError, match=fragment):
        SchedulerConfig.model_validate(data)
