"""Shared Kubernetes API constants and small helpers of the scaler's Kubernetes I/O."""

from __future__ import annotations

import logging
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
