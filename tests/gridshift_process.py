"""Start `python -m config <args>` from the worktree as a subprocess for integration and e2e
tests, wait until it serves, and stop it with SIGTERM afterwards.

`running_gridshift` starts `gridshift run` (the status URL is read from its stdout);
`running_extender` starts the real `gridshift extender` against a Kubernetes API stand-in
(KUBECONFIG) and a carbon trace, and `RunningExtender.drive()` sends it the scheduler's
filter and prioritize calls (plus one malformed body, which it must answer 400), so its
/metrics carry real request, latency, decision and error counts."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

__all__ = [
    "RUN_ARGS",
    "RunningExtender",
    "RunningGridshift",
    "free_port",
    "running_extender",
    "running_gridshift",
    "wait_for",
]

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    env.update(extra or {})
    return env


def _stop(proc: subprocess.Popen[str], drain: threading.Thread | None) -> None:
    """SIGTERM (a clean shutdown), SIGKILL after 15 s; then close the output pipe."""
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


def sample_config(directory: Path) -> Path:
    """The SAMPLE DATA workloads as a config file: what `gridshift run` runs without any
    configuration, but on a cluster (`kube.enabled`) workloads come only from a config file
    and CarbonAwareScalers, so tests that want the sample scenario there pass this."""
    from config.scenario import sample_settings
    from forecasts.sources.clock import SystemClock

    workloads = sample_settings(SystemClock().now()).scaler.workloads
    path = directory / "sample-workloads.yaml"
    dumped = [w.model_dump(mode="json", by_alias=True, exclude_none=True) for w in workloads]
    path.write_text(yaml.safe_dump({"scaler": {"workloads": dumped}}))
    return path


@contextlib.contextmanager
def running_gridshift(
    args: Sequence[str] = RUN_ARGS, *, env: Mapping[str, str] | None = None
) -> Iterator[RunningGridshift]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "config", *args],
        cwd=REPO,
        env=_env(env),
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
        _stop(proc, drain)


GPU_POD = {
    "metadata": {"name": "train-0", "namespace": "ml"},
    "spec": {"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
}


@dataclass
class RunningExtender:
    base_url: str
    process: subprocess.Popen[str]
    node_names: tuple[str, ...]
    output: list[str] = field(default_factory=list)

    @property
    def host_port(self) -> str:
        return self.base_url.removeprefix("http://")

    @property
    def metrics_url(self) -> str:
        return f"{self.base_url}/metrics"

    def drive(self, client: httpx.Client, *, malformed: bool = False) -> dict[str, Any]:
        """One scheduling round as kube-scheduler sends it (nodeCacheCapable: node names):
        filter, then prioritize; with `malformed`, also a filter body that is not JSON (the
        extender must answer 400 and count it). Returns the answers."""
        args = {"Pod": GPU_POD, "Nodes": None, "NodeNames": list(self.node_names)}
        filtered = client.post(f"{self.base_url}/scheduler/filter", json=args)
        assert filtered.status_code == 200, filtered.text
        scored = client.post(f"{self.base_url}/scheduler/prioritize", json=args)
        assert scored.status_code == 200, scored.text
        if malformed:
            bad = client.post(f"{self.base_url}/scheduler/filter", content=b"{not json")
            assert bad.status_code == 400, bad.text
        return {"filter": filtered.json(), "prioritize": scored.json()}


@contextlib.contextmanager
def running_extender(
    *, kubeconfig: Path, carbon_trace: Path, state_dir: Path, node_names: Sequence[str]
) -> Iterator[RunningExtender]:
    """The real `gridshift extender` on 127.0.0.1:<free port>, nodes from the API stand-in
    at `kubeconfig`, carbon from the trace CSV only (no provider API is reachable here)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "config", "extender", "--listen", f"127.0.0.1:{port}"],
        cwd=REPO,
        env=_env(
            {
                "KUBECONFIG": str(kubeconfig),
                "GRIDSHIFT_CARBON__UK__ENABLED": "false",
                "GRIDSHIFT_CARBON__TRACE__PATH": str(carbon_trace),
                "GRIDSHIFT_CARBON__LAST_KNOWN_PATH": str(state_dir / "carbon-last-known.json"),
                "GRIDSHIFT_EXTENDER__REFRESH_INTERVAL_SECONDS": "0.5",
                # the nodes carry cloud region labels (eu-central-1, eu-west-3): the default
                # carbon regions' match rules place them in DE and FR, no aliases needed
            }
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    drain = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    drain.start()
    running = RunningExtender(f"http://127.0.0.1:{port}", proc, tuple(node_names), output=lines)

    def serving(client: httpx.Client) -> bool:
        if proc.poll() is not None:
            raise AssertionError("gridshift extender exited:\n" + "".join(lines))
        ready = client.get("/readyz")
        metrics = client.get("/metrics").text
        return ready.status_code == 200 and (
            f"gridshift_extender_nodes {float(len(node_names))}" in metrics
        )

    try:
        with httpx.Client(base_url=running.base_url, timeout=5.0) as client:
            wait_for(lambda: serving(client), timeout_s=60, what="the extender's nodes")
        yield running
    finally:
        _stop(proc, drain)
