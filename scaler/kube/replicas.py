"""`KubeReplicaReader`: what each workload's target runs now, once per tick (scale subresource,
ScaledObject target, HPA currentReplicas); failures become `SourceError`s per workload.
"""

from __future__ import annotations

import logging
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
