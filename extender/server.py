"""The kube-scheduler extender webhook (HTTPExtender) and its side endpoints.

URL paths (urlPrefix `http(s)://HOST:PORT/scheduler`, `filterVerb: filter`,
`prioritizeVerb: prioritize`):

| Method, path                 | What                                                            |
|------------------------------|-----------------------------------------------------------------|
| POST /scheduler/filter       | ExtenderArgs -> ExtenderFilterResult                            |
| POST /scheduler/prioritize   | ExtenderArgs -> HostPriorityList (`[{"Host", "Score"}]`, 0..10) |
| GET  /regions/rank           | regions by intensity; `?duration=2h&start=<RFC 3339>` optional  |
| GET  /healthz, /readyz       | liveness; readiness (nodes listed and carbon fetched)           |
| GET  /metrics                | Prometheus metrics of this process                              |
| GET  /                       | this list as JSON                                               |

Wire format (kubernetes-protocols §1): the scheduler sends Go field names (`Pod`, `Nodes`,
`NodeNames`) and reads `NodeNames`, `Nodes`, `FailedNodes`, `FailedAndUnresolvableNodes`,
`Error`, `Host`, `Score`. Keys are matched case-insensitively, as Go does, so older lowercase
payloads work. The mode is detected by which of `Nodes`/`NodeNames` is non-null. HTTP 200
only on success; bad requests get 4xx with `Error` set. Handlers only read the snapshot.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import msgspec
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from extender.core.nodes import RegionRules, build_node_facts, gpu_count
from extender.core.scoring import (
    FilterResult,
    NodeFacts,
    NodeTable,
    PodPreferences,
    RegionIntensity,
    RegionRank,
    ScoringPolicy,
    filter_nodes,
    pod_preferences,
    rank_regions,
    region_intensities,
    score_table,
)
from extender.metrics import ExtenderMetrics
from extender.snapshot import ExtenderSnapshot, SnapshotHolder
from forecasts.time import Clock, ensure_utc, parse_duration

__all__ = [
    "ENDPOINTS",
    "ParsedArgs",
    "WireError",
    "create_app",
    "parse_args",
    "webhook_error_body",
]

log = logging.getLogger(__name__)

ENDPOINTS = {
    "POST /scheduler/filter": "ExtenderArgs -> ExtenderFilterResult",
    "POST /scheduler/prioritize": "ExtenderArgs -> HostPriorityList (scores 0..10)",
    "GET /regions/rank": "regions ranked by gCO2/kWh; optional duration=2h, start=RFC 3339",
    "GET /healthz": "liveness",
    "GET /readyz": "readiness: 200 once the nodes are listed and their regions' carbon fetched",
    "GET /metrics": "Prometheus metrics",
}

_EMPTY_NODE_FACTS: Mapping[str, NodeFacts] = {}
_RANK_START_WITHIN = timedelta(days=366)  # forecasts reach days ahead; history a year back
_NODES_PLACEHOLDER = "\x00gridshift-nodes\x00"
_NODES_PLACEHOLDER_JSON = msgspec.json.encode(_NODES_PLACEHOLDER)


# ---------------------------------------------------------------------------- wire types
# msgspec Structs decode only the fields the extender reads and skip the rest of the
# (large) v1.Pod / v1.Node JSON without building Python objects for it; node items are also
# kept as raw bytes so that filter can echo surviving nodes byte for byte.
_NULL = msgspec.Raw(b"null")


class _Meta(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class _Resources(msgspec.Struct):
    limits: dict[str, Any] | None = None
    requests: dict[str, Any] | None = None


class _Container(msgspec.Struct):
    resources: _Resources | None = None


class _PodSpec(msgspec.Struct, rename={"init_containers": "initContainers"}):
    containers: list[_Container] | None = None
    init_containers: list[_Container] | None = None


class _Pod(msgspec.Struct):
    metadata: _Meta | None = None
    spec: _PodSpec | None = None


class _NodeStatus(msgspec.Struct):
    capacity: dict[str, Any] | None = None
    allocatable: dict[str, Any] | None = None


class _Node(msgspec.Struct):
    metadata: _Meta | None = None
    status: _NodeStatus | None = None


class _Name(msgspec.Struct):
    name: str = ""


class _NodeName(msgspec.Struct):
    """Just the name: when no node facts can change the answer (no cap, opted out)."""

    metadata: _Name | None = None


class _NodeMeta(msgspec.Struct):
    """A node without its status: what filter and non-GPU pods need (half the decode cost)."""

    metadata: _Meta | None = None


class _RawNodeList(msgspec.Struct):
    items: list[msgspec.Raw] | None = None


class _Args(msgspec.Struct):
    """ExtenderArgs in the two spellings schedulers send (Go field names; <=1.15 lowercase).
    Any other casing (Go matches case-insensitively) takes the slower generic path."""

    Pod: msgspec.Raw = _NULL
    pod: msgspec.Raw = _NULL
    Nodes: _RawNodeList | None = None
    nodes: _RawNodeList | None = None
    NodeNames: list[str] | None = None
    nodenames: list[str] | None = None


_ARGS = msgspec.json.Decoder(_Args)
_ANY_KEYS = msgspec.json.Decoder(dict[str, msgspec.Raw])
_POD = msgspec.json.Decoder(_Pod)
_NODE = msgspec.json.Decoder(_Node)
_NODE_META = msgspec.json.Decoder(_NodeMeta)
_NODE_NAME = msgspec.json.Decoder(_NodeName)
_RAW_NODES = msgspec.json.Decoder(_RawNodeList | None)
_NAMES = msgspec.json.Decoder(list[str] | None)


class WireError(ValueError):
    """A request the extender cannot read; the message names the field and the problem."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ParsedArgs:
    """What a filter/prioritize call asks, translated from the wire.

    Cache mode: `names` only. Full mode: `names` in input order (duplicates dropped),
    `raw_nodes` (each node's JSON bytes, for echoing) and `request_facts`."""

    pod_name: str
    pod: PodPreferences
    names: tuple[str, ...]
    cache_mode: bool
    raw_nodes: Mapping[str, msgspec.Raw] | None
    request_facts: Mapping[str, NodeFacts]


def _validation(exc: msgspec.ValidationError, field: str) -> WireError:
    text = str(exc)
    message, sep, path = text.rpartition(" - at `$")
    if sep:
        return WireError(f"{field}{path.rstrip('`')}: {message}")
    return WireError(f"{field}: {text}")


def _decode_args(body: bytes) -> tuple[msgspec.Raw, _RawNodeList | None, list[str] | None]:
    try:
        args = _ARGS.decode(body)
    except msgspec.ValidationError as exc:
        if str(exc).startswith("Expected `object`"):
            raise WireError(f"ExtenderArgs must be a JSON object: {exc}") from None
        message, _, path = str(exc).rpartition(" - at `$.")
        key = path.rstrip("`")
        top, _, rest = key.partition(".")
        name = {"pod": "Pod", "nodes": "Nodes", "nodenames": "NodeNames"}.get(top.lower(), top)
        raise WireError(f"{name}{'.' + rest if rest else ''}: {message}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"request body is not valid JSON: {exc}") from None
    pod = args.Pod if args.Pod is not _NULL else args.pod
    nodes = args.Nodes if args.Nodes is not None else args.nodes
    names = args.NodeNames if args.NodeNames is not None else args.nodenames
    if nodes is None and names is None:
        # Go matches field names case-insensitively: look for any other spelling.
        loose = {k.lower(): v for k, v in _ANY_KEYS.decode(body).items()}
        try:
            nodes = _RAW_NODES.decode(loose.get("nodes", _NULL))
        except msgspec.ValidationError as exc:
            raise _validation(exc, "Nodes") from None
        try:
            names = _NAMES.decode(loose.get("nodenames", _NULL))
        except msgspec.ValidationError as exc:
            raise _validation(exc, "NodeNames") from None
        pod = loose.get("pod", pod)
    return pod, nodes, names


def _pod_preferences(
    raw: msgspec.Raw, *, rules: RegionRules, policy: ScoringPolicy
) -> tuple[str, PodPreferences]:
    try:
        pod = _POD.decode(raw) if raw != _NULL else None
    except msgspec.ValidationError as exc:
        raise _validation(exc, "Pod") from None
    meta = (pod.metadata if pod else None) or _Meta()
    containers: list[Mapping[str, object]] = []
    spec = pod.spec if pod else None
    if spec is not None:
        for c in (*(spec.containers or ()), *(spec.init_containers or ())):
            r = c.resources
            if r is not None:
                containers.append({"resources": {"limits": r.limits, "requests": r.requests}})
    try:
        prefs = pod_preferences(
            meta.annotations or {},
            containers=containers,
            policy=policy,
            resolve_region=rules.resolve,
        )
    except ValueError as exc:
        raise WireError(f"Pod.spec: {exc}") from None
    return (f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name), prefs


def parse_args(
    body: bytes,
    *,
    rules: RegionRules,
    verb: str = "prioritize",
    policy: ScoringPolicy | None = None,
) -> ParsedArgs:
    """Decode ExtenderArgs for `verb` (filter or prioritize); raises `WireError` naming the
    offending field.

    In full mode each node is decoded only as deeply as the answer needs: its name when
    nothing about it can matter (filter without a cap, an opted-out pod), its labels for
    regions, and its status and GPU annotation only for prioritizing a GPU pod."""
    try:
        return _parse_args(body, rules=rules, verb=verb, policy=policy or ScoringPolicy())
    except RecursionError:
        # msgspec stops at its own depth limit; a Pod or Node is never nested that deep
        raise WireError("request body: JSON nested too deeply") from None


def _parse_args(body: bytes, *, rules: RegionRules, verb: str, policy: ScoringPolicy) -> ParsedArgs:
    if not body.strip():
        raise WireError("empty request body: expected ExtenderArgs JSON")
    raw_pod, nodes, names = _decode_args(body)
    pod_name, prefs = _pod_preferences(raw_pod, rules=rules, policy=policy)
    if names is not None:
        return ParsedArgs(
            pod_name=pod_name,
            pod=prefs,
            names=tuple(names),
            cache_mode=True,
            raw_nodes=None,
            request_facts=_EMPTY_NODE_FACTS,
        )
    if nodes is None:
        raise WireError("neither Nodes nor NodeNames is set: one of them must be non-null")
    raw: dict[str, msgspec.Raw] = {}
    facts: dict[str, NodeFacts] = {}
    if verb == "filter":
        need_facts = not prefs.opt_out and (
            prefs.max_intensity_g_per_kwh is not None or bool(prefs.avoid_regions)
        )
    else:
        need_facts = not prefs.opt_out
    want_gpu = need_facts and verb != "filter" and prefs.gpus_requested > 0
    decoder: (
        msgspec.json.Decoder[_Node]
        | msgspec.json.Decoder[_NodeMeta]
        | msgspec.json.Decoder[_NodeName]
    )
    decoder = _NODE if want_gpu else (_NODE_META if need_facts else _NODE_NAME)
    for i, item in enumerate(nodes.items or ()):
        where = f"Nodes.items[{i}]"
        try:
            node = decoder.decode(item)
        except msgspec.ValidationError as exc:
            raise _validation(exc, where) from None
        meta = node.metadata
        if meta is None or not meta.name:
            raise WireError(f"{where}.metadata.name: missing or not a non-empty string")
        if meta.name in raw:
            continue
        raw[meta.name] = item  # a view into the request body, not a copy
        if isinstance(node, _NodeName):
            continue
        status = node.status if isinstance(node, _Node) else None
        node_meta = node.metadata or _Meta()
        try:
            gpus = gpu_count(status.allocatable, status.capacity) if status else 0
        except ValueError as exc:
            raise WireError(f"{where}.status: {exc}") from None
        facts[meta.name] = build_node_facts(
            meta.name,
            labels=node_meta.labels or {},
            annotations=node_meta.annotations or {},
            gpus=gpus,
            rules=rules,
            with_gpu_energy=want_gpu,
        )
    return ParsedArgs(
        pod_name=pod_name,
        pod=prefs,
        names=tuple(raw),
        cache_mode=False,
        raw_nodes=raw,
        request_facts=facts,
    )


# ---------------------------------------------------------------------------- handlers
def _json(data: Any, status: int = 200) -> Response:
    return Response(msgspec.json.encode(data), status_code=status, media_type="application/json")


def _filter_error(message: str, status: int) -> Response:
    return _json(
        {
            "Nodes": None,
            "NodeNames": None,
            "FailedNodes": {},
            "FailedAndUnresolvableNodes": {},
            "Error": message,
        },
        status,
    )


@dataclass(frozen=True, slots=True)
class _Context:
    holder: SnapshotHolder
    clock: Clock
    policy: ScoringPolicy
    rules: RegionRules
    metrics: ExtenderMetrics
    max_body_bytes: int
    intensities: _IntensityCache


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise WireError(f"Content-Length {declared!r} is not a number") from None
        if size > limit:
            raise WireError(
                f"request body of {size} bytes exceeds the {limit}-byte limit", status=413
            )
    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise WireError(f"request body exceeds the {limit}-byte limit", status=413)
            chunks.append(chunk)
    except ClientDisconnect:
        raise WireError("client disconnected while sending the body") from None
    return b"".join(chunks)


def _facts_for(
    parsed: ParsedArgs, snap: ExtenderSnapshot | None, *, with_gpu_energy: bool
) -> Mapping[str, NodeFacts]:
    known = snap.nodes if snap is not None else _EMPTY_NODE_FACTS
    if parsed.cache_mode:
        return known
    if not with_gpu_energy:
        return parsed.request_facts
    merged = dict(parsed.request_facts)
    for name, f in merged.items():
        inv = known.get(name)
        if f.gpu is None and inv is not None and inv.gpu is not None:
            merged[name] = replace(f, gpu=inv.gpu)
    return merged


class _IntensityCache:
    """Region intensities per (snapshot, pod duration, second): computed once a second, not
    per request (they depend only on those three; `now` is floored to the second)."""

    def __init__(self, policy: ScoringPolicy) -> None:
        self._policy = policy
        self._entries: dict[timedelta | None, tuple[object, datetime, dict[str, RegionIntensity]]]
        self._entries = {}

    def get(
        self, snap: ExtenderSnapshot | None, now: datetime, duration: timedelta | None
    ) -> Mapping[str, RegionIntensity]:
        if snap is None:
            return {}
        second = now.replace(microsecond=0)
        hit = self._entries.get(duration)
        if hit is not None and hit[0] is snap and hit[1] == second:
            return hit[2]
        intens = region_intensities(
            snap.carbon, snap.carbon, now=second, policy=self._policy, duration=duration
        )
        if len(self._entries) > 64:
            self._entries.clear()
        self._entries[duration] = (snap, second, intens)
        return intens


def _decide(
    ctx: _Context, parsed: ParsedArgs, *, with_gpu_energy: bool
) -> tuple[datetime, Mapping[str, NodeFacts], Mapping[str, RegionIntensity]]:
    snap = ctx.holder.current()
    now = ctx.clock.now()
    facts = _facts_for(parsed, snap, with_gpu_energy=with_gpu_energy)
    return now, facts, ctx.intensities.get(snap, now, parsed.pod.expected_duration)


class _Handlers:
    """The endpoints' handlers over one `_Context`; each reads only the snapshot."""

    def __init__(self, ctx: _Context) -> None:
        self._ctx = ctx

    async def filter(self, request: Request) -> Response:
        ctx, m = self._ctx, self._ctx.metrics
        started = time.monotonic()
        try:
            body_bytes = await _read_body(request, ctx.max_body_bytes)
            parsed = parse_args(body_bytes, rules=ctx.rules, verb="filter", policy=ctx.policy)
        except WireError as exc:
            log.info("filter: rejected request: %s", exc)
            return _filter_error(str(exc), exc.status)
        try:
            _, facts, intens = _decide(ctx, parsed, with_gpu_energy=False)
            result = filter_nodes(parsed.names, facts=facts, intensities=intens, pod=parsed.pod)
            response = _filter_response(parsed, result)
        except Exception as exc:  # never crash the server; the scheduler sees Error
            log.exception("filter failed for pod %s", parsed.pod_name)
            return _filter_error(f"internal error: {type(exc).__name__}: {exc}", 500)
        _count_prefs(m, parsed.pod)
        outcome = "opted_out" if parsed.pod.opt_out else ("capped" if result.rejected else "passed")
        m.decisions.labels("filter", outcome).inc()
        m.nodes.labels("passed").inc(len(result.passed))
        m.nodes.labels("rejected").inc(len(result.rejected))
        m.latency.labels("filter").observe(time.monotonic() - started)
        return response

    async def prioritize(self, request: Request) -> Response:
        ctx, m = self._ctx, self._ctx.metrics
        started = time.monotonic()
        try:
            parsed = parse_args(
                await _read_body(request, ctx.max_body_bytes), rules=ctx.rules, policy=ctx.policy
            )
        except WireError as exc:
            log.info("prioritize: rejected request: %s", exc)
            return _json({"Error": str(exc)}, exc.status)
        try:
            gpu_pod = parsed.pod.gpus_requested > 0
            now, facts, intens = _decide(ctx, parsed, with_gpu_energy=gpu_pod)
            snap = ctx.holder.current()
            # Cache mode reuses the table built once per snapshot.
            cached = snap.table if parsed.cache_mode and snap is not None else None
            table = cached or NodeTable.build(facts)
            result = score_table(
                parsed.names,
                table=table,
                intensities=intens,
                pod=parsed.pod,
                policy=ctx.policy,
                now=now,
            )
            response = _json([{"Host": h, "Score": s} for h, s in result.scores.items()])
        except Exception as exc:
            log.exception("prioritize failed for pod %s", parsed.pod_name)
            return _json({"Error": f"internal error: {type(exc).__name__}: {exc}"}, 500)
        _count_prefs(m, parsed.pod)
        if result.neutral_reason is not None:
            m.neutral.labels(result.neutral_reason.value).inc()
            m.decisions.labels("prioritize", "neutral").inc()
        else:
            m.decisions.labels("prioritize", "scored").inc()
        m.latency.labels("prioritize").observe(time.monotonic() - started)
        return response

    async def rank(self, request: Request) -> Response:
        ctx = self._ctx
        started = time.monotonic()
        now = ctx.clock.now()
        try:
            duration, start = _rank_params(request.query_params, now=now)
        except WireError as exc:
            return _json({"error": str(exc)}, 400)
        snap = ctx.holder.current()
        carbon = snap.carbon if snap is not None else {}
        try:
            ranks = rank_regions(carbon, now=now, start=start, duration=duration, policy=ctx.policy)
        except Exception as exc:
            log.exception("regions/rank failed")
            return _json({"error": f"internal error: {type(exc).__name__}: {exc}"}, 500)
        rows = [_rank_row(i, r) for i, r in enumerate(ranks, start=1)]
        ctx.metrics.latency.labels("rank").observe(time.monotonic() - started)
        return _json(
            {
                "now": now.isoformat(),
                "start": start.isoformat(),
                "duration_seconds": duration.total_seconds() if duration else None,
                "regions": rows,
            }
        )

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        snap = self._ctx.holder.current()
        if snap is None:
            return _json({"status": "not ready", "reason": "no snapshot published yet"}, 503)
        reason = snap.not_ready_reason
        if reason is not None:
            return _json({"status": "not ready", "reason": reason}, 503)
        return _json({"status": "ready", "nodes_synced": True, "regions": sorted(snap.carbon)})

    async def index(self, request: Request) -> Response:
        return _json({"service": "gridshift extender", "endpoints": ENDPOINTS})


def _filter_response(parsed: ParsedArgs, result: FilterResult) -> Response:
    """ExtenderFilterResult: node names in cache mode; in full mode the surviving node
    objects exactly as the scheduler sent them (one copy, spliced into the encoded body)."""
    body: dict[str, Any] = {
        "Nodes": None,
        "NodeNames": None,
        "FailedNodes": {},
        "FailedAndUnresolvableNodes": dict(result.rejected),
        "Error": "",
    }
    if parsed.cache_mode:
        body["NodeNames"] = list(result.passed)
        return _json(body)
    assert parsed.raw_nodes is not None
    raw = parsed.raw_nodes
    body["Nodes"] = _NODES_PLACEHOLDER
    head, _, tail = msgspec.json.encode(body).partition(_NODES_PLACEHOLDER_JSON)
    pieces: list[bytes | msgspec.Raw] = [head, b'{"metadata":{},"items":[']
    for i, n in enumerate(result.passed):
        if i:
            pieces.append(b",")
        pieces.append(raw[n])
    pieces += (b"]}", tail)
    return Response(b"".join(pieces), media_type="application/json")


def _rank_row(rank: int, r: RegionRank) -> dict[str, Any]:
    """One region of the /regions/rank answer."""
    ri = r.intensity
    return {
        "rank": rank,
        "region": r.region,
        "intensity": _finite_or_none(ri.value),
        "unit": ri.unit.value,
        "status": ri.status.value,
        "age_seconds": ri.age_seconds,
        "averaged_over_seconds": ri.averaged_over_seconds,
        "provider": ri.provider,
        "best_start": r.best_start.isoformat() if r.best_start else None,
        "best_intensity": _finite_or_none(r.best_intensity),
        "note": ri.note,
    }


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _count_prefs(m: ExtenderMetrics, pod: PodPreferences) -> None:
    if pod.problems:
        m.annotation_problems.inc(len(pod.problems))


def _rank_params(params: Mapping[str, str], *, now: datetime) -> tuple[timedelta | None, datetime]:
    duration: timedelta | None = None
    raw = params.get("duration")
    if raw:
        try:
            duration = parse_duration(raw)
        except ValueError as exc:
            raise WireError(f"duration: {exc}") from None
        if not timedelta(0) < duration <= timedelta(days=30):
            raise WireError(f"duration: {raw!r} must be between 0 and 30d")
    start = now
    raw = params.get("start")
    if raw:
        try:
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+"))
            start = ensure_utc(parsed, name="start")
        except (ValueError, OverflowError) as exc:
            raise WireError(f"start: {raw!r} is not an RFC 3339 time with offset ({exc})") from None
        if abs(start - now) > _RANK_START_WITHIN:
            raise WireError(f"start: {raw!r} is more than {_RANK_START_WITHIN.days} days from now")
    return duration, start


def create_app(
    holder: SnapshotHolder,
    *,
    clock: Clock,
    policy: ScoringPolicy,
    rules: RegionRules,
    registry: CollectorRegistry,
    max_body_bytes: int = 16 * 1024 * 1024,
    metrics: ExtenderMetrics | None = None,
) -> Starlette:
    """The ASGI app. It reads `holder` only; the wiring runs the jobs that fill it."""
    ctx = _Context(
        holder=holder,
        clock=clock,
        policy=policy,
        rules=rules,
        metrics=metrics or ExtenderMetrics(registry, holder=holder, clock=clock, policy=policy),
        max_body_bytes=max_body_bytes,
        intensities=_IntensityCache(policy),
    )
    h = _Handlers(ctx)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/scheduler/filter", h.filter, methods=["POST"]),
        Route("/scheduler/prioritize", h.prioritize, methods=["POST"]),
        Route("/regions/rank", h.rank, methods=["GET"]),
        Route("/healthz", h.healthz, methods=["GET"]),
        Route("/readyz", h.readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/", h.index, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_CountResponses, metrics=ctx.metrics)])


def webhook_error_body(status: int, message: str) -> bytes:
    """Errors the listener answers itself (431, 408, 503, bad framing) in the webhook's own
    `{"Error": ...}` shape, which kube-scheduler reads from filter and prioritize answers."""
    return msgspec.json.encode({"Error": message})


_VERBS = {
    "/scheduler/filter": "filter",
    "/scheduler/prioritize": "prioritize",
    "/regions/rank": "rank",
    "/healthz": "healthz",
    "/readyz": "readyz",
    "/metrics": "metrics",
    "/": "index",
}


class _CountResponses:
    """Counts every response by verb and code (`gridshift_extender_requests_total`), 404,
    405 and 500 included, and turns an exception that escaped a handler into the webhook's
    JSON `{"Error": ...}` 500 instead of Starlette's plain-text one."""

    def __init__(self, app: ASGIApp, *, metrics: ExtenderMetrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        status = 0

        async def counting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, counting)
        except Exception as exc:
            log.exception("%s %s failed", scope["method"], scope["path"])
            if status:
                raise
            status = 500
            await _json({"Error": f"internal error: {type(exc).__name__}"}, 500)(
                scope, receive, send
            )
        finally:
            verb = _VERBS.get(scope["path"], "other")
            self._metrics.requests.labels(verb, str(status or 500)).inc()
