"""OpenAPI documents of the External Metrics API (`/openapi/v2`, `/openapi/v3`), as
k8s.io/apiserver serves them for an aggregated API server.

kube-apiserver's aggregator downloads both from every APIService to merge them into the
cluster's own `/openapi/v2` and `/openapi/v3` (kube-aggregator `pkg/controllers/openapi` and
`openapiv3`); a 404 there is logged as an "Unhandled Error" about the APIService on each
resync. What is served, following kube-openapi (`pkg/handler`, `pkg/handler3`):

* `GET /openapi/v2`: a Swagger 2.0 document with the metric path and the definitions it uses,
  named as upstream names them (`io.k8s.metrics.pkg.apis.external_metrics.v1beta1.
  ExternalMetricValueList`, ...); `Etag: "<SHA-512 hex>"`, 304 on a matching `If-None-Match`.
* `GET /openapi/v3`: the discovery document `{"paths": {"apis/<group>/<version>":
  {"serverRelativeURL": "/openapi/v3/apis/<group>/<version>?hash=<SHA-512 hex>"}}}`.
* `GET /openapi/v3/apis/<group>/<version>`: the OpenAPI 3.0 document; with `?hash=` equal to
  the current one it is immutable (`Cache-Control: public, immutable`), a stale hash is
  redirected (301) to the current URL, as upstream does.

The documents depend only on the metric names, so they are built once, at import.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import msgspec

__all__ = ["OpenApiDocuments", "build_documents"]

_PREFIX_V2 = "#/definitions/"
_PREFIX_V3 = "#/components/schemas/"
_LIST = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList"
_VALUE = "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValue"
_LIST_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta"
_TIME = "io.k8s.apimachinery.pkg.apis.meta.v1.Time"
_QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def etag_of(body: bytes) -> str:
    """kube-openapi's ETag: SHA-512 of the served bytes, upper-case hex (unquoted)."""
    return hashlib.sha512(body).hexdigest().upper()


def _schemas(ref: str, *, group: str, version: str) -> dict[str, Any]:
    """The definitions the metric path uses (upstream's shapes and descriptions)."""
    return {
        _LIST: {
            "description": "ExternalMetricValueList is a list of values for a given metric for "
            "some set labels",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"$ref": ref + _LIST_META, "default": {}},
                "items": {
                    "description": "value of the metric matching a given set of labels",
                    "type": "array",
                    "items": {"$ref": ref + _VALUE, "default": {}},
                },
            },
            "x-kubernetes-group-version-kind": [
                {"group": group, "kind": "ExternalMetricValueList", "version": version}
            ],
        },
        _VALUE: {
            "description": "ExternalMetricValue is a metric value for external metric A single "
            "metric value is identified by metric name and a set of string labels. For one "
            "metric there can be multiple values with different sets of labels.",
            "type": "object",
            "required": ["metricName", "metricLabels", "timestamp", "value"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metricName": {"description": "the name of the metric", "type": "string"},
                "metricLabels": {
                    "description": "a set of labels that identify a single time series for "
                    "the metric",
                    "type": "object",
                    "additionalProperties": {"type": "string", "default": ""},
                },
                "timestamp": {
                    "description": "indicates the time at which the metrics were produced",
                    "$ref": ref + _TIME,
                },
                "window": {
                    "description": "indicates the window ([Timestamp-Window, Timestamp]) from "
                    "which these metrics were calculated, when returning rate metrics "
                    "calculated from cumulative metrics (or zero for non-calculated "
                    "instantaneous metrics).",
                    "type": "integer",
                    "format": "int64",
                },
                "value": {"description": "the value of the metric", "$ref": ref + _QUANTITY},
            },
        },
        _LIST_META: {
            "description": "ListMeta describes metadata that synthetic resources must have.",
            "type": "object",
            "properties": {
                "continue": {"type": "string"},
                "remainingItemCount": {"type": "integer", "format": "int64"},
                "resourceVersion": {"type": "string"},
                "selfLink": {"type": "string"},
            },
        },
        _TIME: {
            "description": "Time is a wrapper around time.Time which supports correct "
            "marshaling to YAML and JSON.",
            "type": "string",
            "format": "date-time",
        },
        _QUANTITY: {
            "description": 'Quantity is a fixed-point representation of a number (e.g. "312500m").',
            "type": "string",
        },
    }


def _path(group: str, version: str) -> str:
    return f"/apis/{group}/{version}/namespaces/{{namespace}}/{{metricName}}"


def _parameter(
    name: str, where: str, description: str, schema: dict[str, Any], *, v3: bool
) -> dict[str, Any]:
    """Swagger 2.0 puts the type beside the name, OpenAPI 3 under `schema`."""
    param: dict[str, Any] = {"name": name, "in": where, "description": description}
    if where == "path":
        param["required"] = True
    if v3:
        param["schema"] = schema
    else:
        param.update(schema)
    return param


def _document(group: str, version: str, metrics: Sequence[str], *, v3: bool) -> dict[str, Any]:
    """The Swagger 2.0 (`v3=False`) or OpenAPI 3.0 document of the one metric path."""
    ref = (_PREFIX_V3 if v3 else _PREFIX_V2) + _LIST
    ok: dict[str, Any] = (
        {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}
        if v3
        else {"description": "OK", "schema": {"$ref": ref}}
    )
    text = {"type": "string", "uniqueItems": True}
    get: dict[str, Any] = {
        "description": "list the values of an external metric in a namespace",
        "tags": [f"externalMetrics_{version}"],
        "operationId": f"listExternalMetrics{version.capitalize()}",
        "parameters": [
            _parameter(
                "labelSelector",
                "query",
                "A selector to restrict the list of returned objects by their labels. "
                "Defaults to everything.",
                text,
                v3=v3,
            )
        ],
        "responses": {"200": ok, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": "list",
        "x-kubernetes-group-version-kind": {
            "group": group,
            "kind": "ExternalMetricValueList",
            "version": version,
        },
    }
    if not v3:
        get |= {"consumes": ["*/*"], "produces": ["application/json"], "schemes": ["https"]}
    path_item = {
        "get": get,
        "parameters": [
            _parameter(
                "namespace",
                "path",
                "object name and auth scope, such as for teams and projects",
                text,
                v3=v3,
            ),
            _parameter(
                "metricName",
                "path",
                "name of the external metric",
                {"type": "string", "enum": list(metrics)},
                v3=v3,
            ),
        ],
    }
    head = {"openapi": "3.0.0"} if v3 else {"swagger": "2.0"}
    schemas = _schemas(_PREFIX_V3 if v3 else _PREFIX_V2, group=group, version=version)
    return {
        **head,
        "info": {"title": "gridshift external metrics", "version": version},
        "paths": {_path(group, version): path_item},
        **({"components": {"schemas": schemas}} if v3 else {"definitions": schemas}),
    }


@dataclass(frozen=True, slots=True)
class OpenApiDocuments:
    """The served bytes and their ETags (unquoted upper-case SHA-512 hex)."""

    v2: bytes
    v2_etag: str
    v3_discovery: bytes
    v3_discovery_etag: str
    v3_path: str  # `/openapi/v3/apis/<group>/<version>`
    v3: bytes
    v3_etag: str

    @property
    def v3_url(self) -> str:
        """The discovery document's `serverRelativeURL` (path with the current hash)."""
        return f"{self.v3_path}?{urlencode({'hash': self.v3_etag})}"


def build_documents(*, group: str, version: str, metrics: Sequence[str]) -> OpenApiDocuments:
    v2 = msgspec.json.encode(_document(group, version, metrics, v3=False), order="sorted")
    v3 = msgspec.json.encode(_document(group, version, metrics, v3=True), order="sorted")
    gv = f"apis/{group}/{version}"
    v3_path = f"/openapi/v3/{gv}"
    v3_etag = etag_of(v3)
    discovery = msgspec.json.encode(
        {"paths": {gv: {"serverRelativeURL": f"{v3_path}?{urlencode({'hash': v3_etag})}"}}}
    )
    return OpenApiDocuments(
        v2=v2,
        v2_etag=etag_of(v2),
        v3_discovery=discovery,
        v3_discovery_etag=etag_of(discovery),
        v3_path=v3_path,
        v3=v3,
        v3_etag=v3_etag,
    )
