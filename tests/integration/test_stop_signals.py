"""Ctrl-C like SIGTERM for the long-running commands other than `run` (which
test_run_main_job.py covers): `replay` and `agent` stop after the step in progress, say how
far they got, exit 0 and never print "Aborted!"."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.gridshift_process import free_port

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]  # start-up on a loaded machine


def _start(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "config", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _interrupt_after(
    proc: subprocess.Popen[str], marker: str, seconds: float, sig: int
) -> tuple[int, str]:
    """Wait for `marker` in the output (the command is past its start-up), let it run
    `seconds` more, send `sig`, and collect the rest. The process never outlives the test."""
    try:
        assert proc.stdout is not None
        seen: list[str] = []
        for line in proc.stdout:
            seen.append(line)
            if marker in line:
                break
        else:
            raise AssertionError("exited before " + marker + ":\n" + "".join(seen))
        time.sleep(seconds)
        assert proc.poll() is None, "".join(seen)
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=60)
        return proc.returncode, "".join(seen) + out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_scenario_replay_stops_cleanly(sig: int) -> None:
    proc = _start(
        "replay",
        "--scenario",
        "config/scenarios/sample.yaml",
        "--to",
        "2027-01-05T00:00:00Z",
    )
    code, out = _interrupt_after(proc, "replay sample", 2.0, sig)
    assert code == 0, out
    assert "Aborted" not in out
    assert "replay sample: stopped after" in out
    assert "(interrupted)" in out


def test_sample_tick_replay_summarises_what_ran() -> None:
    proc = _start("replay", "--from", "2026-01-05T00:00:00Z", "--to", "2027-01-05T00:00:00Z")
    code, out = _interrupt_after(proc, "replaying 2026", 2.0, signal.SIGINT)
    assert code == 0, out
    assert "(stopped after" in out
    assert "ticks: interrupted)" in out
    assert "emitted" in out


def test_agent_stops_cleanly_on_ctrl_c() -> None:
    proc = _start("agent", "--listen", f"127.0.0.1:{free_port()}", "--no-annotate")
    code, out = _interrupt_after(proc, "agent metrics on", 1.0, signal.SIGINT)
    assert code == 0, out
    assert "agent stopped after" in out
    assert "Aborted" not in out
