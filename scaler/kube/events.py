"""`EventRecorder`: core/v1 Events on CarbonAwareScalers, so `kubectl describe cas NAME` shows
what gridshift decided and why a resource is not acted on.

As client-go's recorder: named `<object>.<hex nanoseconds>`, `involvedObject` with the
object's uid, `source.component`/`reportingComponent`, first/last timestamp and count 1.
Best effort: a failed create is logged and counted, never raised (decisions go on). An event
equal to the last one recorded for the same object and reason is not sent again, so a
problem that persists tick after tick is one Event, not one a minute. What was last sent is
remembered for `repeat_after` (kube-apiserver's default `--event-ttl`, 1 h: by then the API
server has deleted the Event, so a problem that persists is recorded again) and for at most
`max_remembered` (object, reason) pairs, the least recently sent forgotten first: objects that
are gone or renamed do not grow the memory of a long-running scaler.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from forecasts.time import Clock
from scaler.kube.api import (
    CRD_GROUP,
    CRD_VERSION,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    TRANSPORT_ERRORS,
    format_time,
)

log = logging.getLogger(__name__)

COMPONENT = "gridshift-scaler"
KIND = "CarbonAwareScaler"
NORMAL = "Normal"
WARNING = "Warning"
#: kube-apiserver's default --event-ttl: an Event is deleted an hour after its last update.
DEFAULT_REPEAT_AFTER = timedelta(hours=1)
#: A CarbonAwareScaler has a few reasons (decision, mode, one per problem); 10,000 CRs fit.
DEFAULT_MAX_REMEMBERED = 65_536


@dataclass(frozen=True, slots=True)
class ObjectRef:
    namespace: str
    name: str
    uid: str
    resource_version: str = ""


def event_body(
    ref: ObjectRef, *, type_: str, reason: str, message: str, at_ns: int, instance: str
) -> dict[str, Any]:
    """The core/v1 Event JSON (what client-go's recorder sends)."""
    at = datetime.fromtimestamp(at_ns / 1e9, tz=UTC)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.name}.{at_ns:x}", "namespace": ref.namespace},
        "involvedObject": {
            "apiVersion": f"{CRD_GROUP}/{CRD_VERSION}",
            "kind": KIND,
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
            **({"resourceVersion": ref.resource_version} if ref.resource_version else {}),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "source": {"component": COMPONENT},
        "reportingComponent": f"{CRD_GROUP}/scaler",
        "reportingInstance": instance,
        "firstTimestamp": format_time(at),
        "lastTimestamp": format_time(at),
        "eventTime": None,
        "count": 1,
        "action": "Decide" if type_ == NORMAL else "Check",
        "series": None,
        "related": None,
    }


class EventRecorder:
    """Creates Events in the object's namespace (`create` on `events`, core group)."""

    def __init__(
        self,
        core_api: k8s.CoreV1Api,
        *,
        clock: Clock,
        instance: str,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        repeat_after: timedelta = DEFAULT_REPEAT_AFTER,
        max_remembered: int = DEFAULT_MAX_REMEMBERED,
    ) -> None:
        if repeat_after <= timedelta(0) or max_remembered < 1:
            raise ValueError("repeat_after must be positive and max_remembered at least 1")
        self._api = core_api
        self._clock = clock
        self._instance = instance
        self._timeout = request_timeout_seconds
        self._repeat_after = repeat_after
        self._max_remembered = max_remembered
        # (namespace, name, reason) -> (message, when sent), least recently sent first
        self._last: OrderedDict[tuple[str, str, str], tuple[str, datetime]] = OrderedDict()
        self._last_at_ns = 0
        self._lock = threading.Lock()
        self.sent = 0
        self.errors = 0

    @property
    def remembered(self) -> int:
        """How many (object, reason) pairs the repeat check remembers."""
        with self._lock:
            return len(self._last)

    def _forget_expired(self, now: datetime) -> None:
        """Drop what was sent `repeat_after` ago or longer (under the lock)."""
        while self._last:
            _message, sent_at = next(iter(self._last.values()))
            if now - sent_at < self._repeat_after:
                return
            self._last.popitem(last=False)

    def record(self, ref: ObjectRef, *, type_: str, reason: str, message: str) -> bool:
        """Send one Event unless it repeats the last one for this object and reason."""
        key = (ref.namespace, ref.name, reason)
        now = self._clock.now()
        # The Event's name is `<object>.<at_ns hex>` (client-go's scheme): two Events at one
        # instant (a decision and its mode change, or a frozen clock) would share a name and
        # the second would be refused 409 AlreadyExists, so each is at least 1 ns later (under
        # a lock: the controller records from several threads).
        with self._lock:
            self._forget_expired(now)
            last = self._last.get(key)
            if last is not None and last[0] == message:
                return False
            at_ns = max(int(now.timestamp() * 1e9), self._last_at_ns + 1)
            self._last_at_ns = at_ns
        body = event_body(
            ref, type_=type_, reason=reason, message=message, at_ns=at_ns, instance=self._instance
        )
        try:
            self._api.create_namespaced_event(
                ref.namespace, cast(Any, body), _request_timeout=self._timeout
            )
        except (ApiException, *TRANSPORT_ERRORS) as exc:
            with self._lock:
                self.errors += 1
            log.warning("event %s on %s/%s not recorded: %s", reason, ref.namespace, ref.name, exc)
            return False
        with self._lock:
            self._last[key] = (message, now)
            self._last.move_to_end(key)
            while len(self._last) > self._max_remembered:
                self._last.popitem(last=False)
            self.sent += 1
        return True
