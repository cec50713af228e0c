"""Node inventory: list + watch v1.Nodes with the kubernetes client (the `nodeCacheCapable`
mode's cache).

Protocol, as client-go's reflector does it: a paginated LIST gives the state and its
`resourceVersion`; a WATCH from there (with bookmarks) applies ADDED/MODIFIED/DELETED and
advances the version (BOOKMARK only advances it); the server ends each watch after
`timeoutSeconds` and we resume from the last version. `410 Gone` (an expired version, as an
ERROR event or an HTTP status) means the cache may have missed events: relist.

Timeouts: `request_timeout_seconds` is the budget of one LIST page, including the one
re-send urllib3 makes of an idempotent call after a read timeout (`config.wiring.
kube_api_client`), so each try gets half of it and a hung API server is counted as an error
within the budget. A watch connects within the same half; its read timeout is the
server-side `timeoutSeconds` plus the budget, since a healthy server may stay silent until it
ends the watch but never longer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Counter
from urllib3.exceptions import HTTPError

from extender.nodes import RegionRules, node_facts
from extender.scoring import NodeFacts

__all__ = ["KubeNodeInventory"]

log = logging.getLogger(__name__)

_GONE = 410


class _Expired(Exception):
    """The watched or listed resourceVersion is too old (HTTP 410)."""


class KubeNodeInventory:
    """Facts of every node, kept current by list+watch. Thread-safe for readers."""

    def __init__(
        self,
        api: client.CoreV1Api,
        *,
        rules: RegionRules,
        registry: CollectorRegistry,
        label_selector: str | None = None,
        page_size: int = 500,
        watch_timeout_seconds: int = 300,
        request_timeout_seconds: float = 10.0,
        retry_seconds: float = 5.0,
    ) -> None:
        if request_timeout_seconds <= 0:
            raise ValueError(f"request_timeout_seconds must be > 0, got {request_timeout_seconds}")
        self._api = api
        self._rules = rules
        self._selector = label_selector
        self._page_size = page_size
        self._watch_timeout_s = watch_timeout_seconds
        self._request_timeout_s = request_timeout_seconds
        self._retry_s = retry_seconds
        self._lock = threading.Lock()
        self._facts: dict[str, NodeFacts] = {}
        self._view: Mapping[str, NodeFacts] = MappingProxyType({})
        self._synced = False
        self.resource_version: str | None = None
        self._watch: Any = None
        self._lists = Counter(
            "gridshift_extender_inventory_lists",
            "Full node LISTs (the first one, then one after each 410 Gone or error)",
            registry=registry,
        )
        self._events = Counter(
            "gridshift_extender_inventory_events",
            "Node watch events applied, by type",
            ["type"],
            registry=registry,
        )
        self._errors = Counter(
            "gridshift_extender_inventory_errors",
            "Node list/watch failures and unreadable node objects, by kind",
            ["kind"],
            registry=registry,
        )

    # ------------------------------------------------------------------ readers
    def facts(self) -> Mapping[str, NodeFacts]:
        """An immutable view of the current facts (a new view after every change)."""
        return self._view

    @property
    def synced(self) -> bool:
        return self._synced

    # ------------------------------------------------------------------ list
    def _kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"_request_timeout": self._request_timeout_s / 2}  # 2 tries
        if self._selector:
            kw["label_selector"] = self._selector
        return kw

    def relist(self) -> str:
        """LIST all nodes (paginated) and replace the cache; returns the list's version."""
        facts: dict[str, NodeFacts] = {}
        token: str | None = None
        version = ""
        while True:
            kw = self._kwargs()
            kw["limit"] = self._page_size
            if token:
                kw["_continue"] = token
            try:
                resp: Any = self._api.list_node(_preload_content=False, **kw)
            except ApiException as exc:
                if exc.status == _GONE:
                    raise _Expired(str(exc.reason)) from None
                raise
            body = orjson.loads(resp.data)
            for i, item in enumerate(body.get("items") or ()):
                self._add(facts, item, where=f"items[{i}]")
            meta = body.get("metadata") or {}
            version = str(meta.get("resourceVersion") or "")
            token = meta.get("continue") or None
            if not token:
                break
        with self._lock:
            self._facts = facts
            self._view = MappingProxyType(dict(facts))
            self._synced = True
            self.resource_version = version
        self._lists.inc()
        log.info("node inventory listed %d nodes at resourceVersion %s", len(facts), version)
        return version

    def _add(self, into: dict[str, NodeFacts], obj: Any, *, where: str) -> str | None:
        try:
            f = node_facts(obj, rules=self._rules, where=where)
        except ValueError as exc:
            self._errors.labels("bad_node").inc()
            log.warning("ignoring unreadable node object: %s", exc)
            return None
        into[f.name] = f
        return f.name

    # ------------------------------------------------------------------ watch
    def watch_once(self, resource_version: str) -> str:
        """One WATCH from `resource_version` until the server ends it; returns the last
        version seen. Raises `_Expired` on 410 Gone."""
        w: Any = watch.Watch()  # type: ignore[no-untyped-call]
        self._watch = w
        version = resource_version
        kw = self._kwargs()
        # The server may stay silent for a whole watch (bookmarks are best effort): the read
        # timeout must outlast timeoutSeconds, or an idle watch would end in a costly relist;
        # silence past timeoutSeconds plus the request budget means a hung API server.
        kw["_request_timeout"] = (
            self._request_timeout_s / 2,
            self._watch_timeout_s + self._request_timeout_s,
        )
        try:
            for event in w.stream(
                self._api.list_node,
                resource_version=version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout_s,
                **kw,
            ):
                if not isinstance(event, Mapping):  # the client yields None for a non-JSON line
                    raise ValueError(f"undecodable node watch event: {event!r}")
                version = self._apply(event) or version
        except ApiException as exc:
            if exc.status == _GONE:
                raise _Expired(str(exc.reason)) from None
            raise
        finally:
            self._watch = None
        return version

    def _apply(self, event: Mapping[str, Any]) -> str | None:
        kind = str(event.get("type"))
        raw = event.get("raw_object")
        meta = raw.get("metadata") if isinstance(raw, Mapping) else None
        version = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
        self._events.labels(kind).inc()
        if kind in ("ADDED", "MODIFIED"):
            with self._lock:
                if self._add(self._facts, raw, where=f"{kind} event") is not None:
                    self._view = MappingProxyType(dict(self._facts))
        elif kind == "DELETED":
            name = meta.get("name") if isinstance(meta, Mapping) else None
            with self._lock:
                if isinstance(name, str) and self._facts.pop(name, None) is not None:
                    self._view = MappingProxyType(dict(self._facts))
        with self._lock:
            if isinstance(version, str) and version:
                self.resource_version = version
        return version if isinstance(version, str) and version else None

    # ------------------------------------------------------------------ loop
    def run(self, stop: threading.Event) -> None:
        """List, then watch until `stop`; relist after 410 Gone or any failure."""
        version: str | None = None
        while not stop.is_set():
            try:
                if version is None:
                    version = self.relist()
                version = self.watch_once(version)
            except _Expired as exc:
                log.info("node watch expired (%s): relisting", exc)
                self._errors.labels("gone").inc()
                version = None
            except (ApiException, HTTPError, OSError, ValueError, KeyError, TypeError) as exc:
                # KeyError/TypeError: the client choking on a garbled watch event
                log.warning("node inventory: %r; retrying in %.0fs", exc, self._retry_s)
                self._errors.labels("api").inc()
                version = None
                stop.wait(self._retry_s)

    def stop(self) -> None:
        w = self._watch
        if w is not None:
            w.stop()
