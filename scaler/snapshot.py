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
from typing import Protocol

__all__ = [
    "Mode",
    "RegionCarbon",
    "Snapshot",
    "SnapshotHolder",
    "SnapshotSource",
    "WorkloadStatus",
]


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
    signal: str = ""
    note: str = ""
    forecast_window_g_per_kwh: float | None = None
    forecast_percentile: float | None = None
    forecast_provider: str = ""


@dataclass(frozen=True, slots=True)
class WorkloadStatus:
    """One workload's last decision, as served to HPAs, KEDA, dashboards and the status API.

    `emitted_g`, `saved_g`, `energy_joules` and `counterfactual_g` are cumulative."""

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
    # Added by the scaler loop (cumulative figures are since the process started).
    workload_class: str = "interactive"
    target_kind: str = ""
    target_name: str = ""
    mode_since: datetime | None = None
    load_now: float | None = None
    load_unit: str = ""
    load_forecast: Mapping[str, float] = field(default_factory=dict)
    counterfactual_replicas: int | None = None
    energy_joules: float = 0.0
    counterfactual_g: float = 0.0
    carbon_provenance: str = ""
    remaining_work: float | None = None
    deadline: datetime | None = None
    deadline_feasible: bool | None = None
    load_model: str | None = None
    # The workload's bounds and per-replica capacity (load unit), for SLO-risk alerts.
    min_replicas: int | None = None
    max_replicas: int | None = None
    capacity_per_replica: float | None = None
    # What the cluster runs now (the target's scale subresource, read each tick); None when
    # unknown, and then `actual_replicas_note` says why (no cluster connection, read failed).
    actual_replicas: int | None = None
    actual_replicas_note: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one tick saw and decided. `data_note` is non-empty when the inputs are not real
    (the SAMPLE DATA scenario) and is shown by every reader."""

    taken_at: datetime
    workloads: Mapping[str, WorkloadStatus] = field(default_factory=dict)
    regions: Mapping[str, RegionCarbon] = field(default_factory=dict)
    tick_seconds: float = 0.0
    ticks_total: int = 0
    source_errors_total: Mapping[str, int] = field(default_factory=dict)
    refits_total: int = 0
    last_refit_at: datetime | None = None
    data_note: str = ""


class SnapshotSource(Protocol):
    """What servers read: the snapshot to answer from now (`SnapshotHolder`, or on a sharded
    replica `scaler.kube.shards.ServingSnapshots`)."""

    def current(self) -> Snapshot | None: ...


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
