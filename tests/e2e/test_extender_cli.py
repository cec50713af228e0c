"""`gridshift extender` and `gridshift agent` as processes: the extender lists nodes from a
local API stand-in (via KUBECONFIG), becomes ready, and scores a GPU pod by the agent
annotations; SIGTERM stops it cleanly. The agent on a GPU-less host logs one clear line,
serves `gridshift_nvml_available 0` and keeps running until SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest

from extender.core.energy import ANNOTATION_KEY, GpuEnergy, encode_annotation
from forecasts.sources.clock import SystemClock
from tests.apiserver import NODES, FakeApiServer, make_node

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, *, ok, proc: subprocess.Popen[bytes], timeout: float = 30.0
) -> httpx.Response:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        try:
            r = httpx.get(url, timeout=2)
            if ok(r):
                return r
            last = r.text
        except httpx.TransportError as exc:
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"{url} never became ready: {last}")


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    e.update(extra)
    return e


@contextlib.contextmanager
def extender(
    *args: str, environ: dict[str, str], ready=lambda r: r.status_code == 200, timeout: float = 30.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`gridshift extender --listen 127.0.0.1:<free port> ARGS`, yielded (base URL, process)
    once /readyz satisfies `ready`; the test stops it (and reads its log), or it is killed."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "config", "extender", "--listen", f"127.0.0.1:{port}", *args],
        cwd=REPO,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", ok=ready, proc=proc, timeout=timeout)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_extender_process_scores_from_the_cluster(tmp_path) -> None:
    now = SystemClock().now()
    with FakeApiServer() as api:
        for name, watts in (("gpu-lean", 200.0), ("gpu-hungry", 400.0)):
            node = make_node(name, "eu-west-1")
            energy = GpuEnergy(watts, 50.0, None, 8, now, 300.0)
            node["metadata"]["annotations"][ANNOTATION_KEY] = encode_annotation(energy)
            api.put_object(NODES, node)
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        with extender(
            environ=env(
                KUBECONFIG=str(kubeconfig),
                GRIDSHIFT_EXTENDER__REFRESH_INTERVAL_SECONDS="0.2",
                GRIDSHIFT_CARBON__UK__ENABLED="false",  # no provider at all: GPU energy only
            ),
            ready=lambda r: r.status_code == 200 and r.json()["nodes_synced"],
        ) as (base, proc):
            wait_http(
                f"{base}/metrics", ok=lambda r: "gridshift_extender_nodes 2.0" in r.text, proc=proc
            )
            pod = {
                "metadata": {"name": "train", "namespace": "ml"},
                "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            }
            args = {"Pod": pod, "Nodes": None, "NodeNames": ["gpu-hungry", "gpu-lean"]}
            r = httpx.post(
                f"{base}/scheduler/prioritize", content=msgspec.json.encode(args), timeout=5
            )
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        assert r.status_code == 200
        assert r.json() == [
            {"Host": "gpu-hungry", "Score": 0},
            {"Host": "gpu-lean", "Score": 10},
        ]
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"no carbon source configured" in err


def test_agent_without_gpu_keeps_serving_metrics() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "config", "agent", "--listen", f"127.0.0.1:{port}"],
        cwd=REPO,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        r = wait_http(
            f"http://127.0.0.1:{port}/metrics",
            ok=lambda r: "gridshift_nvml_available" in r.text,
            proc=proc,
        )
        assert "gridshift_nvml_available 0.0" in r.text
        time.sleep(0.5)
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert err.decode().count("NVML unavailable") == 1


def _readme_offline_block() -> list[str]:
    """The curl lines of the README's "Without a cluster" example, verbatim."""
    text = (REPO / "README.md").read_text()
    start = text.index("**Without a cluster.**")
    block = text[
        text.index("```sh\n", start) + 6 : text.index("```\n", text.index("```sh\n", start))
    ]
    return [line for line in block.splitlines() if line.startswith("curl ")]


def test_readme_offline_extender_requests_run_as_written(tmp_path: Path) -> None:
    """No cluster credentials: the extender serves the SAMPLE DATA nodes (one log line says
    so) and the README's filter, prioritize and /regions/rank requests answer as described.
    Only the port differs (a free one instead of the default 8888)."""
    curls = _readme_offline_block()
    assert len(curls) == 3
    for curl, path in zip(
        curls, ("/scheduler/filter", "/scheduler/prioritize", "/regions/rank?"), strict=True
    ):
        assert f"http://127.0.0.1:8888{path}" in curl
    environ = env(
        KUBECONFIG=str(tmp_path / "no-kubeconfig"),
        GRIDSHIFT_CARBON__LAST_KNOWN_PATH=str(tmp_path / "carbon.json"),
    )
    # start-up under a loaded shared machine
    with extender(environ=environ, timeout=120) as (base, proc):
        answers = []
        for line in curls:
            run = subprocess.run(
                line.replace("http://127.0.0.1:8888", base),
                shell=True,
                capture_output=True,
                check=True,
                timeout=10,
            )
            answers.append(msgspec.json.decode(run.stdout))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()[-2000:]
    log = err.decode()
    assert log.count("serving 6 nodes from the SAMPLE DATA node list") == 1
    assert "extender stopped after" in log
    filtered, prioritized, ranked = answers
    assert filtered["NodeNames"] == ["gpu-sample-hydro-1"]
    rejected = filtered["FailedAndUnresolvableNodes"]
    assert set(rejected) == {"gpu-sample-solar-1", "gpu-sample-wind-1"}
    assert "above cap 100 (gridshift.io/max-gco2-per-kwh)" in rejected["gpu-sample-wind-1"]
    scores = {h["Host"]: h["Score"] for h in prioritized}
    assert scores["gpu-sample-hydro-1"] == 10
    assert all(0 <= s < 10 for host, s in scores.items() if host != "gpu-sample-hydro-1")
    regions = [r["region"] for r in ranked["regions"]]
    assert sorted(regions) == ["sample-hydro", "sample-solar", "sample-wind"]
    assert regions[0] == "sample-hydro"
    assert all(r["provider"] == "sample" and r["status"] == "fresh" for r in ranked["regions"])


GPU_POD = {
    "metadata": {"name": "train", "namespace": "ml"},
    "spec": {"containers": [{"name": "t", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
}


def test_nodes_file_replaces_the_cluster(tmp_path: Path) -> None:
    """`--nodes FILE` (a NodeList) serves those nodes, said in one log line; no cluster."""
    from extender.static_nodes import sample_node_list

    nodes = sample_node_list()
    nodes["items"] = nodes["items"][:2]
    path = tmp_path / "nodes.json"
    path.write_bytes(msgspec.json.encode(nodes))
    environ = env(KUBECONFIG=str(tmp_path / "no-kubeconfig"))
    # start-up under a loaded shared machine
    with extender("--nodes", str(path), environ=environ, timeout=120) as (base, proc):
        r = httpx.post(
            f"{base}/scheduler/prioritize",
            json={"Pod": GPU_POD, "NodeNames": ["gpu-sample-solar-1", "gpu-sample-solar-2"]},
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert r.status_code == 200
    assert {h["Host"] for h in r.json()} == {"gpu-sample-solar-1", "gpu-sample-solar-2"}
    assert f"nodes: 2 nodes from {path} in sample-solar (no cluster watch)" in err.decode()
    assert "SAMPLE DATA node list" not in err.decode()
    assert proc.returncode == 0
