"""The immutable `Snapshot` a tick publishes; servers only ever read it.

The loop builds one `Snapshot` per tick and swaps it in by reference (`SnapshotHolder`);
readers take the current reference once per request and never see a half-built state.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

__all__ = ["Mode", "RegionCarbon", "Snapshot", "SnapshotHolder", "WorkloadStatus"]


class Mode(StrEnum):
    PERFORMANCE = "performance"
    ECO = "eco"


@dataclass(frozen=True, slots=True)
class RegionCarbon:
    """Carbon intensity of one region as the tick saw it."""

    region: str
    intensity_g_per_kwh: float | None
    at: datetime | None
    provider: str
    stale: bool
    age_seconds: float | None


@dataclass(frozen=True, slots=True)
class WorkloadStatus:
    """One workload's last decision, as served to HPAs, KEDA, dashboards and the status API."""

    name: str
    namespace: str
    region: str
    desired_replicas: int
    mode: Mode
    reasons: tuple[str, ...]
    decided_at: datetime
    stale_inputs: tuple[str, ...] = ()
    emitted_g: float = 0.0
    saved_g: float = 0.0


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken_at: datetime
    workloads: Mapping[str, WorkloadStatus] = field(default_factory=dict)
    regions: Mapping[str, RegionCarbon] = field(default_factory=dict)
    tick_seconds: float = 0.0


class SnapshotHolder:
    """Holds the current snapshot; `publish` swaps the reference atomically."""

    def __init__(self, initial: Snapshot | None = None) -> None:
        self._current = initial
        self._lock = threading.Lock()

    def publish(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._current = snapshot

    def current(self) -> Snapshot | None:
        return self._current
