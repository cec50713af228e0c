"""Start `python -m config <args>` from the worktree as a subprocess for integration and e2e
tests, wait for its status URL on stdout, and stop it with SIGTERM afterwards."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["RUN_ARGS", "RunningGridshift", "running_gridshift", "wait_for"]

REPO = Path(__file__).resolve().parents[1]
RUN_ARGS = (
    "run",
    "--tick-seconds",
    "1",
    "--speed",
    "60",
    "--listen",
    "127.0.0.1:0",
    "--set",
    "metrics_api.enabled=false",
    "--set",
    "keda.enabled=false",
)


@dataclass
class RunningGridshift:
    base_url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def host_port(self) -> str:
        return self.base_url.removeprefix("http://")


def wait_for(predicate: Callable[[], Any], *, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@contextlib.contextmanager
def running_gridshift(args: Sequence[str] = RUN_ARGS) -> Iterator[RunningGridshift]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "config", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    drain: threading.Thread | None = None
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        base = None
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"(http://127\.0\.0\.1:\d+)/metrics", line)
            if m:
                base = m.group(1)
                break
        if base is None:
            raise AssertionError("gridshift exited early:\n" + "".join(lines))
        running = RunningGridshift(base_url=base, process=proc, output=lines)
        # keep draining stdout so the child never blocks on a full pipe
        drain = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
        drain.start()
        with httpx.Client(base_url=base, timeout=5.0) as client:
            wait_for(lambda: client.get("/readyz").status_code == 200, timeout_s=60, what="ready")
        yield running
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if drain is not None:
            drain.join(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
