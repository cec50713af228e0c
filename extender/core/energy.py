"""GPU energy facts of one node (pure): the value the agent measures, the compact node
annotation it travels in, and the rolling window that turns raw samples into it.

Units: watts per GPU, joules, seconds. "A unit of work" is one GPU-second at 100 %
utilisation, so `joules_per_work` is the energy a fully busy GPU-second costs on this node,
idle overhead included (lower is more efficient hardware). It is unknown while the GPUs
are idle or utilisation is unavailable (MIG).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import msgspec

from forecasts.time import ensure_utc, from_epoch_s, to_epoch_s

__all__ = [
    "ANNOTATION_KEY",
    "EnergyWindow",
    "GpuEnergy",
    "GpuSample",
    "decode_annotation",
    "encode_annotation",
]

ANNOTATION_KEY = "gridshift.io/gpu-energy"
"""Node annotation the agent writes and the extender reads."""

_ANNOTATION_VERSION = 1
_IDLE_UTILISATION_PERCENT = 5.0
_MIN_BUSY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One reading of one GPU (as NVML reports it, converted to base units)."""

    uuid: str
    index: int
    name: str
    power_watts: float | None
    energy_joules: float | None
    utilisation_percent: float | None
    memory_used_bytes: int | None
    memory_total_bytes: int | None
    power_limit_watts: float | None
    mig_enabled: bool
    mig_devices: int


@dataclass(frozen=True, slots=True)
class GpuEnergy:
    """A node's GPU energy over a recent window, per GPU."""

    power_watts: float
    idle_power_watts: float | None
    joules_per_work: float | None
    gpu_count: int
    measured_at: datetime
    window_seconds: float
    source: str = "agent"

    def __post_init__(self) -> None:
        ensure_utc(self.measured_at, name="measured_at")


def _finite_positive(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) and v >= 0 else None


def encode_annotation(energy: GpuEnergy) -> str:
    """The compact JSON the agent writes into the node annotation (well under 200 bytes)."""
    body: dict[str, object] = {
        "v": _ANNOTATION_VERSION,
        "w": round(energy.power_watts, 1),
        "gpus": energy.gpu_count,
        "at": int(to_epoch_s(energy.measured_at)),
        "win_s": round(energy.window_seconds),
    }
    if energy.idle_power_watts is not None:
        body["idle_w"] = round(energy.idle_power_watts, 1)
    if energy.joules_per_work is not None:
        body["j_per_work"] = round(energy.joules_per_work, 1)
    return msgspec.json.encode(body).decode()


def decode_annotation(text: str) -> tuple[GpuEnergy | None, str]:
    """Parse the agent's annotation; returns `(energy, "")` or `(None, why it is unusable)`."""
    try:
        data = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        return None, f"{ANNOTATION_KEY} is not JSON: {exc}"
    if not isinstance(data, dict):
        return None, f"{ANNOTATION_KEY} must be a JSON object, got {type(data).__name__}"
    if data.get("v") != _ANNOTATION_VERSION:
        return None, f"{ANNOTATION_KEY} has unsupported version {data.get('v')!r}"
    watts = _finite_positive(data.get("w"))
    if watts is None:
        return None, f"{ANNOTATION_KEY} field 'w' must be a non-negative number"
    at = _finite_positive(data.get("at"))
    if at is None:
        return None, f"{ANNOTATION_KEY} field 'at' must be epoch seconds"
    gpus = data.get("gpus")
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 0:
        return None, f"{ANNOTATION_KEY} field 'gpus' must be a non-negative integer"
    window = _finite_positive(data.get("win_s")) or 0.0
    return (
        GpuEnergy(
            power_watts=watts,
            idle_power_watts=_finite_positive(data.get("idle_w")),
            joules_per_work=_finite_positive(data.get("j_per_work")),
            gpu_count=gpus,
            measured_at=from_epoch_s(at),
            window_seconds=window,
        ),
        "",
    )


@dataclass(frozen=True, slots=True)
class _Reading:
    at_s: float
    power_watts: float  # mean over the node's GPUs
    energy_joules: float | None  # sum over GPUs, None unless every GPU has a counter
    busy_fraction: float | None  # mean utilisation / 100, None unless every GPU reports it
    gpus: int


class EnergyWindow:
    """A rolling window of node readings, summarised as a `GpuEnergy`.

    Energy comes from the NVML energy counters where every GPU has one (counter resets, as
    after a driver reload, are skipped), else from integrating sampled power.
    """

    def __init__(self, *, window: timedelta, idle_smoothing: float = 0.2) -> None:
        if window <= timedelta(0):
            raise ValueError(f"window must be positive, got {window}")
        if not 0 < idle_smoothing <= 1:
            raise ValueError(f"idle_smoothing must be in (0, 1], got {idle_smoothing}")
        self._window_s = window.total_seconds()
        self._alpha = idle_smoothing
        self._readings: deque[_Reading] = deque()
        self._idle_watts: float | None = None

    def add(self, samples: Sequence[GpuSample], *, at: datetime) -> None:
        powers = [s.power_watts for s in samples if s.power_watts is not None]
        if not samples or not powers:
            return
        at_s = to_epoch_s(at)
        energies = [s.energy_joules for s in samples]
        utils = [s.utilisation_percent for s in samples]
        energy = None if any(e is None for e in energies) else sum(e or 0.0 for e in energies)
        busy = None if any(u is None for u in utils) else sum(u or 0.0 for u in utils) / len(utils)
        reading = _Reading(
            at_s=at_s,
            power_watts=sum(powers) / len(powers),
            energy_joules=energy,
            busy_fraction=None if busy is None else busy / 100.0,
            gpus=len(samples),
        )
        if self._readings and at_s <= self._readings[-1].at_s:
            raise ValueError("samples must be added in time order")
        self._readings.append(reading)
        while self._readings and self._readings[0].at_s < at_s - self._window_s:
            self._readings.popleft()
        if busy is not None and busy <= _IDLE_UTILISATION_PERCENT:
            prev = self._idle_watts
            p = reading.power_watts
            self._idle_watts = p if prev is None else prev + self._alpha * (p - prev)

    def summary(self) -> GpuEnergy | None:
        """Per-GPU averages over the window; None before the first usable sample."""
        if not self._readings:
            return None
        last = self._readings[-1]
        first = self._readings[0]
        span = last.at_s - first.at_s
        energy_j = 0.0
        busy_gpu_s = 0.0
        busy_known = True
        for prev, cur in zip(self._readings, list(self._readings)[1:], strict=False):
            dt = cur.at_s - prev.at_s
            if (
                prev.energy_joules is not None
                and cur.energy_joules is not None
                and cur.gpus == prev.gpus
                and cur.energy_joules >= prev.energy_joules
            ):
                energy_j += cur.energy_joules - prev.energy_joules
            else:
                energy_j += 0.5 * (prev.power_watts + cur.power_watts) * prev.gpus * dt
            if prev.busy_fraction is None or cur.busy_fraction is None:
                busy_known = False
            else:
                busy_gpu_s += 0.5 * (prev.busy_fraction + cur.busy_fraction) * prev.gpus * dt
        power = energy_j / (span * last.gpus) if span > 0 else last.power_watts
        per_work = None
        if span > 0 and busy_known and busy_gpu_s >= _MIN_BUSY_SECONDS:
            per_work = energy_j / busy_gpu_s
        return GpuEnergy(
            power_watts=power,
            idle_power_watts=self._idle_watts,
            joules_per_work=per_work,
            gpu_count=last.gpus,
            measured_at=from_epoch_s(last.at_s),
            window_seconds=span,
        )
