"""The cluster tier's fixtures: one real control plane per session (tests/cluster/plane.py).

Aspects: the plane starts on loopback once per session and stops at the end; its start time
and memory are reported in the terminal summary; a test skips cleanly where the binaries are
not built (`make kube-plane`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.cluster.install import SCALER_NAMESPACE, install_overlay
from tests.cluster.plane import KubePlane, process_rss_bytes, running_plane

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
