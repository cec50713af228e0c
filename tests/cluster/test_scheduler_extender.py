"""The real kube-scheduler calls the gridshift extender, configured as
deploy/extender/kube-scheduler-config.yaml configures it (HTTPS with the CA and server name,
filter + prioritize, weight 3, 2 s timeout, ignorable), in both `nodeCacheCapable` modes.

Aspects: deploy/overlays/extender applied with kubectl, the extender runs as its service
account (deploy/'s RBAC: list + watch nodes); pods land on the low-carbon node; a pod capped
by `gridshift.io/max-gco2-per-kwh` below the high-carbon node's intensity never lands there,
from the first pod created the moment the extender is ready (readiness means it can score);
with the low-carbon node cordoned the capped pod stays Pending with the extender's reason
(UnschedulableAndUnresolvable) while an uncapped pod goes to the high-carbon node; the
extender counted the scheduler's calls.
"""

from __future__ import annotations

import contextlib
import functools
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.install import DEPLOY, write_carbon_trace
from tests.cluster.plane import KubePlane, free_port, wait_until
from tests.gridshift_process import REPO, _env, _stop

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

NAMESPACE = "gridshift-system"
LOW, HIGH = "node-fr", "node-de"  # eu-west-3 -> FR about 60 g/kWh, eu-central-1 -> DE about 400
EXTENDER_NAME = "gridshift-extender.gridshift-system.svc"


def scheduler_config(plane: KubePlane, *, port: int, node_cache_capable: bool) -> dict[str, Any]:
    """deploy/'s KubeSchedulerConfiguration with only the address, CA file and mode changed."""
    config = yaml.safe_load((DEPLOY / "extender" / "kube-scheduler-config.yaml").read_text())
    (extender,) = config["extenders"]
    assert extender["urlPrefix"] == f"https://{EXTENDER_NAME}:8443/scheduler"
    extender["urlPrefix"] = f"https://127.0.0.1:{port}/scheduler"
    extender["tlsConfig"]["caFile"] = str(plane.ca_file)
    assert extender["tlsConfig"]["serverName"] == EXTENDER_NAME
    extender["nodeCacheCapable"] = node_cache_capable
    return dict(config)


@contextlib.contextmanager
def running_extender(plane: KubePlane, tmp_path: Path, *, port: int) -> Iterator[str]:
    """`gridshift extender` over HTTPS as the gridshift-extender service account, with
    deploy/'s args and env; yields its https base URL once /readyz answers 200."""
    manifest = yaml.safe_load_all((DEPLOY / "extender" / "extender.yaml").read_text())
    deployment = next(d for d in manifest if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    cert, key = plane.serving_cert("extender", EXTENDER_NAME, "localhost")
    args = [a for a in container["args"] if not a.startswith(("--listen", "--tls-"))]
    args += [f"--listen=127.0.0.1:{port}", f"--tls-cert={cert}", f"--tls-key={key}"]
    kubeconfig = plane.service_account_kubeconfig(NAMESPACE, "gridshift-extender")
    env.update(
        KUBECONFIG=str(kubeconfig),
        GRIDSHIFT_EXTENDER__GPU_SOURCE="none",  # no agent DaemonSet here: carbon only
        GRIDSHIFT_CARBON__UK__ENABLED="false",  # no provider API is reachable
        GRIDSHIFT_CARBON__TRACE__PATH=str(
            write_carbon_trace(tmp_path / "carbon.csv", {"DE": 400, "FR": 60})
        ),
        GRIDSHIFT_CARBON__LAST_KNOWN_PATH=str(tmp_path / "carbon-last-known.json"),
    )
    log = tmp_path / f"extender-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "config", *args],
            cwd=REPO,
            env=_env(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    base = f"https://127.0.0.1:{port}"
    try:
        with httpx.Client(
            verify=ssl.create_default_context(cafile=str(plane.ca_file)), timeout=5
        ) as client:

            def ready() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(f"extender exited:\n{log.read_text()[-3000:]}")
                # the certificate is for the Service name: connect by IP, check that name
                answer = client.get(f"{base}/readyz", extensions={"sni_hostname": EXTENDER_NAME})
                return answer.status_code == 200

            wait_until(ready, timeout_s=60, what="the extender's /readyz", every_s=0.05)
        yield base
    finally:
        _stop(proc, None)


def extender_samples(plane: KubePlane, base: str) -> dict[tuple[str, tuple[Any, ...]], float]:
    """The extender's /metrics samples, keyed by name and sorted labels."""
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(plane.ca_file)), timeout=5
    ) as client:
        metrics = client.get(f"{base}/metrics", extensions={"sni_hostname": EXTENDER_NAME}).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
    }


def pod(name: str, namespace: str, *, cap_g_per_kwh: int | None = None) -> dict[str, Any]:
    annotations = (
        {} if cap_g_per_kwh is None else {"gridshift.io/max-gco2-per-kwh": str(cap_g_per_kwh)}
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "containers": [
                {
                    "name": "job",
                    "image": "registry.invalid/job:1",
                    "resources": {"requests": {"cpu": "100m"}},
                }
            ]
        },
    }


def node_of(plane: KubePlane, name: str, namespace: str) -> str | None:
    node: str | None = plane.core.read_namespaced_pod(name, namespace).spec.node_name
    return node


@pytest.fixture(scope="module")
def extender_cluster(plane: KubePlane) -> Iterator[None]:
    out = plane.kubectl("apply", "-k", str(DEPLOY / "overlays" / "extender")).stdout
    assert "serviceaccount/gridshift-extender" in out, out
    plane.kubectl("-n", NAMESPACE, "scale", "deployment/gridshift-extender", "--replicas=0")
    plane.create_node(LOW, labels={"topology.kubernetes.io/region": "eu-west-3"})
    plane.create_node(HIGH, labels={"topology.kubernetes.io/region": "eu-central-1"})
    yield
    plane.delete_node(LOW)
    plane.delete_node(HIGH)


@pytest.fixture
def batch(
    plane: KubePlane, extender_cluster: None, request: pytest.FixtureRequest
) -> Iterator[str]:
    with plane.namespace(f"batch-{request.node.callspec.id.replace(' ', '-')}") as name:
        yield name


@pytest.mark.parametrize("node_cache_capable", [True, False], ids=["node names", "node objects"])
def test_scheduler_places_pods_by_carbon_and_enforces_caps(
    plane: KubePlane, batch: str, tmp_path: Path, node_cache_capable: bool
) -> None:
    plane.core.patch_node(LOW, {"spec": {"unschedulable": False}})
    port = free_port()
    config = scheduler_config(plane, port=port, node_cache_capable=node_cache_capable)
    mode = "names" if node_cache_capable else "nodes"
    # the scheduler first, as in a cluster: the extender starts (or restarts) beside it
    with (
        plane.scheduler(config, name=f"kube-scheduler-{mode}"),
        running_extender(plane, tmp_path, port=port) as base,
    ):
        # Counted from readiness on: the scheduler may call the extender before it is ready
        # (for pods other tests may leave Pending while their namespaces are deleted), and those
        # calls are answered neutral (no_data), as documented.
        before = extender_samples(plane, base)
        # the first pods, created the moment the extender is ready: caps hold from the start
        for name in ("capped-0", "capped-1", "capped-2"):
            plane.core.create_namespaced_pod(batch, pod(name, batch, cap_g_per_kwh=300))
        for name in ("capped-0", "capped-1", "capped-2"):
            placed = wait_until(
                functools.partial(node_of, plane, name, batch), timeout_s=60, what=f"{name} bound"
            )
            assert placed == LOW, name
        plane.core.create_namespaced_pod(batch, pod("free", batch))
        assert wait_until(lambda: node_of(plane, "free", batch), timeout_s=60, what="bound") == LOW

        # no low-carbon node left: the capped pod waits, the uncapped one takes DE
        plane.core.patch_node(LOW, {"spec": {"unschedulable": True}})
        plane.core.create_namespaced_pod(batch, pod("capped-late", batch, cap_g_per_kwh=300))
        plane.core.create_namespaced_pod(batch, pod("free-late", batch))
        assert (
            wait_until(lambda: node_of(plane, "free-late", batch), timeout_s=60, what="bound")
            == HIGH
        )

        def refused() -> str:
            events = plane.core.list_namespaced_event(
                batch, field_selector="involvedObject.name=capped-late,reason=FailedScheduling"
            ).items
            return " ".join(e.message for e in events)

        message = wait_until(refused, timeout_s=60, what="FailedScheduling for capped-late")
        assert node_of(plane, "capped-late", batch) is None
        assert re.search(r"300", message), message
        samples = extender_samples(plane, base)
        decisions = {
            labels: value - before.get(("gridshift_extender_decisions_total", labels), 0)
            for (name, labels), value in samples.items()
            if name == "gridshift_extender_decisions_total"
        }
        assert decisions.get((("outcome", "capped"), ("verb", "filter")), 0) >= 1, decisions
        assert decisions.get((("outcome", "scored"), ("verb", "prioritize")), 0) >= 1, decisions
        # never a neutral answer once ready: scores were carbon-based from the first pod created
        neutral = {
            labels: v - before.get((name, labels), 0)
            for (name, labels), v in samples.items()
            if name == "gridshift_extender_neutral_scores_total"
        }
        assert sum(neutral.values()) == 0, (neutral, decisions)
    plane.core.patch_node(LOW, {"spec": {"unschedulable": False}})
