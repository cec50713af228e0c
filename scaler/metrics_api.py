"""The External Metrics API (`external.metrics.k8s.io/v1beta1`) served from the snapshot.

Reference: `shared/reference/kubernetes-protocols.md` §2. Two parts:

* `ExternalMetricsApi`: routing, content negotiation and the wire JSON (discovery, legacy and
  aggregated; `ExternalMetricValueList`; `metav1.Status` errors). It reads the current
  `Snapshot` once per request and never calls the network.
* `MetricsApiServer`: HTTP/1.1 on the bounded listener (`forecasts.platform.listener`: header
  bytes, head deadline, keep-alive, connection cap, strict framing), HTTPS with certificate
  reload and client certificate authentication (`scaler.apiauth`), for the kube-aggregator
  and the HPA.

Metrics (all namespaced; the HPA asks in its own namespace):

* `gridshift_desired_replicas`: one item per workload in the namespace; value = desired
  replicas (an HPA with `AverageValue: 1` then asks for exactly that); labels workload,
  region, mode.
* `gridshift_carbon_intensity_g_per_kwh`: one item per region with a known intensity
  (gCO2eq/kWh), in any namespace; labels region, topology.kubernetes.io/region, provider.
* `gridshift_eco_mode`: one item per workload; 1 in eco mode, 0 in performance.

Also served: `/openapi/v2` and `/openapi/v3` (`scaler.metrics_openapi`), which kube-apiserver's
aggregator downloads from every APIService (a 404 there is logged as an error each resync).

`labelSelector` narrows the items (full `labels.Parse` grammar, `scaler.core.selectors`); the HPA
sums all items it gets, so select one workload (`workload=web`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

import msgspec

from forecasts.platform.listener import ListenerLimits, ListenerStats, ThreadedServer, bind_socket
from forecasts.platform.listener import build_server as build_listener
from forecasts.time import Clock
from scaler.apiauth import Authenticator, Authorizer, ReloadingTlsContext, RequestAttributes
from scaler.core.quantity import format_quantity
from scaler.core.selectors import LabelSelector, SelectorError, parse_selector
from scaler.metrics_openapi import build_documents
from scaler.snapshot import Mode, Snapshot, SnapshotSource

__all__ = [
    "AGGREGATED_DISCOVERY_V2",
    "AGGREGATED_DISCOVERY_V2BETA1",
    "CARBON_INTENSITY_METRIC",
    "DESIRED_REPLICAS_METRIC",
    "ECO_MODE_METRIC",
    "GROUP",
    "GROUP_VERSION",
    "METRIC_NAMES",
    "ApiRequest",
    "ApiResponse",
    "ExternalMetricsApi",
    "MetricsApiServer",
    "format_timestamp",
]

log = logging.getLogger(__name__)

GROUP = "external.metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"
DESIRED_REPLICAS_METRIC = "gridshift_desired_replicas"
CARBON_INTENSITY_METRIC = "gridshift_carbon_intensity_g_per_kwh"
ECO_MODE_METRIC = "gridshift_eco_mode"
METRIC_NAMES = (DESIRED_REPLICAS_METRIC, CARBON_INTENSITY_METRIC, ECO_MODE_METRIC)
REGION_TOPOLOGY_LABEL = "topology.kubernetes.io/region"

JSON = "application/json"
AGGREGATED_DISCOVERY_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_DISCOVERY_V2BETA1 = (
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
)
_HEALTH_PATHS = ("/healthz", "/readyz", "/livez")
_OPENAPI = build_documents(group=GROUP, version=VERSION, metrics=METRIC_NAMES)


def format_timestamp(at: datetime) -> str:
    """metav1.Time: RFC 3339 in UTC, whole seconds, `Z` (Go's `time.Parse(RFC3339)` reads it)."""
    if at.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class ApiRequest:
    method: str
    path: str
    query: str = ""
    accept: str = ""
    if_none_match: str = ""


@dataclass(frozen=True, slots=True)
class ApiResponse:
    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


def _status(code: int, reason: str, message: str) -> ApiResponse:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return ApiResponse(code, msgspec.json.encode(body))


def _ok(obj: Mapping[str, Any], content_type: str = JSON) -> ApiResponse:
    return ApiResponse(200, msgspec.json.encode(obj), content_type)


@dataclass(frozen=True, slots=True)
class _MediaRange:
    type: str
    params: Mapping[str, str]


def _parse_accept(accept: str) -> list[_MediaRange]:
    ranges = []
    for part in accept.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        if params.get("q") in ("0", "0.0", "0.00", "0.000"):
            continue
        ranges.append(_MediaRange(pieces[0].lower(), params))
    return ranges


def _accepts_json(ranges: Sequence[_MediaRange]) -> bool:
    if not ranges:
        return True
    return any(
        r.type in ("*/*", "application/*") or (r.type == JSON and "g" not in r.params)
        for r in ranges
    )


def _aggregated_version(ranges: Sequence[_MediaRange]) -> str | None:
    """`v2` or `v2beta1` if the client asked for aggregated discovery (first match wins)."""
    for r in ranges:
        if (
            r.type == JSON
            and r.params.get("g") == "apidiscovery.k8s.io"
            and r.params.get("as") == "APIGroupDiscoveryList"
            and r.params.get("v") in ("v2", "v2beta1")
        ):
            return r.params["v"]
    return None


@dataclass(frozen=True, slots=True)
class _Item:
    labels: Mapping[str, str]
    value: float
    at: datetime


class _SnapshotIndex:
    """Per-snapshot precomputed items: metric -> namespace (or "" for any) -> items."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        replicas: dict[str, list[_Item]] = {}
        eco: dict[str, list[_Item]] = {}
        for workload in sorted(snapshot.workloads.values(), key=lambda w: (w.namespace, w.name)):
            labels = {"workload": workload.name, "region": workload.region, "mode": workload.mode}
            labels = {k: str(v) for k, v in labels.items()}
            replicas.setdefault(workload.namespace, []).append(
                _Item(labels, float(workload.desired_replicas), workload.decided_at)
            )
            eco.setdefault(workload.namespace, []).append(
                _Item(labels, 1.0 if workload.mode is Mode.ECO else 0.0, workload.decided_at)
            )
        carbon = [
            _Item(
                {"region": r.region, REGION_TOPOLOGY_LABEL: r.region, "provider": r.provider},
                r.intensity_g_per_kwh,
                r.at or snapshot.taken_at,
            )
            for r in sorted(snapshot.regions.values(), key=lambda r: r.region)
            if r.intensity_g_per_kwh is not None
        ]
        self._by_metric: dict[str, Callable[[str], list[_Item]]] = {
            DESIRED_REPLICAS_METRIC: lambda ns: replicas.get(ns, []),
            ECO_MODE_METRIC: lambda ns: eco.get(ns, []),
            CARBON_INTENSITY_METRIC: lambda ns: carbon,
        }

    def items(self, metric: str, namespace: str) -> list[_Item]:
        return self._by_metric[metric](namespace)


class ExternalMetricsApi:
    """Answers External Metrics API requests from the current snapshot (no network)."""

    def __init__(
        self,
        holder: SnapshotSource,
        *,
        clock: Clock,
        max_snapshot_age_seconds: float | None = None,
    ) -> None:
        self._holder = holder
        self._clock = clock
        self._max_age = (
            timedelta(seconds=max_snapshot_age_seconds) if max_snapshot_age_seconds else None
        )
        self._index: _SnapshotIndex | None = None
        self._resource_list = msgspec.json.encode(
            {
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": GROUP_VERSION,
                "resources": [
                    {
                        "name": name,
                        "singularName": "",
                        "namespaced": True,
                        "kind": "ExternalMetricValueList",
                        "verbs": ["get"],
                    }
                    for name in METRIC_NAMES
                ],
            }
        )

    # ------------------------------------------------------------------ routing
    def attributes(self, method: str, path: str) -> RequestAttributes:
        """Authorization attributes: the HPA's call is `list` on resource = metric name."""
        verb = {"GET": "get", "HEAD": "get"}.get(method, method.lower())
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if (
            len(parts) == 6
            and parts[:2] == ["apis", GROUP]
            and parts[2] == VERSION
            and parts[3] == "namespaces"
        ):
            return RequestAttributes(
                verb="list" if verb == "get" else verb,
                path=path,
                resource_request=True,
                api_group=GROUP,
                api_version=VERSION,
                resource=parts[5],
                namespace=parts[4],
            )
        return RequestAttributes(verb=verb, path=path, resource_request=False)

    def handle(self, request: ApiRequest) -> ApiResponse:
        """Route one request; never raises (a bug becomes a 500 Status)."""
        try:
            return self._route(request)
        except Exception:
            log.exception("metrics API request failed: %s %s", request.method, request.path)
            return _status(500, "InternalError", "Internal error occurred: unexpected failure")

    def _route(self, request: ApiRequest) -> ApiResponse:
        path = request.path.rstrip("/") or "/"
        if path in _HEALTH_PATHS:
            if request.method not in ("GET", "HEAD"):
                return _status(405, "MethodNotAllowed", f"method {request.method} not allowed")
            return ApiResponse(200, b"ok", "text/plain; charset=utf-8")
        if path == "/openapi" or path.startswith("/openapi/"):
            return _openapi(request, path)
        parts = [unquote(p) for p in path.strip("/").split("/")] if path != "/" else []
        if not parts or parts[0] != "apis" or (len(parts) > 1 and parts[1] != GROUP):
            return _status(404, "NotFound", "the server could not find the requested resource")
        if len(parts) > 2 and parts[2] != VERSION:
            return _status(404, "NotFound", "the server could not find the requested resource")
        if request.method not in ("GET", "HEAD"):
            return _status(
                405,
                "MethodNotAllowed",
                f"the server does not allow this method on the requested resource "
                f"({request.method})",
            )
        ranges = _parse_accept(request.accept)
        if len(parts) == 1:
            version = _aggregated_version(ranges)
            if version is not None:
                return self._aggregated_discovery(version)
            return self._json_or_406(ranges, self._group_list)
        if not _accepts_json(ranges):
            return _not_acceptable(request.accept)
        if len(parts) == 2:
            return _ok(self._group())
        if len(parts) == 3:
            return ApiResponse(200, self._resource_list)
        if len(parts) == 6 and parts[3] == "namespaces":
            return self._metric(namespace=parts[4], metric=parts[5], query=request.query)
        if len(parts) == 5 and parts[3] == "namespaces":
            return _status(404, "NotFound", "the server could not find the requested resource")
        if len(parts) == 4 and parts[3] in METRIC_NAMES:
            return _status(
                404,
                "NotFound",
                f"the server could not find the metric {parts[3]} for "
                "(external metrics are namespaced: /namespaces/{namespace}/{metric})",
            )
        return _status(404, "NotFound", "the server could not find the requested resource")

    def _json_or_406(
        self, ranges: Sequence[_MediaRange], build: Callable[[], Mapping[str, Any]]
    ) -> ApiResponse:
        if not _accepts_json(ranges):
            return _not_acceptable(", ".join(r.type for r in ranges))
        return _ok(build())

    # ------------------------------------------------------------------ discovery
    @staticmethod
    def _group_version_entry() -> dict[str, str]:
        return {"groupVersion": GROUP_VERSION, "version": VERSION}

    def _group(self) -> dict[str, Any]:
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": GROUP,
            "versions": [self._group_version_entry()],
            "preferredVersion": self._group_version_entry(),
        }

    def _group_list(self) -> dict[str, Any]:
        group = self._group()
        del group["kind"], group["apiVersion"]
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}

    def _aggregated_discovery(self, version: str) -> ApiResponse:
        body = {
            "kind": "APIGroupDiscoveryList",
            "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {},
            "items": [
                {
                    "metadata": {"name": GROUP, "creationTimestamp": None},
                    "versions": [
                        {
                            "version": VERSION,
                            "resources": [
                                {
                                    "resource": name,
                                    "responseKind": {
                                        "group": "",
                                        "version": "",
                                        "kind": "ExternalMetricValueList",
                                    },
                                    "scope": "Namespaced",
                                    "singularResource": "",
                                    "verbs": ["get"],
                                }
                                for name in METRIC_NAMES
                            ],
                            "freshness": "Current",
                        }
                    ],
                }
            ],
        }
        media = AGGREGATED_DISCOVERY_V2 if version == "v2" else AGGREGATED_DISCOVERY_V2BETA1
        return _ok(body, media)

    # ------------------------------------------------------------------ metrics
    def _current_index(self) -> _SnapshotIndex | None:
        snapshot = self._holder.current()
        if snapshot is None:
            return None
        index = self._index
        if index is None or index.snapshot is not snapshot:
            index = _SnapshotIndex(snapshot)
            self._index = index  # benign race: both threads build the same index
        return index

    def _metric(self, *, namespace: str, metric: str, query: str) -> ApiResponse:
        if metric not in METRIC_NAMES:
            return _status(
                404,
                "NotFound",
                f"the server could not find the metric {metric} for namespace {namespace}",
            )
        selector_text = ""
        if query:
            try:
                params = parse_qs(query, keep_blank_values=True, strict_parsing=False)
            except ValueError as exc:
                return _status(400, "BadRequest", f"invalid query string: {exc}")
            values = params.get("labelSelector", [])
            if len(values) > 1:
                return _status(400, "BadRequest", "labelSelector: given more than once")
            selector_text = values[0] if values else ""
        try:
            selector = parse_selector(selector_text) if selector_text else LabelSelector()
        except SelectorError as exc:
            return _status(400, "BadRequest", f"labelSelector: {exc}")
        index = self._current_index()
        if index is None:
            return _status(
                500,
                "InternalError",
                f"Internal error occurred: unable to fetch metric {metric}: "
                "no scaler decision has been published yet",
            )
        if self._max_age is not None:
            age = self._clock.now() - index.snapshot.taken_at
            if age > self._max_age:
                return _status(
                    500,
                    "InternalError",
                    f"Internal error occurred: unable to fetch metric {metric}: the scaler "
                    f"snapshot is {age.total_seconds():.0f}s old "
                    f"(max_snapshot_age_seconds={self._max_age.total_seconds():.0f})",
                )
        window = int(index.snapshot.tick_seconds)
        items = []
        for item in index.items(metric, namespace):
            if not selector.matches(item.labels):
                continue
            entry: dict[str, Any] = {
                "metricName": metric,
                "metricLabels": dict(item.labels),
                "timestamp": format_timestamp(item.at),
            }
            if window > 0:
                entry["window"] = window
            entry["value"] = format_quantity(item.value)
            items.append(entry)
        return _ok(
            {
                "kind": "ExternalMetricValueList",
                "apiVersion": GROUP_VERSION,
                "metadata": {},
                "items": items,
            }
        )


def _openapi(request: ApiRequest, path: str) -> ApiResponse:
    """`/openapi/v2`, `/openapi/v3` and the group-version document (`scaler.metrics_openapi`)."""
    if request.method not in ("GET", "HEAD"):
        return _status(405, "MethodNotAllowed", f"method {request.method} not allowed")
    docs = _OPENAPI
    if path == "/openapi/v2":
        body, etag = docs.v2, docs.v2_etag
    elif path == "/openapi/v3":
        body, etag = docs.v3_discovery, docs.v3_discovery_etag
    elif path == docs.v3_path:
        body, etag = docs.v3, docs.v3_etag
    else:
        return _status(404, "NotFound", "the server could not find the requested resource")
    if not _accepts_json(_parse_accept(request.accept)):
        return _not_acceptable(request.accept)
    headers = {"Etag": f'"{etag}"', "Vary": "Accept"}
    if path == docs.v3_path:
        wanted = parse_qs(request.query).get("hash", [""])[0]
        if wanted and wanted != etag:
            return ApiResponse(301, b"", headers={"Location": docs.v3_url})
        if wanted:
            headers["Cache-Control"] = "public, immutable"
    if etag in {t.strip().removeprefix("W/").strip('"') for t in request.if_none_match.split(",")}:
        return ApiResponse(304, b"", headers=headers)
    return ApiResponse(200, body, JSON, headers)


def _not_acceptable(accept: str) -> ApiResponse:
    return _status(
        406,
        "NotAcceptable",
        f"only the following media types are accepted: {JSON} (Accept was {accept!r})",
    )


# ---------------------------------------------------------------------- HTTP server
class _Background(Protocol):
    def run(self) -> None: ...

    def stop(self) -> None: ...


MAX_BODY_BYTES = 64 * 1024
_SERVER_HEADERS = [  # a response's own Cache-Control (e.g. /openapi's) wins
    (b"cache-control", b"no-cache, private"),
    (b"server", b"gridshift-metrics-api"),
]


def _listener_error(status: int, message: str) -> bytes:
    reason = {408: "Timeout", 431: "RequestHeaderFieldsTooLarge", 503: "ServiceUnavailable"}
    return _status(status, reason.get(status, "BadRequest"), message).body


def _body_refusal(headers: Mapping[str, Sequence[str]]) -> ApiResponse | None:
    """The API takes no request bodies: a small one is ignored, a large one refused unread."""
    text = (headers.get("content-length") or ["0"])[0]
    length = int(text) if text.isascii() and text.isdigit() and len(text) < 19 else -1
    if length < 0:
        return _status(400, "BadRequest", f"invalid Content-Length {text[:40]!r}")
    if length > MAX_BODY_BYTES:
        return _status(
            413,
            "RequestEntityTooLarge",
            f"request body of {length} bytes over the {MAX_BODY_BYTES}-byte limit",
        )
    return None


class MetricsApiServer:
    """Serves `ExternalMetricsApi` on HTTP(S); authenticates and authorizes every request."""

    def __init__(
        self,
        api: ExternalMetricsApi,
        *,
        host: str,
        port: int,
        authenticator: Authenticator | None,
        authorizer: Authorizer,
        tls: ReloadingTlsContext | None = None,
        handshake_timeout_seconds: float = 10.0,
        idle_timeout_seconds: float = 90.0,
        limits: ListenerLimits | None = None,
    ) -> None:
        self.api = api
        self.tls = tls
        self.authenticator = authenticator
        self.authorizer = authorizer
        self.stats = ListenerStats()
        limits = limits or ListenerLimits(
            tls_handshake_timeout_seconds=handshake_timeout_seconds,
            keep_alive_timeout_seconds=idle_timeout_seconds,
            accept_chunked=False,  # no endpoint takes a body
        )
        self._server = ThreadedServer(
            build_listener(
                self._asgi,
                limits=limits,
                stats=self.stats,
                tls_context=tls.listener_context if tls is not None else None,
                error_body=_listener_error,
                loop="asyncio",
            ),
            bind_socket(host, port),
            name="metrics-api",
        )
        self._background: list[_Background] = []
        self._background_threads: list[threading.Thread] = []

    @property
    def handshake_failures(self) -> int:
        return self.stats.handshake_failures

    def add_background(self, task: _Background) -> None:
        """A helper loop (e.g. trust refresh) started and stopped with the server."""
        self._background.append(task)

    @property
    def address(self) -> tuple[str, int]:
        return self._server.address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    async def _asgi(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        """One request: authenticate, authorize and answer off the event loop (an access
        review may call the API server), then send the JSON as the HPA expects it."""
        headers: dict[str, list[str]] = {}
        for key, value in scope["headers"]:
            headers.setdefault(key.decode("latin-1"), []).append(value.decode("latin-1"))
        method = scope["method"]
        refusal = _body_refusal(headers)
        if refusal is not None:
            await self._send(send, method, refusal, close=True)
            return
        chain = scope.get("extensions", {}).get("tls", {}).get("client_cert_chain") or []
        peer = ssl.PEM_cert_to_DER_cert(chain[0]) if chain else None
        request = ApiRequest(
            method,
            scope["raw_path"].decode("latin-1"),
            scope["query_string"].decode("latin-1"),
            (headers.get("accept") or [""])[0],
            (headers.get("if-none-match") or [""])[0],
        )
        response = await asyncio.to_thread(
            self.respond, request, peer_certificate_der=peer, headers=headers
        )
        await self._send(send, method, response)

    @staticmethod
    async def _send(send: Any, method: str, response: ApiResponse, *, close: bool = False) -> None:
        own = [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        headers = [
            (b"content-type", response.content_type.encode("latin-1")),
            (b"content-length", str(len(response.body)).encode()),
            *(h for h in _SERVER_HEADERS if h[0] not in {k for k, _ in own}),
            *own,
        ]
        if close:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        body = b"" if method == "HEAD" else response.body
        await send({"type": "http.response.body", "body": body})

    def respond(
        self,
        request: ApiRequest,
        *,
        peer_certificate_der: bytes | None,
        headers: Mapping[str, Sequence[str]],
    ) -> ApiResponse:
        attributes = self.api.attributes(request.method, request.path.rstrip("/") or "/")
        user = None
        if attributes.path not in _HEALTH_PATHS and self.authenticator is not None:
            try:
                user = self.authenticator.authenticate(
                    peer_certificate_der=peer_certificate_der, headers=headers
                )
            except Exception:
                log.exception("authentication failed")
                return _status(500, "InternalError", "Internal error occurred: authentication")
        anonymous_refused = user is None and not self.authorizer.allow_anonymous
        if anonymous_refused and attributes.path not in _HEALTH_PATHS:
            return _status(401, "Unauthorized", "Unauthorized")
        try:
            allowed = self.authorizer.allowed(user, attributes)
        except Exception:
            log.exception("authorization failed")
            return _status(500, "InternalError", "Internal error occurred: authorization")
        if not allowed:
            who = user.name if user else "system:anonymous"
            if attributes.resource_request:
                message = (
                    f'{attributes.resource}.{GROUP} is forbidden: User "{who}" cannot '
                    f'{attributes.verb} resource "{attributes.resource}" in API group '
                    f'"{GROUP}" in the namespace "{attributes.namespace}"'
                )
            else:
                message = f'forbidden: User "{who}" cannot get path "{attributes.path}"'
            return _status(403, "Forbidden", message)
        return self.api.handle(request)

    def start(self) -> None:
        self._server.start()
        for task in self._background:
            thread = threading.Thread(target=task.run, name="metrics-api-bg", daemon=True)
            thread.start()
            self._background_threads.append(thread)

    def stop(self) -> None:
        for task in self._background:
            task.stop()
        for thread in self._background_threads:
            thread.join(timeout=5)
        self._server.stop()

    def __enter__(self) -> MetricsApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
