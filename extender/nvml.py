"""GPU readings through NVML (nvidia-ml-py's `pynvml`), converted to base units.

The NVML library object is injected (the `pynvml` module in production, a fake in tests).
Units: NVML gives milliwatts and millijoules; `GpuSample` holds watts and joules. A metric a
GPU does not support (energy before Volta, utilisation under MIG) is None, never an error.
MIG: power and energy exist for the physical GPU only, so samples are per physical GPU with
`mig_enabled` and the number of MIG devices.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from extender.core.energy import GpuSample

__all__ = ["Nvml", "load_pynvml"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# NVML return codes (nvml.h) used here; the library object carries the same names.
_NOT_SUPPORTED = 3
_NO_PERMISSION = 4
_NOT_FOUND = 6
_GPU_IS_LOST = 15


def load_pynvml() -> Any:
    """The real NVML binding (imported here, at the edge, only when the agent starts)."""
    import pynvml

    return pynvml


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Nvml:
    """Reads every visible GPU. `start()` returns False (with `unavailable_reason`) when
    there is no driver or no library; nothing else raises for a missing feature."""

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self._started = False
        self.unavailable_reason = ""
        self.driver_version = ""
        self._warned: set[tuple[str, int]] = set()

    @property
    def available(self) -> bool:
        return self._started

    def start(self) -> bool:
        try:
            self._lib.nvmlInit()
        except self._lib.NVMLError as exc:
            self.unavailable_reason = f"{type(exc).__name__}: {exc}"
            return False
        self._started = True
        try:
            self.driver_version = _text(self._lib.nvmlSystemGetDriverVersion())
        except self._lib.NVMLError:
            self.driver_version = ""
        return True

    def close(self) -> None:
        if self._started:
            self._started = False
            try:
                self._lib.nvmlShutdown()
            except self._lib.NVMLError as exc:
                log.debug("nvmlShutdown: %s", exc)

    def _optional(self, what: str, index: int, call: Callable[[], T]) -> T | None:
        try:
            return call()
        except self._lib.NVMLError as exc:
            code = getattr(exc, "value", None)
            if code == _GPU_IS_LOST:
                raise
            if code != _NOT_SUPPORTED and (what, index) not in self._warned:
                self._warned.add((what, index))
                log.warning("GPU %d: %s unavailable: %s", index, what, exc)
            return None

    def sample(self) -> tuple[GpuSample, ...]:
        """One reading per physical GPU; GPUs that cannot be read are skipped and logged."""
        if not self._started:
            return ()
        lib = self._lib
        out: list[GpuSample] = []
        for index in range(int(lib.nvmlDeviceGetCount())):
            try:
                out.append(self._read(index))
            except lib.NVMLError as exc:
                if (exc_key := ("device", index)) not in self._warned:
                    self._warned.add(exc_key)
                    log.warning("GPU %d skipped: %s", index, exc)
        return tuple(out)

    def _read(self, index: int) -> GpuSample:
        lib = self._lib
        h = lib.nvmlDeviceGetHandleByIndex(index)
        uuid = _text(lib.nvmlDeviceGetUUID(h))
        name = _text(lib.nvmlDeviceGetName(h))
        mw = self._optional("power", index, lambda: lib.nvmlDeviceGetPowerUsage(h))
        mj = self._optional("energy", index, lambda: lib.nvmlDeviceGetTotalEnergyConsumption(h))
        limit = self._optional("power limit", index, lambda: lib.nvmlDeviceGetEnforcedPowerLimit(h))
        mem = self._optional("memory", index, lambda: lib.nvmlDeviceGetMemoryInfo(h))
        mig_mode = self._optional("MIG mode", index, lambda: lib.nvmlDeviceGetMigMode(h))
        mig_enabled = bool(mig_mode and int(mig_mode[0]) == 1)
        util: float | None = None
        mig_devices = 0
        if mig_enabled:
            mig_devices = self._count_mig(h, index)
        else:
            rates = self._optional(
                "utilisation", index, lambda: lib.nvmlDeviceGetUtilizationRates(h)
            )
            util = float(rates.gpu) if rates is not None else None
        return GpuSample(
            uuid=uuid,
            index=index,
            name=name,
            power_watts=mw / 1000.0 if mw is not None else None,
            energy_joules=mj / 1000.0 if mj is not None else None,
            utilisation_percent=util,
            memory_used_bytes=int(mem.used) if mem is not None else None,
            memory_total_bytes=int(mem.total) if mem is not None else None,
            power_limit_watts=limit / 1000.0 if limit is not None else None,
            mig_enabled=mig_enabled,
            mig_devices=mig_devices,
        )

    def _count_mig(self, handle: Any, index: int) -> int:
        lib = self._lib
        most = self._optional(
            "MIG count", index, lambda: lib.nvmlDeviceGetMaxMigDeviceCount(handle)
        )
        found = 0
        for j in range(int(most or 0)):
            try:
                lib.nvmlDeviceGetMigDeviceHandleByIndex(handle, j)
            except lib.NVMLError as exc:
                if getattr(exc, "value", None) in (_NOT_FOUND, _NO_PERMISSION):
                    continue
                raise
            found += 1
        return found
