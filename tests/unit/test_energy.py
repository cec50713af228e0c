"""extender.core.energy: the node annotation (round trip, size, tolerant decoding) and the
rolling window (energy counters vs integrated power, counter resets, energy per unit of work,
idle power, window eviction)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from extender.core.energy import (
    ANNOTATION_KEY,
    EnergyWindow,
    GpuEnergy,
    GpuSample,
    decode_annotation,
    encode_annotation,
)

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def sample(
    uuid: str = "GPU-1",
    *,
    watts: float | None = 300.0,
    joules: float | None = None,
    util: float | None = 100.0,
) -> GpuSample:
    return GpuSample(
        uuid=uuid,
        index=0,
        name="H100",
        power_watts=watts,
        energy_joules=joules,
        utilisation_percent=util,
        memory_used_bytes=1,
        memory_total_bytes=2,
        power_limit_watts=700.0,
        mig_enabled=False,
        mig_devices=0,
    )


def test_annotation_round_trip_is_compact() -> None:
    energy = GpuEnergy(
        power_watts=312.44,
        idle_power_watts=61.02,
        joules_per_work=402.15,
        gpu_count=8,
        measured_at=T0,
        window_seconds=300.2,
    )
    text = encode_annotation(energy)
    assert len(text) < 120
    decoded, problem = decode_annotation(text)
    assert problem == ""
    assert decoded == GpuEnergy(
        power_watts=312.4,
        idle_power_watts=61.0,
        joules_per_work=402.1,
        gpu_count=8,
        measured_at=T0,
        window_seconds=300,
    )


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("{", "not JSON", id="not json"),
        pytest.param("[1]", "JSON object", id="array"),
        pytest.param('{"v": 2, "w": 1, "at": 1, "gpus": 1}', "unsupported version", id="v2"),
        pytest.param('{"v": 1, "w": -1, "at": 1, "gpus": 1}', "'w'", id="negative watts"),
        pytest.param('{"v": 1, "w": 1, "at": "x", "gpus": 1}', "'at'", id="bad at"),
        pytest.param('{"v": 1, "w": 1, "at": 1, "gpus": true}', "'gpus'", id="bool gpus"),
    ],
)
def test_bad_annotations_decode_to_none_with_a_reason(text, fragment) -> None:
    energy, problem = decode_annotation(text)
    assert energy is None
    assert ANNOTATION_KEY in problem
    assert fragment in problem


def test_window_prefers_energy_counters_and_computes_energy_per_work() -> None:
    w = EnergyWindow(window=timedelta(minutes=5))
    # two GPUs, counters advance 3000 J each per 10 s (300 W), 50 % busy
    for i in range(4):
        at = T0 + timedelta(seconds=10 * i)
        w.add(
            [
                sample("a", watts=999.0, joules=3000.0 * i, util=50),
                sample("b", watts=999.0, joules=1e6 + 3000.0 * i, util=50),
            ],
            at=at,
        )
    s = w.summary()
    assert s is not None
    assert s.power_watts == pytest.approx(300.0)  # counters, not the sampled 999 W
    assert s.joules_per_work == pytest.approx(600.0)  # 300 W at 50 % busy
    assert (s.gpu_count, s.window_seconds, s.measured_at) == (2, 30.0, T0 + timedelta(seconds=30))


def test_window_integrates_power_without_counters_and_survives_a_reset() -> None:
    w = EnergyWindow(window=timedelta(minutes=5))
    w.add([sample(watts=100.0, joules=5000.0)], at=T0)
    w.add([sample(watts=100.0, joules=10.0)], at=T0 + timedelta(seconds=10))  # driver reload
    w.add([sample(watts=300.0, joules=None)], at=T0 + timedelta(seconds=20))
    s = w.summary()
    assert s is not None
    # 10 s at 100 W (integrated across the reset) + 10 s trapezoid 100->300 W
    assert s.power_watts == pytest.approx((1000 + 2000) / 20)


def test_idle_power_tracks_idle_samples_and_work_needs_busy_time() -> None:
    w = EnergyWindow(window=timedelta(minutes=5), idle_smoothing=0.5)
    w.add([sample(watts=60.0, util=0)], at=T0)
    w.add([sample(watts=80.0, util=2)], at=T0 + timedelta(seconds=5))
    s = w.summary()
    assert s is not None
    assert s.idle_power_watts == pytest.approx(70.0)
    assert s.joules_per_work is None  # 5 s at ~1 % busy is under one busy GPU-second


def test_window_evicts_old_readings_and_rejects_time_travel() -> None:
    w = EnergyWindow(window=timedelta(seconds=30))
    for i in range(10):
        w.add([sample(watts=100.0 + i)], at=T0 + timedelta(seconds=10 * i))
    s = w.summary()
    assert s is not None
    assert s.window_seconds == 30.0
    with pytest.raises(ValueError, match="time order"):
        w.add([sample()], at=T0)


def test_empty_or_powerless_samples_are_ignored() -> None:
    w = EnergyWindow(window=timedelta(seconds=30))
    w.add([], at=T0)
    w.add([sample(watts=None)], at=T0)
    assert w.summary() is None
    with pytest.raises(ValueError, match="positive"):
        EnergyWindow(window=timedelta(0))


def test_utilisation_gaps_leave_energy_per_work_unknown() -> None:
    w = EnergyWindow(window=timedelta(minutes=5))
    w.add([sample(util=100)], at=T0)
    w.add([sample(util=None)], at=T0 + timedelta(seconds=10))
    w.add([sample(util=100)], at=T0 + timedelta(seconds=20))
    s = w.summary()
    assert s is not None
    assert s.joules_per_work is None
    with pytest.raises(ValueError, match="idle_smoothing"):
        EnergyWindow(window=timedelta(seconds=1), idle_smoothing=0)


def test_annotation_without_optional_fields() -> None:
    energy = GpuEnergy(100.0, None, None, 1, T0, 0.0)
    assert "idle_w" not in encode_annotation(energy)
    assert decode_annotation(encode_annotation(energy))[0] == energy
