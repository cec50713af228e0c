"""The GPU agent against a real NVIDIA GPU (`pytest -m gpu tests/`; skipped without one).

Samples every GPU once a second for GRIDSHIFT_GPU_SAMPLE_SECONDS (default 30, so the test
stays under a minute), prints the readings, and checks them: power within (0, 1.5 x limit],
energy counters never decrease (where supported), memory in range, the agent's metrics and
its node annotation (written to a fake annotator, no cluster needed). With PyTorch or CuPy
installed it also keeps GPU 0 busy for the second half, so the power rise and the energy
per unit of work show up in the printout.
"""

from __future__ import annotations

import importlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from extender.agent import GpuAgent
from extender.core.energy import decode_annotation
from extender.nvml import Nvml, load_pynvml
from forecasts.sources.clock import SystemClock
from tests.fakes import FakeNodeAnnotator
from tests.gridshift_process import free_port, wait_for

pytestmark = [pytest.mark.gpu, pytest.mark.integration]

SECONDS = int(os.environ.get("GRIDSHIFT_GPU_SAMPLE_SECONDS", "30"))


def _busy(stop: threading.Event) -> str:
    """Keep GPU 0 busy with matrix products if a GPU array library is installed."""
    try:
        torch: Any = importlib.import_module("torch")
        a = torch.randn(8192, 8192, device="cuda")
        while not stop.is_set():
            a = (a @ a).clamp_(-1, 1)
        torch.cuda.synchronize()
        return "torch"
    except ImportError:
        pass
    try:
        cupy: Any = importlib.import_module("cupy")
        b = cupy.random.rand(8192, 8192, dtype=cupy.float32)
        while not stop.is_set():
            b = cupy.clip(b @ b, -1, 1)
        cupy.cuda.Device().synchronize()
        return "cupy"
    except ImportError:
        return "none"


def test_agent_on_a_real_gpu() -> None:
    nvml = Nvml(load_pynvml())
    if not nvml.start():
        pytest.skip(f"no usable NVML here: {nvml.unavailable_reason}")
    registry = CollectorRegistry()
    notes = FakeNodeAnnotator()
    agent = GpuAgent(
        nvml,
        clock=SystemClock(),
        registry=registry,
        node_name="this-node",
        annotator=notes,
        window=timedelta(seconds=SECONDS),
        annotation_interval_seconds=10,
        annotation_max_age_seconds=20,
    )
    stop = threading.Event()
    loader: threading.Thread | None = None
    print(f"\nNVML driver {nvml.driver_version}; sampling {SECONDS} s")
    print(
        f"{'t s':>4} {'gpu':>3} {'W':>8} {'energy J':>12} {'util %':>6} "
        f"{'mem GiB':>8} {'limit W':>7}"
    )
    previous_energy: dict[str, float] = {}
    try:
        for second in range(SECONDS):
            if second == SECONDS // 2 and loader is None:
                loader = threading.Thread(target=_busy, args=(stop,), daemon=True)
                loader.start()
            agent.tick()
            for s in agent.last_samples:
                mem = (s.memory_used_bytes or 0) / 2**30
                print(
                    f"{second:>4} {s.index:>3} {s.power_watts or float('nan'):>8.1f} "
                    f"{s.energy_joules if s.energy_joules is not None else float('nan'):>12.1f} "
                    f"{s.utilisation_percent if s.utilisation_percent is not None else -1:>6.0f} "
                    f"{mem:>8.2f} {s.power_limit_watts or float('nan'):>7.0f}"
                )
                assert s.power_watts is not None
                assert s.power_watts > 0
                if s.power_limit_watts:
                    assert s.power_watts <= 1.5 * s.power_limit_watts
                if s.energy_joules is not None:
                    assert s.energy_joules >= previous_energy.get(s.uuid, 0.0)
                    previous_energy[s.uuid] = s.energy_joules
                if s.memory_total_bytes is not None and s.memory_used_bytes is not None:
                    assert 0 <= s.memory_used_bytes <= s.memory_total_bytes
            time.sleep(1)
    except BaseException:
        nvml.close()
        raise
    finally:
        stop.set()
        if loader is not None:
            loader.join(timeout=30)
    # Read the exported metrics while NVML is still open: the collector reports live state.
    available_while_open = registry.get_sample_value("gridshift_nvml_available")
    first = agent.last_samples[0]
    exported_power = registry.get_sample_value(
        "gridshift_gpu_power_watts",
        {"gpu": str(first.index), "uuid": first.uuid, "model": first.name},
    )
    nvml.close()
    assert available_while_open == 1
    assert exported_power == first.power_watts
    # Closed NVML is reported as unavailable, not as a stale 1.
    assert registry.get_sample_value("gridshift_nvml_available") == 0
    summary = agent.last_summary
    assert summary is not None
    print(
        f"window: {summary.power_watts:.1f} W per GPU over {summary.window_seconds:.0f} s, "
        f"idle {summary.idle_power_watts} W, energy per busy GPU-second {summary.joules_per_work} J"
    )
    assert notes.writes, "the agent never annotated"
    decoded, problem = decode_annotation(notes.writes[-1][2])
    assert decoded is not None, problem
    print(f"annotation: {notes.writes[-1][2]}")


def test_agent_command_serves_real_gpu_metrics_and_stops_on_ctrl_c() -> None:
    """`gridshift agent` as a node runs it: real NVML, real listener, Ctrl-C exits 0."""
    probe = Nvml(load_pynvml())
    if not probe.start():
        pytest.skip(f"no usable NVML here: {probe.unavailable_reason}")
    probe.close()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "config", "agent", "--listen", f"127.0.0.1:{port}", "--no-annotate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:

        def scraped() -> str | None:
            body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            ok = "gridshift_nvml_available 1.0" in body and "gridshift_gpu_power_watts{" in body
            return body if ok else None

        body = wait_for(scraped, timeout_s=60, what="the agent's GPU metrics")
        powers = [
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith("gridshift_gpu_power_watts{")
        ]
        print(f"\nagent /metrics: {len(powers)} GPU(s), power {powers} W")
        assert powers
        assert all(p > 0 for p in powers)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(out[-2000:])
    assert proc.returncode == 0, out[-2000:]
    assert "agent stopped after" in out
