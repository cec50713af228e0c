"""Crash safety of `gridshift run`: kill -9 mid-run, restart, counters continue.

Aspects: the state file is always a complete checkpoint (atomic replace) even when the
process is SIGKILLed while ticking fast; a restarted run restores ticks and savings counters
from it (the status API's `ticks_total` continues from the persisted value, cumulative
emissions never go back); at most the tick in flight is lost. An API server that cannot be
read at start (nothing listens at its address; no API server stand-in is needed) makes
`gridshift run` exit with a clear error rather than start from zero (the real authorizer's
403 on the ConfigMap: tests/cluster/test_leader_election.py). The same with the ConfigMap
store, and failover between two replicas sharing the ConfigMap and the
Lease, run on the real control plane: tests/cluster/test_leader_election.py.
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
from tests.cluster.proxied import kubeconfig_for
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
