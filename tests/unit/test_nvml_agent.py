"""extender.nvml and extender.agent through a fake NVML library object: unit conversion
(mW -> W, mJ -> J), unsupported metrics as None, bytes names, MIG (no utilisation, device
count), unreadable GPUs skipped, no driver -> one log line + gridshift_nvml_available 0 and
still serving; per-GPU metrics; the rate-limited node annotation (first write, interval,
min change, max age, API errors backing off)."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

import pynvml
import pytest
from prometheus_client import CollectorRegistry

from extender.agent import GpuAgent
from extender.core.energy import ANNOTATION_KEY, decode_annotation
from extender.nvml import Nvml
from forecasts.time import FrozenClock
from tests.fakes import FakeGpu, FakeNodeAnnotator, FakeNvmlLibrary

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def test_samples_in_base_units() -> None:
    lib = FakeNvmlLibrary(
        [FakeGpu("GPU-a", power_mw=312_400, energy_mj=5_000_000, util_percent=87)]
    )
    nvml = Nvml(lib)
    assert nvml.start()
    (s,) = nvml.sample()
    assert (s.uuid, s.name, s.index) == ("GPU-a", "NVIDIA H100 80GB HBM3", 0)
    assert s.power_watts == pytest.approx(312.4)
    assert s.energy_joules == pytest.approx(5000.0)
    assert s.utilisation_percent == 87
    assert s.power_limit_watts == 700.0
    assert (s.memory_used_bytes, s.memory_total_bytes) == (10 * 2**30, 80 * 2**30)
    assert (s.mig_enabled, s.mig_devices) == (False, 0)
    assert nvml.driver_version == "550.54.15"
    nvml.close()
    assert lib.initialised == 0


def test_unsupported_metrics_are_none_and_mig_has_no_utilisation() -> None:
    lib = FakeNvmlLibrary(
        [
            FakeGpu("GPU-old", energy_mj=None, limit_mw=None),  # pre-Volta
            FakeGpu("GPU-mig", mig=True, mig_devices=3),
        ]
    )
    nvml = Nvml(lib)
    nvml.start()
    old, mig = nvml.sample()
    assert (old.energy_joules, old.power_limit_watts) == (None, None)
    assert old.utilisation_percent == 50
    assert (mig.mig_enabled, mig.mig_devices, mig.utilisation_percent) == (True, 3, None)
    assert mig.power_watts == 300.0  # physical GPU power


def test_unreadable_gpus_are_skipped_with_one_warning(caplog) -> None:
    lib = FakeNvmlLibrary([FakeGpu("GPU-ok"), FakeGpu("GPU-lost", lost=True), FakeGpu("GPU-x")])
    lib.hidden.add(2)
    nvml = Nvml(lib)
    nvml.start()
    with caplog.at_level(logging.WARNING):
        assert [s.uuid for s in nvml.sample()] == ["GPU-ok"]
        assert [s.uuid for s in nvml.sample()] == ["GPU-ok"]
    assert len([r for r in caplog.records if "skipped" in r.message]) == 2  # once per GPU


def test_sampling_before_start_is_empty() -> None:
    assert Nvml(FakeNvmlLibrary([FakeGpu("GPU-a")])).sample() == ()


def agent(lib: FakeNvmlLibrary, annotator: FakeNodeAnnotator | None = None, **kw):
    registry = CollectorRegistry()
    clock = FrozenClock(NOW)
    a = GpuAgent(
        Nvml(lib),
        clock=clock,
        registry=registry,
        node_name="gpu-node-1",
        annotator=annotator,
        window=timedelta(minutes=5),
        annotation_interval_seconds=60,
        annotation_max_age_seconds=300,
        min_change_fraction=0.05,
        **kw,
    )
    return a, clock, registry


def test_no_driver_one_log_line_metric_zero_and_no_crash(caplog) -> None:
    lib = FakeNvmlLibrary(init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    a, _, registry = agent(lib)
    with caplog.at_level(logging.INFO):
        assert a.start() is False
    lines = [r for r in caplog.records if "NVML unavailable" in r.message]
    assert len(lines) == 1
    assert "NVMLError_LibraryNotFound" in lines[0].message
    assert registry.get_sample_value("gridshift_nvml_available") == 0
    assert a.tick() is None


def test_metrics_per_gpu() -> None:
    lib = FakeNvmlLibrary([FakeGpu("GPU-a", power_mw=250_000, energy_mj=10_000, util_percent=40)])
    a, _, registry = agent(lib)
    assert a.start()
    a.tick()
    labels = {"gpu": "0", "uuid": "GPU-a", "model": "NVIDIA H100 80GB HBM3"}
    assert registry.get_sample_value("gridshift_nvml_available") == 1
    assert registry.get_sample_value("gridshift_gpu_power_watts", labels) == 250.0
    assert registry.get_sample_value("gridshift_gpu_energy_joules_total", labels) == 10.0
    assert registry.get_sample_value("gridshift_gpu_utilisation_ratio", labels) == 0.4
    assert registry.get_sample_value("gridshift_gpu_power_limit_watts", labels) == 700.0
    assert registry.get_sample_value("gridshift_gpu_memory_total_bytes", labels) == 80 * 2**30
    assert registry.get_sample_value("gridshift_node_gpu_power_watts") == 250.0


def test_annotation_is_rate_limited_and_rewritten_on_change_or_age() -> None:
    gpu = FakeGpu("GPU-a", power_mw=300_000, energy_mj=0, util_percent=100)
    lib = FakeNvmlLibrary([gpu])
    notes = FakeNodeAnnotator()
    a, clock, registry = agent(lib, notes)
    a.start()

    def step(seconds: float, watts: float) -> None:
        clock.advance(timedelta(seconds=seconds))
        gpu.power_mw = int(watts * 1000)
        gpu.energy_mj = (gpu.energy_mj or 0) + int(watts * seconds * 1000)
        a.tick()

    a.tick()
    assert len(notes.writes) == 1  # first reading is written at once
    node, key, _ = notes.writes[0]
    assert (node, key) == ("gpu-node-1", ANNOTATION_KEY)
    for _ in range(5):
        step(10, 300)
    assert len(notes.writes) == 1  # within the interval
    step(20, 300)
    assert len(notes.writes) == 2  # energy per work became known
    for _ in range(6):
        step(10, 300)
    assert len(notes.writes) == 2  # interval passed, nothing moved
    for _ in range(6):
        step(10, 600)
    assert len(notes.writes) == 3  # moved by more than 5 %
    decoded, _ = decode_annotation(notes.writes[-1][2])
    assert decoded is not None
    assert decoded.power_watts > 300 * 1.05
    assert decoded.joules_per_work == pytest.approx(decoded.power_watts, rel=0.01)
    for _ in range(60):
        step(10, 600)
    times = []
    for _, _, text in notes.writes:
        energy, _ = decode_annotation(text)
        assert energy is not None
        times.append(energy.measured_at)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 60
    assert gaps[-1] == 300  # steady value: rewritten when the last write is 300 s old
    assert registry.get_sample_value("gridshift_agent_annotation_writes_total", {"result": "ok"})


def test_annotation_errors_back_off_and_sampling_continues() -> None:
    lib = FakeNvmlLibrary([FakeGpu("GPU-a")])
    notes = FakeNodeAnnotator(fail=RuntimeError("403 Forbidden"))
    a, clock, registry = agent(lib, notes)
    a.start()
    a.tick()
    clock.advance(timedelta(seconds=30))
    a.tick()
    assert (
        registry.get_sample_value("gridshift_agent_annotation_writes_total", {"result": "error"})
        == 1
    )
    notes.fail = None
    clock.advance(timedelta(seconds=31))
    a.tick()
    assert len(notes.writes) == 1


def test_without_node_name_nothing_is_written() -> None:
    lib = FakeNvmlLibrary([FakeGpu("GPU-a")])
    notes = FakeNodeAnnotator()
    registry = CollectorRegistry()
    a = GpuAgent(
        Nvml(lib), clock=FrozenClock(NOW), registry=registry, node_name=None, annotator=notes
    )
    a.start()
    assert a.tick() is not None
    assert notes.writes == []
