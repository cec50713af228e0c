"""Shared Kubernetes API constants and small helpers of the scaler's Kubernetes I/O."""

from __future__ import annotations

import logging
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import urllib3.exceptions

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


def as_dict(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(value).__name__}")
    return value


def format_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_micro_time(at: datetime) -> str:
    """metav1.MicroTime as the API server writes it: `2006-01-02T15:04:05.000000Z`."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_PREFIX = re.compile(r"^/(?:api/[^/]+|apis/[^/]+/[^/]+)(?:/namespaces/\{namespace\})?/")


class RequestCounts:
    """Requests this process sent the API server, by verb (get, list, watch, create, update,
    patch, delete) and resource (`deployments/scale`, `carbonawarescalers/status`), counted as
    they are sent (`config.wiring.GridshiftApiClient`); `gridshift_kube_api_requests_total`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[str, str]] = Counter()

    def count(
        self,
        method: str,
        path_template: str,
        path_params: Mapping[str, Any] | None,
        query: Iterable[tuple[str, Any]],
    ) -> None:
        params = path_params or {}
        path = path_template.replace("{group}", str(params.get("group", "{group}")))
        path = path.replace("{version}", str(params.get("version", "{version}")))
        path = path.replace("{plural}", str(params.get("plural", "{plural}")))
        rest = _PREFIX.sub("", path, count=1)
        segments = [s for s in rest.split("/") if s and not s.startswith("{")]
        resource = "/".join(segments) or rest
        verb = _VERBS.get(method.upper())
        if verb is None:
            if any(k == "watch" and str(v).lower() == "true" for k, v in query):
                verb = "watch"
            else:
                verb = "get" if "{name}" in path_template else "list"
        with self._lock:
            self._counts[(verb, resource)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._counts)

    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())
