"""Two `gridshift run` replicas on the real API server: Lease takeover and the ConfigMap
checkpoint (deploy/scaler/state.yaml), with deploy/'s RBAC (the Lease and the ConfigMap are
allowed by name only).

Aspects: one replica holds `carbon-system/gridshift-scaler` and checkpoints every tick into
`gridshift-scaler-state` (each write an update on the resourceVersion it read; the real API
server refuses a stale one with 409); when the leader is SIGKILLed, the follower takes the
Lease over once it expires (leaseTransitions counts it) and its first write continues from
the killed leader's last checkpoint, not from its own lagging ticks; a SIGTERMed leader
releases the Lease (holder cleared) so the next replica need not wait for the expiry; a
restarted single replica restores the counters from the ConfigMap; `gridshift_kube_leader` says
which replica leads (replaced the API-server stand-in of tests/integration/test_crash_safety.py
for these cases, and with test_hpa, test_keda and test_crd that of
tests/integration/test_scaler_services.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import watch as k8s_watch
from prometheus_client.parser import text_string_to_metric_families
from urllib3.exceptions import ProtocolError

from scaler.state import LoopCheckpoint, checkpoint_from_config_map
from tests.cluster.install import (
    SCALER_NAMESPACE,
    config_workload,
    deployment,
    running_scaler,
    scaler_config,
)
from tests.cluster.plane import KubePlane, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

STATE = "gridshift-scaler-state"
WORKLOAD_NS = "shop-lease"


def workload() -> dict[str, Any]:
    return config_workload(WORKLOAD_NS, replicas=(2, 20))


def stored(plane: KubePlane) -> tuple[LoopCheckpoint | None, str]:
    cm = plane.core.read_namespaced_config_map(STATE, SCALER_NAMESPACE)
    return checkpoint_from_config_map(cm.data, cm.binary_data), cm.metadata.resource_version


def ticks_stored(plane: KubePlane) -> int:
    checkpoint, _ = stored(plane)
    return checkpoint.ticks_total if checkpoint else 0


def holder(plane: KubePlane) -> tuple[str | None, int]:
    lease = plane.get(
        f"/apis/coordination.k8s.io/v1/namespaces/{SCALER_NAMESPACE}/leases/gridshift-scaler"
    )
    return lease["spec"].get("holderIdentity"), lease["spec"].get("leaseTransitions", 0)


def leader_gauge(base_url: str, identity: str) -> float | None:
    """`gridshift_kube_leader{identity=...}` on a replica's /metrics."""
    text = httpx.get(f"{base_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "gridshift_kube_leader" and sample.labels.get("identity") == identity:
                return float(sample.value)
    return None


class ConfigMapWatch:
    """Every version of the state ConfigMap written after `resource_version`, in order."""

    def __init__(self, plane: KubePlane, resource_version: str) -> None:
        self.versions: list[tuple[str, LoopCheckpoint]] = []
        self._watch = k8s_watch.Watch()
        self._thread = threading.Thread(
            target=self._run, args=(plane, resource_version), daemon=True, name="cm-watch"
        )
        self._thread.start()

    def _run(self, plane: KubePlane, resource_version: str) -> None:
        with contextlib.suppress(ProtocolError):  # stop() cuts the stream mid-response
            self._follow(plane, resource_version)

    def _follow(self, plane: KubePlane, resource_version: str) -> None:
        for event in self._watch.stream(
            plane.core.list_namespaced_config_map,
            SCALER_NAMESPACE,
            field_selector=f"metadata.name={STATE}",
            resource_version=resource_version,
            timeout_seconds=120,
        ):
            obj = event["object"]
            checkpoint = checkpoint_from_config_map(obj.data, obj.binary_data)
            if event["type"] == "MODIFIED" and checkpoint is not None:
                self.versions.append((obj.metadata.resource_version, checkpoint))

    def stop(self) -> None:
        self._watch.stop()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def shop(plane: KubePlane, scaler_hpa: str) -> Iterator[str]:
    with plane.namespace(WORKLOAD_NS) as name:
        plane.apply(deployment("web", name, 2))
        yield name


def test_follower_takes_the_lease_over_and_continues_the_killed_leaders_checkpoint(
    plane: KubePlane, shop: str, fresh_scaler_state: None, tmp_path: Path
) -> None:
    config_a = scaler_config(plane, tmp_path, workloads=[workload()], identity="replica-a")
    config_b = scaler_config(plane, tmp_path, workloads=[workload()], identity="replica-b")
    with running_scaler(plane, config_a, tick_seconds=0.2) as leader:
        wait_until(lambda: holder(plane)[0] == "replica-a", timeout_s=30, what="replica-a leads")
        wait_until(lambda: ticks_stored(plane) >= 5, timeout_s=60, what="5 ticks checkpointed")
        assert leader_gauge(leader.base_url, "replica-a") == 1.0
        with running_scaler(plane, config_b, tick_seconds=0.2) as follower:
            assert leader_gauge(follower.base_url, "replica-b") == 0.0
            # the follower's own count lags: it restored at its start, then stalls a while
            follower.process.send_signal(signal.SIGSTOP)
            target = ticks_stored(plane) + 15
            wait_until(lambda: ticks_stored(plane) >= target, timeout_s=60, what="15 more ticks")
            follower.process.send_signal(signal.SIGCONT)
            assert holder(plane)[0] == "replica-a"
            _, transitions_before = holder(plane)

            leader.process.send_signal(signal.SIGKILL)
            leader.process.wait(timeout=10)
            persisted, rv = stored(plane)
            assert persisted is not None
            watch = ConfigMapWatch(plane, rv)
            try:
                wait_until(lambda: holder(plane)[0] == "replica-b", timeout_s=30, what="takeover")
                wait_until(
                    lambda: watch.versions, timeout_s=30, what="the new leader's first write"
                )
            finally:
                watch.stop()
            _, transitions_after = holder(plane)
            assert transitions_after == transitions_before + 1
            first_rv, taken_over = watch.versions[0]
            assert int(first_rv) > int(rv)
            assert taken_over.ticks_total == persisted.ticks_total + 1
            for name, w in taken_over.workloads.items():
                assert w.emitted_g >= persisted.workloads[name].emitted_g
            log = "".join(follower.output)
            assert f"took over ConfigMap {SCALER_NAMESPACE}/{STATE} at resourceVersion {rv}" in log
    # the follower was stopped with SIGTERM: it released the Lease on its way out
    assert holder(plane)[0] in (None, "")


def test_restarted_replica_restores_its_counters_from_the_configmap(
    plane: KubePlane, shop: str, fresh_scaler_state: None, tmp_path: Path
) -> None:
    config = scaler_config(plane, tmp_path, workloads=[workload()], identity="replica-a")
    with running_scaler(plane, config, tick_seconds=0.2) as first:
        wait_until(lambda: ticks_stored(plane) >= 8, timeout_s=60, what="8 ticks checkpointed")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(timeout=10)
    persisted, _ = stored(plane)
    assert persisted is not None
    emitted = sum(w.emitted_g for w in persisted.workloads.values())
    assert emitted > 0
    with running_scaler(plane, config, tick_seconds=0.2) as second:
        wait_until(
            lambda: ticks_stored(plane) > persisted.ticks_total,
            timeout_s=60,
            what="a save after the restore",
        )
        assert "restored state from" in "".join(second.output)
        after, _ = stored(plane)
        assert after is not None
        assert sum(w.emitted_g for w in after.workloads.values()) >= emitted * (1 - 1e-12)


def test_a_state_configmap_rbac_forbids_stops_the_start_instead_of_starting_fresh(
    plane: KubePlane, scaler_hpa: str, tmp_path: Path
) -> None:
    """deploy/'s Role lets the scaler read and update its state ConfigMap by name only: a
    scaler configured with another name gets the real authorizer's 403 on its first read and
    exits 1 with it (a fresh start would later overwrite saved counters), no traceback. (The
    API server unreachable at start: tests/integration/test_crash_safety.py.)"""
    config = scaler_config(plane, tmp_path, workloads=[workload()], identity="replica-a")
    settings = yaml.safe_load(config.read_text())
    settings["scaler"]["state_configmap_name"] = "not-gridshifts"
    config.write_text(yaml.safe_dump(settings))
    kubeconfig = plane.service_account_kubeconfig(SCALER_NAMESPACE, "gridshift-scaler")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    env.update(KUBECONFIG=str(kubeconfig), GRIDSHIFT_KUBE__KUBECONFIG=str(kubeconfig))
    done = subprocess.run(
        [sys.executable, "-m", "config", "run", "--config", str(config), "--listen", "127.0.0.1:0"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        f"scaler.state_store=configmap: ConfigMap {SCALER_NAMESPACE}/not-gridshifts: read "
        "failed: 403 Forbidden" in done.stderr
    ), done.stderr
    assert "system:serviceaccount:carbon-system:gridshift-scaler" in done.stderr
    assert "Traceback" not in done.stderr
