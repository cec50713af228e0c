"""Time for pure code: the `Clock` role, test clocks, and UTC helpers.

Pure code never reads the wall clock; it receives `now` from a `Clock` passed in by the
composition root. `SystemClock` (the only reader of the wall clock) lives in
`forecasts/sources/clock.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = [
    "UTC",
    "Clock",
    "FrozenClock",
    "SteppingClock",
    "ensure_utc",
    "floor_to",
    "from_epoch_s",
    "humanize_duration",
    "parse_duration",
    "to_epoch_s",
]


class Clock(Protocol):
    """Something that says what time it is (tz-aware UTC)."""

    def now(self) -> datetime: ...


def ensure_utc(at: datetime, *, name: str = "datetime") -> datetime:
    """Return `at` in UTC; a naive datetime is a programmer error."""
    if at.tzinfo is UTC:  # already UTC (the common case, on every tick's hot path)
        return at
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {at.isoformat()}")
    return at.astimezone(UTC)


@dataclass(slots=True)
class FrozenClock:
    """A clock that stays where it is put (tests, one-shot replays)."""

    at: datetime

    def __post_init__(self) -> None:
        self.at = ensure_utc(self.at, name="FrozenClock.at")

    def now(self) -> datetime:
        return self.at

    def set(self, at: datetime) -> None:
        self.at = ensure_utc(at, name="FrozenClock.at")

    def advance(self, by: timedelta) -> None:
        self.at = self.at + by


@dataclass(slots=True)
class SteppingClock:
    """A clock that moves forward by `step` every time it is read after the first read."""

    start: datetime
    step: timedelta
    _next: datetime = field(init=False)

    def __post_init__(self) -> None:
        if self.step <= timedelta(0):
            raise ValueError(f"SteppingClock.step must be positive, got {self.step}")
        self.start = ensure_utc(self.start, name="SteppingClock.start")
        self._next = self.start

    def now(self) -> datetime:
        at = self._next
        self._next = at + self.step
        return at


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_s(at: datetime) -> float:
    """Seconds since the Unix epoch of a tz-aware datetime (the numpy edge only)."""
    return (ensure_utc(at) - _EPOCH).total_seconds()


def from_epoch_s(seconds: float) -> datetime:
    return _EPOCH + timedelta(seconds=float(seconds))


def floor_to(at: datetime, step: timedelta) -> datetime:
    """Floor `at` to a multiple of `step` since the epoch (aligned query steps)."""
    if step <= timedelta(0):
        raise ValueError(f"step must be positive, got {step}")
    at = ensure_utc(at)
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    step_us = step // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=micros - micros % step_us)


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def humanize_duration(duration: timedelta) -> str:
    """A duration as people (and `parse_duration`) read it: `7d`, `1h30m`, `10m`, `1.5s`,
    `2d12h` -- not `7 days, 0:00:00`. Exact to the millisecond; zero is `0s`."""
    ms = round(abs(duration.total_seconds()) * 1000)
    sign = "-" if duration < timedelta(0) and ms else ""
    parts: list[str] = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        count, ms = divmod(ms, size)
        if count:
            parts.append(f"{count}{unit}")
    if ms or not parts:
        parts.append(f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms / 1000:g}s")
    return sign + "".join(parts)


def parse_duration(text: str) -> timedelta:
    """Parse Go/Prometheus-style durations: `90s`, `5m`, `1h30m`, `2d`, `1w`, `1.5h`.

    A bare number is seconds. Raises `ValueError` with the offending text on anything else.
    """
    s = text.strip()
    if not s:
        raise ValueError("empty duration")
    try:
        seconds = float(s)
    except ValueError:
        pass
    else:
        try:
            return timedelta(seconds=seconds)
        except OverflowError:  # "1E100", "inf": a number, but no duration
            raise ValueError(f"duration {text!r} is out of range") from None
    total = 0.0
    i = 0
    matched = False
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        if j == i:
            raise ValueError(f"invalid duration {text!r}: expected a number at {s[i:]!r}")
        number = s[i:j]
        k = j
        while k < len(s) and s[k].isalpha():
            k += 1
        unit = s[j:k]
        if unit not in _UNITS:
            raise ValueError(
                f"invalid duration {text!r}: unknown unit {unit!r} (use ms, s, m, h, d, w)"
            )
        try:
            total += float(number) * _UNITS[unit]
        except ValueError as exc:
            raise ValueError(f"invalid duration {text!r}: bad number {number!r}") from exc
        matched = True
        i = k
    if not matched:
        raise ValueError(f"invalid duration {text!r}")
    try:
        return timedelta(seconds=total)
    except OverflowError:
        raise ValueError(f"duration {text!r} is out of range") from None
