"""CRD-first: the shipped example CarbonAwareScaler, applied alone, drives its target.

`gridshift run` as deployed (kube enabled, no config-file workloads) against the stand-in API
server holding a Deployment `shop/web` (3 replicas) and only CarbonAwareScalers:

* the example CR (deploy/scaler/example-carbonawarescaler.yaml, unchanged) becomes a
  workload: its status gets `Ready=True`, a decision and the region the model resolved;
  `actuation.mode: scale` sets the Deployment's replicas (to the 3 it runs: inputs are stale
  here, no Prometheus and no carbon provider for IE, and a new workload starts from what
  runs, never scaled down on missing data); a `ScalingDecision` Event names the CR;
* a CR the schema would let through but gridshift cannot use (unknown region) and one that
  does not parse (maxReplicas 0) each get `Ready=False` with the reason and a Warning Event;
* every write names gridshift (`fieldManager=gridshift`, user agent `gridshift/<version>`).

The real-control-plane version of this test belongs to the real-cluster tier.
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

from tests.apiserver import FakeApiServer
from tests.integration.prom_fixture import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "scaler" / "example-carbonawarescaler.yaml"
CRS = "/apis/gridshift.io/v1alpha1/namespaces/shop/carbonawarescalers"
DEPLOYS = "/apis/apps/v1/namespaces/shop/deployments"
EVENTS = "/api/v1/namespaces/shop/events"


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


def get(api: FakeApiServer, path: str) -> Any:
    obj = api.get_object(path)
    assert obj is not None, path
    return obj


def ready(api: FakeApiServer, name: str) -> Any:
    obj = api.get_object(f"{CRS}/{name}") or {}
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition["type"] == "Ready" and condition["status"] != "Unknown":
            return condition
    return None


def events(api: FakeApiServer, name: str) -> list[dict[str, Any]]:
    return [
        r.body
        for r in api.requests
        if r.method == "POST" and r.path == EVENTS and r.body["involvedObject"]["name"] == name
    ]


def test_the_example_cr_alone_gets_a_status_and_drives_its_target(tmp_path: Path) -> None:
    with FakeApiServer(bookmark_interval_seconds=0.2) as api:
        api.put_object(
            DEPLOYS,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "web"},
                "spec": {"replicas": 3},
                "status": {"replicas": 3, "readyReplicas": 3},
            },
        )
        example = yaml.safe_load(EXAMPLE.read_text())
        api.put_object(CRS, example)
        nowhere = copy.deepcopy(example)
        nowhere["metadata"]["name"] = "nowhere"
        nowhere["spec"].update(region="atlantis", actuation={"mode": "none"})
        api.put_object(CRS, nowhere)
        broken = copy.deepcopy(example)
        broken["metadata"]["name"] = "broken"
        broken["spec"]["maxReplicas"] = 0
        api.put_object(CRS, broken)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
        env.update(
            {
                "GRIDSHIFT_KUBE__ENABLED": "true",
                "GRIDSHIFT_KUBE__KUBECONFIG": str(kubeconfig),
                "GRIDSHIFT_KUBE__WATCH_NAMESPACE": "shop",
                "GRIDSHIFT_KUBE__LEASE_NAMESPACE": "shop",
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
                [
                    sys.executable,
                    "-m",
                    "config",
                    "run",
                    "--listen",
                    "127.0.0.1:0",
                    "--tick-seconds",
                    "0.5",
                ],
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
                lambda: (get(api, f"{CRS}/web")["status"].get("lastActuation") or {}).get(
                    "applied"
                ),
                proc,
                log,
            )
            nowhere_ready = wait_for("nowhere refused", lambda: ready(api, "nowhere"), proc, log)
            broken_ready = wait_for("broken refused", lambda: ready(api, "broken"), proc, log)
            decided = wait_for("a decision Event", lambda: events(api, "web"), proc, log)
            warnings = wait_for(
                "Warning Events",
                lambda: len(events(api, "nowhere")) and len(events(api, "broken")),
                proc,
                log,
            )
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
        assert "spec.maxReplicas" in broken_ready["message"]
        assert [e["reason"] for e in decided[:2]] == ["ScalingDecision", "Actuated"]
        assert decided[0]["type"] == "Normal"
        assert "desired 3 replicas" in decided[0]["message"]
        assert decided[0]["involvedObject"]["kind"] == "CarbonAwareScaler"
        assert decided[0]["involvedObject"]["uid"]
        assert warnings
        (refused,) = events(api, "nowhere")
        assert (refused["type"], refused["reason"]) == ("Warning", "UnknownRegion")
        writes = [r for r in api.requests if r.method in ("POST", "PATCH", "PUT")]
        assert writes
        for r in writes:
            assert r.query.get("fieldManager") == ["gridshift"], r.path
            assert r.headers["User-Agent"].startswith("gridshift/"), r.path
