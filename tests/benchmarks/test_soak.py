"""Soak: the extender webhook and the External Metrics API at a fixed 200 requests/s each,
open loop, from a separate load-generator process (tests/benchmarks/extender_load.py) over
loopback, for `GRIDSHIFT_SOAK_SECONDS` (default 600 = 10 minutes; set e.g. 120 for a short
run). Each server runs as its own process; its resident memory (VmRSS) is sampled every
second. Asserts zero errors (every answer 200) and RSS growth under 10 % from the end of
warm-up to the end; prints p50/p99/max and the RSS figures. The machine is shared: the load
average is printed beside the figures."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.benchmarks.test_extender_bench import bodies
from tests.benchmarks.test_metrics_api_bench import PATH as METRICS_PATH

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("GRIDSHIFT_SOAK_SECONDS", "600"))
RATE = float(os.environ.get("GRIDSHIFT_SOAK_RATE", "200"))
# Read at import: the autouse fixture clears GRIDSHIFT_* variables before each test runs.
NODES = int(os.environ.get("GRIDSHIFT_SOAK_NODES", "500"))
WARMUP_SECONDS = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_ready(proc: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, "server exited"
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.1)


def load(port: int, *, seconds: float, path: str, method: str, body: Path | None) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "tests.benchmarks.extender_load",
        "--port",
        str(port),
        "--path",
        path,
        "--rate",
        str(RATE),
        "--seconds",
        str(seconds),
        "--connections",
        "8",
        "--method",
        method,
    ]
    if body is not None:
        cmd += ["--body", str(body)]
    out = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds * 3 + 60, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def soak(label: str, server_cmd: list[str], ready_url: str, port: int, **kw: Any) -> None:
    server = subprocess.Popen(server_cmd, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_ready(server, ready_url)
        load(port, seconds=WARMUP_SECONDS, **kw)  # warm-up: caches, allocator arenas
        rss_start = rss_kib(server.pid)
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(1.0):
                samples.append(rss_kib(server.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = load(port, seconds=SECONDS, **kw)
        done.set()
        sampler.join()
        rss_end = rss_kib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=20)
    growth = 100.0 * (rss_end - rss_start) / rss_start
    report = {
        "label": label,
        "rate_per_s": RATE,
        "seconds": SECONDS,
        **{k: result[k] for k in ("requests", "rps", "p50_ms", "p99_ms", "max_ms", "statuses")},
        "rss_start_mib": round(rss_start / 1024, 1),
        "rss_end_mib": round(rss_end / 1024, 1),
        "rss_peak_mib": round(max(samples or [rss_end]) / 1024, 1),
        "rss_growth_percent": round(growth, 2),
        "loadavg": os.getloadavg(),
    }
    print(json.dumps(report))
    artifacts = ROOT / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    with (artifacts / "soak.jsonl").open("a") as fh:
        fh.write(json.dumps(report) + "\n")
    errors = sum(n for status, n in result["statuses"].items() if str(status) != "200")
    assert errors == 0, result["statuses"]
    assert result["requests"] >= 0.9 * RATE * SECONDS
    assert growth < 10.0, report


def test_extender_soak(tmp_path: Path) -> None:
    """Prioritize over SOAK_NODES feasible node names (default 500) of a 5000-node cluster:
    kube-scheduler sends prioritize only the nodes that passed filtering."""
    port = free_port()
    names = NODES
    body = tmp_path / "prioritize.json"
    doc = json.loads(bodies(tmp_path)["names"].read_bytes())
    doc["NodeNames"] = doc["NodeNames"][:names]
    body.write_text(json.dumps(doc))
    soak(
        f"extender prioritize ({names} of 5000 node names)",
        [sys.executable, "-m", "tests.benchmarks.extender_server", "--listen", f"127.0.0.1:{port}"],
        f"http://127.0.0.1:{port}/readyz",
        port,
        path="/scheduler/prioritize",
        method="POST",
        body=body,
    )


def test_metrics_api_soak() -> None:
    port = free_port()
    soak(
        "metrics API GET (200 workloads, selector)",
        [sys.executable, "-m", "tests.benchmarks.metrics_api_server", "--port", str(port)],
        f"http://127.0.0.1:{port}/healthz",
        port,
        path=METRICS_PATH,
        method="GET",
        body=None,
    )
