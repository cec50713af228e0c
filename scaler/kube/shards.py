"""The sharded scaler: N replicas, each deciding for the CarbonAwareScalers of the shards it holds.

* Shards are fixed (`kube.shards`); a workload's shard is `scaler.core.shards.shard_of` of its
  namespace/name. Each shard has one Lease, `<group>-shard-<i>`: its holder alone decides,
  writes status and actuates for that shard's workloads (the Lease is the fence, as the single
  leader's Lease is for the whole install).
* Each replica also holds a member Lease, `<group>-member-<identity>`: the live members are the
  holders of unexpired member Leases, and `scaler.core.shards.assign_shards` over them says
  which replica should hold which shard. Every replica computes the same assignment; each
  acquires the shards assigned to it once they are vacant or expired and releases the ones
  assigned elsewhere (a handoff when a replica joins or returns).
* A replica that dies stops renewing both; once its Leases have not changed for their duration
  (measured on each replica's own clock, as client-go does), the others drop it from the
  members, its shards are assigned to them, and the next round acquires them: the share is
  decided again within one Lease duration plus a retry period plus one tick. A replica that
  shuts down releases its Leases, so the others take over at their next round.

One round (`ShardElector.step`, every `retry_period_seconds`): one LIST of the group's Leases
(label `gridshift.io/lease-group`), then one update per Lease held or being acquired, never a GET
each. This is `LeaderElector`'s loop with a different round; the per-Lease logic is `LeaseLock`'s.

Any replica serves any workload (`ServingSnapshots`): its own snapshot's decisions, and for the
CarbonAwareScalers of the other shards the decision their owner wrote into the CR status.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from forecasts.time import Clock
from scaler.core.shards import assign_shards, shard_of
from scaler.kube.api import GARBLED, as_dict
from scaler.kube.leader import LeaderElector, LeaseLock
from scaler.kube.resources import ScalerResourceCache
from scaler.kube.status import decision_from_status
from scaler.snapshot import Snapshot, SnapshotSource, WorkloadStatus

__all__ = ["GROUP_LABEL", "ROLE_LABEL", "ServingSnapshots", "ShardElector"]

log = logging.getLogger(__name__)

GROUP_LABEL = "gridshift.io/lease-group"
ROLE_LABEL = "gridshift.io/lease-role"
_MAX_CACHED_KEYS = 200_000


class ShardElector(LeaderElector):
    """Member and shard Leases of one replica; `owns(namespace, name)` is the fence.

    `leading` is True while this replica holds its member Lease (it is a live member);
    `owned` names the shards it holds now."""

    def __init__(
        self,
        custom_api: k8s.CustomObjectsApi,
        *,
        namespace: str,
        group: str,
        identity: str,
        shards: int,
        clock: Clock,
        lease_duration_seconds: int = 15,
        renew_deadline_seconds: float = 10.0,
        retry_period_seconds: float = 2.0,
        request_timeout_seconds: float | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        if shards < 1:
            raise ValueError(f"shards must be >= 1, got {shards}")

        def lock(name: str, role: str) -> LeaseLock:
            return LeaseLock(
                custom_api,
                namespace=namespace,
                name=name,
                identity=identity,
                clock=clock,
                lease_duration_seconds=lease_duration_seconds,
                renew_deadline_seconds=renew_deadline_seconds,
                request_timeout_seconds=request_timeout_seconds,
                labels={GROUP_LABEL: group, ROLE_LABEL: role},
            )

        super().__init__(
            lock(f"{group}-member-{identity}", "member"),
            retry_period_seconds=retry_period_seconds,
            stop=stop,
        )
        self._make_lock = lock
        self._api = custom_api
        self._namespace, self._group, self.shards = namespace, group, shards
        self._shard_locks = tuple(lock(f"{group}-shard-{i}", "shard") for i in range(shards))
        self._peers: dict[str, LeaseLock] = {}  # other members' Leases, observed only
        self._shard_cache: dict[tuple[str, str], int] = {}
        self._list_timeout = self.lock.request_timeout_seconds
        self.members: tuple[str, ...] = ()
        self.owned: frozenset[int] = frozenset()
        self._on_change: Callable[[], None] | None = None
        self.handoffs = 0  # shards released because the assignment moved them elsewhere
        self.takeovers = 0  # shards acquired
        self.lists = 0

    @property
    def identity(self) -> str:
        return self.lock.identity

    def shard_of(self, namespace: str, name: str) -> int:
        key = (namespace, name)
        found = self._shard_cache.get(key)
        if found is None:
            if len(self._shard_cache) > _MAX_CACHED_KEYS:
                self._shard_cache.clear()
            found = self._shard_cache[key] = shard_of(namespace, name, self.shards)
        return found

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this replica acts for `namespace/name` now: it holds that workload's shard
        Lease and renewed it within the renew deadline (checked on each call)."""
        return self.holds(self.shard_of(namespace, name))

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` (on the election thread) after each round that acquired or handed
        off a shard: the scaler ticks then (`ScalerService.tick_now`) rather than at its next
        interval, so a shard taken over is decided within the Lease duration and a round, and
        one handed off leaves this replica's decisions at once."""
        self._on_change = callback

    def holds(self, shard: int) -> bool:
        """Whether this replica holds `shard`'s Lease now (renewed within the renew
        deadline): the fence of everything written for that shard."""
        return self._shard_locks[shard].is_leader()

    def holders(self) -> dict[int, str]:
        """Each shard's live holder as last observed ("" while vacant or expired)."""
        return {i: lock.live_holder() for i, lock in enumerate(self._shard_locks)}

    def _list(self) -> dict[str, Any] | None:
        try:
            answer = as_dict(
                self._api.list_namespaced_custom_object(
                    "coordination.k8s.io",
                    "v1",
                    self._namespace,
                    "leases",
                    label_selector=f"{GROUP_LABEL}={self._group}",
                    _request_timeout=self._list_timeout,
                )
            )
            self.lists += 1
            return {str(item["metadata"]["name"]): item for item in answer.get("items") or []}
        except (ApiException, *GARBLED) as exc:
            self.lock.errors += 1
            log.warning("listing the %s Leases failed: %s", self._group, exc)
            return None

    def _attempt(self, lock: LeaseLock, action: Callable[[], object]) -> None:
        try:
            action()
        except (ApiException, *GARBLED) as exc:  # one Lease's failure must not end the round
            lock.errors += 1
            log.warning("lease %s: %s", lock.name, exc)

    def _round(self) -> None:
        listed = self._list()
        if listed is None:  # keep what we hold (GET + update each); change nothing else
            for lock in (self.lock, *(s for s in self._shard_locks if s.is_leader())):
                self._attempt(lock, lock.try_acquire_or_renew)
            self._publish(self.members)
            return
        for name, obj in listed.items():
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if labels.get(ROLE_LABEL) == "member" and name != self.lock.name:
                peer = self._peers.get(name)
                if peer is None:
                    peer = self._peers[name] = self._make_lock(name, "member")
                peer.observe(obj)
        for gone in set(self._peers) - set(listed):
            del self._peers[gone]
        self._attempt(
            self.lock, partial(self.lock.try_acquire_or_renew, listed.get(self.lock.name))
        )
        live = {peer.live_holder() for peer in self._peers.values()} - {""}
        if self.lock.is_leader():
            live.add(self.identity)
        owners = assign_shards(self.shards, live)
        changed = False
        for shard, lock in enumerate(self._shard_locks):
            obj = listed.get(lock.name)
            if owners.get(shard) == self.identity:
                held = lock.is_leader()
                self._attempt(lock, partial(lock.try_acquire_or_renew, obj))
                if lock.is_leader() and not held:
                    self.takeovers += 1
                    changed = True
            else:
                self._attempt(lock, partial(lock.observe, obj))
                if lock.is_leader() and lock.release():  # assigned elsewhere: hand it off
                    self.handoffs += 1
                    changed = True
        self._publish(tuple(sorted(live)))
        if changed and self._on_change is not None:
            try:
                self._on_change()
            except Exception:  # the election goes on whatever the callback does
                log.exception("the callback on a change of shards failed")

    def _publish(self, members: tuple[str, ...]) -> None:
        owned = frozenset(i for i, lock in enumerate(self._shard_locks) if lock.is_leader())
        if owned != self.owned or members != self.members:
            log.info(
                "%s holds shards %s of %d (members: %s)",
                self.identity,
                sorted(owned) or "none",
                self.shards,
                ", ".join(members) or "none",
            )
        self.owned, self.members = owned, members

    def _release(self) -> None:
        for lock in self._shard_locks:
            if lock.is_leader():
                lock.release()
        self.lock.release()
        self.owned = frozenset()


class ServingSnapshots:
    """The snapshot the metrics API and KEDA read on a sharded replica (`SnapshotSource`).

    Its own snapshot's decisions (the shards it holds), plus, for every other valid
    CarbonAwareScaler whose status carries a decision, that decision (`decision_from_status`):
    the owner wrote it, the watch brought it. So the APIService can send any request to any
    replica. Rebuilt when the own snapshot changes, or when the watched resources changed and
    the last build is `min_rebuild_interval_seconds` old (a peer's status lags by at most that
    and the watch)."""

    def __init__(
        self,
        own: SnapshotSource,
        *,
        cache: ScalerResourceCache,
        min_rebuild_interval_seconds: float = 1.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._own = own
        self._cache = cache
        self._interval = min_rebuild_interval_seconds
        self._timer = timer
        self._lock = threading.Lock()
        self._built: tuple[Snapshot, int, float, Snapshot] | None = None
        self.builds = 0

    def current(self) -> Snapshot | None:
        own = self._own.current()
        if own is None:
            return None
        version = self._cache.version
        built = self._built
        if (
            built is not None
            and built[0] is own
            and (built[1] == version or self._timer() - built[2] < self._interval)
        ):
            return built[3]
        with self._lock:
            built = self._built
            if built is not None and built[0] is own and built[1] == version:
                return built[3]
            merged = replace(own, workloads=self._merge(own.workloads))
            self._built = (own, version, self._timer(), merged)
            self.builds += 1
            return merged

    def _merge(self, own: Mapping[str, WorkloadStatus]) -> dict[str, WorkloadStatus]:
        workloads = dict(own)
        for _key, resource in sorted(self._cache.items().items()):
            if resource.name in workloads:
                continue
            decided = decision_from_status(resource)
            if decided is not None:
                workloads[resource.name] = decided
        return workloads
