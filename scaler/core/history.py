"""A bounded in-memory ring of recent snapshots, for the dashboard's charts.

`SnapshotHistory` keeps one compact, JSON-ready point per published snapshot (newest last)
and drops the oldest once `capacity_points` is reached. `RecordingHolder` is a
`SnapshotHolder` whose `publish` also records into a history, so the loop stays unaware of
it. Pure: no clock, no I/O; the status API only reads `points()`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scaler.snapshot import Snapshot, SnapshotHolder

__all__ = ["HistoryPoint", "RecordingHolder", "SnapshotHistory", "history_point"]

_MAX_REASONS = 4


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    """What the charts need from one snapshot: per-workload replicas, mode, reasons and
    cumulative grams; per-region intensity, forecast window and input age."""

    taken_at: datetime
    workloads: Mapping[str, Mapping[str, Any]]
    regions: Mapping[str, Mapping[str, Any]]
    saved_g: float
    emitted_g: float
    counterfactual_g: float


def _finite(value: float | None) -> float | None:
    return None if value is None or value != value else float(value)


def history_point(snap: Snapshot) -> HistoryPoint:
    workloads = {
        name: {
            "desired_replicas": ws.desired_replicas,
            "counterfactual_replicas": ws.counterfactual_replicas,
            "actual_replicas": ws.actual_replicas,
            "mode": str(ws.mode),
            "reasons": [r for r in ws.reasons if r != snap.data_note][:_MAX_REASONS],
            "stale_inputs": list(ws.stale_inputs),
            "saved_g": ws.saved_g,
            "emitted_g": ws.emitted_g,
            "region": ws.region,
        }
        for name, ws in snap.workloads.items()
    }
    regions = {
        name: {
            "intensity_g_per_kwh": _finite(rc.intensity_g_per_kwh),
            "forecast_window_g_per_kwh": _finite(rc.forecast_window_g_per_kwh),
            "age_seconds": _finite(rc.age_seconds),
            "stale": rc.stale,
            "provider": rc.provider,
        }
        for name, rc in snap.regions.items()
    }
    ws_all = snap.workloads.values()
    return HistoryPoint(
        taken_at=snap.taken_at,
        workloads=workloads,
        regions=regions,
        saved_g=sum(w.saved_g for w in ws_all),
        emitted_g=sum(w.emitted_g for w in ws_all),
        counterfactual_g=sum(w.counterfactual_g for w in ws_all),
    )


class SnapshotHistory:
    """The last `capacity_points` snapshots as `HistoryPoint`s, oldest first."""

    def __init__(self, capacity_points: int) -> None:
        if capacity_points < 1:
            raise ValueError(f"capacity_points must be >= 1, got {capacity_points}")
        self.capacity_points = capacity_points
        self._points: deque[HistoryPoint] = deque(maxlen=capacity_points)
        self._lock = threading.Lock()

    def record(self, snap: Snapshot) -> None:
        point = history_point(snap)
        with self._lock:
            if self._points and self._points[-1].taken_at == snap.taken_at:
                self._points[-1] = point
            else:
                self._points.append(point)

    def points(self, *, limit: int | None = None) -> tuple[HistoryPoint, ...]:
        with self._lock:
            pts = tuple(self._points)
        return pts if limit is None or limit >= len(pts) else pts[len(pts) - limit :]

    def __len__(self) -> int:
        return len(self._points)


class RecordingHolder(SnapshotHolder):
    """A `SnapshotHolder` that also records every published snapshot into `history`."""

    def __init__(self, history: SnapshotHistory, initial: Snapshot | None = None) -> None:
        super().__init__(initial)
        self.history = history
        if initial is not None:
            history.record(initial)

    def publish(self, snapshot: Snapshot) -> None:
        super().publish(snapshot)
        self.history.record(snapshot)
