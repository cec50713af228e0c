"""`KubeController`: one `sync()` per tick: per resource, the snapshot's decision -> status patch
(only when changed) and actuation (only when the bounds change); Events for decisions, mode
changes and failed actuation; and for a CarbonAwareScaler that cannot be acted on (invalid,
unknown region, no load, a name conflict) a `Ready=False` condition naming the reason and a
Warning Event, never silence. A valid one the loop has not decided for yet says so
(`Ready=Unknown`, `AwaitingDecision`).

Status is written only on change: when the decision, a condition or the actuation record
changes (`scaler.kube.status.same_decision`); what moves every tick without the decision
changing (the reasons' figures, the gram counters) is refreshed at most every
`status_refresh_seconds` (spread per resource, so a fleet created at once does not refresh at
once). A status the CR already carries (another replica wrote it before a failover) is not
written again.

Up to `status_write_concurrency` resources are synced at once (their status patch, actuation
and Events are each a round trip: one at a time, a replica wrote about 10 statuses a second on
the loaded test plane, so a fleet's first statuses took minutes).

Sharded (`owns`): only the resources this replica's shards hold are synced; what was sent for
the others is forgotten, so a shard taken back later starts from the CRs' watched status.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException

from forecasts.time import Clock
from scaler.core.shards import shard_weight
from scaler.kube.actuation import ActuationResult, Actuator
from scaler.kube.api import TRANSPORT_ERRORS, format_time
from scaler.kube.events import NORMAL, WARNING, EventRecorder, ObjectRef
from scaler.kube.resources import InvalidResource, ScalerResource, ScalerResourceCache
from scaler.kube.status import StatusWriter, same_decision, status_for
from scaler.kube.workloads import WorkloadProblem
from scaler.snapshot import Snapshot, WorkloadStatus

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
        events: EventRecorder | None = None,
        problems: Callable[[], Mapping[tuple[str, str], WorkloadProblem]] | None = None,
        owns: Callable[[str, str], bool] | None = None,
        status_refresh_seconds: float = 0.0,
        status_write_concurrency: int = 1,
    ) -> None:
        if status_write_concurrency < 1:
            raise ValueError(
                f"status_write_concurrency must be >= 1, got {status_write_concurrency}"
            )
        self._concurrency = status_write_concurrency
        self._counts_lock = threading.Lock()
        if status_refresh_seconds < 0:
            raise ValueError(f"status_refresh_seconds must be >= 0, got {status_refresh_seconds}")
        self._events = events
        self._owns = owns
        self._refresh = timedelta(seconds=status_refresh_seconds)
        self._written_at: dict[tuple[str, str], datetime] = {}
        self._problems = problems or dict
        self._problem_since: dict[tuple[str, str], tuple[WorkloadProblem, datetime]] = {}
        self._last_decision: dict[tuple[str, str], tuple[int, str]] = {}
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
        #: status writes by why: "first" (nothing written by this replica yet), "change" (the
        #: decision, a condition or the actuation changed), "refresh" (figures only, on the
        #: status_refresh_seconds clock)
        self.status_writes: Counter[str] = Counter({"first": 0, "change": 0, "refresh": 0})

    def forget(self) -> None:
        """Drop what was last sent: a new leadership term re-asserts every decision (another
        leader may have patched the targets in between)."""
        self._last_status.clear()
        self._last_patch.clear()
        self._written_at.clear()

    def _drop(self, key: tuple[str, str]) -> None:
        for held in (self._last_status, self._last_patch, self._written_at, self._last_decision):
            held.pop(key, None)

    def _refresh_due(self, key: tuple[str, str], now: datetime) -> bool:
        written = self._written_at.get(key)
        if written is None:
            return True
        spread = 0.75 + 0.5 * shard_weight(f"{key[0]}/{key[1]}", "status") / 2**64
        return now - written >= self._refresh * spread

    def _unchanged(
        self,
        key: tuple[str, str],
        resource: ScalerResource | InvalidResource,
        status: Mapping[str, Any],
        now: datetime,
    ) -> bool:
        last = self._last_status.get(key)
        if last is None and isinstance(resource, ScalerResource) and resource.status:
            if not same_decision(status, resource.status):
                return False
            # decided as the CR already says (written before a failover or a restart)
            self._last_status[key] = dict(resource.status)
            self._written_at[key] = now
            return True
        if status == last:
            return True
        return same_decision(status, last) and not self._refresh_due(key, now)

    def sync(self, snapshot: Snapshot | None) -> int:
        """Returns how many status patches were sent. Followers do nothing.

        `pending` afterwards names the resources whose actuation or status write failed
        (the runtime retries them without waiting for the next decision)."""
        if snapshot is None or not self._is_leader():
            return 0
        by_key = {(w.namespace, w.name): w for w in snapshot.workloads.values()}
        invalid = self._cache.invalid_resources()
        problems = dict(self._problems())
        for key, bad in invalid.items():
            problems[key] = WorkloadProblem("InvalidSpec", bad.error)
        written = 0
        pending: set[tuple[str, str]] = set()
        targets: dict[tuple[str, str], ScalerResource | InvalidResource] = {
            **invalid,
            **self._cache.items(),
        }
        for key in list(self._problem_since):
            if key not in problems:
                del self._problem_since[key]
        now = self._clock.now()
        mine: list[tuple[tuple[str, str], ScalerResource | InvalidResource]] = []
        for key, resource in sorted(targets.items()):
            if self._owns is not None and not self._owns(*key):
                if key in self._last_status or key in self._last_decision:
                    self._drop(key)
                continue
            mine.append((key, resource))

        def one(item: tuple[tuple[str, str], ScalerResource | InvalidResource]) -> bool:
            key, resource = item
            if not self._is_leader():  # lost it mid-sync: stop at once
                return False
            return self._sync_one(
                key, resource, problems.get(key), by_key.get(key), now=now, pending=pending
            )

        if self._concurrency > 1 and len(mine) > 1:
            with ThreadPoolExecutor(self._concurrency, thread_name_prefix="status") as pool:
                written = sum(pool.map(one, mine))
        else:
            written = sum(map(one, mine))
        self.pending = frozenset(pending)
        return written

    def _sync_one(
        self,
        key: tuple[str, str],
        resource: ScalerResource | InvalidResource,
        problem: WorkloadProblem | None,
        workload: WorkloadStatus | None,
        *,
        now: datetime,
        pending: set[tuple[str, str]],
    ) -> bool:
        """One resource: its status (and actuation, Events); True when a status was written.
        Runs on `status_write_concurrency` threads: it touches only `key`'s entries, and the
        counters under the lock."""
        if problem is not None:
            status = self._problem_status(key, resource, problem)
        elif isinstance(resource, ScalerResource) and workload is not None:
            status = self._decide(key, resource, workload, pending)
        else:
            status = self._awaiting_status(key, resource)
        if self._unchanged(key, resource, status, now):
            return False
        last = self._last_status.get(key)
        why = "first" if last is None else "refresh" if same_decision(status, last) else "change"
        try:
            new_rv = self._status.write(resource, status)
        except (ApiException, RuntimeError, *TRANSPORT_ERRORS) as exc:
            with self._counts_lock:
                self.status_errors += 1
                pending.add(key)
            log.warning("status of %s/%s not written: %s", *key, exc)
            return False
        if new_rv is None:
            return False
        self._last_status[key] = status
        self._written_at[key] = now
        self._cache.update_resource_version(key, new_rv)
        with self._counts_lock:
            self.status_writes[why] += 1
        return True

    def _decide(
        self,
        key: tuple[str, str],
        resource: ScalerResource,
        workload: WorkloadStatus,
        pending: set[tuple[str, str]],
    ) -> dict[str, Any]:
        """Actuate when the bounds changed, record Events, and return the decision's status."""
        self._decision_events(key, resource, workload)
        patch = self._actuator.plan(resource, workload)
        if patch is not None and patch != self._last_patch.get(key):
            result = self._actuator.actuate(resource, workload)
            if result is not None and (result.applied or result.dry_run):
                self._last_patch[key] = patch
            if result is not None:
                self._last_actuation[key] = result
                if result.error:
                    with self._counts_lock:
                        self.actuation_errors += 1
                        pending.add(key)
                    self._event(
                        resource,
                        WARNING,
                        "ActuationFailed",
                        f"patch of {result.kind}/{result.name} failed: {result.error}",
                    )
                elif result.applied:
                    self._event(
                        resource,
                        NORMAL,
                        "Actuated",
                        f"patched {result.kind}/{result.name}: {result.patch_text}",
                    )
        return status_for(
            workload,
            resource=resource,
            now=self._clock.now(),
            actuation=self._last_actuation.get(key),
            previous=self._last_status.get(key) or resource.status,
        )

    def _decision_events(
        self, key: tuple[str, str], resource: ScalerResource, workload: WorkloadStatus
    ) -> None:
        """A Normal Event when the mode changes and when the desired replicas change."""
        now = (workload.desired_replicas, str(workload.mode))
        before = self._last_decision.get(key)
        self._last_decision[key] = now
        why = "; ".join(workload.reasons[:2])
        if before is None:
            self._event(
                resource,
                NORMAL,
                "ScalingDecision",
                f"desired {now[0]} replicas in {now[1]} mode: {why}",
            )
            return
        if before[1] != now[1]:
            self._event(resource, NORMAL, "ModeChanged", f"{before[1]} -> {now[1]} mode: {why}")
        if before[0] != now[0]:
            self._event(
                resource,
                NORMAL,
                "ScalingDecision",
                f"desired replicas {before[0]} -> {now[0]} ({now[1]} mode): {why}",
            )

    def _problem_status(
        self,
        key: tuple[str, str],
        resource: ScalerResource | InvalidResource,
        problem: WorkloadProblem,
    ) -> dict[str, Any]:
        seen = self._problem_since.get(key)
        if seen is None or seen[0] != problem:
            seen = (problem, self._clock.now())
            self._problem_since[key] = seen
            self._last_decision.pop(key, None)
            self._event(resource, WARNING, problem.reason, problem.message)
        return {
            "observedGeneration": resource.generation,
            "desiredReplicas": None,
            "mode": None,
            "region": None,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": problem.reason,
                    "message": f"not acted on: {problem.message}",
                    "lastTransitionTime": format_time(seen[1]),
                    "observedGeneration": resource.generation,
                }
            ],
        }

    def _awaiting_status(
        self, key: tuple[str, str], resource: ScalerResource | InvalidResource
    ) -> dict[str, Any]:
        previous = self._last_status.get(key)
        if previous is not None and previous["conditions"][0]["reason"] == "AwaitingDecision":
            return previous
        return {
            "observedGeneration": resource.generation,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "Unknown",
                    "reason": "AwaitingDecision",
                    "message": "accepted; the scaler decides for it at its next tick",
                    "lastTransitionTime": format_time(self._clock.now()),
                    "observedGeneration": resource.generation,
                }
            ],
        }

    def _event(
        self, resource: ScalerResource | InvalidResource, type_: str, reason: str, message: str
    ) -> None:
        if self._events is None:
            return
        ref = ObjectRef(resource.namespace, resource.name, resource.uid)
        self._events.record(ref, type_=type_, reason=reason, message=message)
