"""The one Kubernetes API-server stand-in: a small in-process server on 127.0.0.1 that the REAL
`kubernetes` client talks to.

Why it still exists (issue 14): gridshift's Kubernetes behaviour is tested on the real control
plane (tests/cluster, `make test-cluster`), with `tests.faultproxy.FaultProxy` in front of it
for faults; the scaler's fault table (tests/cluster/test_kube_faults.py), the CRD-first run
(tests/cluster/test_crd_first.py) and the crash-safety start check no longer use this. It
stays only where the real plane cannot be used, each user and why:

* tests/sample_cluster.py (the offline quick start, the browser and PromQL tests): needs no
  Go toolchain or plane binaries and starts in milliseconds, in the integration tier;
* tests/integration/test_extender_faults.py: the extender's fault table in the integration
  tier, which runs where the plane is not built;
* tests/integration/test_tls_reload.py and tests/e2e/test_extender_cli.py: processes that only
  need *an* API server to list nodes from, over plain HTTP;
* tests/integration/test_kube_bounds.py: only its "ordinary answers read as before" case
  (the other cases are answered by the proxy itself);
* tests/integration/test_kube_stand_in.py: what a real API server cannot be made to answer
  (a rotated extension-apiserver-authentication ConfigMap, which kube-apiserver owns; a
  malformed ScaledObject, which KEDA's CRD refuses).

Where its answers differ from kube-apiserver v1.37 the real-plane tests say so; known: a PUT
of identical content here gets a new resourceVersion (the real server keeps it), LIST ignores
`limit`, BOOKMARKs come every `bookmark_interval_seconds` (the real server: about once a
minute, so a watch is silent for minutes, which hid that stopping a watch waited for its
timeout), a `status` in a create or update is stored (the real server keeps only what the
status subresource writes), any spec is stored (the real CRD's schema refuses e.g.
`maxReplicas: 0` with 422), and a CR watch right after its CRD is established is served (the
real server answers 429 "storage is (re)initializing" for a moment).

What it answers the way kube-apiserver does:

* CRUD on any path `/api/v1/...` or `/apis/{group}/{version}/...`, namespaced or cluster
  scoped: GET (object or list), POST (201, 409 AlreadyExists), PUT (409 Conflict on a stale
  `metadata.resourceVersion`), PATCH (`merge-patch+json`; `strategic-merge-patch+json` treated
  as a merge patch; 409 on a stale resourceVersion in the patch), DELETE. Errors are
  `metav1.Status` JSON with the matching code (404 NotFound, 409, 415, 422) and, for object
  errors, `details` {name, group, kind}.
* ConfigMaps are validated like kube-apiserver does: string values only, at most 1 MiB of
  data in all (422 Invalid), and a PUT whose name differs from the URL's is a 400.
* One global, increasing `resourceVersion`; `metadata.generation` bumps on spec changes only.
* Subresources: `status` (writes touch only `.status`) and `scale` (GET and PATCH/PUT:
  autoscaling/v1 Scale with `spec.replicas` from the object's spec and `status.replicas` from
  its status, `status.selector` as a string, for Deployments, StatefulSets and custom
  resources). `settle_replicas` plays the workload controllers (status follows spec).
* Watches (`?watch=true`): a chunked stream of `{"type", "object"}` lines, starting after the
  given resourceVersion (or with synthetic ADDED events when none/"0"), periodic BOOKMARK
  events when `allowWatchBookmarks=true`, `timeoutSeconds`, and an ERROR event with a 410
  `Expired` Status when the resourceVersion is older than the last `compact()`.
* `kubeconfig()` for processes started against it (KUBECONFIG).
* Hooks for tests: `fail_next(...)` injects an error for matching requests; `handlers` answer
  POSTs to review endpoints (TokenReview, SubjectAccessReview); `requests` records traffic.
"""

from __future__ import annotations

import copy
import json
import threading
import time as _time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import kubernetes.client

from tests.faultproxy import FailureRules, status_body

__all__ = [
    "NODES",
    "FakeApiServer",
    "RecordedRequest",
    "kubeconfig_for",
    "make_node",
    "merge_patch",
]

Obj = dict[str, Any]

NODES = "/api/v1/nodes"
NODE_TEMPLATE: Obj = json.loads(
    (Path(__file__).resolve().parent / "fixtures" / "extender" / "node.json").read_text()
)


def make_node(name: str, region: str, *, gpus: int = 8) -> Obj:
    """A GPU node as a kubelet and gridshift's agent leave it (tests/fixtures/extender/
    node.json) named `name` in cloud region `region`; `put_object(NODES, ...)` stores it."""
    node = copy.deepcopy(NODE_TEMPLATE)
    for key in ("resourceVersion", "uid", "creationTimestamp"):
        node["metadata"].pop(key, None)
    node["metadata"]["name"] = name
    node["metadata"]["labels"]["kubernetes.io/hostname"] = name
    node["metadata"]["labels"]["topology.kubernetes.io/region"] = region
    node["status"]["capacity"]["nvidia.com/gpu"] = str(gpus)
    node["status"]["allocatable"]["nvidia.com/gpu"] = str(gpus)
    return node


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def kubeconfig_for(url: str) -> str:
    """A kubeconfig whose current context talks to `url` with a dummy token."""
    return (
        "apiVersion: v1\nkind: Config\nclusters:\n"
        f"- name: fake\n  cluster:\n    server: {url}\n"
        "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
        "current-context: fake\nusers:\n- name: fake\n  user:\n    token: test-token\n"
    )


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass(frozen=True)
class _Route:
    group_version: str  # "v1" for the core group
    namespace: str | None
    resource: str
    name: str | None
    subresource: str | None

    @property
    def key(self) -> tuple[str, str]:
        return (self.group_version, self.resource)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.details = details


def _details(route: _Route, name: str | None) -> dict[str, Any]:
    """metav1.StatusDetails as kube-apiserver fills it for object errors."""
    group = route.group_version.split("/")[0] if "/" in route.group_version else ""
    return {"name": name or "", **({"group": group} if group else {}), "kind": route.resource}


# kube-apiserver's ConfigMap validation (k8s.io/kubernetes/pkg/apis/core/validation)
CONFIGMAP_MAX_BYTES = 1024 * 1024


def _validate_config_map(route: _Route, body: Obj) -> None:
    name = (body.get("metadata") or {}).get("name", "")
    problems = []
    total = 0
    for field_name in ("data", "binaryData"):
        values = body.get(field_name) or {}
        if not isinstance(values, dict):
            problems.append(f"{field_name}: Invalid value: must be a map")
            continue
        for key, value in values.items():
            if not isinstance(value, str):
                problems.append(f"{field_name}[{key}]: Invalid value: must be a string")
            else:
                total += len(key) + len(value)
    if total > CONFIGMAP_MAX_BYTES:
        problems.append(f"[]: Too long: must have at most {CONFIGMAP_MAX_BYTES} bytes")
    if problems:
        raise ApiError(
            422,
            "Invalid",
            f'ConfigMap "{name}" is invalid: ' + ", ".join(problems),
            **_details(route, name),
        )


def _parse_route(path: str) -> _Route:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        gv, rest = "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return _Route(
        gv,
        namespace,
        rest[0],
        rest[1] if len(rest) > 1 else None,
        rest[2] if len(rest) > 2 else None,
    )


@dataclass
class FakeApiServer:
    """Start with `with FakeApiServer() as api:`; `api.client()` is a real ApiClient."""

    bookmark_interval_seconds: float = 0.2
    default_watch_timeout_seconds: float = 10.0
    handlers: dict[str, Callable[[Obj], Obj]] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._events: list[tuple[int, tuple[str, str], str, Obj]] = []
        self._rv = 100
        self._compacted_rv = 0
        self._compactions = 0
        self._failures = FailureRules()
        self._stopping = False
        owner = self

        class Handler(_Handler):
            server_owner = owner

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> FakeApiServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self) -> str:
        """A kubeconfig for processes started against this server (KUBECONFIG=...)."""
        return kubeconfig_for(self.url)

    def settle_replicas(self, api_path: str) -> int:
        """Do what the Deployment/StatefulSet controller does once pods are up: set
        `status.replicas` (and readyReplicas) to `spec.replicas` for every object in the
        collection at `api_path` whose status differs. Returns how many changed."""
        route = _parse_route(api_path)
        changed = 0
        with self._lock:
            for (ns, name), obj in list(self._objects.get(route.key, {}).items()):
                want = (obj.get("spec") or {}).get("replicas")
                status = obj.get("status") or {}
                if want is None or status.get("replicas") == want:
                    continue
                new = copy.deepcopy(obj)
                new["status"] = {**status, "replicas": want, "readyReplicas": want}
                self._store(
                    _Route(route.group_version, ns or None, route.resource, name, None), new, obj
                )
                changed += 1
        return changed

    def client(self) -> kubernetes.client.ApiClient:
        configuration = kubernetes.client.Configuration()
        configuration.host = self.url
        return kubernetes.client.ApiClient(configuration)

    # ------------------------------------------------------------------ test hooks
    def fail_next(
        self, method: str, path_contains: str, status: int, *, reason: str = "", times: int = 1
    ) -> None:
        self._failures.add(method, path_contains, status, reason=reason, times=times)

    def compact(self) -> int:
        """Forget history: open watches end with a 410 ERROR event (as when etcd compacts
        under a lagging watcher) and new watches from an older resourceVersion get one too."""
        with self._lock:
            self._compacted_rv = self._rv
            self._compactions += 1
            self._events.clear()
            self._lock.notify_all()
            return self._rv

    @property
    def resource_version(self) -> int:
        with self._lock:
            return self._rv

    def put_object(self, api_path: str, obj: Obj) -> Obj:
        """Create or overwrite `obj` in the collection at `api_path` (no conflict checks)."""
        route = _parse_route(api_path)
        with self._lock:
            name = obj["metadata"]["name"]
            existing = self._objects.get(route.key, {}).get((route.namespace or "", name))
            stored = self._store(route, copy.deepcopy(obj), existing)
            return copy.deepcopy(stored)

    def get_object(self, api_path: str) -> Obj | None:
        route = _parse_route(api_path)
        with self._lock:
            obj = self._objects.get(route.key, {}).get((route.namespace or "", route.name or ""))
            return copy.deepcopy(obj) if obj is not None else None

    def delete_object(self, api_path: str) -> None:
        route = _parse_route(api_path)
        with self._lock:
            self._delete(route)

    # ------------------------------------------------------------------ store
    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _store(self, route: _Route, obj: Obj, existing: Obj | None) -> Obj:
        meta = obj.setdefault("metadata", {})
        if route.namespace is not None:
            meta["namespace"] = route.namespace
        meta["resourceVersion"] = self._next_rv()
        if existing is None:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", "2025-03-01T12:00:00Z")
            meta["generation"] = 1
        else:
            old_meta = existing["metadata"]
            meta["uid"] = old_meta["uid"]
            meta["creationTimestamp"] = old_meta["creationTimestamp"]
            changed = existing.get("spec") != obj.get("spec")
            meta["generation"] = old_meta.get("generation", 1) + (1 if changed else 0)
        self._objects.setdefault(route.key, {})[(route.namespace or "", meta["name"])] = obj
        self._events.append(
            (self._rv, route.key, "MODIFIED" if existing else "ADDED", copy.deepcopy(obj))
        )
        self._lock.notify_all()
        return obj

    def _delete(self, route: _Route) -> Obj:
        bucket = self._objects.get(route.key, {})
        obj = bucket.pop((route.namespace or "", route.name or ""), None)
        if obj is None:
            raise ApiError(404, "NotFound", f'{route.resource} "{route.name}" not found')
        obj["metadata"]["resourceVersion"] = self._next_rv()
        self._events.append((self._rv, route.key, "DELETED", copy.deepcopy(obj)))
        self._lock.notify_all()
        return obj

    def _require(self, route: _Route) -> Obj:
        obj = self._objects.get(route.key, {}).get((route.namespace or "", route.name or ""))
        if obj is None:
            group = route.group_version.split("/")[0] if "/" in route.group_version else ""
            resource = f"{route.resource}.{group}" if group else route.resource
            raise ApiError(
                404,
                "NotFound",
                f'{resource} "{route.name}" not found',
                **_details(route, route.name),
            )
        return obj

    @staticmethod
    def _check_rv(route: _Route, current: Obj, sent: Any) -> None:
        if sent not in (None, "") and str(sent) != current["metadata"]["resourceVersion"]:
            raise ApiError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on {route.resource} "{route.name}": the object '
                "has been modified; please apply your changes to the latest version and try again",
                **_details(route, route.name),
            )

    @staticmethod
    def _scale_of(obj: Obj, route: _Route) -> Obj:
        """autoscaling/v1 Scale as kube-apiserver builds it: `spec.replicas` from the object's
        spec, `status.replicas` from its status (0 until a controller has reported, the JSON
        omits it), `status.selector` the label selector as a string (Deployments and
        StatefulSets; custom resources only with a labelSelectorPath, not modelled)."""
        meta = obj["metadata"]
        status: Obj = {"replicas": (obj.get("status") or {}).get("replicas", 0)}
        match_labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels")
        if match_labels:
            status["selector"] = ",".join(f"{k}={v}" for k, v in sorted(match_labels.items()))
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"],
                "namespace": route.namespace,
                "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"],
                "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 0)},
            "status": status,
        }

    def _write(self, route: _Route, method: str, body: Any, content_type: str) -> tuple[int, Obj]:
        if method == "POST":
            if route.name is not None:
                raise ApiError(405, "MethodNotAllowed", "POST on a named object")
            handler = self.handlers.get(route.resource)
            if handler is not None:
                return 201, handler(body)
            name = body.get("metadata", {}).get("name")
            if not name:
                raise ApiError(422, "Invalid", "metadata.name: Required value")
            if route.key == ("v1", "configmaps"):
                _validate_config_map(route, body)
            key = (route.namespace or "", name)
            if key in self._objects.get(route.key, {}):
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{route.resource} "{name}" already exists',
                    **_details(route, name),
                )
            body.setdefault("metadata", {}).pop("resourceVersion", None)
            return 201, self._store(_Route(**{**route.__dict__, "name": name}), body, None)
        if method == "DELETE":
            return 200, self._delete(route)
        current = self._require(route)
        if method == "PATCH":
            if "json-patch" in content_type or "apply-patch" in content_type:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format: {content_type}",
                )
            self._check_rv(route, current, (body.get("metadata") or {}).get("resourceVersion"))
            if isinstance(body.get("metadata"), dict):
                body["metadata"].pop("resourceVersion", None)
        else:  # PUT
            sent_name = (body.get("metadata") or {}).get("name")
            if sent_name and sent_name != route.name:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"the name of the object ({sent_name}) does not match the name on the URL "
                    f"({route.name})",
                )
            if route.key == ("v1", "configmaps") and route.subresource is None:
                _validate_config_map(route, body)
            self._check_rv(route, current, (body.get("metadata") or {}).get("resourceVersion"))
        new = copy.deepcopy(current)
        if route.subresource == "status":
            status = body.get("status")
            new["status"] = (
                merge_patch(current.get("status"), status) if method == "PATCH" else status
            )
        elif route.subresource == "scale":
            scale = merge_patch(self._scale_of(current, route), body) if method == "PATCH" else body
            new.setdefault("spec", {})["replicas"] = scale["spec"]["replicas"]
        elif method == "PATCH":
            new = merge_patch(current, body)
            new["status"] = current.get("status")
            if new["status"] is None:
                new.pop("status")
        else:
            new = body
            if "status" in current:
                new["status"] = current["status"]
        new.setdefault("metadata", {})["name"] = route.name
        stored = self._store(route, new, current)
        return 200, (self._scale_of(stored, route) if route.subresource == "scale" else stored)

    def _list(self, route: _Route) -> Obj:
        items = [
            copy.deepcopy(o)
            for (ns, _), o in sorted(self._objects.get(route.key, {}).items())
            if route.namespace is None or ns == route.namespace
        ]
        kind = items[0].get("kind", "") if items else ""
        return {
            "kind": f"{kind}List" if kind else "List",
            "apiVersion": route.group_version,
            "metadata": {"resourceVersion": str(self._rv)},
            "items": items,
        }


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_owner: FakeApiServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Obj) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        owner = self.server_owner
        path, _, raw_query = self.path.partition("?")
        query = parse_qs(raw_query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        owner.requests.append(
            RecordedRequest(
                self.command, path, query, dict(self.headers.items()), copy.deepcopy(body)
            )
        )
        try:
            failure = owner._failures.take(self.command, path)
            if failure is not None:
                raise ApiError(failure.status, failure.reason, f"injected {failure.status}")
            route = _parse_route(path)
            if self.command == "GET" and query.get("watch", [""])[0] in ("true", "1"):
                self._watch(route, query)
                return
            with owner._lock:
                if self.command == "GET":
                    if route.name is None:
                        self._send(200, owner._list(route))
                        return
                    obj = owner._require(route)
                    self._send(
                        200,
                        owner._scale_of(obj, route)
                        if route.subresource == "scale"
                        else copy.deepcopy(obj),
                    )
                    return
                content_type = self.headers.get("Content-Type", "application/json")
                code, result = owner._write(route, self.command, body or {}, content_type)
                self._send(code, copy.deepcopy(result))
        except ApiError as err:
            self._send(err.code, status_body(err.code, err.reason, err.message, **err.details))

    def _watch(self, route: _Route, query: dict[str, list[str]]) -> None:
        owner = self.server_owner
        since = query.get("resourceVersion", [""])[0]
        bookmarks = query.get("allowWatchBookmarks", [""])[0] == "true"
        timeout = float(query.get("timeoutSeconds", [owner.default_watch_timeout_seconds])[0])
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def emit(event: Obj) -> None:
            data = (json.dumps(event) + "\n").encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def matches(key: tuple[str, str], obj: Obj) -> bool:
            return key == route.key and (
                route.namespace is None or obj["metadata"].get("namespace") == route.namespace
            )

        deadline = _time.monotonic() + timeout
        next_bookmark = _time.monotonic() + owner.bookmark_interval_seconds
        expired = status_body(410, "Expired", "too old resource version")
        try:
            with owner._lock:
                generation = owner._compactions
                if since in ("", "0"):
                    cursor = owner._rv
                    for (ns, _), obj in sorted(owner._objects.get(route.key, {}).items()):
                        if route.namespace is None or ns == route.namespace:
                            emit({"type": "ADDED", "object": copy.deepcopy(obj)})
                else:
                    cursor = int(since)
                    if cursor < owner._compacted_rv:
                        emit(
                            {
                                "type": "ERROR",
                                "object": status_body(
                                    410,
                                    "Expired",
                                    f"too old resource version: {cursor} ({owner._compacted_rv})",
                                ),
                            }
                        )
                        return
            while True:
                with owner._lock:
                    pending = [
                        (rv, t, o)
                        for rv, key, t, o in owner._events
                        if rv > cursor and matches(key, o)
                    ]
                    if not pending:
                        now = _time.monotonic()
                        wait = min(deadline, next_bookmark if bookmarks else deadline) - now
                        if wait > 0 and not owner._stopping:
                            owner._lock.wait(wait)
                        pending = [
                            (rv, t, o)
                            for rv, key, t, o in owner._events
                            if rv > cursor and matches(key, o)
                        ]
                    current_rv = owner._rv
                    stopping = owner._stopping
                    compacted = owner._compactions != generation
                if compacted:
                    emit({"type": "ERROR", "object": expired})
                    return
                for rv, kind, obj in pending:
                    emit({"type": kind, "object": obj})
                    cursor = rv
                now = _time.monotonic()
                if bookmarks and now >= next_bookmark:
                    cursor = max(cursor, current_rv)
                    api_version = route.group_version
                    emit(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": "",
                                "apiVersion": api_version,
                                "metadata": {"resourceVersion": str(cursor)},
                            },
                        }
                    )
                    next_bookmark = now + owner.bookmark_interval_seconds
                if now >= deadline or stopping:
                    return
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle
