"""`KubeReplicaReader`: what each workload's target runs now, once per tick (scale subresource,
ScaledObject target, HPA currentReplicas); failures become `SourceError`s per workload.

With a `ScaleTargetCache` (list + watch of Deployments and StatefulSets, `ScaleTargetWatcher`),
the replicas of those two kinds, the common targets, come from the watch once it has listed:
no request per workload per tick (at 10,000 workloads, 10,000 GETs a tick were the API
server's load). Other kinds, and both before the first list, are read with one GET each.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from forecasts.platform.errors import (
    SourceDataError,
    SourceError,
    SourceRequestError,
    SourceUnavailable,
)
from forecasts.platform.reflector import Reflector
from scaler.core.workload import Workload
from scaler.kube.actuation import plural_of
from scaler.kube.api import DEFAULT_REQUEST_TIMEOUT_SECONDS, TRANSPORT_ERRORS, as_dict
from scaler.kube.resources import ScalerResource, TargetRef

log = logging.getLogger(__name__)


#: apiVersion of each `scaler.core.workload.TargetKind` (a configured target names only its kind).
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


class ScaleTargetCache:
    """`status.replicas` of every watched Deployment or StatefulSet, by (kind, namespace,
    name); `synced(kind)` once that kind's first LIST is in. Keeps the count only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._replicas: dict[tuple[str, str, str], int] = {}
        self._synced: set[str] = set()

    def store(self, kind: str) -> _KindStore:
        return _KindStore(self, kind)

    def synced(self, kind: str) -> bool:
        with self._lock:
            return kind in self._synced

    def replicas(self, kind: str, namespace: str, name: str) -> int | None:
        """The count, or None when no such object exists (ask only once `synced`)."""
        with self._lock:
            return self._replicas.get((kind, namespace, name))

    def _replace(self, kind: str, objects: Sequence[Mapping[str, Any]]) -> None:
        fresh = dict(_entry(kind, obj) for obj in objects)
        with self._lock:
            for key in [k for k in self._replicas if k[0] == kind]:
                del self._replicas[key]
            self._replicas.update(fresh)
            self._synced.add(kind)

    def _apply(self, kind: str, event_type: str, obj: Mapping[str, Any]) -> None:
        key, count = _entry(kind, obj)
        with self._lock:
            if event_type == "DELETED":
                self._replicas.pop(key, None)
            else:
                self._replicas[key] = count


def _entry(kind: str, obj: Mapping[str, Any]) -> tuple[tuple[str, str, str], int]:
    meta = obj.get("metadata") or {}
    replicas = (obj.get("status") or {}).get("replicas", 0)
    count = replicas if isinstance(replicas, int) and not isinstance(replicas, bool) else 0
    return (kind, str(meta.get("namespace", "")), str(meta.get("name", ""))), max(count, 0)


class _KindStore:
    """One kind's `ReflectorStore` view of a `ScaleTargetCache`."""

    def __init__(self, cache: ScaleTargetCache, kind: str) -> None:
        self._cache, self._kind = cache, kind

    def replace_all(self, objects: Sequence[Mapping[str, Any]]) -> None:
        self._cache._replace(self._kind, objects)

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        self._cache._apply(self._kind, event_type, obj)


def scale_target_watchers(
    api_client: k8s.ApiClient,
    cache: ScaleTargetCache,
    *,
    namespace: str | None,
    request_timeout_seconds: float,
    watch_timeout_seconds: int,
    stop: threading.Event,
) -> list[Reflector]:
    """List + watch of Deployments and StatefulSets (in `namespace`, or all) into `cache`."""
    apps = k8s.AppsV1Api(api_client)
    calls: dict[str, Callable[..., Any]] = {
        "Deployment": apps.list_deployment_for_all_namespaces,
        "StatefulSet": apps.list_stateful_set_for_all_namespaces,
    }
    if namespace:
        calls = {
            "Deployment": lambda **kw: apps.list_namespaced_deployment(namespace, **kw),
            "StatefulSet": lambda **kw: apps.list_namespaced_stateful_set(namespace, **kw),
        }
    return [
        Reflector(
            call,
            cache.store(kind),
            name=kind,
            log=log,
            request_timeout_seconds=request_timeout_seconds,
            watch_timeout_seconds=watch_timeout_seconds,
            page_size=500,
            stop=stop,
        )
        for kind, call in calls.items()
    ]


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
        targets: ScaleTargetCache | None = None,
    ) -> None:
        if request_timeout_seconds <= 0:
            raise ValueError(f"request_timeout_seconds must be > 0, got {request_timeout_seconds}")
        self._apps = k8s.AppsV1Api(api_client)
        self._custom = k8s.CustomObjectsApi(api_client)
        self._resources = resources
        self._targets = targets
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
        return as_dict(
            self._custom.get_namespaced_custom_object(
                group, version, namespace, plural, name, _request_timeout=self._timeout
            )
        )

    def replicas_of(self, namespace: str, target: TargetRef) -> int:
        """What `target` runs now; raises `SourceError`."""
        where = f"{target.kind} {namespace}/{target.name}"
        group, _, version = target.api_version.rpartition("/")
        resource = f"{plural_of(target.kind)}/scale"
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
                cached = self._targets
                if cached is not None and cached.synced(target.kind):  # from the watch
                    count = cached.replicas(target.kind, namespace, target.name)
                    if count is None:
                        raise SourceRequestError(
                            f"{where} not found", source=KUBE_SOURCE, status=404
                        )
                    return count
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
            custom = as_dict(
                self._custom.get_namespaced_custom_object_scale(
                    group,
                    version,
                    namespace,
                    plural_of(target.kind),
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
