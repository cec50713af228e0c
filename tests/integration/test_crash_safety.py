"""Crash safety of `gridshift run`: kill -9 mid-run, restart, counters continue.

Aspects: the state file is always a complete checkpoint (atomic replace) even when the
process is SIGKILLed while ticking fast; a restarted run restores ticks and savings counters
from it (the status API's `ticks_total` continues from the persisted value, cumulative
emissions never go back); at most the tick in flight is lost.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from scaler.state import checkpoint_from_json

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration
RUN = [sys.executable, "-m", "config", "run"]


def start_run(state: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    env["GRIDSHIFT_SCALER__STATE_FILE"] = str(state)
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


def wait_ticks(state: Path, at_least: int, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if state.exists():
            ticks = checkpoint_from_json(state.read_bytes()).ticks_total
            if ticks >= at_least:
                return ticks
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} ticks persisted")


def test_sigkill_mid_tick_then_restart_continues(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    log = tmp_path / "run.log"
    proc, _base = start_run(state, log)
    try:
        wait_ticks(state, 8)
    finally:
        proc.send_signal(signal.SIGKILL)  # no shutdown hooks, mid-tick most likely
        proc.wait(timeout=10)
    # the file is a complete checkpoint, never a torn write
    persisted = checkpoint_from_json(state.read_bytes())
    assert persisted.ticks_total >= 8
    emitted = sum(w.emitted_g for w in persisted.workloads.values())
    assert emitted > 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    log2 = tmp_path / "run2.log"
    proc2, base2 = start_run(state, log2)
    try:
        deadline = time.monotonic() + 60
        snap = status(base2)
        while snap["ticks_total"] <= persisted.ticks_total and time.monotonic() < deadline:
            time.sleep(0.1)
            snap = status(base2)
        # continues from the persisted count (a fresh start would begin at 1)
        assert snap["ticks_total"] > persisted.ticks_total
        assert snap["totals"]["emitted_g"] >= emitted
        assert "restored state from" in log2.read_text()
    finally:
        proc2.send_signal(signal.SIGTERM)
        proc2.wait(timeout=20)
    report = {
        "persisted_ticks": persisted.ticks_total,
        "restarted_ticks": snap["ticks_total"],
        "persisted_emitted_g": emitted,
        "restarted_emitted_g": snap["totals"]["emitted_g"],
    }
    out = REPO / "tests" / "artifacts"
    out.mkdir(exist_ok=True)
    (out / "crash_safety.json").write_text(json.dumps(report, indent=1))
