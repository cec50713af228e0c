"""`StatusWriter`: merge-patches `/status` with the resourceVersion it last saw; on 409 it re-reads
and retries (bounded); 404 means the resource is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from scaler.kube.actuation import ActuationResult
from scaler.kube.api import (
    CRD_GROUP,
    CRD_PLURAL,
    CRD_VERSION,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    MERGE_PATCH,
    as_dict,
    format_time,
)
from scaler.kube.resources import InvalidResource, ScalerResource
from scaler.snapshot import WorkloadStatus

log = logging.getLogger(__name__)


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
            "lastTransitionTime": format_time(workload.decided_at),
            "observedGeneration": resource.generation,
        },
        {
            "type": "InputsStale",
            "status": "True" if stale else "False",
            "reason": "StaleInputs" if stale else "InputsFresh",
            "message": ", ".join(workload.stale_inputs) or "all inputs fresh",
            "lastTransitionTime": format_time(workload.decided_at),
            "observedGeneration": resource.generation,
        },
    ]
    status: dict[str, Any] = {
        "observedGeneration": resource.generation,
        "desiredReplicas": workload.desired_replicas,
        "mode": str(workload.mode),
        "region": workload.region,
        "reasons": list(workload.reasons),
        "lastDecision": {
            "desiredReplicas": workload.desired_replicas,
            "mode": str(workload.mode),
            "decidedAt": format_time(workload.decided_at),
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
            "at": format_time(actuation.at),
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

    def write(
        self, resource: ScalerResource | InvalidResource, status: Mapping[str, Any]
    ) -> str | None:
        """Returns the new resourceVersion, or None when the resource no longer exists."""
        resource_version = resource.resource_version
        for _attempt in range(self._max_attempts):
            body: dict[str, Any] = {"status": dict(status)}
            if resource_version:
                body["metadata"] = {"resourceVersion": resource_version}
            try:
                result = as_dict(
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
                    latest = as_dict(
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
