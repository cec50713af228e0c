"""`SystemClock`: the one place that reads the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

from forecasts.time import Clock

__all__ = ["AcceleratedClock", "SystemClock"]


class SystemClock:
    """The real clock, tz-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class AcceleratedClock:
    """Time that runs `speed` times faster than `base`, starting from `base.now()` at
    construction (plays sample traces accelerated; `speed=1` is real time)."""

    def __init__(self, base: Clock, *, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._base = base
        self._speed = speed
        self._origin = base.now()

    def now(self) -> datetime:
        return self._origin + (self._base.now() - self._origin) * self._speed
