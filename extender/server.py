"""The kube-scheduler extender webhook (HTTPExtender) and its side endpoints.

URL paths (urlPrefix `http(s)://HOST:PORT/scheduler`, `filterVerb: filter`,
`prioritizeVerb: prioritize`):

| Method, path                 | What                                                            |
|------------------------------|-----------------------------------------------------------------|
| POST /scheduler/filter       | ExtenderArgs -> ExtenderFilterResult                            |
| POST /scheduler/prioritize   | ExtenderArgs -> HostPriorityList (`[{"Host", "Score"}]`, 0..10) |
| GET  /regions/rank           | regions by intensity; `?duration=2h&start=<RFC 3339>` optional  |
| GET  /healthz, /readyz       | liveness; readiness (a snapshot exists)                         |
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
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
import uvicorn
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from extender.nodes import RegionRules, node_facts
from extender.scoring import (
    DataStatus,
    NodeFacts,
    PodPreferences,
    ScoringPolicy,
    filter_nodes,
    pod_preferences,
    rank_regions,
    region_intensities,
    score_nodes,
)
from extender.snapshot import ExtenderSnapshot, SnapshotHolder
from forecasts.time import Clock, ensure_utc, parse_duration

__all__ = [
    "ENDPOINTS",
    "ExtenderMetrics",
    "ParsedArgs",
    "WireError",
    "build_server",
    "create_app",
    "parse_args",
    "parse_listen",
    "serve",
]

log = logging.getLogger(__name__)

ENDPOINTS = {
    "POST /scheduler/filter": "ExtenderArgs -> ExtenderFilterResult",
    "POST /scheduler/prioritize": "ExtenderArgs -> HostPriorityList (scores 0..10)",
    "GET /regions/rank": "regions ranked by gCO2/kWh; optional duration=2h, start=RFC 3339",
    "GET /healthz": "liveness",
    "GET /readyz": "readiness: 200 once a snapshot is published",
    "GET /metrics": "Prometheus metrics",
}

_EMPTY_NODE_FACTS: Mapping[str, NodeFacts] = {}


# ---------------------------------------------------------------------------- wire types
class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _PodMeta(_Wire):
    name: str = ""
    namespace: str = ""
    annotations: dict[str, str] | None = None


class _PodSpec(_Wire):
    containers: list[dict[str, Any]] | None = None
    initContainers: list[dict[str, Any]] | None = None  # the v1.Pod field name


class _Pod(_Wire):
    metadata: _PodMeta | None = None
    spec: _PodSpec | None = None


class _NodeList(_Wire):
    items: list[dict[str, Any]] | None = None


class _Args(_Wire):
    """ExtenderArgs with lower-cased keys (Go matches field names case-insensitively)."""

    pod: _Pod | None = None
    nodes: _NodeList | None = None
    nodenames: list[str] | None = None


class WireError(ValueError):
    """A request the extender cannot read; the message names the field and the problem."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class ParsedArgs:
    """What a filter/prioritize call asks, translated from the wire."""

    pod_name: str
    pod: PodPreferences
    names: tuple[str, ...]
    cache_mode: bool
    raw_nodes: Mapping[str, Mapping[str, Any]] | None
    request_facts: Mapping[str, NodeFacts]


_FIELD_NAMES = {"pod": "Pod", "nodes": "Nodes", "nodenames": "NodeNames"}


def _where(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + _FIELD_NAMES.get(item, item))
    return "".join(parts)


def parse_args(body: bytes, *, rules: RegionRules) -> ParsedArgs:
    """Decode ExtenderArgs; raises `WireError` naming the offending field."""
    if not body.strip():
        raise WireError("empty request body: expected ExtenderArgs JSON")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise WireError(f"request body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise WireError(f"ExtenderArgs must be a JSON object, got {type(data).__name__}")
    try:
        args = _Args.model_validate({str(k).lower(): v for k, v in data.items()})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise WireError(f"{_where(first['loc'])}: {first['msg']}") from None
    pod = args.pod or _Pod()
    meta = pod.metadata or _PodMeta()
    containers: list[Mapping[str, object]] = []
    if pod.spec is not None:
        containers.extend(pod.spec.containers or ())
        containers.extend(pod.spec.initContainers or ())
    prefs = pod_preferences(meta.annotations or {}, containers=containers)
    pod_name = f"{meta.namespace}/{meta.name}" if meta.namespace else meta.name
    if args.nodenames is not None:
        return ParsedArgs(
            pod_name=pod_name,
            pod=prefs,
            names=tuple(args.nodenames),
            cache_mode=True,
            raw_nodes=None,
            request_facts=_EMPTY_NODE_FACTS,
        )
    if args.nodes is None:
        raise WireError("neither Nodes nor NodeNames is set: one of them must be non-null")
    raw: dict[str, Mapping[str, Any]] = {}
    facts: dict[str, NodeFacts] = {}
    for i, item in enumerate(args.nodes.items or ()):
        try:
            f = node_facts(item, rules=rules, where=f"Nodes.items[{i}]")
        except ValueError as exc:
            raise WireError(str(exc)) from None
        raw.setdefault(f.name, item)
        facts.setdefault(f.name, f)
    return ParsedArgs(
        pod_name=pod_name,
        pod=prefs,
        names=tuple(raw),
        cache_mode=False,
        raw_nodes=raw,
        request_facts=facts,
    )


# ---------------------------------------------------------------------------- metrics
class _SnapshotCollector(Collector):
    """Data freshness, computed at scrape time from the current snapshot."""

    def __init__(self, holder: SnapshotHolder, clock: Clock, policy: ScoringPolicy) -> None:
        self._holder = holder
        self._clock = clock
        self._policy = policy

    def collect(self) -> Iterator[Metric]:
        snap = self._holder.current()
        age = GaugeMetricFamily(
            "gridshift_extender_snapshot_age_seconds",
            "Seconds since the extender's snapshot was built (-1: none yet)",
        )
        nodes = GaugeMetricFamily(
            "gridshift_extender_nodes", "Nodes known to the extender's inventory"
        )
        synced = GaugeMetricFamily(
            "gridshift_extender_nodes_synced", "1 once the node inventory has listed"
        )
        carbon_age = GaugeMetricFamily(
            "gridshift_extender_carbon_age_seconds",
            "Age of the newest carbon value at or before now, per region",
            labels=["region", "provider"],
        )
        fresh = GaugeMetricFamily(
            "gridshift_extender_carbon_fresh",
            "1 when the region's carbon value is fresh enough to score with, else 0",
            labels=["region"],
        )
        if snap is None:
            age.add_metric([], -1.0)
            nodes.add_metric([], 0.0)
            synced.add_metric([], 0.0)
        else:
            now = self._clock.now()
            age.add_metric([], (now - snap.taken_at).total_seconds())
            nodes.add_metric([], float(len(snap.nodes)))
            synced.add_metric([], 1.0 if snap.nodes_synced else 0.0)
            intens = region_intensities(snap.carbon, snap.carbon, now=now, policy=self._policy)
            for region, ri in sorted(intens.items()):
                if ri.age_seconds is not None:
                    carbon_age.add_metric([region, ri.provider], ri.age_seconds)
                fresh.add_metric([region], 1.0 if ri.status is DataStatus.FRESH else 0.0)
        yield from (age, nodes, synced, carbon_age, fresh)


class ExtenderMetrics:
    """The webhook's own metrics, on a passed-in registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        holder: SnapshotHolder,
        clock: Clock,
        policy: ScoringPolicy,
    ) -> None:
        self.latency = Histogram(
            "gridshift_extender_request_duration_seconds",
            "Extender request latency by verb (body read to response built)",
            ["verb"],
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
        )
        self.requests = Counter(
            "gridshift_extender_requests",
            "Extender requests by verb and HTTP status code",
            ["verb", "code"],
            registry=registry,
        )
        self.decisions = Counter(
            "gridshift_extender_decisions",
            "Decisions by verb and outcome"
            " (filter: passed, capped, opted_out; prioritize: scored, neutral)",
            ["verb", "outcome"],
            registry=registry,
        )
        self.nodes = Counter(
            "gridshift_extender_filter_nodes",
            "Nodes seen by filter, by result (passed, rejected)",
            ["result"],
            registry=registry,
        )
        self.neutral = Counter(
            "gridshift_extender_neutral_scores",
            "Prioritize calls answered with one neutral score for every node, by reason",
            ["reason"],
            registry=registry,
        )
        self.annotation_problems = Counter(
            "gridshift_extender_pod_annotation_problems",
            "Pod annotations ignored because they did not parse",
            registry=registry,
        )
        registry.register(_SnapshotCollector(holder, clock, policy))


# ---------------------------------------------------------------------------- handlers
def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


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


def _facts_for(parsed: ParsedArgs, snap: ExtenderSnapshot | None) -> Mapping[str, NodeFacts]:
    known = snap.nodes if snap is not None else _EMPTY_NODE_FACTS
    if parsed.cache_mode:
        return known
    merged = dict(parsed.request_facts)
    for name, f in merged.items():
        inv = known.get(name)
        if f.gpu is None and inv is not None and inv.gpu is not None:
            merged[name] = replace(f, gpu=inv.gpu)
    return merged


def _decide(
    ctx: _Context, parsed: ParsedArgs
) -> tuple[datetime, Mapping[str, NodeFacts], dict[str, Any]]:
    snap = ctx.holder.current()
    now = ctx.clock.now()
    facts = _facts_for(parsed, snap)
    regions = {f.region for n in parsed.names if (f := facts.get(n)) is not None and f.region}
    carbon = snap.carbon if snap is not None else {}
    intens = region_intensities(
        carbon, regions, now=now, policy=ctx.policy, duration=parsed.pod.expected_duration
    )
    return now, facts, intens


def _make_handlers(ctx: _Context) -> dict[str, Callable[[Request], Any]]:
    m = ctx.metrics

    async def filter_(request: Request) -> Response:
        started = time.monotonic()
        try:
            parsed = parse_args(await _read_body(request, ctx.max_body_bytes), rules=ctx.rules)
        except WireError as exc:
            m.requests.labels("filter", str(exc.status)).inc()
            log.info("filter: rejected request: %s", exc)
            return _filter_error(str(exc), exc.status)
        try:
            _, facts, intens = _decide(ctx, parsed)
            result = filter_nodes(parsed.names, facts=facts, intensities=intens, pod=parsed.pod)
            body: dict[str, Any] = {
                "Nodes": None,
                "NodeNames": None,
                "FailedNodes": {},
                "FailedAndUnresolvableNodes": dict(result.rejected),
                "Error": "",
            }
            if parsed.cache_mode:
                body["NodeNames"] = list(result.passed)
            else:
                assert parsed.raw_nodes is not None
                items = [parsed.raw_nodes[n] for n in result.passed]
                body["Nodes"] = {"metadata": {}, "items": items}
            response = _json(body)
        except Exception as exc:  # never crash the server; the scheduler sees Error
            log.exception("filter failed for pod %s", parsed.pod_name)
            m.requests.labels("filter", "500").inc()
            return _filter_error(f"internal error: {type(exc).__name__}: {exc}", 500)
        _count_prefs(m, parsed.pod)
        outcome = "opted_out" if parsed.pod.opt_out else ("capped" if result.rejected else "passed")
        m.decisions.labels("filter", outcome).inc()
        m.nodes.labels("passed").inc(len(result.passed))
        m.nodes.labels("rejected").inc(len(result.rejected))
        m.requests.labels("filter", "200").inc()
        m.latency.labels("filter").observe(time.monotonic() - started)
        return response

    async def prioritize(request: Request) -> Response:
        started = time.monotonic()
        try:
            parsed = parse_args(await _read_body(request, ctx.max_body_bytes), rules=ctx.rules)
        except WireError as exc:
            m.requests.labels("prioritize", str(exc.status)).inc()
            log.info("prioritize: rejected request: %s", exc)
            return _json({"Error": str(exc)}, exc.status)
        try:
            now, facts, intens = _decide(ctx, parsed)
            result = score_nodes(
                parsed.names,
                facts=facts,
                intensities=intens,
                pod=parsed.pod,
                policy=ctx.policy,
                now=now,
            )
            response = _json([{"Host": h, "Score": s} for h, s in result.scores.items()])
        except Exception as exc:
            log.exception("prioritize failed for pod %s", parsed.pod_name)
            m.requests.labels("prioritize", "500").inc()
            return _json({"Error": f"internal error: {type(exc).__name__}: {exc}"}, 500)
        _count_prefs(m, parsed.pod)
        if result.neutral_reason is not None:
            m.neutral.labels(result.neutral_reason.value).inc()
            m.decisions.labels("prioritize", "neutral").inc()
        else:
            m.decisions.labels("prioritize", "scored").inc()
        m.requests.labels("prioritize", "200").inc()
        m.latency.labels("prioritize").observe(time.monotonic() - started)
        return response

    async def rank(request: Request) -> Response:
        started = time.monotonic()
        now = ctx.clock.now()
        try:
            duration, start = _rank_params(request.query_params, now=now)
        except WireError as exc:
            m.requests.labels("rank", "400").inc()
            return _json({"error": str(exc)}, 400)
        snap = ctx.holder.current()
        carbon = snap.carbon if snap is not None else {}
        ranks = rank_regions(carbon, now=now, start=start, duration=duration, policy=ctx.policy)
        out = []
        for i, r in enumerate(ranks, start=1):
            ri = r.intensity
            out.append(
                {
                    "rank": i,
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
            )
        m.requests.labels("rank", "200").inc()
        m.latency.labels("rank").observe(time.monotonic() - started)
        return _json(
            {
                "now": now.isoformat(),
                "start": start.isoformat(),
                "duration_seconds": duration.total_seconds() if duration else None,
                "regions": out,
            }
        )

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok"})

    async def readyz(request: Request) -> Response:
        snap = ctx.holder.current()
        if snap is None:
            return _json({"status": "not ready", "reason": "no snapshot published yet"}, 503)
        return _json({"status": "ready", "nodes_synced": snap.nodes_synced})

    async def index(request: Request) -> Response:
        return _json({"service": "gridshift extender", "endpoints": ENDPOINTS})

    return {
        "filter": filter_,
        "prioritize": prioritize,
        "rank": rank,
        "healthz": healthz,
        "readyz": readyz,
        "index": index,
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
        except ValueError as exc:
            raise WireError(f"start: {raw!r} is not an RFC 3339 time with offset ({exc})") from None
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
    )
    h = _make_handlers(ctx)

    async def metrics_endpoint(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    routes = [
        Route("/scheduler/filter", h["filter"], methods=["POST"]),
        Route("/scheduler/prioritize", h["prioritize"], methods=["POST"]),
        Route("/regions/rank", h["rank"], methods=["GET"]),
        Route("/healthz", h["healthz"], methods=["GET"]),
        Route("/readyz", h["readyz"], methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/", h["index"], methods=["GET"]),
    ]
    return Starlette(routes=routes)


def parse_listen(listen: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::]:8888`) -> (host, port); `ValueError` names the problem."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host:
        raise ValueError(f"listen {listen!r}: expected HOST:PORT")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"listen {listen!r}: port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"listen {listen!r}: port {port} out of range 0..65535")
    return host, port


def build_server(
    app: Starlette,
    *,
    listen: str,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    log_level: str = "info",
) -> uvicorn.Server:
    """A uvicorn server (httptools + uvloop) for `app`; `.run()` serves until stopped."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate and a key file")
    host, port = parse_listen(listen)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        ssl_certfile=tls_cert,
        ssl_keyfile=tls_key,
        log_level=log_level,
        access_log=False,
        http="httptools",
        loop="uvloop",
        lifespan="off",
        timeout_keep_alive=30,
    )
    return uvicorn.Server(config)


def serve(
    app: Starlette,
    *,
    listen: str,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    log_level: str = "info",
) -> None:
    """Serve `app` until SIGINT/SIGTERM, then return (so callers can stop their jobs).

    uvicorn re-raises the signal it caught after its graceful shutdown; a no-op SIGTERM
    handler installed for the duration turns that into a normal return (exit status 0)."""
    server = build_server(
        app, listen=listen, tls_cert=tls_cert, tls_key=tls_key, log_level=log_level
    )
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
