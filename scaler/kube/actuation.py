"""`Actuator`: opt-in per resource (`spec.actuation.mode`): HPA bounds, KEDA ScaledObject bounds or
the target's `scale` subresource; `dryRun` records the patch and sends nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from forecasts.time import Clock
from scaler.kube.api import DEFAULT_REQUEST_TIMEOUT_SECONDS, MERGE_PATCH, TRANSPORT_ERRORS
from scaler.kube.resources import ScalerResource
from scaler.snapshot import Mode, WorkloadStatus

log = logging.getLogger(__name__)


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
                plural = plural_of(target.kind)
                self._custom.patch_namespaced_custom_object_scale(
                    group, version, ns, plural, name, patch, **kw
                )


def plural_of(kind: str) -> str:
    """The resource name of a kind, as the API server derives it for simple kinds."""
    return kind.lower() + "s"
