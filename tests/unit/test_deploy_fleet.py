"""deploy/fleet/daskcluster.yaml: the dask-kubernetes DaskCluster for fleet replays.

Aspects: the custom resource's own shape (kubernetes.dask.org/v1 DaskCluster, worker and
scheduler sections, the scheduler Service selecting the operator's scheduler labels); its
worker and scheduler pod specs and its Service spec validate against the real Kubernetes
OpenAPI schemas (kubernetes-validate, strict, three minor versions) as the Pods and Service
the operator creates from them; the container commands parse with Dask's own CLI (the
`dask` script the image ships) into the intended settings, nothing left over.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import kubernetes_validate
import pytest
import yaml
from distributed.cli.dask_scheduler import main as dask_scheduler
from distributed.cli.dask_worker import main as dask_worker

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "fleet" / "daskcluster.yaml"
VERSIONS = ["1.30.0", "1.33.0", "1.37.0"]
DOC: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())


def test_it_is_a_daskcluster_the_operator_reads() -> None:
    assert (DOC["apiVersion"], DOC["kind"]) == ("kubernetes.dask.org/v1", "DaskCluster")
    spec = DOC["spec"]
    assert set(spec) <= {"worker", "scheduler", "idleTimeout"}
    assert isinstance(spec["worker"]["replicas"], int)
    assert spec["worker"]["replicas"] >= 1
    selector = spec["scheduler"]["service"]["selector"]
    assert selector == {
        "dask.org/cluster-name": DOC["metadata"]["name"],
        "dask.org/component": "scheduler",
    }


def _as_objects() -> list[tuple[str, dict[str, Any]]]:
    meta = {"name": "x", "namespace": DOC["metadata"]["namespace"]}
    spec = DOC["spec"]
    return [
        (
            "worker",
            {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec["worker"]["spec"]},
        ),
        (
            "scheduler",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": meta,
                "spec": spec["scheduler"]["spec"],
            },
        ),
        (
            "service",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": spec["scheduler"]["service"],
            },
        ),
    ]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("part", "obj"), _as_objects(), ids=[p for p, _ in _as_objects()])
def test_pod_and_service_specs_validate(version: str, part: str, obj: dict[str, Any]) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


@pytest.mark.parametrize(
    ("section", "command", "expected"),
    [
        pytest.param(
            "worker",
            dask_worker,
            {"nthreads": 1, "dashboard_address": ":8788", "local_directory": "/tmp"},
            id="worker",
        ),
        pytest.param(
            "scheduler",
            dask_scheduler,
            {"port": "8786", "dashboard_address": ":8787"},
            id="scheduler",
        ),
    ],
)
def test_container_commands_parse_with_dasks_cli(
    section: str, command: click.Command, expected: dict[str, Any]
) -> None:
    (container,) = DOC["spec"][section]["spec"]["containers"]
    assert container["command"] == ["dask", section]
    ctx = command.make_context(f"dask {section}", list(container["args"]))
    assert {k: ctx.params[k] for k in expected} == expected
    assert ctx.params["preload_argv"] == ()  # nothing left over for preload scripts
