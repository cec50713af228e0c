"""The cluster tier's fixtures: one real control plane per session (tests/cluster/plane.py).

Aspects: the plane starts on loopback once per session and stops at the end; its start time
and memory are reported in the terminal summary; a test skips cleanly where the binaries are
not built (`make kube-plane`)."""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster.install import DEPLOY, SCALER_NAMESPACE, install_overlay
from tests.cluster.keda import keda_module_dir
from tests.cluster.plane import KubePlane, process_rss_bytes, running_plane
from tests.cluster.proxied import ProxiedApi, proxied_api

_REPORT: list[str] = []


@pytest.fixture(scope="session")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubePlane]:
    with running_plane(tmp_path_factory.mktemp("kube-plane")) as running:
        rss = {n: process_rss_bytes(p.process.pid) for n, p in running.processes.items()}
        _REPORT.append(
            f"kube plane (v1.37.2, {running.workdir}): ready in {running.start_seconds:.1f} s; "
            f"RSS at start {sum(rss.values()) / 2**30:.2f} GiB ("
            + ", ".join(f"{n} {v / 2**20:.0f} MiB" for n, v in rss.items())
            + ")"
        )
        yield running
        rss = {n: process_rss_bytes(p.process.pid) for n, p in running.processes.items()}
        _REPORT.append(f"kube plane RSS at the end {sum(rss.values()) / 2**30:.2f} GiB")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in _REPORT:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def scaler_hpa(plane: KubePlane) -> str:
    """deploy/overlays/scaler-hpa applied once per session (kubectl apply -k)."""
    return install_overlay(plane, "scaler-hpa")


@pytest.fixture
def fresh_scaler_state(plane: KubePlane, scaler_hpa: str) -> None:
    """No Lease and an empty state ConfigMap (deploy/'s RBAC pins both names, so every scaler
    test uses the same two objects): each test starts as a fresh install."""
    with contextlib.suppress(ApiException):
        k8s.CoordinationV1Api(plane.api).delete_namespaced_lease(
            "gridshift-scaler", SCALER_NAMESPACE
        )
    plane.core.replace_namespaced_config_map(
        "gridshift-scaler-state",
        SCALER_NAMESPACE,
        {"metadata": {"name": "gridshift-scaler-state", "namespace": SCALER_NAMESPACE}, "data": {}},
    )


TRAINER_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "trainers.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"kind": "Trainer", "plural": "trainers", "singular": "trainer"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.selector",
                    },
                },
            }
        ],
    },
}


@pytest.fixture(scope="session")
def kube_crds(plane: KubePlane) -> None:
    """The CRDs gridshift's Kubernetes I/O meets: its own CarbonAwareScaler (deploy/crd), KEDA's
    ScaledObject (from the KEDA module tests/kube/keda pins) and a custom kind with a scale
    subresource (`Trainer`, example.com/v1)."""
    scaled_objects = keda_module_dir() / "config" / "crd" / "bases" / "keda.sh_scaledobjects.yaml"
    if not scaled_objects.is_file():
        pytest.skip(f"KEDA's CRDs not in {scaled_objects.parent}: make kube-plane")
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-k", str(DEPLOY / "crd"))
    plane.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(scaled_objects))
    plane.kubectl("apply", "--server-side", "-f", "-", input_text=json.dumps(TRAINER_CRD))
    for name in (
        "carbonawarescalers.gridshift.io",
        "scaledobjects.keda.sh",
        "trainers.example.com",
    ):
        plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")


@pytest.fixture
def api(plane: KubePlane, kube_crds: None, request: pytest.FixtureRequest) -> Iterator[ProxiedApi]:
    """The real API server behind a recording, fault-injecting proxy, with a namespace of the
    test's own (`api.ns`)."""
    name = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    with proxied_api(plane, f"{name}-{uuid.uuid4().hex[:6]}") as proxied:
        yield proxied
