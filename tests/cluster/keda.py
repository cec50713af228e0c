"""KEDA v2.20.2 (operator and metrics adapter) on the real plane, out of cluster on loopback.

Built by `tests/kube/build.sh keda` (`make kube-plane`) from the Go module proxy; its CRDs come
from the same module in the Go module cache (config/crd/bases), so they match the binaries.

* The operator watches ScaledObjects, creates their HPA (`keda-hpa-<name>`), scales from and
  to zero itself, and serves its gRPC metrics service (mutual TLS from `--cert-dir`).
* The adapter serves external.metrics.k8s.io behind the aggregator (an APIService pointed at
  localhost through an ExternalName Service, like gridshift's) and asks the operator over
  that gRPC for each value.
* One certificate from the cluster CA, for localhost and the in-cluster names, serves both
  and is their gRPC client certificate too.

`running_keda(plane)` installs the CRDs, starts both, takes over the APIService
`v1beta1.external.metrics.k8s.io` (one owner per cluster) and gives it back on exit.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster.plane import (
    KUBE_DIR,
    KubePlane,
    ManagedProcess,
    free_port,
    keda_bin_dir,
    start_process,
    wait_until,
)

__all__ = ["KEDA_NAMESPACE", "keda_module_dir", "require_keda", "running_keda"]

KEDA_NAMESPACE = "keda"
KEDA_MODULE = "github.com/kedacore/keda/v2"


def keda_module_dir() -> Path:
    """KEDA's module in the Go module cache, at the version tests/kube/keda/go.mod requires."""
    version = re.search(
        rf"^\s*(?:require\s+)?{re.escape(KEDA_MODULE)} (v\S+)",
        (KUBE_DIR / "keda" / "go.mod").read_text(),
        re.M,
    )
    assert version is not None, "tests/kube/keda/go.mod requires no KEDA version"
    cache = Path(os.environ.get("GOMODCACHE", Path.home() / ".cache" / "go-mod"))
    return cache / "github.com" / "kedacore" / "keda" / f"v2@{version.group(1)}"


def require_keda() -> Path:
    bin_dir = keda_bin_dir()
    crds = keda_module_dir() / "config" / "crd" / "bases"
    if not (bin_dir / ".complete").is_file() or not crds.is_dir():
        pytest.skip(
            f"KEDA not built in {bin_dir} (or its module not in {crds.parent.parent}): "
            "make kube-plane"
        )
    return bin_dir


@contextlib.contextmanager
def running_keda(plane: KubePlane) -> Iterator[dict[str, ManagedProcess]]:
    bin_dir = require_keda()
    crds = keda_module_dir() / "config" / "crd" / "bases"
    for crd in sorted(crds.glob("*.yaml")):
        plane.kubectl("apply", "--server-side", "-f", str(crd))
    plane.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
    with contextlib.suppress(AssertionError):
        plane.kubectl("create", "namespace", KEDA_NAMESPACE)
    certs = plane.workdir / "keda-certs"
    certs.mkdir(exist_ok=True)
    leaf = plane.ca.issue_cert(
        "localhost",
        "127.0.0.1",
        f"keda-operator.{KEDA_NAMESPACE}.svc",
        f"keda-metrics-apiserver.{KEDA_NAMESPACE}.svc",
        common_name="keda",
    )
    leaf.cert_chain_pems[0].write_to_path(str(certs / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(certs / "tls.key"))
    plane.ca.cert_pem.write_to_path(str(certs / "ca.crt"))
    grpc_port, adapter_port, probe_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "KUBECONFIG": str(plane.kubeconfig),
        "WATCH_NAMESPACE": "",
        "POD_NAMESPACE": KEDA_NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": KEDA_NAMESPACE,
        "OPERATOR_NAME": "keda-operator",
    }
    processes: dict[str, ManagedProcess] = {}
    try:
        processes["keda-operator"] = start_process(
            "keda-operator",
            [
                str(bin_dir / "keda-operator"),
                f"--kubeconfig={plane.kubeconfig}",
                "--leader-elect=false",
                "--metrics-bind-address=0",
                f"--health-probe-bind-address=127.0.0.1:{probe_port}",
                f"--metrics-service-bind-address=127.0.0.1:{grpc_port}",
                f"--cert-dir={certs}",
                "--enable-cert-rotation=false",
                "--enable-webhook-patching=false",
                "--enable-apiservice-patching=false",
                "--zap-log-level=info",
            ],
            plane.workdir,
            env=env,
        )
        processes["keda-adapter"] = start_process(
            "keda-adapter",
            [
                str(bin_dir / "keda-adapter"),
                f"--lister-kubeconfig={plane.kubeconfig}",
                f"--authentication-kubeconfig={plane.kubeconfig}",
                f"--authorization-kubeconfig={plane.kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={adapter_port}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'tls.crt'}",
                f"--tls-private-key-file={certs / 'tls.key'}",
                f"--client-ca-file={certs / 'ca.crt'}",
                f"--metrics-service-address=localhost:{grpc_port}",
                "--metrics-service-grpc-authority=localhost",
            ],
            plane.workdir,
            env=env,
        )
        for proc in processes.values():
            plane.processes[proc.name] = proc
        wait_until(
            lambda: (
                plane.check_alive()
                or "Starting workers" in processes["keda-operator"].tail(400_000)
            ),
            timeout_s=120,
            what="the KEDA operator's controllers",
        )
        plane.external_name_service(KEDA_NAMESPACE, "keda-metrics-apiserver", port=adapter_port)
        plane.apply(
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
                "spec": {
                    "group": "external.metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {
                        "namespace": KEDA_NAMESPACE,
                        "name": "keda-metrics-apiserver",
                        "port": adapter_port,
                    },
                    "caBundle": plane.ca_bundle_b64(),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            }
        )
        yield processes
    finally:
        for proc in processes.values():
            proc.stop()
            plane.processes.pop(proc.name, None)
