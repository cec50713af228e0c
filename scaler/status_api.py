"""The JSON status API (ASGI): each workload's last decision with its reasons.

Routes: `GET /status` (everything), `GET /status/{workload}`, `GET /status/history` (the
recent snapshots' chart points, from a bounded in-memory ring), `GET /status/extender` (what
the dashboard knows of a scheduler extender), `GET /metrics` (Prometheus text from the
registry passed in), `GET /healthz` (the process answers), `GET /readyz` (a tick has
published a snapshot), `GET /dashboard` and `GET /dashboard/assets/{name}` (the built-in
dashboard, packaged files read once at start; `GET /` redirects there). Handlers only read
the current snapshot and memory; none calls the network. When the scaler runs on the SAMPLE
DATA scenario every answer carries `data_note`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Annotated, Any

import msgspec
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from pydantic import Field, TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from scaler.core.history import HistoryPoint, SnapshotHistory
from scaler.dashboard import DashboardAssets, load_dashboard_assets
from scaler.snapshot import Snapshot, SnapshotHolder, WorkloadStatus

__all__ = [
    "ExtenderView",
    "JsonResponse",
    "actual_replicas_json",
    "create_status_app",
    "history_json",
    "snapshot_json",
    "workload_json",
]

ExtenderView = Callable[[], Mapping[str, Any]]
"""Returns what is known of a scheduler extender (read from memory, never the network)."""

NO_EXTENDER: Mapping[str, Any] = {"configured": False, "note": "no extender configured"}


def _numpy_to_python(value: object) -> object:
    """numpy arrays and scalars as plain lists and numbers (msgspec's encoder hook)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise NotImplementedError(f"cannot encode {type(value).__name__} as JSON")


class JsonResponse(Response):
    """JSON rendered by msgspec (NaN and infinities become null; numpy values as numbers)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return msgspec.json.encode(content, enc_hook=_numpy_to_python)


def _iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat().replace("+00:00", "Z")


def workload_json(ws: WorkloadStatus) -> dict[str, Any]:
    out = asdict(ws)
    out["mode"] = str(ws.mode)
    out["decided_at"] = _iso(ws.decided_at)
    out["mode_since"] = _iso(ws.mode_since)
    out["deadline"] = _iso(ws.deadline)
    out["reasons"] = list(ws.reasons)
    out["stale_inputs"] = list(ws.stale_inputs)
    out["load_forecast"] = dict(ws.load_forecast)
    return out


def _totals(workloads: Mapping[str, WorkloadStatus]) -> dict[str, float]:
    ws = workloads.values()
    return {
        "emitted_g": sum(w.emitted_g for w in ws),
        "saved_g": sum(w.saved_g for w in ws),
        "counterfactual_g": sum(w.counterfactual_g for w in ws),
        "energy_joules": sum(w.energy_joules for w in ws),
    }


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    by_region: dict[str, dict[str, float]] = {}
    for region in sorted({w.region for w in snap.workloads.values()}):
        by_region[region] = _totals({n: w for n, w in snap.workloads.items() if w.region == region})
    return {
        "data_note": snap.data_note,
        "taken_at": _iso(snap.taken_at),
        "tick_seconds": snap.tick_seconds,
        "ticks_total": snap.ticks_total,
        "refits_total": snap.refits_total,
        "last_refit_at": _iso(snap.last_refit_at),
        "source_errors_total": dict(snap.source_errors_total),
        "totals": _totals(snap.workloads),
        "totals_by_region": by_region,
        "regions": {name: {**asdict(rc), "at": _iso(rc.at)} for name, rc in snap.regions.items()},
        "workloads": {name: workload_json(ws) for name, ws in snap.workloads.items()},
    }


def _point_json(p: HistoryPoint) -> dict[str, Any]:
    return {
        "taken_at": _iso(p.taken_at),
        "saved_g": p.saved_g,
        "emitted_g": p.emitted_g,
        "counterfactual_g": p.counterfactual_g,
        "workloads": p.workloads,
        "regions": p.regions,
    }


def actual_replicas_json(snap: Snapshot | None) -> dict[str, Any]:
    """Whether the newest tick knew the actual replicas, and why not (for the dashboard)."""
    if snap is None:
        return {"reported": False, "note": "actual unknown: no tick yet", "unknown": {}}
    unknown = {
        name: ws.actual_replicas_note or "unknown"
        for name, ws in sorted(snap.workloads.items())
        if ws.actual_replicas is None
    }
    reported = len(unknown) < len(snap.workloads)
    notes = sorted(set(unknown.values()))
    if not unknown:
        note = ""
    elif not reported:
        note = "actual unknown: " + "; ".join(notes)
    else:
        note = f"actual unknown for {', '.join(unknown)}: " + "; ".join(notes)
    return {"reported": reported, "note": note, "unknown": unknown}


def history_json(
    points: tuple[HistoryPoint, ...],
    *,
    capacity_points: int,
    data_note: str,
    newest: Snapshot | None = None,
) -> dict[str, Any]:
    return {
        "data_note": data_note,
        "capacity_points": capacity_points,
        "actual_replicas": actual_replicas_json(newest),
        "points": [_point_json(p) for p in points],
    }


_LIMIT = TypeAdapter(Annotated[int, Field(ge=1)])


def _query_int(request: Request, name: str) -> int | JSONResponse | None:
    """A `?name=` integer >= 1 (the last one given), or the 422 answer naming the problem
    (pydantic's error, as `scaler/status_openapi.json` declares the parameter)."""
    values = request.query_params.getlist(name)
    if not values:
        return None
    try:
        return _LIMIT.validate_python(values[-1])
    except ValidationError as exc:
        detail = [{**e, "loc": ["query", name]} for e in exc.errors(include_url=False)]
        return JSONResponse({"detail": detail}, status_code=422)


async def _http_error(request: Request, exc: Exception) -> Response:
    """404/405 (no such route, wrong method) as `{"detail": ...}` JSON."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


@dataclass(frozen=True, slots=True)
class _StatusRoutes:
    """The status app's handlers; they only read the snapshot, the history ring and memory."""

    holder: SnapshotHolder
    registry: CollectorRegistry
    ring: SnapshotHistory
    files: DashboardAssets
    extender: ExtenderView | None
    region_policy: Mapping[str, Any] | None

    def _not_ready(self) -> JsonResponse:
        return JsonResponse({"error": "no tick has completed yet"}, status_code=503)

    def healthz(self, request: Request) -> Response:
        return JsonResponse({"status": "ok"})

    def readyz(self, request: Request) -> Response:
        snap = self.holder.current()
        if snap is None:
            return self._not_ready()
        return JsonResponse({"status": "ready", "taken_at": _iso(snap.taken_at)})

    def status(self, request: Request) -> Response:
        snap = self.holder.current()
        return self._not_ready() if snap is None else JsonResponse(snapshot_json(snap))

    def status_history(self, request: Request) -> Response:
        limit = _query_int(request, "limit")
        if isinstance(limit, Response):
            return limit
        snap = self.holder.current()
        return JsonResponse(
            history_json(
                self.ring.points(limit=limit),
                capacity_points=self.ring.capacity_points,
                data_note=snap.data_note if snap is not None else "",
                newest=snap,
            )
        )

    def status_extender(self, request: Request) -> Response:
        body = dict(self.extender() if self.extender is not None else NO_EXTENDER)
        if self.region_policy is not None:
            body["region_policy"] = dict(self.region_policy)
        return JsonResponse(body)

    def root(self, request: Request) -> Response:
        return RedirectResponse("/dashboard", status_code=307)

    def dashboard(self, request: Request) -> Response:
        return HTMLResponse(self.files.index_html)

    def dashboard_asset(self, request: Request) -> Response:
        name = str(request.path_params["name"])
        found = self.files.get(name)
        if found is None:
            return JsonResponse({"error": f"unknown asset {name!r}"}, status_code=404)
        body, media_type = found
        return Response(body, media_type=media_type, headers={"Cache-Control": "no-cache"})

    def status_one(self, request: Request) -> Response:
        workload = str(request.path_params["workload"])
        snap = self.holder.current()
        if snap is None:
            return self._not_ready()
        ws = snap.workloads.get(workload)
        if ws is None:
            return JsonResponse(
                {"error": f"unknown workload {workload!r}", "workloads": sorted(snap.workloads)},
                status_code=404,
            )
        return JsonResponse(
            {"data_note": snap.data_note, "taken_at": _iso(snap.taken_at), **workload_json(ws)}
        )

    def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def routes(self) -> list[Route]:
        get = ["GET"]
        return [
            Route("/healthz", self.healthz, methods=get),
            Route("/readyz", self.readyz, methods=get),
            Route("/status", self.status, methods=get),
            Route("/status/history", self.status_history, methods=get),
            Route("/status/extender", self.status_extender, methods=get),
            Route("/", self.root, methods=get),
            Route("/dashboard", self.dashboard, methods=get),
            Route("/dashboard/assets/{name}", self.dashboard_asset, methods=get),
            Route("/status/{workload}", self.status_one, methods=get),
            Route("/metrics", self.metrics, methods=get),
        ]


def create_status_app(
    holder: SnapshotHolder,
    *,
    registry: CollectorRegistry,
    on_shutdown: Callable[[], None] | None = None,
    history: SnapshotHistory | None = None,
    extender: ExtenderView | None = None,
    assets: DashboardAssets | None = None,
    region_policy: Mapping[str, Any] | None = None,
) -> Starlette:
    """The status app (Starlette; its OpenAPI document is `scaler/status_openapi.json`);
    `on_shutdown` runs when the server stops (before a re-raised signal ends the process),
    e.g. to stop the scheduler. `history` backs `/status/history` (an empty ring of 1 when
    absent); `extender` feeds the dashboard's extender panel, and `region_policy` (the
    scheduling threshold and prefer/avoid regions operators set) is shown there with it."""
    routes = _StatusRoutes(
        holder=holder,
        registry=registry,
        ring=history if history is not None else SnapshotHistory(1),
        files=assets if assets is not None else load_dashboard_assets(),
        extender=extender,
        region_policy=region_policy,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if on_shutdown is not None:
                on_shutdown()

    return Starlette(
        routes=routes.routes(),
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
