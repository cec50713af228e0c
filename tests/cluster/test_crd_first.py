"""CRD-first on the real API server: the shipped example CarbonAwareScaler, applied alone,
drives its target even with every input stale, and CRs gridshift cannot use say why.

`gridshift run` as deployed (kube enabled, no config-file workloads) against kube-apiserver
v1.37, through `tests.faultproxy.FaultProxy` (which records its requests), in a namespace
holding a Deployment `web` (3 replicas, as the Deployment controller reports them) and only
CarbonAwareScalers:

* the example CR (deploy/scaler/example-carbonawarescaler.yaml, only its namespace changed)
  becomes a workload: its status (written through the status subresource) gets
  `Ready=True`, a decision and the region the model resolved; `actuation.mode: scale` sets
  the Deployment's replicas (to the 3 it runs: inputs are stale here, no Prometheus and no
  carbon provider for IE, and a new workload starts from what runs, never scaled down on
  missing data); `ScalingDecision` and `Actuated` Events on the CR are stored;
* a CR the CRD's schema lets through but gridshift cannot use gets `Ready=False` with the
  reason and one Warning Event: an unknown region (`UnknownRegion`), and a mode override
  whose cron cannot be read (`InvalidSpec`; the stand-in's `maxReplicas: 0` is refused by the
  real CRD, tests/cluster/test_kube.py) -- and neither keeps the example from being acted on;
* every write names gridshift (`fieldManager=gridshift`, user agent `gridshift/<version>`).

With Prometheus and a carbon trace (fresh inputs) the same example under the scaler-hpa
overlay's RBAC: tests/cluster/test_example_cr.py.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.install import deployment
from tests.cluster.proxied import ProxiedApi
from tests.cluster.test_kube import CRS, DEPLOYS, scale_status
from tests.integration.prom_fixture import free_port

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "scaler" / "example-carbonawarescaler.yaml"
EVENTS = "/api/v1/namespaces/{ns}/events"
RUN = [sys.executable, "-m", "config", "run"]


def wait_for(what: str, probe: Callable[[], Any], proc: subprocess.Popen[bytes], log: Path) -> Any:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(
                f"gridshift run exited while waiting for {what}:\n{log.read_text()}"
            )
        time.sleep(0.2)
    raise AssertionError(f"never saw {what}:\n{log.read_text()[-4000:]}")


def get(api: ProxiedApi, path: str) -> Any:
    obj = api.get_object(path)
    assert obj is not None, path
    return obj


def ready(api: ProxiedApi, name: str) -> Any:
    obj = api.get_object(f"{CRS}/{name}") or {}
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition["type"] == "Ready" and condition["status"] != "Unknown":
            return condition
    return None


def events(api: ProxiedApi, name: str) -> list[dict[str, Any]]:
    """The Events the API server stores for the CarbonAwareScaler `name`, oldest first."""
    stored = get(api, EVENTS)["items"]
    return sorted(
        (
            e
            for e in stored
            if (e["involvedObject"]["kind"], e["involvedObject"]["name"])
            == ("CarbonAwareScaler", name)
        ),
        key=lambda e: e["metadata"]["name"],  # <object>.<hex nanoseconds>
    )


def test_the_example_cr_alone_gets_a_status_and_drives_its_target(
    api: ProxiedApi, tmp_path: Path
) -> None:
    api.put_object(DEPLOYS, deployment("web", api.ns, 3))
    scale_status(api, f"{DEPLOYS}/web", 3)
    example = yaml.safe_load(EXAMPLE.read_text())
    example["metadata"]["namespace"] = api.ns
    api.put_object(CRS, example)
    nowhere = copy.deepcopy(example)
    nowhere["metadata"]["name"] = "nowhere"
    nowhere["spec"].update(region="atlantis", actuation={"mode": "none"})
    api.put_object(CRS, nowhere)
    broken = copy.deepcopy(example)
    broken["metadata"]["name"] = "broken"
    broken["spec"]["modeOverrides"][0]["cron"] = "0 12 * * fri-xyz"
    api.put_object(CRS, broken)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    env.update(
        {
            "GRIDSHIFT_KUBE__ENABLED": "true",
            "GRIDSHIFT_KUBE__KUBECONFIG": str(kubeconfig),
            "GRIDSHIFT_KUBE__WATCH_NAMESPACE": api.ns,
            "GRIDSHIFT_KUBE__LEASE_NAMESPACE": api.ns,
            "GRIDSHIFT_KUBE__LEASE_DURATION_SECONDS": "2",
            "GRIDSHIFT_KUBE__RENEW_DEADLINE_SECONDS": "1.5",
            "GRIDSHIFT_KUBE__RETRY_PERIOD_SECONDS": "0.2",
            "GRIDSHIFT_METRICS_API__LISTEN": f"127.0.0.1:{free_port()}",
            "GRIDSHIFT_KEDA__LISTEN": f"127.0.0.1:{free_port()}",
            # nothing listens there: the load input is stale, as on a cluster without it
            "GRIDSHIFT_PROMETHEUS__URL": f"http://127.0.0.1:{free_port()}",
            "GRIDSHIFT_CARBON__LAST_KNOWN_PATH": str(tmp_path / "last-known.json"),
        }
    )
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*RUN, "--listen", "127.0.0.1:0", "--tick-seconds", "0.5"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        web = wait_for("web Ready", lambda: ready(api, "web"), proc, log)
        status = get(api, f"{CRS}/web")["status"]
        scaled = wait_for(
            "the Deployment scaled by the CR",
            lambda: (get(api, f"{CRS}/web")["status"].get("lastActuation") or {}).get("applied"),
            proc,
            log,
        )
        nowhere_ready = wait_for("nowhere refused", lambda: ready(api, "nowhere"), proc, log)
        broken_ready = wait_for("broken refused", lambda: ready(api, "broken"), proc, log)
        decided = wait_for(
            "the decision and actuation Events",
            lambda: len(events(api, "web")) >= 2 and events(api, "web"),
            proc,
            log,
        )
        wait_for(
            "Warning Events",
            lambda: events(api, "nowhere") and events(api, "broken"),
            proc,
            log,
        )
        time.sleep(1.5)  # three more ticks: a persisting problem stays one Event
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert web["status"] == "True", web
    assert status["desiredReplicas"] == 3, status
    assert status["region"] == "IE", "eu-west-1, resolved by the region model"
    assert "load" in status["conditions"][1]["message"], "stale inputs are said"
    assert scaled
    assert get(api, f"{DEPLOYS}/web")["spec"]["replicas"] == 3
    assert (nowhere_ready["status"], nowhere_ready["reason"]) == ("False", "UnknownRegion")
    assert "atlantis" in nowhere_ready["message"]
    assert (broken_ready["status"], broken_ready["reason"]) == ("False", "InvalidSpec")
    assert "spec.modeOverrides[0]: invalid cron '0 12 * * fri-xyz'" in broken_ready["message"]
    assert [e["reason"] for e in decided[:2]] == ["ScalingDecision", "Actuated"]
    assert decided[0]["type"] == "Normal"
    assert "desired 3 replicas" in decided[0]["message"]
    assert decided[0]["involvedObject"]["kind"] == "CarbonAwareScaler"
    assert decided[0]["involvedObject"]["uid"] == get(api, f"{CRS}/web")["metadata"]["uid"]
    for name, reason in (("nowhere", "UnknownRegion"), ("broken", "InvalidSpec")):
        assert [(e["type"], e["reason"]) for e in events(api, name)] == [("Warning", reason)]
    writes = [r for r in api.requests if r.method in ("POST", "PATCH", "PUT")]
    assert writes
    assert any(r.path.endswith("/web/status") for r in writes), "status via the subresource"
    for r in writes:
        assert r.query.get("fieldManager") == ["gridshift"], r.path
        assert r.headers["User-Agent"].startswith("gridshift/"), r.path
