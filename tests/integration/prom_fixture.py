"""Run the real Prometheus (Debian's `prometheus`, 2.42) on loopback for tests.

Reusable pieces:

- `backfill(openmetrics, tsdb_dir)`: `promtool tsdb create-blocks-from openmetrics` into a
  TSDB directory (the text must end with `# EOF`; timestamps in seconds);
- `running_prometheus(workdir, ...)`: a context manager that writes a config (optionally with
  scrape targets), starts Prometheus on `127.0.0.1:<free port>` with a long retention (so
  backfilled old blocks stay), waits for `/-/ready` and stops it afterwards;
- `free_port()`, `require_prometheus()` (skips cleanly where the binaries are absent).

The scaler's own `/metrics` endpoint can be scraped the same way: pass its `host:port` in
`scrape_targets`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

__all__ = [
    "PrometheusServer",
    "backfill",
    "free_port",
    "require_prometheus",
    "running_prometheus",
]


def _binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)


def require_prometheus() -> tuple[str, str]:
    """Paths of `prometheus` and `promtool`; skips the test where they are not installed
    (`make install-system` apt-installs them)."""
    prometheus, promtool = _binary("prometheus"), _binary("promtool")
    if prometheus is None or promtool is None:
        pytest.skip("prometheus/promtool not installed (make install-system)")
    return prometheus, promtool


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def backfill(openmetrics: str, tsdb_dir: Path, *, timeout_seconds: float = 120.0) -> Path:
    """Write `openmetrics` as blocks into `tsdb_dir` (created if needed); returns it.
    `timeout_seconds` bounds promtool (benchmarks backfill millions of samples)."""
    _, promtool = require_prometheus()
    tsdb_dir.mkdir(parents=True, exist_ok=True)
    source = tsdb_dir.parent / f"{tsdb_dir.name}.om"
    source.write_text(openmetrics)
    done = subprocess.run(
        [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(tsdb_dir)],
        capture_output=True,
        text=True,
        timeout=timeout_seconds,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"promtool backfill failed: {done.stderr or done.stdout}")
    return tsdb_dir


@dataclass(frozen=True, slots=True)
class PrometheusServer:
    url: str
    port: int
    log: Path
    process: subprocess.Popen[bytes]


def _config(scrape_targets: Sequence[str], scrape_interval: str) -> str:
    lines = ["global:", f"  scrape_interval: {scrape_interval}", "  evaluation_interval: 1m"]
    if scrape_targets:
        lines += [
            "scrape_configs:",
            "  - job_name: app",
            f"    scrape_interval: {scrape_interval}",
            f"    scrape_timeout: {scrape_interval}",
            "    static_configs:",
            "      - targets: [" + ", ".join(f"'{t}'" for t in scrape_targets) + "]",
        ]
    return "\n".join(lines) + "\n"


@contextmanager
def running_prometheus(
    workdir: Path,
    *,
    tsdb_dir: Path | None = None,
    scrape_targets: Sequence[str] = (),
    scrape_interval: str = "1s",
    ready_timeout_seconds: float = 60.0,
) -> Iterator[PrometheusServer]:
    """Start Prometheus on 127.0.0.1:<free port>; stop it on exit."""
    prometheus, _ = require_prometheus()
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(_config(scrape_targets, scrape_interval))
    tsdb = tsdb_dir or workdir / "tsdb"
    tsdb.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={tsdb}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_timeout_seconds
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"prometheus exited early: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"prometheus not ready: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield PrometheusServer(url=url, port=port, log=log, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
