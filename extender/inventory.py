"""Node inventory: list + watch of v1.Nodes (the `nodeCacheCapable` mode's cache), through the
shared reflector (`forecasts.platform.reflector`: paginated LIST, WATCH with bookmarks, relist
on 410 Gone or failure).

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
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from kubernetes import client
from prometheus_client import CollectorRegistry, Counter

from extender.core.nodes import RegionRules, node_facts
from extender.core.scoring import NodeFacts
from forecasts.platform.reflector import Reflector

__all__ = ["KubeNodeInventory"]

log = logging.getLogger(__name__)


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
        self._rules = rules
        self._lock = threading.Lock()
        self._facts: dict[str, NodeFacts] = {}
        self._view: Mapping[str, NodeFacts] = MappingProxyType({})
        self._synced = False
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
        self._reflector = Reflector(
            api.list_node,
            self,
            name="node",
            log=log,
            request_timeout_seconds=request_timeout_seconds,
            tries_per_request=2,
            label_selector=label_selector,
            page_size=page_size,
            watch_timeout_seconds=watch_timeout_seconds,
            retry_seconds=retry_seconds,
            on_event=lambda kind: self._events.labels(kind).inc(),
            on_error=lambda kind: self._errors.labels(kind).inc(),
        )

    # ------------------------------------------------------------------ readers
    def facts(self) -> Mapping[str, NodeFacts]:
        """An immutable view of the current facts (a new view after every change)."""
        return self._view

    @property
    def synced(self) -> bool:
        return self._synced

    @property
    def resource_version(self) -> str | None:
        return self._reflector.resource_version or None

    # ------------------------------------------------------------------ store (reflector)
    def replace_all(self, objects: Sequence[Mapping[str, Any]]) -> None:
        facts: dict[str, NodeFacts] = {}
        for i, item in enumerate(objects):
            self._add(facts, item, where=f"items[{i}]")
        with self._lock:
            self._facts = facts
            self._view = MappingProxyType(dict(facts))
            self._synced = True
        self._lists.inc()
        log.info("node inventory listed %d nodes", len(facts))

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        if event_type in ("ADDED", "MODIFIED"):
            with self._lock:
                if self._add(self._facts, obj, where=f"{event_type} event") is not None:
                    self._view = MappingProxyType(dict(self._facts))
        elif event_type == "DELETED":
            meta = obj.get("metadata")
            name = meta.get("name") if isinstance(meta, Mapping) else None
            with self._lock:
                if isinstance(name, str) and self._facts.pop(name, None) is not None:
                    self._view = MappingProxyType(dict(self._facts))

    def _add(self, into: dict[str, NodeFacts], obj: Any, *, where: str) -> str | None:
        try:
            f = node_facts(obj, rules=self._rules, where=where)
        except ValueError as exc:
            self._errors.labels("bad_node").inc()
            log.warning("ignoring unreadable node object: %s", exc)
            return None
        into[f.name] = f
        return f.name

    # ------------------------------------------------------------------ list + watch
    def relist(self) -> str:
        """LIST all nodes (paginated) and replace the cache; returns the list's version.
        Raises `ResourceExpired` on 410 Gone."""
        return self._reflector.list_once()

    def watch_once(self, resource_version: str) -> str:
        """One WATCH from `resource_version` until the server ends it; returns the last
        version seen. Raises `ResourceExpired` on 410 Gone."""
        return self._reflector.watch_once(resource_version)

    def run(self, stop: threading.Event) -> None:
        """List, then watch until `stop`; relist after 410 Gone or any failure."""
        self._reflector.run(stop)

    def stop(self) -> None:
        self._reflector.stop()
