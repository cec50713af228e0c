"""Kubernetes I/O for the scaler: CarbonAwareScaler resources, status, actuation, leases.

Everything here talks to the API server through the official `kubernetes` client, built by
`config.wiring` (no import-time `load_kube_config`):

* `ScalerResourceWatcher`: list + watch of `carbonawarescalers.gridshift.io` with
  resourceVersion tracking, bookmarks, and a relist on 410 Gone; it keeps a
  `ScalerResourceCache` of parsed, validated `ScalerResource`s (bad ones are kept aside with
  the field and problem, never crash the loop).
* `StatusWriter`: merge-patches `/status` with the resourceVersion it last saw; on 409 it
  re-reads and retries (bounded); 404 means the resource is gone.
* `Actuator`: opt-in per resource (`spec.actuation.mode`): HPA `minReplicas`/`maxReplicas`,
  KEDA ScaledObject `minReplicaCount`/`maxReplicaCount`, or the target's `scale`
  subresource. `dryRun: true` (shadow mode) records the patch it would send and sends nothing.
* `KubeReplicaReader`: once per tick (`scaler.loop.ReplicaReader`), what each workload's
  target runs now: `status.replicas` of its `scale` subresource (Deployment, StatefulSet or
  any custom kind with one); for a KEDA ScaledObject the scale of its own scaleTargetRef; for
  an HPA its `status.currentReplicas`. A CarbonAwareScaler's scaleTargetRef takes precedence
  over the workload's configured target. Failures become `SourceError`s per workload (a dead
  API server is tried once per tick, not once per workload).
* `LeaseLock` + `LeaderElector`: client-go style leader election on a
  `coordination.k8s.io/v1` Lease (optimistic concurrency; expiry measured on our own clock
  from when we last saw the record change, so clock skew between replicas does not matter);
  only the leader writes status or actuates, and it stops acting once it has failed to renew
  for `renew_deadline_seconds` (< lease duration), before anyone else may take over.
  Release on shutdown.
* `KubeController`: one `sync()` per tick: for each resource, the snapshot's decision ->
  status patch (only when changed) and actuation (only when the bounds change).
* `DelegatedTokenReviewer` / `DelegatedAccessReviewer`: TokenReview and SubjectAccessReview
  for the metrics API (`scaler.apiauth`), with small TTL caches; on the request path, so a
  hung API server costs a request the review timeout, never a parked server thread.
* `KubeCollector`: what degraded on the Kubernetes side, as `gridshift_kube_*` metrics.

Every API call carries a client-side timeout (`request_timeout_seconds`), so an API server
that hangs costs one call its timeout, never a stalled thread: the elector keeps its rounds
(and so stops acting at its renew deadline), a sync round ends, shutdown releases the Lease.
Connection errors, timeouts and truncated answers (urllib3/OS errors) are handled like API
errors: logged, counted, retried on the next round.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any

import cachetools
import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from forecasts.sources.errors import (
    SourceDataError,
    SourceError,
    SourceRequestError,
    SourceUnavailable,
)
from forecasts.time import Clock
from scaler.apiauth import AuthenticationConfig, Authenticator, RequestAttributes, UserInfo
from scaler.snapshot import Mode, Snapshot, WorkloadStatus
from scaler.workload import Workload

__all__ = [
    "CRD_GROUP",
    "CRD_PLURAL",
    "CRD_VERSION",
    "ActuationResult",
    "ActuationSpec",
    "Actuator",
    "AuthenticationConfigRefresher",
    "DelegatedAccessReviewer",
    "DelegatedTokenReviewer",
    "KubeCollector",
    "KubeController",
    "KubeReplicaReader",
    "KubeRuntime",
    "LeaderElector",
    "LeaseLock",
    "ScalerResource",
    "ScalerResourceCache",
    "ScalerResourceWatcher",
    "StatusWriter",
    "TargetRef",
    "load_authentication_config_map",
    "parse_scaler_resource",
    "register_kube_metrics",
    "replica_bounds",
    "status_for",
]

log = logging.getLogger(__name__)

CRD_GROUP = "gridshift.io"
CRD_VERSION = "v1alpha1"
CRD_PLURAL = "carbonawarescalers"
MERGE_PATCH = "application/merge-patch+json"
ACTUATION_MODES = ("none", "hpa", "scaledObject", "scale")
DEFAULT_REQUEST_TIMEOUT_SECONDS = 5.0
# What an unreachable, hanging or garbling API server raises besides ApiException:
# transport errors, and (GARBLED) what parsing a cut-off or garbled answer raises.
TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)
GARBLED = (*TRANSPORT_ERRORS, TypeError, KeyError, ValueError)


def _as_dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(value).__name__}")
    return value


def _format_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _format_micro_time(at: datetime) -> str:
    """metav1.MicroTime as the API server writes it: `2006-01-02T15:04:05.000000Z`."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ------------------------------------------------------------------ resources
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
    )


class ScalerResourceCache:
    """The watched resources, thread-safe; `invalid` keeps why a resource was rejected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[tuple[str, str], ScalerResource] = {}
        self._invalid: dict[tuple[str, str], str] = {}

    def replace_all(self, objects: list[Mapping[str, Any]]) -> None:
        items, invalid = {}, {}
        for obj in objects:
            key, parsed, error = self._parse(obj)
            if parsed is not None:
                items[key] = parsed
            else:
                invalid[key] = error
        with self._lock:
            self._items, self._invalid = items, invalid

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        key, parsed, error = self._parse(obj)
        with self._lock:
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
            item = self._items.get(key)
            if item is not None:
                self._items[key] = replace(item, resource_version=resource_version)

    @staticmethod
    def _parse(
        obj: Mapping[str, Any],
    ) -> tuple[tuple[str, str], ScalerResource | None, str]:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace", "")), str(meta.get("name", "")))
        try:
            return key, parse_scaler_resource(obj), ""
        except ValueError as exc:
            log.warning("ignoring CarbonAwareScaler %s/%s: %s", *key, exc)
            return key, None, str(exc)

    def items(self) -> dict[tuple[str, str], ScalerResource]:
        with self._lock:
            return dict(self._items)

    def invalid(self) -> dict[tuple[str, str], str]:
        with self._lock:
            return dict(self._invalid)


class ScalerResourceWatcher:
    """List + watch CarbonAwareScalers into a cache; relist on 410 Gone and after errors."""

    def __init__(
        self,
        custom_api: k8s.CustomObjectsApi,
        cache: ScalerResourceCache,
        *,
        namespace: str | None = None,
        watch_timeout_seconds: int = 300,
        error_backoff_seconds: float = 2.0,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        stop: threading.Event | None = None,
    ) -> None:
        self._api = custom_api
        self._cache = cache
        self.cache = cache
        self._namespace = namespace
        self._timeout = watch_timeout_seconds
        self._request_timeout = request_timeout_seconds
        self.errors = 0  # failed list/watch requests (gridshift_kube_api_errors_total)
        self._backoff = error_backoff_seconds
        self._stop = stop or threading.Event()
        self._watch: k8s_watch.Watch | None = None
        self.resource_version = ""
        self.relists = 0
        self.bookmarks = 0

    def _list_call(self) -> Callable[..., Any]:
        namespace = self._namespace
        if namespace:
            return lambda **kw: self._api.list_namespaced_custom_object(
                CRD_GROUP, CRD_VERSION, namespace, CRD_PLURAL, **kw
            )
        return lambda **kw: self._api.list_cluster_custom_object(
            CRD_GROUP, CRD_VERSION, CRD_PLURAL, **kw
        )

    def list_once(self) -> str:
        result = _as_dict(self._list_call()(_request_timeout=self._request_timeout))
        self._cache.replace_all(result.get("items") or [])
        self.resource_version = str(result["metadata"]["resourceVersion"])
        self.relists += 1
        return self.resource_version

    def watch_once(self) -> None:
        """One watch request from `resource_version`; raises ApiException(410) when expired."""
        self._watch = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        # A plain function so Watch finds the `watch` argument name and returns dicts.
        list_call = self._list_call()

        def list_custom_object(**kwargs: Any) -> Any:
            return list_call(**kwargs)

        try:
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                list_custom_object,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._timeout,
                # the server ends the watch at timeout_seconds; a silent one past that hangs
                _request_timeout=(self._request_timeout, self._timeout + self._request_timeout),
            ):
                if not isinstance(event, dict) or not isinstance(event.get("raw_object"), dict):
                    # the client yields None for a line that is not JSON (a cut-off stream)
                    raise urllib3.exceptions.ProtocolError(f"undecodable watch event: {event!r}")
                obj = event["raw_object"]
                rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                if event["type"] == "BOOKMARK":
                    self.bookmarks += 1
                else:
                    self._cache.apply(event["type"], obj)
                if rv:
                    self.resource_version = rv
                if self._stop.is_set():
                    break
        finally:
            self._watch = None

    def run(self) -> None:
        """Loop until `stop` is set: list, then watch; relist on 410 and after errors."""
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self.list_once()
                    need_list = False
                self.watch_once()
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch expired (410 Gone), relisting")
                else:
                    self.errors += 1
                    log.warning("CarbonAwareScaler watch failed: %s %s", exc.status, exc.reason)
                    self._stop.wait(self._backoff)
                need_list = True
            except GARBLED as exc:
                # TypeError/KeyError/ValueError: an answer cut off or garbled on the way
                self.errors += 1
                log.warning("CarbonAwareScaler watch connection failed: %s", exc)
                need_list = True
                self._stop.wait(self._backoff)

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------ status
def status_for(
    workload: WorkloadStatus,
    *,
    resource: ScalerResource,
    now: datetime,
    actuation: ActuationResult | None = None,
) -> dict[str, Any]:
    """The CarbonAwareScaler `.status` for a decision (JSON-ready, deterministic)."""
    stale = bool(workload.stale_inputs)
    conditions = [
        {
            "type": "Ready",
            "status": "True",
            "reason": "DecisionPublished",
            "message": f"desired {workload.desired_replicas} replicas in {workload.mode} mode",
            "lastTransitionTime": _format_time(workload.decided_at),
            "observedGeneration": resource.generation,
        },
        {
            "type": "InputsStale",
            "status": "True" if stale else "False",
            "reason": "StaleInputs" if stale else "InputsFresh",
            "message": ", ".join(workload.stale_inputs) or "all inputs fresh",
            "lastTransitionTime": _format_time(workload.decided_at),
            "observedGeneration": resource.generation,
        },
    ]
    status: dict[str, Any] = {
        "observedGeneration": resource.generation,
        "desiredReplicas": workload.desired_replicas,
        "mode": str(workload.mode),
        "reasons": list(workload.reasons),
        "lastDecision": {
            "desiredReplicas": workload.desired_replicas,
            "mode": str(workload.mode),
            "decidedAt": _format_time(workload.decided_at),
        },
        "savedGrams": round(workload.saved_g, 3),
        "emittedGrams": round(workload.emitted_g, 3),
        "conditions": conditions,
    }
    if actuation is not None:
        status["lastActuation"] = {
            "mode": actuation.mode,
            "target": f"{actuation.kind}/{actuation.name}",
            "patch": actuation.patch_text,
            "dryRun": actuation.dry_run,
            "applied": actuation.applied,
            "at": _format_time(actuation.at),
            **({"error": actuation.error} if actuation.error else {}),
        }
    del now  # status times come from the decision, so identical decisions patch nothing
    return status


class StatusWriter:
    """Merge-patch `/status`, guarded by resourceVersion; 409 -> re-read and retry."""

    def __init__(
        self,
        custom_api: k8s.CustomObjectsApi,
        *,
        max_attempts: int = 4,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._api = custom_api
        self._max_attempts = max_attempts
        self._request_timeout = request_timeout_seconds
        self.conflicts = 0

    def write(self, resource: ScalerResource, status: Mapping[str, Any]) -> str | None:
        """Returns the new resourceVersion, or None when the resource no longer exists."""
        resource_version = resource.resource_version
        for _attempt in range(self._max_attempts):
            body: dict[str, Any] = {"status": dict(status)}
            if resource_version:
                body["metadata"] = {"resourceVersion": resource_version}
            try:
                result = _as_dict(
                    self._api.patch_namespaced_custom_object_status(
                        CRD_GROUP,
                        CRD_VERSION,
                        resource.namespace,
                        CRD_PLURAL,
                        resource.name,
                        body,
                        _content_type=MERGE_PATCH,
                        _request_timeout=self._request_timeout,
                    )
                )
                return str(result["metadata"]["resourceVersion"])
            except ApiException as exc:
                if exc.status == 404:
                    return None
                if exc.status != 409:
                    raise
                self.conflicts += 1
                try:
                    latest = _as_dict(
                        self._api.get_namespaced_custom_object(
                            CRD_GROUP,
                            CRD_VERSION,
                            resource.namespace,
                            CRD_PLURAL,
                            resource.name,
                            _request_timeout=self._request_timeout,
                        )
                    )
                except ApiException as read_exc:
                    if read_exc.status == 404:
                        return None
                    raise
                resource_version = str(latest["metadata"]["resourceVersion"])
        raise RuntimeError(
            f"status of {resource.namespace}/{resource.name}: still conflicting after "
            f"{self._max_attempts} attempts"
        )


# ------------------------------------------------------------------ actuation
def replica_bounds(
    desired: int, *, mode: Mode, min_replicas: int, max_replicas: int, floor_at_least: int = 0
) -> tuple[int, int]:
    """(floor, ceiling) handed to an HPA/ScaledObject.

    Eco mode caps the ceiling at the decision (the autoscaler may go lower, never higher);
    performance mode raises the floor to it (the autoscaler may go higher, never lower).
    """
    desired = max(min_replicas, min(max_replicas, desired))
    floor = max(min_replicas, floor_at_least)
    if mode is Mode.ECO:
        return floor, max(floor, desired, 1)
    return max(floor, desired), max(max_replicas, desired, floor, 1)


@dataclass(frozen=True, slots=True)
class ActuationResult:
    mode: str
    kind: str
    namespace: str
    name: str
    patch: Mapping[str, Any]
    dry_run: bool
    applied: bool
    at: datetime
    error: str = ""

    @property
    def patch_text(self) -> str:
        return json.dumps(self.patch, sort_keys=True, separators=(",", ":"))


class Actuator:
    """Applies a decision to the cluster object the resource opted in for."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        clock: Clock,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._custom = k8s.CustomObjectsApi(api_client)
        self._hpa = k8s.AutoscalingV2Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._clock = clock
        self._request_timeout = request_timeout_seconds
        self.history: list[ActuationResult] = []

    def plan(self, resource: ScalerResource, workload: WorkloadStatus) -> dict[str, Any] | None:
        mode = resource.actuation.mode
        if mode == "hpa":
            floor, ceiling = replica_bounds(
                workload.desired_replicas,
                mode=workload.mode,
                min_replicas=resource.min_replicas,
                max_replicas=resource.max_replicas,
                floor_at_least=1,  # HPA minReplicas >= 1 (without HPAScaleToZero)
            )
            return {"spec": {"minReplicas": floor, "maxReplicas": ceiling}}
        if mode == "scaledObject":
            floor, ceiling = replica_bounds(
                workload.desired_replicas,
                mode=workload.mode,
                min_replicas=resource.min_replicas,
                max_replicas=resource.max_replicas,
            )
            return {"spec": {"minReplicaCount": floor, "maxReplicaCount": ceiling}}
        if mode == "scale":
            replicas = max(
                resource.min_replicas, min(resource.max_replicas, workload.desired_replicas)
            )
            return {"spec": {"replicas": replicas}}
        return None

    def actuate(self, resource: ScalerResource, workload: WorkloadStatus) -> ActuationResult | None:
        patch = self.plan(resource, workload)
        if patch is None:
            return None
        spec = resource.actuation
        kind = {
            "hpa": "HorizontalPodAutoscaler",
            "scaledObject": "ScaledObject",
            "scale": resource.target.kind,
        }[spec.mode]
        name = spec.name if spec.mode != "scale" else resource.target.name
        result = ActuationResult(
            mode=spec.mode,
            kind=kind,
            namespace=resource.namespace,
            name=name,
            patch=patch,
            dry_run=spec.dry_run,
            applied=False,
            at=self._clock.now(),
        )
        if not spec.dry_run:
            try:
                self._send(resource, spec.mode, name, patch)
                result = replace(result, applied=True)
            except ApiException as exc:
                result = replace(result, error=f"{exc.status} {exc.reason}")
                log.warning(
                    "actuation of %s %s/%s failed: %s", kind, resource.namespace, name, result.error
                )
            except TRANSPORT_ERRORS as exc:
                result = replace(result, error=f"API server unreachable: {type(exc).__name__}")
                log.warning(
                    "actuation of %s %s/%s failed: %s", kind, resource.namespace, name, result.error
                )
        else:
            log.info(
                "dry-run: would patch %s %s/%s with %s",
                kind,
                resource.namespace,
                name,
                result.patch_text,
            )
        self.history.append(result)
        return result

    def _send(
        self, resource: ScalerResource, mode: str, name: str, patch_view: Mapping[str, Any]
    ) -> None:
        ns = resource.namespace
        patch = dict(patch_view)
        kw: dict[str, Any] = {
            "_content_type": MERGE_PATCH,
            "_request_timeout": self._request_timeout,
        }
        if mode == "hpa":
            self._hpa.patch_namespaced_horizontal_pod_autoscaler(name, ns, patch, **kw)
        elif mode == "scaledObject":
            self._custom.patch_namespaced_custom_object(
                "keda.sh", "v1alpha1", ns, "scaledobjects", name, patch, **kw
            )
        else:
            target = resource.target
            if target.api_version == "apps/v1" and target.kind == "Deployment":
                self._apps.patch_namespaced_deployment_scale(name, ns, patch, **kw)
            elif target.api_version == "apps/v1" and target.kind == "StatefulSet":
                self._apps.patch_namespaced_stateful_set_scale(name, ns, patch, **kw)
            else:
                group, _, version = target.api_version.rpartition("/")
                plural = _plural(target.kind)
                self._custom.patch_namespaced_custom_object_scale(
                    group, version, ns, plural, name, patch, **kw
                )


def _plural(kind: str) -> str:
    """The resource name of a kind, as the API server derives it for simple kinds."""
    return kind.lower() + "s"


# ------------------------------------------------------------------ actual replicas
#: apiVersion of each `scaler.workload.TargetKind` (a configured target names only its kind).
WORKLOAD_API_VERSIONS = MappingProxyType(
    {"Deployment": "apps/v1", "StatefulSet": "apps/v1", "ScaledObject": "keda.sh/v1alpha1"}
)
KUBE_SOURCE = "kube"


def _replica_count(value: object, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise SourceDataError(
            f"{where}: expected a replica count >= 0, got {value!r}", source=KUBE_SOURCE
        )
    return value


def _translate(exc: ApiException, where: str, resource: str) -> SourceError:
    status = exc.status or None
    if status == 404:
        return SourceRequestError(f"{where} not found", source=KUBE_SOURCE, status=404)
    if status in (401, 403):
        return SourceRequestError(
            f"{where}: access denied (the scaler's RBAC needs get on {resource})",
            source=KUBE_SOURCE,
            status=status,
        )
    if status is None or status == 429 or status >= 500:
        return SourceUnavailable(f"{where}: {exc.reason}", source=KUBE_SOURCE, status=status)
    return SourceRequestError(f"{where}: {exc.reason}", source=KUBE_SOURCE, status=status)


class KubeReplicaReader:
    """The cluster side of `scaler.loop.ReplicaReader` (see the module docstring).

    `resources` returns the watched CarbonAwareScalers by (namespace, name); a workload with
    one is read through the resource's scaleTargetRef."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        resources: Callable[[], Mapping[tuple[str, str], ScalerResource]] = dict,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        if request_timeout_seconds <= 0:
            raise ValueError(f"request_timeout_seconds must be > 0, got {request_timeout_seconds}")
        self._apps = k8s.AppsV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._resources = resources
        self._timeout = (min(2.0, request_timeout_seconds), request_timeout_seconds)

    @property
    def name(self) -> str:
        return KUBE_SOURCE

    def target_of(
        self,
        workload: Workload,
        resources: Mapping[tuple[str, str], ScalerResource] | None = None,
    ) -> TargetRef:
        found = (resources if resources is not None else self._resources()).get(
            (workload.namespace, workload.name)
        )
        if found is not None:
            return found.target
        kind = str(workload.target.kind)
        return TargetRef(
            api_version=WORKLOAD_API_VERSIONS[kind], kind=kind, name=workload.target.name
        )

    def in_effect(self, workloads: Sequence[Workload]) -> frozenset[str]:
        """Workloads with a CarbonAwareScaler that actuates for real (mode set, not dry-run):
        the cluster runs what gridshift decides, so their actual replicas are accounted."""
        resources = self._resources()
        out: set[str] = set()
        for w in workloads:
            found = resources.get((w.namespace, w.name))
            if found is not None and found.actuation.mode != "none" and not found.actuation.dry_run:
                out.add(w.name)
        return frozenset(out)

    def read(self, workloads: Sequence[Workload]) -> dict[str, int | SourceError]:
        resources = self._resources()
        out: dict[str, int | SourceError] = {}
        unreachable: SourceError | None = None
        for w in workloads:
            if unreachable is not None:  # the API server is down: do not wait on it again
                out[w.name] = unreachable
                continue
            try:
                out[w.name] = self.replicas_of(w.namespace, self.target_of(w, resources))
            except SourceError as exc:
                out[w.name] = exc
                if isinstance(exc, SourceUnavailable) and exc.status is None:
                    unreachable = exc
        return out

    def _get(self, group: str, version: str, namespace: str, plural: str, name: str) -> Any:
        return _as_dict(
            self._custom.get_namespaced_custom_object(
                group, version, namespace, plural, name, _request_timeout=self._timeout
            )
        )

    def replicas_of(self, namespace: str, target: TargetRef) -> int:
        """What `target` runs now; raises `SourceError`."""
        where = f"{target.kind} {namespace}/{target.name}"
        group, _, version = target.api_version.rpartition("/")
        resource = f"{_plural(target.kind)}/scale"
        try:
            if target.kind == "HorizontalPodAutoscaler" and group == "autoscaling":
                resource = "horizontalpodautoscalers"
                hpa = self._get(group, version, namespace, resource, target.name)
                current = (hpa.get("status") or {}).get("currentReplicas")
                if current is None:
                    raise SourceDataError(
                        f"{where} reports no status.currentReplicas yet", source=KUBE_SOURCE
                    )
                return _replica_count(current, f"{where} status.currentReplicas")
            if target.kind == "ScaledObject" and group == "keda.sh":
                resource = "scaledobjects"
                scaled = self._get(group, version, namespace, resource, target.name)
                ref = (scaled.get("spec") or {}).get("scaleTargetRef") or {}
                name = ref.get("name")
                kind = ref.get("kind") or "Deployment"
                if not isinstance(name, str) or not name or kind == "ScaledObject":
                    raise SourceDataError(
                        f"{where}: spec.scaleTargetRef names no scalable object: {ref!r}",
                        source=KUBE_SOURCE,
                    )
                inner = TargetRef(
                    api_version=str(ref.get("apiVersion") or "apps/v1"), kind=kind, name=name
                )
                return self.replicas_of(namespace, inner)
            if group == "apps" and target.kind in ("Deployment", "StatefulSet"):
                read = (
                    self._apps.read_namespaced_deployment_scale
                    if target.kind == "Deployment"
                    else self._apps.read_namespaced_stateful_set_scale
                )
                scale = read(target.name, namespace, _request_timeout=self._timeout)
                return _replica_count(
                    scale.status.replicas if scale.status is not None else None,
                    f"{where} scale status.replicas",
                )
            if not group:
                raise SourceRequestError(
                    f"{where}: apiVersion {target.api_version!r} has no scale subresource",
                    source=KUBE_SOURCE,
                )
            custom = _as_dict(
                self._custom.get_namespaced_custom_object_scale(
                    group,
                    version,
                    namespace,
                    _plural(target.kind),
                    target.name,
                    _request_timeout=self._timeout,
                )
            )
            return _replica_count(
                (custom.get("status") or {}).get("replicas", 0), f"{where} scale status.replicas"
            )
        except ApiException as exc:
            raise _translate(exc, where, resource) from exc
        except TRANSPORT_ERRORS as exc:
            raise SourceUnavailable(
                f"{where}: API server unreachable: {exc}", source=KUBE_SOURCE
            ) from exc
        except (TypeError, ValueError) as exc:
            raise SourceDataError(f"{where}: unusable answer: {exc}", source=KUBE_SOURCE) from exc


# ------------------------------------------------------------------ leader election
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
        self.errors = 0  # failed lease requests (gridshift_kube_api_errors_total)

    def _body(self, record: _LeaseRecord | None, holder: str, now: datetime) -> dict[str, Any]:
        keep_acquire = record is not None and record.holder == holder and holder
        transitions = 0 if record is None else record.transitions + (0 if keep_acquire else 1)
        spec: dict[str, Any] = {
            "holderIdentity": holder,
            "leaseDurationSeconds": self._duration if holder else 1,
            "acquireTime": record.acquire_time
            if keep_acquire and record
            else _format_micro_time(now),
            "renewTime": _format_micro_time(now),
            "leaseTransitions": transitions,
        }
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
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
        obj = _as_dict(lease)
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

    def is_leader(self) -> bool:
        """Held by us and renewed within the renew deadline (checked on our clock)."""
        if self._renewed_at is None or self._observed is None:
            return False
        if self._observed.holder != self.identity:
            return False
        return self._clock.now() - self._renewed_at < self._renew_deadline

    def try_acquire_or_renew(self) -> bool:
        now = self._clock.now()
        try:
            lease = self._read()
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

    def step(self) -> bool:
        started = time.monotonic()
        try:
            self.lock.try_acquire_or_renew()
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
        self.lock.release()

    def stop(self) -> None:
        self._stop.set()


# ------------------------------------------------------------------ controller
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


# ------------------------------------------------------------------ delegated auth
class DelegatedTokenReviewer:
    """`TokenReview` (authentication.k8s.io/v1) with a TTL cache of answers."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        cache_ttl_seconds: float = 10.0,
        audiences: tuple[str, ...] = (),
        timer: Callable[[], float] = time.monotonic,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._api = k8s.CustomObjectsApi(api_client)
        self._request_timeout = request_timeout_seconds
        self._audiences = audiences
        self._cache: cachetools.TTLCache[str, UserInfo | None] = cachetools.TTLCache(
            maxsize=4096, ttl=cache_ttl_seconds, timer=timer
        )
        self._lock = threading.Lock()

    def review(self, token: str) -> UserInfo | None:
        with self._lock:
            if token in self._cache:
                return self._cache[token]
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        result = _as_dict(
            self._api.create_cluster_custom_object(
                "authentication.k8s.io",
                "v1",
                "tokenreviews",
                body,
                _request_timeout=self._request_timeout,
            )
        )
        status = result.get("status") or {}
        user = None
        if status.get("authenticated"):
            info = status.get("user") or {}
            user = UserInfo(
                name=info.get("username", ""),
                groups=tuple(info.get("groups") or ()),
                extra={k: tuple(v) for k, v in (info.get("extra") or {}).items()},
                uid=info.get("uid", ""),
                via="token",
            )
        with self._lock:
            self._cache[token] = user
        return user


class DelegatedAccessReviewer:
    """`SubjectAccessReview` (authorization.k8s.io/v1) with a TTL cache of decisions."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        cache_ttl_seconds: float = 10.0,
        timer: Callable[[], float] = time.monotonic,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._api = k8s.CustomObjectsApi(api_client)
        self._request_timeout = request_timeout_seconds
        self._cache: cachetools.TTLCache[tuple[Any, ...], bool] = cachetools.TTLCache(
            maxsize=4096, ttl=cache_ttl_seconds, timer=timer
        )
        self._lock = threading.Lock()

    def allowed(self, user: UserInfo, attributes: RequestAttributes) -> bool:
        key = (user.name, user.groups, user.uid, tuple(sorted(user.extra.items())), attributes)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        if attributes.resource_request:
            spec["resourceAttributes"] = {
                "namespace": attributes.namespace,
                "verb": attributes.verb,
                "group": attributes.api_group,
                "version": attributes.api_version,
                "resource": attributes.resource,
                **({"name": attributes.name} if attributes.name else {}),
            }
        else:
            spec["nonResourceAttributes"] = {"path": attributes.path, "verb": attributes.verb}
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        result = _as_dict(
            self._api.create_cluster_custom_object(
                "authorization.k8s.io",
                "v1",
                "subjectaccessreviews",
                body,
                _request_timeout=self._request_timeout,
            )
        )
        allowed = bool((result.get("status") or {}).get("allowed"))
        with self._lock:
            self._cache[key] = allowed
        return allowed


class AuthenticationConfigRefresher:
    """Re-reads `extension-apiserver-authentication` so CA rotations need no restart.

    A changed, valid ConfigMap swaps the authenticator's trust and calls `on_change`
    (the TLS context rebuilds its client-CA list); an invalid one keeps the old trust.
    """

    def __init__(
        self,
        core_api: k8s.CoreV1Api,
        authenticator: Authenticator,
        *,
        on_change: Callable[[], None] = lambda: None,
        interval_seconds: float = 60.0,
        stop: threading.Event | None = None,
    ) -> None:
        self._core = core_api
        self._authenticator = authenticator
        self._on_change = on_change
        self._interval = interval_seconds
        self._stop = stop or threading.Event()

    def refresh_once(self) -> bool:
        """True when new trust was installed; ValueError/ApiException propagate."""
        config = AuthenticationConfig.from_config_map(load_authentication_config_map(self._core))
        if config == self._authenticator.config:
            return False
        self._authenticator.update(config)
        self._on_change()
        log.info("front-proxy/client CA trust reloaded from extension-apiserver-authentication")
        return True

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.refresh_once()
            except (ApiException, ValueError, *TRANSPORT_ERRORS) as exc:
                log.warning("keeping the current authentication config: %s", exc)

    def stop(self) -> None:
        self._stop.set()


def load_authentication_config_map(core_api: k8s.CoreV1Api) -> dict[str, str]:
    """`kube-system/extension-apiserver-authentication` data (for `AuthenticationConfig`)."""
    config_map = core_api.read_namespaced_config_map(
        "extension-apiserver-authentication",
        "kube-system",
        _request_timeout=DEFAULT_REQUEST_TIMEOUT_SECONDS,
    )
    return dict(config_map.data or {})


class KubeRuntime:
    """The Kubernetes side of `gridshift run`: watcher, elector and a sync loop, as threads,
    and `replicas`, the reader the scaler loop uses for actual replicas each tick.

    `start()` launches them; the sync loop calls `KubeController.sync` whenever a new snapshot
    is published (checked every `poll_interval_seconds`) and right after gaining leadership.
    `close()` stops everything and releases the Lease (graceful shutdown).
    """

    def __init__(
        self,
        *,
        watcher: ScalerResourceWatcher,
        elector: LeaderElector,
        controller: KubeController,
        current_snapshot: Callable[[], Snapshot | None],
        stop: threading.Event,
        replicas: KubeReplicaReader,
        poll_interval_seconds: float = 1.0,
        max_retry_backoff_seconds: float = 30.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.watcher = watcher
        self.replicas = replicas
        self.elector = elector
        self.controller = controller
        self._current = current_snapshot
        self._stop = stop
        self._poll = poll_interval_seconds
        self._max_backoff = max_retry_backoff_seconds
        self._timer = timer
        self._retry_at = 0.0
        self._retry_delay = 0.0
        self._threads: list[threading.Thread] = []
        self._synced: Snapshot | None = None
        self._was_leading = False
        self.sync_errors = 0
        self.last_sync_seconds = 0.0
        self.slowest_sync_seconds = 0.0

    def resources(self) -> dict[tuple[str, str], ScalerResource]:
        """The watched, valid CarbonAwareScalers by (namespace, name), for the tick loop."""
        return self.watcher.cache.items()

    def _sync_loop(self) -> None:
        while not self._stop.is_set():
            self.sync_once()
            self._stop.wait(self._poll)

    def sync_once(self) -> bool:
        """One pass of the sync loop: sync when leading and there is a new snapshot, a new
        leadership term, or a failed write whose retry is due (backing off exponentially
        from the poll interval to `max_retry_backoff_seconds`, so an API server that
        rate-limits is not hammered). True when it synced."""
        snapshot = self._current()
        leading = self.elector.leading
        if leading and not self._was_leading:
            self.controller.forget()
        retry_due = bool(self.controller.pending) and self._timer() >= self._retry_at
        synced = False
        if (
            snapshot is not None
            and leading
            and (snapshot is not self._synced or not self._was_leading or retry_due)
        ):
            started = time.monotonic()
            try:
                self.controller.sync(snapshot)
                self._synced = snapshot
                synced = True
            except Exception:
                self.sync_errors += 1
                log.exception("Kubernetes sync failed")
            self.last_sync_seconds = time.monotonic() - started
            self.slowest_sync_seconds = max(self.slowest_sync_seconds, self.last_sync_seconds)
            if self.controller.pending:
                self._retry_delay = min(self._max_backoff, max(self._poll, 2 * self._retry_delay))
                self._retry_at = self._timer() + self._retry_delay
            else:
                self._retry_delay = 0.0
        self._was_leading = leading
        return synced

    def start(self) -> None:
        for name, target in (
            ("cr-watch", self.watcher.run),
            ("leader-election", self.elector.run),
            ("kube-sync", self._sync_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def close(self, timeout_seconds: float = 10.0) -> None:
        self._stop.set()
        self.watcher.stop()
        self.elector.stop()
        for thread in self._threads:
            thread.join(timeout=timeout_seconds)
        self._threads.clear()


class KubeCollector(Collector):
    """The Kubernetes side's health as metrics (`register_kube_metrics`)."""

    def __init__(self, runtime: KubeRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        rt = self._runtime
        identity = rt.elector.lock.identity
        leader = GaugeMetricFamily(
            "gridshift_kube_leader",
            "1 while this replica holds the Lease and acts (status, actuation); 0 otherwise.",
            labels=["identity"],
        )
        leader.add_metric([identity], 1.0 if rt.elector.leading else 0.0)
        yield leader
        errors = CounterMetricFamily(
            "gridshift_kube_api_errors",
            "Failed Kubernetes API calls (errors, timeouts, resets, garbled answers) by "
            "operation: lease, watch, status, actuation, sync.",
            labels=["operation"],
        )
        for operation, count in (
            ("lease", rt.elector.lock.errors),
            ("watch", rt.watcher.errors),
            ("status", rt.controller.status_errors),
            ("actuation", rt.controller.actuation_errors),
            ("sync", rt.sync_errors),
        ):
            errors.add_metric([operation], float(count))
        yield errors
        yield GaugeMetricFamily(
            "gridshift_kube_sync_pending_resources",
            "CarbonAwareScalers whose last actuation or status write failed (retried).",
            value=float(len(rt.controller.pending)),
        )
        yield GaugeMetricFamily(
            "gridshift_kube_sync_duration_seconds",
            "Wall time of the last status/actuation sync round.",
            value=rt.last_sync_seconds,
        )


def register_kube_metrics(registry: CollectorRegistry, runtime: KubeRuntime) -> KubeCollector:
    collector = KubeCollector(runtime)
    registry.register(collector)
    return collector
