"""The immutable state the extender's handlers read, and the holder that swaps it.

A background job (`extender.refresh`) builds a new `ExtenderSnapshot` and publishes it by
reference; a handler takes `holder.current()` once per request, so it never sees a half-built
state and never waits on the network.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType

from extender.core.scoring import NodeFacts, NodeTable
from forecasts.series import CarbonSeries

__all__ = ["ExtenderSnapshot", "SnapshotHolder"]


@dataclass(frozen=True, slots=True)
class ExtenderSnapshot:
    """Carbon per region and node facts, as of `taken_at`.

    `carbon` holds, per region, the latest value plus the provider's forecast (one series);
    `carbon_errors` says why a region's last refresh failed (its previous series is kept and
    ages into staleness). `nodes_synced` is False until the node inventory has listed once;
    `carbon_pending` names the regions in use whose first carbon fetch has not finished (a
    failed fetch counts as finished: the region then scores neutral, visibly). The extender
    is `ready` only when both are in: before that every node would score neutral and pod
    caps could not be enforced."""

    taken_at: datetime
    nodes: Mapping[str, NodeFacts] = field(default_factory=lambda: MappingProxyType({}))
    carbon: Mapping[str, CarbonSeries] = field(default_factory=lambda: MappingProxyType({}))
    carbon_errors: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    nodes_synced: bool = False
    carbon_pending: frozenset[str] = frozenset()
    table: NodeTable = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Built once per snapshot: the arrays prioritize scores thousands of nodes with.
        object.__setattr__(self, "table", NodeTable.build(self.nodes))

    @property
    def ready(self) -> bool:
        return self.nodes_synced and not self.carbon_pending

    @property
    def not_ready_reason(self) -> str | None:
        """Why the extender cannot score yet (None when ready)."""
        if not self.nodes_synced:
            return "the node inventory has not listed the nodes yet"
        if self.carbon_pending:
            return f"carbon not fetched yet for {', '.join(sorted(self.carbon_pending))}"
        return None


class SnapshotHolder:
    """Holds the current snapshot; `publish` swaps the reference atomically."""

    def __init__(self, initial: ExtenderSnapshot | None = None) -> None:
        self._current = initial
        self._lock = threading.Lock()

    def publish(self, snapshot: ExtenderSnapshot) -> None:
        with self._lock:
            self._current = snapshot

    def current(self) -> ExtenderSnapshot | None:
        return self._current
