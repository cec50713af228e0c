"""`LeaseLock` + `LeaderElector`: client-go style leader election on a `coordination.k8s.io/v1`
Lease; only the leader writes status or actuates.

A `LeaseLock` is one replica's view of one Lease, also of a Lease it does not hold: the sharded
scaler (`scaler.kube.shards`) keeps one per shard and per member, feeds them the Leases of one
LIST per round (`observe`) instead of a GET each, and asks each who holds it now (`live_holder`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from forecasts.time import Clock
from scaler.kube.api import (
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    GARBLED,
    TRANSPORT_ERRORS,
    as_dict,
    format_micro_time,
)

log = logging.getLogger(__name__)

#: `try_acquire_or_renew()` without a listed Lease: GET it first.
_READ: Any = object()


@dataclass(frozen=True, slots=True)
class _LeaseRecord:
    holder: str
    lease_duration_seconds: int
    acquire_time: str
    renew_time: str
    transitions: int
    resource_version: str


class LeaseLock:
    """One replica's view of the Lease; `try_acquire_or_renew` is one client-go round.

    Each call times out after `request_timeout_seconds` (at most a quarter of the renew
    deadline: a round is a GET and a PUT, and urllib3 re-sends an idempotent call after a
    read timeout, once with `config.wiring.kube_api_client`), so a round against a hanging
    API server ends by the renew deadline, as client-go's does.
    """

    def __init__(
        self,
        custom_api: k8s.CustomObjectsApi,
        *,
        namespace: str,
        name: str,
        identity: str,
        clock: Clock,
        lease_duration_seconds: int = 15,
        renew_deadline_seconds: float = 10.0,
        request_timeout_seconds: float | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        if not 0 < renew_deadline_seconds < lease_duration_seconds:
            raise ValueError(
                "renew_deadline_seconds must be > 0 and < lease_duration_seconds, got "
                f"{renew_deadline_seconds} and {lease_duration_seconds}"
            )
        self._api = custom_api
        self.namespace, self.name, self.identity = namespace, name, identity
        self._clock = clock
        self._duration = lease_duration_seconds
        self._renew_deadline = timedelta(seconds=renew_deadline_seconds)
        self._observed: _LeaseRecord | None = None
        self._observed_at: datetime | None = None
        self._renewed_at: datetime | None = None
        self._request_timeout = min(
            request_timeout_seconds or DEFAULT_REQUEST_TIMEOUT_SECONDS, renew_deadline_seconds / 4
        )
        self._labels = dict(labels or {})
        self.errors = 0  # failed lease requests (gridshift_kube_api_errors_total)

    def _body(self, record: _LeaseRecord | None, holder: str, now: datetime) -> dict[str, Any]:
        keep_acquire = record is not None and record.holder == holder and holder
        transitions = 0 if record is None else record.transitions + (0 if keep_acquire else 1)
        spec: dict[str, Any] = {
            "holderIdentity": holder,
            "leaseDurationSeconds": self._duration if holder else 1,
            "acquireTime": record.acquire_time
            if keep_acquire and record
            else format_micro_time(now),
            "renewTime": format_micro_time(now),
            "leaseTransitions": transitions,
        }
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self._labels:  # an update replaces the whole object: send them every time
            metadata["labels"] = self._labels
        if record is not None:
            metadata["resourceVersion"] = record.resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    @staticmethod
    def _record(lease: object) -> _LeaseRecord:
        obj = as_dict(lease)
        spec = obj.get("spec") or {}
        return _LeaseRecord(
            holder=str(spec.get("holderIdentity") or ""),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=str(spec.get("acquireTime") or ""),
            renew_time=str(spec.get("renewTime") or ""),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(obj["metadata"]["resourceVersion"]),
        )

    # Leases go through CustomObjectsApi (same path, /apis/coordination.k8s.io/v1/...) so the
    # MicroTime strings are sent exactly as written, not re-serialised by the typed models.
    def _read(self) -> object:
        return self._api.get_namespaced_custom_object(
            "coordination.k8s.io",
            "v1",
            self.namespace,
            "leases",
            self.name,
            _request_timeout=self._request_timeout,
        )

    def _create(self, body: dict[str, Any]) -> object:
        return self._api.create_namespaced_custom_object(
            "coordination.k8s.io",
            "v1",
            self.namespace,
            "leases",
            body,
            _request_timeout=self._request_timeout,
        )

    def _replace(self, body: dict[str, Any]) -> object:
        return self._api.replace_namespaced_custom_object(
            "coordination.k8s.io",
            "v1",
            self.namespace,
            "leases",
            self.name,
            body,
            _request_timeout=self._request_timeout,
        )

    @property
    def request_timeout_seconds(self) -> float:
        """The client-side timeout of each Lease request."""
        return self._request_timeout

    def is_leader(self) -> bool:
        """Held by us and renewed within the renew deadline (checked on our clock)."""
        if self._renewed_at is None or self._observed is None:
            return False
        if self._observed.holder != self.identity:
            return False
        return self._clock.now() - self._renewed_at < self._renew_deadline

    def observe(self, lease: object | None) -> None:
        """Take `lease` (as a GET or LIST returned it; None: it does not exist) as the record
        seen now. Expiry is measured on our clock from when the record last changed."""
        if lease is None:
            self._observed = self._observed_at = None
            return
        record = self._record(lease)
        if self._observed is None or record != self._observed:
            self._see(record, self._clock.now())

    def live_holder(self) -> str:
        """Who holds the Lease as last observed: "" when nobody does, it was released, or the
        holder has not renewed it for its duration (measured on our clock)."""
        record, seen = self._observed, self._observed_at
        if record is None or seen is None or not record.holder:
            return ""
        if seen + timedelta(seconds=record.lease_duration_seconds) <= self._clock.now():
            return ""
        return record.holder

    def try_acquire_or_renew(self, current: object = _READ) -> bool:
        """One round: read the Lease (or take `current`, the Lease a LIST just returned, None
        when the LIST had none), then create, acquire (vacant or expired) or renew it."""
        now = self._clock.now()
        try:
            if current is _READ:
                lease = self._read()
            elif current is None:
                raise ApiException(status=404, reason="not in the list")
            else:
                lease = current
        except ApiException as exc:
            if exc.status != 404:
                self.errors += 1
                log.warning("reading lease %s/%s failed: %s", self.namespace, self.name, exc.status)
                return self.is_leader()
            try:
                created = self._create(self._body(None, self.identity, now))
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return False  # someone else created it first
                raise
            self._see(self._record(created), now)
            self._renewed_at = now
            return True
        record = self._record(lease)
        if self._observed is None or record != self._observed:
            self._see(record, now)
        assert self._observed_at is not None
        expired = self._observed_at + timedelta(seconds=record.lease_duration_seconds) <= now
        if record.holder and record.holder != self.identity and not expired:
            self._renewed_at = None
            return False
        try:
            updated = self._replace(self._body(record, self.identity, now))
        except ApiException as exc:
            if exc.status == 409:  # someone else won this round
                self._renewed_at = None
                return False
            self.errors += 1
            log.warning("renewing lease %s/%s failed: %s", self.namespace, self.name, exc.status)
            return self.is_leader()
        self._see(self._record(updated), now)
        self._renewed_at = now
        return True

    def _see(self, record: _LeaseRecord, now: datetime) -> None:
        self._observed, self._observed_at = record, now

    def release(self) -> bool:
        """Give the lease up (holder cleared, 1 s duration) if we hold it."""
        if self._observed is None or self._observed.holder != self.identity:
            return False
        now = self._clock.now()
        try:
            self._replace(self._body(self._observed, "", now))
        except (ApiException, *TRANSPORT_ERRORS) as exc:
            self.errors += 1
            log.warning("releasing lease failed: %s", getattr(exc, "status", exc))
            return False
        finally:
            self._renewed_at = None
        return True


class LeaderElector:
    """Runs `LeaseLock` rounds every `retry_period_seconds`; callbacks on gain and loss."""

    def __init__(
        self,
        lock: LeaseLock,
        *,
        retry_period_seconds: float = 2.0,
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
        stop: threading.Event | None = None,
    ) -> None:
        self.lock = lock
        self._retry = retry_period_seconds
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._stop = stop or threading.Event()
        self._leading = False
        self.rounds = 0
        self.slowest_round_seconds = 0.0

    @property
    def leading(self) -> bool:
        return self._leading and self.lock.is_leader()

    def _round(self) -> None:
        """The Lease work of one round (`scaler.kube.shards.ShardElector` does more)."""
        self.lock.try_acquire_or_renew()

    def _release(self) -> None:
        """Give up what this elector holds (on shutdown)."""
        self.lock.release()

    def step(self) -> bool:
        started = time.monotonic()
        try:
            self._round()
        except (ApiException, *GARBLED) as exc:
            # TypeError/KeyError/ValueError: a garbled Lease answer
            self.lock.errors += 1
            log.warning("leader election round failed: %s", exc)
        self.rounds += 1
        self.slowest_round_seconds = max(self.slowest_round_seconds, time.monotonic() - started)
        now_leading = self.lock.is_leader()
        if now_leading and not self._leading:
            self._leading = True
            log.info("%s became the leader", self.lock.identity)
            self._on_started()
        elif not now_leading and self._leading:
            self._leading = False
            log.warning("%s lost the leadership", self.lock.identity)
            self._on_stopped()
        return now_leading

    def run(self) -> None:
        while not self._stop.is_set():
            self.step()
            self._stop.wait(self._retry)
        if self._leading:
            self._leading = False
            self._on_stopped()
        self._release()

    def stop(self) -> None:
        self._stop.set()
