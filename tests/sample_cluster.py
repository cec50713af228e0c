"""A stand-in cluster for the sample scenario, shared by the PromQL and browser tests.

`seed_sample_cluster(api)` fills a `tests.apiserver.FakeApiServer` with what `gridshift run`'s
embedded sample workloads scale (namespace `sample`): the Deployments web-frontend,
checkout-api and search, the StatefulSet trainer (nightly-training), the KEDA ScaledObject
report-batch with its Deployment report-batch-worker, one CarbonAwareScaler per workload
(actuating the scale subresource, or the ScaledObject's bounds for report-batch), and two GPU
nodes for `gridshift extender` (one in eu-central-1 = carbon region DE, one in eu-west-3 =
FR). `settling(api)` plays the workload controllers: a moment after the scaler patches
`spec.replicas`, `status.replicas` follows, so actual replicas lag desired ones.

`running_sample_stack(tmp)` runs it all: the stand-in cluster (seeded, settling), the real
`gridshift extender` on it (driven with a scheduling round every second) and `gridshift run`
on the sample scenario with `kube.enabled` (CR watch, leader election, actuation and actual
replicas from the stand-in), the KEDA gRPC listener over TLS (a trustme certificate, so its
`gridshift_tls_*` metrics exist) and `server.extender_metrics_url` pointing at the extender.

`write_carbon_trace(path, now=...)` writes the extender's carbon input: a CSV in the trace
layout with hourly DE values up to `now` (fresh) and six-hourly FR values whose newest is
five hours old (stale), so the extender's freshness metrics have one of each.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import trustme

from extender.core.energy import ANNOTATION_KEY, GpuEnergy, encode_annotation
from forecasts.sources.clock import SystemClock
from forecasts.time import floor_to
from tests.apiserver import FakeApiServer, make_node
from tests.gridshift_process import (
    RUN_ARGS,
    RunningExtender,
    RunningGridshift,
    running_extender,
    running_gridshift,
    sample_config,
)

__all__ = [
    "DEPLOYMENTS",
    "NODE_NAMES",
    "STATEFULSETS",
    "SampleStack",
    "running_sample_stack",
    "seed_sample_cluster",
    "settling",
    "write_carbon_trace",
]

NAMESPACE = "sample"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
STATEFULSETS = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"
SCALED_OBJECTS = f"/apis/keda.sh/v1alpha1/namespaces/{NAMESPACE}/scaledobjects"
SCALERS = f"/apis/gridshift.io/v1alpha1/namespaces/{NAMESPACE}/carbonawarescalers"
NODES = "/api/v1/nodes"
NODE_NAMES = ("gpu-de-1", "gpu-fr-1")

# workload -> (target apiVersion, kind, name, min, max, actuation mode); bounds as in
# config.scenario's sample workloads
_SAMPLE_TARGETS: dict[str, tuple[str, str, str, int, int, str]] = {
    "web-frontend": ("apps/v1", "Deployment", "web-frontend", 2, 20, "scale"),
    "checkout-api": ("apps/v1", "Deployment", "checkout-api", 2, 30, "scale"),
    "search": ("apps/v1", "Deployment", "search", 2, 15, "scale"),
    "nightly-training": ("apps/v1", "StatefulSet", "trainer", 0, 8, "scale"),
    "report-batch": ("keda.sh/v1alpha1", "ScaledObject", "report-batch", 0, 6, "scaledObject"),
}


def _workload_object(kind: str, name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}},
        "status": {"replicas": replicas, "readyReplicas": replicas},
    }


def seed_sample_cluster(api: FakeApiServer, *, now: datetime) -> None:
    for name in ("web-frontend", "checkout-api", "search"):
        api.put_object(DEPLOYMENTS, _workload_object("Deployment", name, 2))
    api.put_object(DEPLOYMENTS, _workload_object("Deployment", "report-batch-worker", 1))
    api.put_object(STATEFULSETS, _workload_object("StatefulSet", "trainer", 0))
    api.put_object(
        SCALED_OBJECTS,
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "report-batch"},
            "spec": {
                "scaleTargetRef": {"name": "report-batch-worker"},
                "minReplicaCount": 0,
                "maxReplicaCount": 6,
                "triggers": [],
            },
        },
    )
    for workload, (api_version, kind, name, low, high, mode) in _SAMPLE_TARGETS.items():
        api.put_object(
            SCALERS,
            {
                "apiVersion": "gridshift.io/v1alpha1",
                "kind": "CarbonAwareScaler",
                "metadata": {"name": workload},
                "spec": {
                    "scaleTargetRef": {"apiVersion": api_version, "kind": kind, "name": name},
                    "minReplicas": low,
                    "maxReplicas": high,
                    "actuation": {"mode": mode},
                },
            },
        )
    for node_name, region, watts in (
        ("gpu-de-1", "eu-central-1", 250.0),
        ("gpu-fr-1", "eu-west-3", 400.0),
    ):
        node: dict[str, Any] = copy.deepcopy(make_node(node_name, region))
        node["metadata"].pop("resourceVersion", None)
        energy = GpuEnergy(watts, 50.0, None, 8, now, 300.0)
        node["metadata"]["annotations"][ANNOTATION_KEY] = encode_annotation(energy)
        api.put_object(NODES, node)


@contextlib.contextmanager
def settling(api: FakeApiServer, *, interval_seconds: float = 2.0) -> Iterator[None]:
    """`status.replicas` follows `spec.replicas` every `interval_seconds` (on a thread)."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval_seconds):
            api.settle_replicas(DEPLOYMENTS)
            api.settle_replicas(STATEFULSETS)

    thread = threading.Thread(target=run, name="fake-workload-controllers", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def write_carbon_trace(path: Path, *, now: datetime) -> Path:
    """DE hourly through `now` (fresh); FR six-hourly, newest 5 h old (stale)."""
    end = floor_to(now, timedelta(hours=1))
    rows = ["timestamp_utc,region,gco2_per_kwh"]
    for hours_back in range(48, -1, -1):
        at = end - timedelta(hours=hours_back)
        daily = math.sin(2 * math.pi * at.hour / 24)
        rows.append(f"{at:%Y-%m-%dT%H:%M:%SZ},DE,{380 + 90 * daily:.1f}")
        if hours_back % 6 == 5:  # six-hourly, the newest 5 h old: present but stale
            rows.append(f"{at:%Y-%m-%dT%H:%M:%SZ},FR,{55 + 15 * daily:.1f}")
    path.write_text("\n".join(rows) + "\n")
    return path


@contextlib.contextmanager
def driving(extender: RunningExtender, *, interval_seconds: float = 1.0) -> Iterator[list[Any]]:
    """A scheduling round at the extender every `interval_seconds`; yields the answers."""
    answers: list[Any] = []
    stop = threading.Event()

    def run() -> None:
        with httpx.Client(timeout=5.0) as client:
            for round_number in itertools.count():
                # one malformed body in five rounds: the error panels need some errors
                answers.append(extender.drive(client, malformed=round_number % 5 == 0))
                if stop.wait(interval_seconds):
                    return

    thread = threading.Thread(target=run, name="fake-kube-scheduler", daemon=True)
    thread.start()
    try:
        yield answers
    finally:
        stop.set()
        thread.join(timeout=10)


@dataclass
class SampleStack:
    api: FakeApiServer
    gridshift: RunningGridshift
    extender: RunningExtender
    extender_answers: list[Any]


def _keda_serving_files(tmp: Path) -> tuple[Path, Path]:
    leaf = trustme.CA().issue_cert("127.0.0.1", "localhost")
    cert, key = tmp / "keda-tls.crt", tmp / "keda-tls.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


@contextlib.contextmanager
def running_sample_stack(tmp: Path) -> Iterator[SampleStack]:
    now = SystemClock().now()
    with FakeApiServer() as api:
        seed_sample_cluster(api, now=now)
        kubeconfig = tmp / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        trace = write_carbon_trace(tmp / "carbon-trace.csv", now=now)
        keda_cert, keda_key = _keda_serving_files(tmp)
        with (
            settling(api),
            running_extender(
                kubeconfig=kubeconfig, carbon_trace=trace, state_dir=tmp, node_names=NODE_NAMES
            ) as extender,
            driving(extender) as answers,
            running_gridshift(
                [
                    *RUN_ARGS,
                    "--config",  # on a cluster the sample scenario is not implied
                    str(sample_config(tmp)),
                    "--set",
                    "kube.enabled=true",
                    "--set",
                    f"kube.kubeconfig={kubeconfig}",
                    "--set",
                    f"server.extender_metrics_url={extender.metrics_url}",
                    "--set",
                    "server.extender_poll_seconds=1",
                    # the KEDA gRPC listener over TLS, as deploy/overlays/scaler-keda runs it
                    "--set",
                    "keda.enabled=true",
                    "--set",
                    "keda.listen=127.0.0.1:0",
                    "--set",
                    f"keda.tls_cert_file={keda_cert}",
                    "--set",
                    f"keda.tls_key_file={keda_key}",
                ]
            ) as gridshift,
        ):
            yield SampleStack(api, gridshift, extender, answers)
