"""`KubeController`: one `sync()` per tick: per resource, the snapshot's decision -> status patch
(only when changed) and actuation (only when the bounds change).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from forecasts.time import Clock
from scaler.kube.actuation import ActuationResult, Actuator
from scaler.kube.api import TRANSPORT_ERRORS
from scaler.kube.resources import ScalerResourceCache
from scaler.kube.status import StatusWriter, status_for
from scaler.snapshot import Snapshot

log = logging.getLogger(__name__)


class KubeController:
    """Per tick: decision -> CR status (if changed) and, when leading, actuation."""

    def __init__(
        self,
        *,
        cache: ScalerResourceCache,
        status_writer: StatusWriter,
        actuator: Actuator,
        is_leader: Callable[[], bool],
        clock: Clock,
    ) -> None:
        self._cache = cache
        self._status = status_writer
        self._actuator = actuator
        self._is_leader = is_leader
        self._clock = clock
        self._last_status: dict[tuple[str, str], dict[str, Any]] = {}
        self._last_patch: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._last_actuation: dict[tuple[str, str], ActuationResult] = {}
        self.pending: frozenset[tuple[str, str]] = frozenset()  # failed last sync: retry
        self.actuation_errors = 0
        self.status_errors = 0

    def forget(self) -> None:
        """Drop what was last sent: a new leadership term re-asserts every decision (another
        leader may have patched the targets in between)."""
        self._last_status.clear()
        self._last_patch.clear()

    def sync(self, snapshot: Snapshot | None) -> int:
        """Returns how many status patches were sent. Followers do nothing.

        `pending` afterwards names the resources whose actuation or status write failed
        (the runtime retries them without waiting for the next decision)."""
        if snapshot is None or not self._is_leader():
            return 0
        by_key = {(w.namespace, w.name): w for w in snapshot.workloads.values()}
        written = 0
        pending: set[tuple[str, str]] = set()
        for key, resource in sorted(self._cache.items().items()):
            workload = by_key.get(key)
            if workload is None:
                continue
            if not self._is_leader():  # lost it mid-sync: stop at once
                break
            patch = self._actuator.plan(resource, workload)
            if patch is not None and patch != self._last_patch.get(key):
                result = self._actuator.actuate(resource, workload)
                if result is not None and (result.applied or result.dry_run):
                    self._last_patch[key] = patch
                if result is not None:
                    self._last_actuation[key] = result
                    if result.error:
                        self.actuation_errors += 1
                        pending.add(key)
            status = status_for(
                workload,
                resource=resource,
                now=self._clock.now(),
                actuation=self._last_actuation.get(key),
            )
            if status == self._last_status.get(key):
                continue
            try:
                new_rv = self._status.write(resource, status)
            except (ApiException, RuntimeError, *TRANSPORT_ERRORS) as exc:
                self.status_errors += 1
                pending.add(key)
                log.warning("status of %s/%s not written: %s", *key, exc)
                continue
            if new_rv is not None:
                self._last_status[key] = status
                self._cache.update_resource_version(key, new_rv)
                written += 1
        self.pending = frozenset(pending)
        return written
