"""A tiny stand-in for the Kubernetes API server's node endpoints on 127.0.0.1.

It answers the way kube-apiserver does for what the extender and agent use: paginated LIST
`/api/v1/nodes` (`limit`/`continue`, list `resourceVersion`), WATCH as a chunked stream of
JSON lines (ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events, one scripted session per request),
and PATCH of a node. Tests drive the real `kubernetes` client against it.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client

from tests.apiserver import kubeconfig_for

NODE_TEMPLATE: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "fixtures" / "extender" / "node.json").read_text()
)


def make_node(name: str, region: str, *, rv: str = "1", gpus: int = 8) -> dict[str, Any]:
    node = copy.deepcopy(NODE_TEMPLATE)
    node["metadata"].update(name=name, resourceVersion=rv)
    node["metadata"]["labels"]["kubernetes.io/hostname"] = name
    node["metadata"]["labels"]["topology.kubernetes.io/region"] = region
    node["status"]["capacity"]["nvidia.com/gpu"] = str(gpus)
    node["status"]["allocatable"]["nvidia.com/gpu"] = str(gpus)
    return node


def event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def bookmark(rv: str) -> dict[str, Any]:
    return event(
        "BOOKMARK", {"kind": "Node", "apiVersion": "v1", "metadata": {"resourceVersion": rv}}
    )


def gone(rv: str) -> dict[str, Any]:
    return event(
        "ERROR",
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": f"too old resource version: {rv} (900)",
            "reason": "Expired",
            "code": 410,
        },
    )


class FakeApiServer:
    def __init__(self) -> None:
        self.nodes: dict[str, dict[str, Any]] = {}
        self.list_rv = "1"
        self.watch_sessions: deque[list[dict[str, Any]]] = deque()
        self.requests: list[tuple[str, str, dict[str, list[str]]]] = []
        self.patches: list[tuple[str, str, Any]] = []
        self.expired_continue: set[str] = set()
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send_json(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                url = urlparse(self.path)
                query = parse_qs(url.query)
                with outer.lock:
                    outer.requests.append(("GET", url.path, query))
                if url.path != "/api/v1/nodes":
                    self._send_json(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
                    return
                if query.get("watch", ["false"])[0] in ("true", "1"):
                    self._watch()
                else:
                    self._list(query)

            def _list(self, query: dict[str, list[str]]) -> None:
                token = query.get("continue", [""])[0]
                if token in outer.expired_continue:
                    self._send_json(
                        410,
                        {
                            "kind": "Status",
                            "apiVersion": "v1",
                            "status": "Failure",
                            "reason": "Expired",
                            "code": 410,
                            "message": "continue expired",
                        },
                    )
                    return
                limit = int(query.get("limit", ["0"])[0] or 0)
                with outer.lock:
                    names = sorted(outer.nodes)
                    start = int(token) if token else 0
                    end = start + limit if limit else len(names)
                    items = [outer.nodes[n] for n in names[start:end]]
                    meta = {"resourceVersion": outer.list_rv}
                    if end < len(names):
                        meta["continue"] = str(end)
                self._send_json(
                    200, {"kind": "NodeList", "apiVersion": "v1", "metadata": meta, "items": items}
                )

            def _watch(self) -> None:
                with outer.lock:
                    session = outer.watch_sessions.popleft() if outer.watch_sessions else None
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if session is None:
                    time.sleep(0.05)  # an idle watch that the server ends early
                    session = []
                for ev in session:
                    if "sleep" in ev:  # an idle stretch of the watch
                        time.sleep(ev["sleep"])
                        continue
                    # {"raw": "..."}: a line sent as is (a garbled stream)
                    line = ev["raw"].encode() if "raw" in ev else json.dumps(ev).encode()
                    line += b"\n"
                    self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

            def do_PATCH(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                name = url.path.rsplit("/", 1)[-1]
                with outer.lock:
                    outer.requests.append(("PATCH", url.path, {}))
                    outer.patches.append((name, self.headers.get("Content-Type", ""), body))
                    node = outer.nodes.get(name)
                if node is None:
                    self._send_json(
                        404,
                        {
                            "kind": "Status",
                            "code": 404,
                            "reason": "NotFound",
                            "message": f'nodes "{name}" not found',
                        },
                    )
                    return
                with outer.lock:
                    annotations = node["metadata"].setdefault("annotations", {})
                    annotations.update(body.get("metadata", {}).get("annotations", {}))
                self._send_json(200, node)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeApiServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def api(self) -> client.CoreV1Api:
        configuration = client.Configuration()
        configuration.host = self.url
        return client.CoreV1Api(client.ApiClient(configuration))

    def calls(self, method: str = "GET") -> list[tuple[str, dict[str, list[str]]]]:
        with self.lock:
            return [(p, q) for m, p, q in self.requests if m == method]

    def kubeconfig(self) -> str:
        return kubeconfig_for(self.url)
