"""List + watch of one Kubernetes resource kind into a store: the one reflector.

Protocol, as client-go's reflector does it: a LIST (paginated when `page_size` is set) gives
the state and its `resourceVersion`; a WATCH from there (with bookmarks) hands
ADDED/MODIFIED/DELETED to the store and advances the version (BOOKMARK only advances it); the
server ends each watch after `timeoutSeconds` and we resume from the last version. `410 Gone`
(an expired version, as an ERROR event or an HTTP status) means the store may have missed
events: `ResourceExpired`, then relist. Any other failure (an API error, a transport error, a
garbled answer) is counted and logged; the loop waits `retry_seconds` and relists.

Timeouts: `request_timeout_seconds` is the budget of one LIST request; with
`tries_per_request=2` (an ApiClient whose urllib3 re-sends an idempotent call once after a
read timeout) each try gets half of it. A watch connects within the same per-try budget; its
read timeout is the server-side `timeoutSeconds` plus the budget, since a healthy server may
stay silent until it ends the watch but never longer.

Used by the scaler (`scaler.kube.watch`: CarbonAwareScalers) and the extender
(`extender.inventory`: Nodes); the store decides what an object means.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import msgspec
import urllib3.exceptions
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

__all__ = ["GONE", "Reflector", "ReflectorStore", "ResourceExpired"]

GONE = 410
# What a failed list/watch raises besides ApiException: transport errors, and what parsing a
# cut-off or garbled answer raises (the client chokes with KeyError/TypeError).
_FAILURES = (ApiException, urllib3.exceptions.HTTPError, OSError, TypeError, KeyError, ValueError)


class ResourceExpired(ApiException):
    """The listed or watched resourceVersion is too old (HTTP 410 Gone): relist."""

    def __init__(self, reason: str) -> None:
        super().__init__(status=GONE, reason=reason)


class ReflectorStore(Protocol):
    """Where a reflector puts what it lists and watches."""

    def replace_all(self, objects: Sequence[Mapping[str, Any]]) -> None:
        """The state of a complete LIST (replaces everything held)."""

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """One ADDED/MODIFIED/DELETED watch event's object."""


def _ignore(_kind: str) -> None:
    return None


class Reflector:
    """List, then watch, into `store`, until stopped; relist after 410 Gone and failures.

    `list_func(**kwargs)` is the client's list call for the kind (it must accept `watch`,
    `resource_version`, `timeout_seconds`, `allow_watch_bookmarks`, `_preload_content` and
    `_request_timeout`, as generated list calls do). `on_event(type)` sees every watch event
    type, `on_error(kind)` every failure (`"gone"` for 410, else `"api"`), for metrics."""

    def __init__(
        self,
        list_func: Callable[..., Any],
        store: ReflectorStore,
        *,
        name: str,
        log: logging.Logger,
        request_timeout_seconds: float,
        tries_per_request: int = 1,
        label_selector: str | None = None,
        page_size: int | None = None,
        watch_timeout_seconds: int = 300,
        retry_seconds: float = 2.0,
        stop: threading.Event | None = None,
        on_event: Callable[[str], None] = _ignore,
        on_error: Callable[[str], None] = _ignore,
    ) -> None:
        if request_timeout_seconds <= 0:
            raise ValueError(f"request_timeout_seconds must be > 0, got {request_timeout_seconds}")
        self._list_func = list_func
        self._store = store
        self._name = name
        self._log = log
        self._try_timeout_s = request_timeout_seconds / tries_per_request
        self._request_timeout_s = request_timeout_seconds
        self._selector = label_selector
        self._page_size = page_size
        self._watch_timeout_s = watch_timeout_seconds
        self._retry_s = retry_seconds
        self._stop = stop or threading.Event()
        self._on_event = on_event
        self._on_error = on_error
        self._watch: Any = None
        self._response: Any = None  # the watch's streaming response, to cut it on stop()
        self.resource_version = ""
        self.relists = 0  # complete LISTs
        self.bookmarks = 0  # BOOKMARK events
        self.errors = 0  # failed list/watch requests (not counting 410 Gone)

    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {}
        if self._selector:
            kw["label_selector"] = self._selector
        return kw

    # ------------------------------------------------------------------ list
    def list_once(self) -> str:
        """LIST everything (page by page when paginated) into the store; returns the list's
        resourceVersion. Raises `ResourceExpired` on 410 Gone (an expired continue token)."""
        items: list[Mapping[str, Any]] = []
        token: str | None = None
        version = ""
        while True:
            kw = self._kwargs()
            if self._page_size is not None:
                kw["limit"] = self._page_size
            if token:
                kw["_continue"] = token
            try:
                resp: Any = self._list_func(
                    _preload_content=False, _request_timeout=self._try_timeout_s, **kw
                )
            except ApiException as exc:
                if exc.status == GONE:
                    raise ResourceExpired(str(exc.reason)) from None
                raise
            body = msgspec.json.decode(resp.data)
            items.extend(body.get("items") or ())
            meta = body.get("metadata") or {}
            version = str(meta["resourceVersion"])
            token = meta.get("continue") or None
            if not token or self._page_size is None:
                break
        self._store.replace_all(items)
        self.resource_version = version
        self.relists += 1
        return version

    # ------------------------------------------------------------------ watch
    def watch_once(self, resource_version: str | None = None) -> str:
        """One WATCH from `resource_version` (default: the last one seen) until the server
        ends it or `stop`; returns the last version seen. Raises `ResourceExpired` on 410."""
        w: Any = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        self._watch = w
        if resource_version is not None:
            self.resource_version = resource_version

        @functools.wraps(self._list_func)  # the client reads the return type from its doc
        def watch_call(*args: Any, **kwargs: Any) -> Any:
            self._response = self._list_func(*args, **kwargs)
            if self._stop.is_set():  # stopped while connecting: nothing would cut it
                self._cut()
            return self._response

        try:
            for event in w.stream(
                watch_call,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout_s,
                # the server ends the watch at timeoutSeconds; a silent one past that hangs
                _request_timeout=(
                    self._try_timeout_s,
                    self._watch_timeout_s + self._request_timeout_s,
                ),
                **self._kwargs(),
            ):
                self._apply(event)
                if self._stop.is_set():
                    break
        except ApiException as exc:
            if exc.status == GONE:
                raise ResourceExpired(str(exc.reason)) from None
            raise
        finally:
            self._watch = None
            self._response = None
        return self.resource_version

    def _apply(self, event: object) -> None:
        if not isinstance(event, Mapping) or not isinstance(event.get("raw_object"), Mapping):
            # the client yields None for a line that is not JSON (a cut-off stream)
            raise ValueError(f"undecodable {self._name} watch event: {event!r}")
        kind = str(event.get("type"))
        obj = event["raw_object"]
        self._on_event(kind)
        if kind == "BOOKMARK":
            self.bookmarks += 1
        else:
            self._store.apply(kind, obj)
        meta = obj.get("metadata")
        version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        if version:
            self.resource_version = str(version)

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event | None = None) -> None:
        """List, then watch until `stop` (default: the one given at construction); relist
        after 410 Gone, and after any failure once `retry_seconds` have passed."""
        if stop is not None:
            self._stop = stop
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self.list_once()
                    need_list = False
                self.watch_once()
            except ResourceExpired as exc:
                self._log.info("%s watch expired (%s): relisting", self._name, exc.reason)
                self._on_error("gone")
                need_list = True
            except _FAILURES as exc:
                if self._stop.is_set():  # stop() cut the watch: not a failure
                    break
                self.errors += 1
                self._on_error("api")
                self._log.warning(
                    "%s list/watch failed: %r; relisting in %.0fs", self._name, exc, self._retry_s
                )
                need_list = True
                self._stop.wait(self._retry_s)

    def stop(self) -> None:
        """Stop `run` (and the watch in progress, at once: a healthy watch may stay silent
        until its `timeoutSeconds`)."""
        self._stop.set()
        w = self._watch
        if w is not None:
            w.stop()
        self._cut()

    def _cut(self) -> None:
        """Shut the watch response's socket down, so a read blocked in it returns. The
        client's own `Watch.stop()` does it only while the connection still holds its
        socket, which it no longer does once the server answered `Connection: close` (a
        proxy in front of the API server, for one); the response's `shutdown()` always can."""
        response = self._response
        if response is not None:
            # ValueError/RuntimeError: no socket to shut (closed, or released to the pool)
            with contextlib.suppress(ValueError, RuntimeError, OSError, AttributeError):
                response.shutdown()
