"""gridshift installed on the real plane the way deploy/ says, with what a loopback-only plane
needs changed, and `gridshift run` started beside it as the scaler Deployment's pod would run.

* `install_overlay`: `kubectl apply -k deploy/overlays/<name>` (client-side, as the README says;
  prometheus-operator's ServiceMonitor/PrometheusRule kinds are given minimal CRDs first where
  the overlay still contains them), then the in-cluster scaler Deployment scaled to 0 (its pods
  could never run without a kubelet; the scaler runs here as a process).
* `wire_metrics_api`: the APIService pointed at `localhost:<port>` through an ExternalName
  Service, with the cluster CA as its caBundle (what cert-manager's CA injector does).
* `create_scalers`: CarbonAwareScalers, each scaling the Deployment of its own name.
* `scaler_config`: the settings the Deployment sets through env, as one config file.
* `running_scaler`: `python -m config run --config FILE` authenticated as the scaler's own
  service account (a TokenRequest token), so deploy/'s RBAC is what it gets.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.plane import KubePlane, wait_until
from tests.gridshift_process import RunningGridshift, running_gridshift

__all__ = [
    "DEPLOY",
    "SCALER_NAMESPACE",
    "SCALER_SERVICE",
    "config_workload",
    "create_scalers",
    "deployment",
    "install_overlay",
    "running_scaler",
    "scaler_config",
    "wait_api_service",
    "wire_metrics_api",
    "write_carbon_trace",
]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SCALER_NAMESPACE = "carbon-system"
SCALER_SERVICE = "gridshift-scaler"
MONITORING_CRDS = Path(__file__).with_name("monitoring-crds.yaml")


def write_carbon_trace(path: Path, levels_g_per_kwh: Mapping[str, float]) -> Path:
    """A carbon trace CSV (carbon.trace.path) with hourly values for two days up to the current
    hour, all fresh: each region at its level with a small daily swing."""
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)  # noqa: TID251
    rows = ["timestamp_utc,region,gco2_per_kwh"]
    for hours_back in range(48, -1, -1):
        at = end - timedelta(hours=hours_back)
        swing = math.sin(2 * math.pi * at.hour / 24)
        for region, level in levels_g_per_kwh.items():
            rows.append(f"{at:%Y-%m-%dT%H:%M:%SZ},{region},{level * (1 + 0.05 * swing):.1f}")
    path.write_text("\n".join(rows) + "\n")
    return path


def deployment(name: str, namespace: str, replicas: int) -> dict[str, Any]:
    """A Deployment whose pods never run (no kubelet): its replica counts are what matter."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }


def create_scalers(
    plane: KubePlane,
    namespace: str,
    names: Sequence[str],
    spec: Callable[[str], Mapping[str, Any]],
    *,
    threads: int = 1,
) -> None:
    """One CarbonAwareScaler per name in `namespace`, scaling the Deployment of that name, the
    rest of its spec `spec(name)`; created `threads` at a time (a fleet of thousands)."""

    def create(name: str) -> None:
        target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        plane.custom.create_namespaced_custom_object(
            "gridshift.io",
            "v1alpha1",
            namespace,
            "carbonawarescalers",
            {
                "apiVersion": "gridshift.io/v1alpha1",
                "kind": "CarbonAwareScaler",
                "metadata": {"name": name},
                "spec": {"scaleTargetRef": target, **spec(name)},
            },
        )

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(create, names))


def config_workload(
    namespace: str,
    *,
    replicas: tuple[int, int],
    target_kind: str = "Deployment",
    region: str = "sample-wind",
) -> dict[str, Any]:
    """A config-file workload `web` on SAMPLE DATA load (no Prometheus needed) with min and
    max `replicas`: min = max makes gridshift's decision exactly that number."""
    return {
        "name": "web",
        "namespace": namespace,
        "target": {"kind": target_kind, "name": "web"},
        "load": {"trace": "sample:web-frontend"},
        "capacity_per_replica": 20,
        "min_replicas": replicas[0],
        "max_replicas": replicas[1],
        "region": region,
    }


def _overlay_kinds(plane: KubePlane, overlay: str) -> set[str]:
    rendered = plane.kubectl("kustomize", str(DEPLOY / "overlays" / overlay)).stdout
    return {doc.get("kind", "") for doc in yaml.safe_load_all(rendered) if doc}


def install_overlay(plane: KubePlane, overlay: str) -> str:
    """Apply one deploy overlay for real; returns kubectl's output."""
    if _overlay_kinds(plane, overlay) & {"ServiceMonitor", "PrometheusRule"}:
        plane.kubectl("apply", "-f", str(MONITORING_CRDS))
        plane.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", "-f", str(MONITORING_CRDS)
        )
    out = plane.kubectl("apply", "-k", str(DEPLOY / "overlays" / overlay)).stdout
    kinds = _overlay_kinds(plane, overlay)
    for kind in ("Deployment", "StatefulSet"):  # the sharded overlay's scaler is a StatefulSet
        if kind in kinds and overlay.startswith("scaler"):
            plane.kubectl(
                "-n", SCALER_NAMESPACE, "scale", f"{kind.lower()}/gridshift-scaler", "--replicas=0"
            )
    return out


def wire_metrics_api(plane: KubePlane, *, port: int) -> None:
    """Point v1beta1.external.metrics.k8s.io at localhost:`port`."""
    plane.external_name_service(SCALER_NAMESPACE, SCALER_SERVICE, port=port)
    plane.kubectl(
        "patch",
        "apiservice",
        "v1beta1.external.metrics.k8s.io",
        "--type=merge",
        "-p",
        json.dumps(
            {
                "spec": {
                    "caBundle": plane.ca_bundle_b64(),
                    "service": {
                        "namespace": SCALER_NAMESPACE,
                        "name": SCALER_SERVICE,
                        "port": port,
                    },
                }
            }
        ),
    )


def api_service_available(plane: KubePlane) -> bool:
    svc = plane.get("/apis/apiregistration.k8s.io/v1/apiservices/v1beta1.external.metrics.k8s.io")
    conditions = (svc.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Available" and c["status"] == "True" for c in conditions)


def scaler_config(
    plane: KubePlane,
    workdir: Path,
    *,
    workloads: Sequence[Mapping[str, Any]],
    identity: str,
    metrics_port: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """The scaler's settings as deploy/scaler/deployment.yaml sets them (serving cert for the
    Service name, authentication from the cluster, delegated authorization, leader election,
    ConfigMap state), listening on loopback."""
    settings: dict[str, Any] = {
        "kube": {
            "enabled": True,
            "identity": identity,
            "lease_namespace": SCALER_NAMESPACE,
            "lease_duration_seconds": 4,
            "renew_deadline_seconds": 3,
            "retry_period_seconds": 0.5,
        },
        "keda": {"enabled": False},
        "metrics_api": {"enabled": False},
        "scaler": {
            "workloads": [dict(w) for w in workloads],
            "state_store": "configmap",
            "state_configmap_name": "gridshift-scaler-state",
            "state_configmap_namespace": SCALER_NAMESPACE,
        },
    }
    if metrics_port is not None:
        cert, key = plane.serving_cert(
            f"scaler-{identity}", f"{SCALER_SERVICE}.{SCALER_NAMESPACE}.svc", "localhost"
        )
        settings["metrics_api"] = {
            "enabled": True,
            "listen": f"127.0.0.1:{metrics_port}",
            "tls_cert_file": str(cert),
            "tls_key_file": str(key),
            "authentication_from_cluster": True,
            "delegated_authorization": True,
        }
    for group, values in (extra or {}).items():
        settings.setdefault(group, {}).update(values)
    path = workdir / f"scaler-{identity}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


@contextlib.contextmanager
def running_scaler(
    plane: KubePlane, config: Path, *, tick_seconds: float = 1.0
) -> Iterator[RunningGridshift]:
    """`gridshift run --config FILE` as the gridshift-scaler service account."""
    kubeconfig = plane.service_account_kubeconfig(SCALER_NAMESPACE, "gridshift-scaler")
    args = ["run", "--config", str(config), "--listen", "127.0.0.1:0"]
    args += ["--tick-seconds", str(tick_seconds)]
    with running_gridshift(
        args, env={"KUBECONFIG": str(kubeconfig), "GRIDSHIFT_KUBE__KUBECONFIG": str(kubeconfig)}
    ) as running:
        yield running


def wait_api_service(plane: KubePlane, timeout_s: float = 90) -> None:
    wait_until(
        lambda: api_service_available(plane),
        timeout_s=timeout_s,
        what="APIService v1beta1.external.metrics.k8s.io Available",
    )
