"""CarbonAwareScaler resources: parsed, validated `ScalerResource`s and their thread-safe cache
(bad ones kept aside with the field and problem).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from scaler.kube.api import ACTUATION_MODES

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TargetRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class ActuationSpec:
    """`spec.actuation`: what to patch (mode), which object (name), shadow or real."""

    mode: str = "none"
    name: str = ""
    dry_run: bool = False


@dataclass(frozen=True, slots=True)
class ScalerResource:
    namespace: str
    name: str
    target: TargetRef
    min_replicas: int
    max_replicas: int
    region: str
    actuation: ActuationSpec
    generation: int
    resource_version: str
    uid: str = ""
    #: The whole spec as the API server returned it (`scaler.kube.workloads` translates the
    #: workload fields; the ones above are what status and actuation need).
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    #: `.status` as last watched (the decision its owner wrote; `{}` before the first one).
    status: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class InvalidResource:
    """A CarbonAwareScaler that did not parse: enough to write its status and an Event."""

    namespace: str
    name: str
    uid: str
    generation: int
    resource_version: str
    error: str


def _require(mapping: Mapping[str, Any], key: str, path: str, kind: type) -> Any:
    value = mapping.get(key)
    if value is None:
        raise ValueError(f"{path}.{key}: required")
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{path}.{key}: expected {kind.__name__}, got {value!r}")
    return value


def parse_scaler_resource(obj: Mapping[str, Any]) -> ScalerResource:
    """Validate a CarbonAwareScaler object; ValueError names the field and the problem."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise ValueError("spec: required")
    target = _require(spec, "scaleTargetRef", "spec", dict)
    min_replicas = spec.get("minReplicas", 0)
    max_replicas = _require(spec, "maxReplicas", "spec", int)
    if not isinstance(min_replicas, int) or isinstance(min_replicas, bool) or min_replicas < 0:
        raise ValueError(f"spec.minReplicas: expected an integer >= 0, got {min_replicas!r}")
    if max_replicas < max(min_replicas, 1):
        raise ValueError(
            f"spec.maxReplicas: {max_replicas} must be >= max(minReplicas, 1) = "
            f"{max(min_replicas, 1)}"
        )
    actuation = spec.get("actuation") or {}
    if not isinstance(actuation, Mapping):
        raise ValueError(f"spec.actuation: expected an object, got {actuation!r}")
    mode = actuation.get("mode", "none")
    if mode not in ACTUATION_MODES:
        raise ValueError(f"spec.actuation.mode: {mode!r} is not one of {list(ACTUATION_MODES)}")
    dry_run = actuation.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise ValueError(f"spec.actuation.dryRun: expected a boolean, got {dry_run!r}")
    target_ref = TargetRef(
        api_version=_require(target, "apiVersion", "spec.scaleTargetRef", str),
        kind=_require(target, "kind", "spec.scaleTargetRef", str),
        name=_require(target, "name", "spec.scaleTargetRef", str),
    )
    return ScalerResource(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        target=target_ref,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        region=str(spec.get("region", "")),
        actuation=ActuationSpec(
            mode=mode, name=str(actuation.get("name") or target_ref.name), dry_run=dry_run
        ),
        generation=int(meta.get("generation", 0)),
        resource_version=str(meta.get("resourceVersion", "")),
        uid=str(meta.get("uid", "")),
        spec=spec,
        status=status if isinstance(status := obj.get("status"), Mapping) else {},
    )


_NO_PROBLEM = InvalidResource("", "", "", 0, "", "")


class ScalerResourceCache:
    """The watched resources, thread-safe; `invalid` keeps why a resource was rejected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], ScalerResource] = {}
        self._invalid: dict[tuple[str, str], InvalidResource] = {}
        #: bumped on every change (readers that derive from the cache rebuild when it moves)
        self.version = 0

    def replace_all(self, objects: Sequence[Mapping[str, Any]]) -> None:
        items: dict[tuple[str, str], ScalerResource] = {}
        invalid: dict[tuple[str, str], InvalidResource] = {}
        for obj in objects:
            key, parsed, error = self._parse(obj)
            if parsed is not None:
                items[key] = parsed
            else:
                invalid[key] = error
        with self._lock:
            self._items, self._invalid = items, invalid
            self.version += 1

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        key, parsed, error = self._parse(obj)
        with self._lock:
            self.version += 1
            self._items.pop(key, None)
            self._invalid.pop(key, None)
            if event_type == "DELETED":
                return
            if parsed is not None:
                self._items[key] = parsed
            else:
                self._invalid[key] = error

    def update_resource_version(self, key: tuple[str, str], resource_version: str) -> None:
        with self._lock:
            self.version += 1
            item = self._items.get(key)
            if item is not None:
                self._items[key] = replace(item, resource_version=resource_version)
            bad = self._invalid.get(key)
            if bad is not None:
                self._invalid[key] = replace(bad, resource_version=resource_version)

    @staticmethod
    def _parse(
        obj: Mapping[str, Any],
    ) -> tuple[tuple[str, str], ScalerResource | None, InvalidResource]:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        try:
            return key, parse_scaler_resource(obj), _NO_PROBLEM
        except ValueError as exc:
            log.warning("ignoring CarbonAwareScaler %s/%s: %s", *key, exc)
            try:
                generation = int(meta.get("generation", 0))
            except (TypeError, ValueError):
                generation = 0
            return (
                key,
                None,
                InvalidResource(
                    *key,
                    uid=str(meta.get("uid", "")),
                    generation=generation,
                    resource_version=str(meta.get("resourceVersion", "")),
                    error=str(exc),
                ),
            )

    def items(self) -> dict[tuple[str, str], ScalerResource]:
        with self._lock:
            return dict(self._items)

    def invalid(self) -> dict[tuple[str, str], str]:
        """Why each rejected resource was rejected (the field and the problem)."""
        with self._lock:
            return {k: v.error for k, v in self._invalid.items()}

    def invalid_resources(self) -> dict[tuple[str, str], InvalidResource]:
        with self._lock:
            return dict(self._invalid)
