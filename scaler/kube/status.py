"""CarbonAwareScaler `.status`: the decision -> status translation and back, and `StatusWriter`.

* `status_for`: a decision as status. Times are transition times: a condition keeps its
  `lastTransitionTime` while its status and reason stay (Kubernetes' convention), and
  `lastDecision.decidedAt` is when the current decision (replicas and mode) was first made,
  so a tick that decides the same writes the same status.
* `same_decision`: whether two statuses differ only in what moves every tick (the reasons'
  figures and the gram counters), which the controller refreshes on a slower clock.
* `decision_from_status`: the decision a CR's status carries, for a replica that serves a
  workload another replica decides (the sharded scaler, `scaler.kube.shards`).
* `StatusWriter`: merge-patches `/status` with the resourceVersion it last saw; on 409 it
  re-reads and retries (bounded); 404 means the resource is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from forecasts.time import ensure_utc
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
from scaler.snapshot import Mode, WorkloadStatus

log = logging.getLogger(__name__)


#: Status fields that move with every tick without the decision changing.
_TELEMETRY = ("reasons", "savedGrams", "emittedGrams")


def _since(previous: Mapping[str, Any] | None, condition: Mapping[str, Any]) -> str | None:
    """The previous `lastTransitionTime` of `condition` when its status and reason held."""
    for old in (previous or {}).get("conditions") or ():
        if (
            isinstance(old, Mapping)
            and old.get("type") == condition["type"]
            and old.get("status") == condition["status"]
            and old.get("reason") == condition["reason"]
            and isinstance(old.get("lastTransitionTime"), str)
        ):
            return str(old["lastTransitionTime"])
    return None


def status_for(
    workload: WorkloadStatus,
    *,
    resource: ScalerResource,
    now: datetime,
    actuation: ActuationResult | None = None,
    previous: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CarbonAwareScaler `.status` for a decision (JSON-ready, deterministic). With
    `previous` (the status written or watched before), unchanged conditions and an unchanged
    decision keep their times."""
    stale = bool(workload.stale_inputs)
    conditions: list[dict[str, Any]] = [
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
    for condition in conditions:
        condition["lastTransitionTime"] = (
            _since(previous, condition) or condition["lastTransitionTime"]
        )
    before = (previous or {}).get("lastDecision")
    if (
        isinstance(before, Mapping)
        and before.get("desiredReplicas") == workload.desired_replicas
        and before.get("mode") == str(workload.mode)
        and isinstance(before.get("decidedAt"), str)
    ):
        status["lastDecision"]["decidedAt"] = before["decidedAt"]
    del now  # status times come from the decision, so identical decisions patch nothing
    return status


def same_decision(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> bool:
    """True when `a` and `b` differ at most in the per-tick telemetry (reasons, grams)."""
    if a is None or b is None:
        return a is b
    return {k: v for k, v in a.items() if k not in _TELEMETRY} == {
        k: v for k, v in b.items() if k not in _TELEMETRY
    }


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return ensure_utc(datetime.fromisoformat(text.replace("Z", "+00:00")), name="decidedAt")
    except ValueError:
        return None


def decision_from_status(resource: ScalerResource) -> WorkloadStatus | None:
    """The decision `resource.status` carries, or None when it carries none (not decided
    yet, not acted on, or a status this version cannot read)."""
    status = resource.status
    desired = status.get("desiredReplicas")
    region = status.get("region")
    last = status.get("lastDecision")
    if (
        not isinstance(desired, int)
        or isinstance(desired, bool)
        or desired < 0
        or not isinstance(region, str)
        or not isinstance(last, Mapping)
    ):
        return None
    try:
        mode = Mode(str(status.get("mode")))
    except ValueError:
        return None
    decided_at = _parse_time(last.get("decidedAt"))
    if decided_at is None:
        return None
    stale: tuple[str, ...] = ()
    for condition in status.get("conditions") or ():
        if (
            isinstance(condition, Mapping)
            and condition.get("type") == "InputsStale"
            and condition.get("status") == "True"
        ):
            stale = tuple(str(condition.get("message", "")).split(", "))
    reasons = status.get("reasons")
    saved, emitted = status.get("savedGrams"), status.get("emittedGrams")
    return WorkloadStatus(
        name=resource.name,
        namespace=resource.namespace,
        region=region,
        desired_replicas=desired,
        mode=mode,
        reasons=tuple(str(r) for r in reasons) if isinstance(reasons, list) else (),
        decided_at=decided_at,
        stale_inputs=stale,
        emitted_g=float(emitted) if isinstance(emitted, int | float) else 0.0,
        saved_g=float(saved) if isinstance(saved, int | float) else 0.0,
        target_kind=resource.target.kind,
        target_name=resource.target.name,
        min_replicas=resource.min_replicas,
        max_replicas=resource.max_replicas,
    )


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
