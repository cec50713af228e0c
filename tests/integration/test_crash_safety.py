"""Crash safety of `gridshift run`: kill -9 mid-run, restart, counters continue.

Aspects: the state file is always a complete checkpoint (atomic replace) even when the
process is SIGKILLed while ticking fast; a restarted run restores ticks and savings counters
from it (the status API's `ticks_total` continues from the persisted value, cumulative
emissions never go back); at most the tick in flight is lost. The same with the ConfigMap
store and leader election against the API-server stand-in; and an API server that cannot be
read at start makes `gridshift run` exit with a clear error rather than start from zero.
Failover: two `gridshift run` replicas share the ConfigMap and the Lease; when the leader is
SIGKILLed, the follower takes the Lease over and its first save continues from the killed
leader's last checkpoint (on its resourceVersion), not from the follower's own, lagging ticks.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from scaler.state import LoopCheckpoint, checkpoint_from_json
from tests.apiserver import FakeApiServer, kubeconfig_for
from tests.gridshift_process import sample_config
from tests.integration.prom_fixture import free_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration
RUN = [sys.executable, "-m", "config", "run"]


def start_run(state: Path | dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`gridshift run` persisting to the file `state`, or with the env settings `state`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    if isinstance(state, Path):
        env["GRIDSHIFT_SCALER__STATE_FILE"] = str(state)
    else:
        env.update(state)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*RUN, "--listen", "127.0.0.1:0", "--tick-seconds", "0.1", "--speed", "60"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"status:\s+(http://\S+)/status", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"gridshift run exited: {log.read_text()}")
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"gridshift run did not start: {log.read_text()}")


def status(base: str) -> Any:
    deadline = time.monotonic() + 30
    while True:  # the URL is printed just before the server binds its handlers
        try:
            r = httpx.get(f"{base}/status", timeout=5)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{base}/status never answered 200")
        time.sleep(0.1)


def wait_ticks(read: Callable[[], bytes | None], at_least: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        text = read()
        if text is not None:
            ticks = checkpoint_from_json(text).ticks_total
            if ticks >= at_least:
                return ticks
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} ticks persisted")


def continues_from(base: str, persisted_ticks: int, emitted: float) -> Any:
    """The restarted run's status once it ticked past the persisted count."""
    deadline = time.monotonic() + 60
    snap = status(base)
    while snap["ticks_total"] <= persisted_ticks and time.monotonic() < deadline:
        time.sleep(0.1)
        snap = status(base)
    # continues from the persisted count (a fresh start would begin at 1)
    assert snap["ticks_total"] > persisted_ticks
    # the same sum in another order (the ledger adds by workload, the JSON is sorted)
    assert snap["totals"]["emitted_g"] >= emitted * (1 - 1e-12)
    return snap


def kill_then_restart(
    state: Path | dict[str, str], read: Callable[[], bytes | None], tmp_path: Path
) -> tuple[LoopCheckpoint, float, Any]:
    """SIGKILL a run after 8 persisted ticks, restart it: (persisted, emitted g, status)."""
    proc, _base = start_run(state, tmp_path / "run.log")
    try:
        wait_ticks(read, 8)
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown hooks, mid-tick most likely
        proc.wait(timeout=10)
    # what is stored is a complete checkpoint, never a torn write
    persisted = checkpoint_from_json(read() or b"")
    assert persisted.ticks_total >= 8
    emitted = sum(w.emitted_g for w in persisted.workloads.values())
    assert emitted > 0
    log2 = tmp_path / "run2.log"
    proc2, base2 = start_run(state, log2)
    try:
        snap = continues_from(base2, persisted.ticks_total, emitted)
        assert "restored state from" in log2.read_text()
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(timeout=20)
    return persisted, emitted, snap


def test_sigkill_mid_tick_then_restart_continues(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    persisted, emitted, snap = kill_then_restart(
        state, lambda: state.read_bytes() if state.exists() else None, tmp_path
    )
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    report = {
        "persisted_ticks": persisted.ticks_total,
        "restarted_ticks": snap["ticks_total"],
        "persisted_emitted_g": emitted,
        "restarted_emitted_g": snap["totals"]["emitted_g"],
    }
    out = REPO / "tests" / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "crash_safety.json").write_text(json.dumps(report, indent=1))


CONFIGMAP = "/api/v1/namespaces/shop/configmaps/gridshift-state"


def configmap_run(
    api: FakeApiServer, tmp_path: Path
) -> tuple[dict[str, str], Callable[[], bytes | None]]:
    """Env settings for `gridshift run` on the stand-in with the ConfigMap store, and a reader
    of the stored checkpoint."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.kubeconfig())
    env = {
        "KUBECONFIG": str(kubeconfig),
        # on a cluster the workloads come from config and CarbonAwareScalers (no implicit
        # SAMPLE DATA scenario there): the sample workloads as a config file
        "GRIDSHIFT_CONFIG": str(sample_config(tmp_path)),
        "GRIDSHIFT_SCALER__STATE_STORE": "configmap",
        "GRIDSHIFT_SCALER__STATE_CONFIGMAP_NAMESPACE": "shop",
        "GRIDSHIFT_SCALER__STATE_CONFIGMAP_NAME": "gridshift-state",
        # as deployed: leader election on, so only the Lease holder writes the ConfigMap
        "GRIDSHIFT_KUBE__ENABLED": "true",
        "GRIDSHIFT_KUBE__KUBECONFIG": str(kubeconfig),
        "GRIDSHIFT_KUBE__LEASE_NAMESPACE": "shop",
        "GRIDSHIFT_KUBE__LEASE_DURATION_SECONDS": "2",
        "GRIDSHIFT_KUBE__RENEW_DEADLINE_SECONDS": "1.5",
        "GRIDSHIFT_KUBE__RETRY_PERIOD_SECONDS": "0.2",
    }

    def read() -> bytes | None:
        obj = api.get_object(CONFIGMAP)
        return obj["data"]["checkpoint.json"].encode() if obj else None

    return env, read


def test_sigkill_then_restart_restores_from_the_configmap(tmp_path: Path) -> None:
    with FakeApiServer() as api:
        env, read = configmap_run(api, tmp_path)
        path = CONFIGMAP

        persisted, emitted, snap = kill_then_restart(env, read, tmp_path)
        puts = [r for r in api.requests if r.method == "PUT" and r.path == path]
        assert puts  # every update carried the resourceVersion it was based on
        assert all(r.body["metadata"]["resourceVersion"] for r in puts)
        # the restarted process saved on from where it restored once it held the Lease
        assert wait_ticks(read, persisted.ticks_total + 1) > persisted.ticks_total
        lease = api.get_object(
            "/apis/coordination.k8s.io/v1/namespaces/shop/leases/gridshift-scaler"
        )
        assert lease is not None
    print(
        f"configmap: persisted {persisted.ticks_total} ticks / {emitted:.1f} g before kill -9; "
        f"restarted at tick {snap['ticks_total']} with {snap['totals']['emitted_g']:.1f} g"
    )


def test_follower_taking_over_continues_from_the_killed_leaders_checkpoint(
    tmp_path: Path,
) -> None:
    with FakeApiServer() as api:
        env, read = configmap_run(api, tmp_path)
        path = CONFIGMAP

        def replica(identity: str) -> dict[str, str]:  # two on one host: own ports
            return {
                **env,
                "GRIDSHIFT_KUBE__IDENTITY": identity,
                "GRIDSHIFT_METRICS_API__LISTEN": f"127.0.0.1:{free_port()}",
                "GRIDSHIFT_KEDA__LISTEN": f"127.0.0.1:{free_port()}",
            }

        leader, _ = start_run(replica("a"), tmp_path / "a.log")
        follower = None
        try:
            wait_ticks(read, 5)
            follower, base_b = start_run(
                {**env, "GRIDSHIFT_KUBE__IDENTITY": "b"}, tmp_path / "b.log"
            )
            status(base_b)
            # the follower's own count lags: it restored at its start, then stalls a while
            follower.send_signal(signal.SIGSTOP)
            wait_ticks(read, checkpoint_from_json(read() or b"").ticks_total + 15)
            follower.send_signal(signal.SIGCONT)
            status(base_b)
            leader.send_signal(signal.SIGKILL)
            leader.wait(timeout=10)
            persisted = checkpoint_from_json(read() or b"")
            rv = api.get_object(path)["metadata"]["resourceVersion"]  # type: ignore[index]
            own_ticks = status(base_b)["ticks_total"]
            assert own_ticks < persisted.ticks_total - 5
            seen = len(api.requests)
            wait_ticks(read, persisted.ticks_total + 1)
            first = next(r for r in api.requests[seen:] if r.method == "PUT" and r.path == path)
            taken_over = checkpoint_from_json(first.body["data"]["checkpoint.json"])
            assert first.body["metadata"]["resourceVersion"] == rv
            assert taken_over.ticks_total == persisted.ticks_total + 1
            for name, w in taken_over.workloads.items():
                assert w.emitted_g >= persisted.workloads[name].emitted_g
            assert (
                f"took over ConfigMap shop/gridshift-state at resourceVersion {rv}"
                in (tmp_path / "b.log").read_text()
            )
        finally:
            for proc in (leader, follower):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(timeout=20)
    emitted = sum(w.emitted_g for w in persisted.workloads.values())
    print(
        f"failover: leader killed at tick {persisted.ticks_total} / {emitted:.1f} g; follower at "
        f"its own tick {own_ticks} took over and saved tick {taken_over.ticks_total} / "
        f"{sum(w.emitted_g for w in taken_over.workloads.values()):.1f} g"
    )


def test_unreadable_configmap_at_start_exits_instead_of_starting_fresh(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(kubeconfig_for(f"http://127.0.0.1:{free_port()}"))  # nothing there
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    env.update(KUBECONFIG=str(kubeconfig), GRIDSHIFT_SCALER__STATE_STORE="configmap")
    done = subprocess.run(
        [*RUN, "--listen", "127.0.0.1:0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert (
        "scaler.state_store=configmap: ConfigMap carbon-system/gridshift-scaler-state: "
        "API server unreachable" in done.stderr
    )
    assert "Traceback" not in done.stderr
