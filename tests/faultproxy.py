"""A fault-injecting TCP/HTTP proxy on 127.0.0.1, for the reliability tests.

`FaultProxy(upstream_host, upstream_port)` listens on a free loopback port and, in mode
`PASS`, pipes bytes both ways to the upstream. Switch `proxy.fault` at any time (new
connections see it; open ones are closed on a switch so keep-alive clients reconnect):

- `LATENCY`: forwards, but holds every response back `latency_seconds`.
- `RESET`: accepts and resets the connection (RST, SO_LINGER 0) without answering.
- `HTTP_5XX`: answers every request `503 Service Unavailable` itself.
- `STORM_429`: answers every request `429 Too Many Requests` with `Retry-After`.
- `TRUNCATED`: answers `200` with a `Content-Length` longer than the body, then closes.
- `HANG`: accepts, reads the request, and never answers.
- `OVERSIZED`: answers `200` with a JSON list `oversized_bytes` long.
- `GZIP_BOMB`: answers `200`, `Content-Encoding: gzip`, a body of a few hundred KB that
  inflates to `oversized_bytes` x 8 of JSON.
- `ENDLESS`: answers `200`, chunked, and sends 64 KiB chunks with no newline until the
  client goes away or `endless_seconds` have passed.
- `DRIP`: answers `200` with `Content-Length: 1000` and sends the body a byte every
  `drip_seconds`.

It runs its own asyncio loop on a daemon thread; `with FaultProxy(...) as p:` starts and
stops it. `connections` counts accepted connections (so a test can see a client retried).

In front of the real Kubernetes API server (`FaultProxy.for_api_server(server, ssl_context)`)
it is an HTTP proxy: clients speak plain HTTP to it, and it forwards each request, one per
connection (`Connection: close`), over TLS with the context's client certificate. It then
also records every request (`requests`: method, path, query, headers, JSON body) and answers
`fail_next(method, path_contains, status)` rules itself with kube-apiserver's metav1.Status
body (a watch request failed with 410 gets what kube-apiserver sends for an expired
resourceVersion: 200 and one ERROR event carrying the 410 Status).

`write_fault_table(name, rows)` writes a fault test module's outcome rows (markdown table
rows) to `tests/artifacts/<name>`, the source of the README's RELIABILITY tables.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gzip
import json
import socket
import ssl
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

__all__ = [
    "ARTIFACTS",
    "FailureRule",
    "FailureRules",
    "Fault",
    "FaultProxy",
    "RecordedRequest",
    "status_body",
    "write_fault_table",
]

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"


def write_fault_table(name: str, rows: Sequence[str]) -> None:
    """`rows` as `| fault | component | outcome |` lines; nothing when no test ran."""
    if not rows:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    head = "| fault | component | outcome |\n|---|---|---|\n"
    (ARTIFACTS / name).write_text(head + "".join(rows))


class Fault(enum.Enum):
    PASS = "pass"
    LATENCY = "latency"
    RESET = "reset"
    HTTP_5XX = "5xx"
    STORM_429 = "429 storm"
    TRUNCATED = "truncated body"
    HANG = "hang"
    OVERSIZED = "oversized body"
    GZIP_BOMB = "gzip bomb"
    ENDLESS = "endless body"
    DRIP = "dripping body"


@dataclass(frozen=True)
class RecordedRequest:
    """One request the proxy forwarded or answered (HTTP mode)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: httpx.Headers
    body: Any


# metav1.StatusReason per code, as kube-apiserver names them (k8s.io/apimachinery errors.go)
_REASONS = {
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    500: "InternalError",
    503: "ServiceUnavailable",
}


def status_body(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A metav1.Status failure body as kube-apiserver writes it."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


@dataclass
class FailureRule:
    method: str
    path_contains: str
    status: int
    reason: str
    times: int
    query_contains: str = ""
    stream_line: str | None = None


class FailureRules:
    """Injected failures, shared by this proxy and the stand-in API server
    (`tests.apiserver`): the next `times` requests of `method` on a path containing
    `path_contains` (and a raw query containing `query_contains`) take the rule."""

    def __init__(self) -> None:
        self._rules: list[FailureRule] = []
        self._lock = threading.Lock()

    def add(
        self,
        method: str,
        path_contains: str,
        status: int,
        *,
        reason: str = "",
        times: int = 1,
        query_contains: str = "",
        stream_line: str | None = None,
    ) -> None:
        default = _REASONS.get(status, "OK" if status < 400 else "Failure")
        rule = FailureRule(
            method, path_contains, status, reason or default, times, query_contains, stream_line
        )
        with self._lock:
            self._rules.append(rule)

    def take(self, method: str, path: str, query: str = "") -> FailureRule | None:
        with self._lock:
            for rule in self._rules:
                if (
                    rule.method == method
                    and rule.path_contains in path
                    and rule.query_contains in query
                ):
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
                    return rule
        return None


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


async def _read_head(reader: asyncio.StreamReader) -> bytes:
    with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return await reader.readuntil(b"\r\n\r\n")
    return b""


class FaultProxy:
    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        latency_seconds: float = 2.0,
        retry_after_seconds: int = 1,
        upstream_ssl: ssl.SSLContext | None = None,
        oversized_bytes: int = 8 * 1024 * 1024,
        endless_seconds: float = 10.0,
        drip_seconds: float = 0.05,
    ) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.oversized_bytes = oversized_bytes
        self.endless_seconds = endless_seconds
        self.drip_seconds = drip_seconds
        self.upstream_ssl = upstream_ssl
        self.requests: list[RecordedRequest] = []
        self._failures = FailureRules()
        self.latency_seconds = latency_seconds
        self.retry_after_seconds = retry_after_seconds
        self._fault = Fault.PASS
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    @classmethod
    def for_api_server(cls, server: str, upstream_ssl: ssl.SSLContext, **kwargs: Any) -> FaultProxy:
        """An HTTP proxy in front of the API server at `server` (https://host:port)."""
        url = urlsplit(server)
        assert url.hostname is not None
        assert url.port is not None
        return cls(url.hostname, url.port, upstream_ssl=upstream_ssl, **kwargs)

    # ------------------------------------------------------------------ control
    def fail_next(
        self,
        method: str,
        path_contains: str,
        status: int = 200,
        *,
        reason: str = "",
        times: int = 1,
        query_contains: str = "",
        stream_line: str | None = None,
    ) -> None:
        """Answer the next `times` requests `method` on a path containing `path_contains`
        (and a raw query containing `query_contains`) with `status` (HTTP mode); with
        `stream_line`, answer 200 and a watch stream of that one line, sent as is."""
        self._failures.add(
            method,
            path_contains,
            status,
            reason=reason,
            times=times,
            query_contains=query_contains,
            stream_line=stream_line,
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fault(self) -> Fault:
        return self._fault

    @fault.setter
    def fault(self, value: Fault) -> None:
        self._fault = value
        asyncio.run_coroutine_threadsafe(self._drop_all(), self._loop).result(5)

    async def _drop_all(self) -> None:
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    def start(self) -> FaultProxy:
        self._thread.start()

        async def _start() -> int:
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            return int(self._server.sockets[0].getsockname()[1])

        self.port = asyncio.run_coroutine_threadsafe(_start(), self._loop).result(5)
        return self

    def stop(self) -> None:
        async def _stop() -> None:
            # abort, not close: a TLS close waits for the peer's close_notify, which a
            # stopped loop never reads, and leaves its socket open
            for w in list(self._writers):
                w.transport.abort()
            self._writers.clear()
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0.01)  # the cancelled tasks' and transports' last callbacks

        asyncio.run_coroutine_threadsafe(_stop(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        fault = self._fault
        try:
            if fault is Fault.RESET:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if fault in (Fault.PASS, Fault.LATENCY) and self.upstream_ssl is not None:
                await self._forward_one(reader, writer, delay=fault is Fault.LATENCY)
                return
            if fault in (Fault.PASS, Fault.LATENCY):
                await self._pipe(reader, writer, delay=fault is Fault.LATENCY)
                return
            head = await _read_head(reader)
            if not head:
                return
            if fault is Fault.HANG:
                await asyncio.sleep(3600)
                return
            if fault in (Fault.OVERSIZED, Fault.GZIP_BOMB, Fault.ENDLESS, Fault.DRIP):
                await self._answer_big(writer, fault)
                return
            if fault is Fault.HTTP_5XX:
                body = b'{"error": "injected 503"}'
                extra = b""
                status = b"503 Service Unavailable"
            elif fault is Fault.STORM_429:
                body = b'{"error": "injected 429"}'
                extra = f"Retry-After: {self.retry_after_seconds}\r\n".encode()
                status = b"429 Too Many Requests"
            else:  # TRUNCATED
                body = b'{"data": [{"from": "2025-01-20T12:00Z", "intens'
                extra = b""
                status = b"200 OK"
            length = len(body) * (4 if fault is Fault.TRUNCATED else 1)
            writer.write(
                b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                b"Content-Length: " + str(length).encode() + b"\r\n" + extra + b"\r\n" + body
            )
            await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def _answer_big(self, writer: asyncio.StreamWriter, fault: Fault) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        if fault is Fault.ENDLESS:
            writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
            chunk = b"a" * 65536
            ends = asyncio.get_running_loop().time() + self.endless_seconds
            while asyncio.get_running_loop().time() < ends and not writer.is_closing():
                writer.write(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                await writer.drain()
            return
        if fault is Fault.DRIP:
            body = b'{"items": [], "pad": "' + b"p" * 975 + b'"}'
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body))
            for i in range(len(body)):
                writer.write(body[i : i + 1])
                await writer.drain()
                await asyncio.sleep(self.drip_seconds)
            return
        size = self.oversized_bytes * (8 if fault is Fault.GZIP_BOMB else 1)
        item = b'{"metadata": {"name": "n"}},'
        body = b'{"items": [' + item * (size // len(item)) + b'{}], "metadata": {}}'
        if fault is Fault.GZIP_BOMB:
            body = gzip.compress(body, compresslevel=9)
            head += b"Content-Encoding: gzip\r\n"
        writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body))
        writer.write(body)
        await writer.drain()

    async def _forward_one(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay: bool
    ) -> None:
        """HTTP mode: read one request, record it, answer an injected failure or forward it
        over TLS with `Connection: close` and pipe the answer back until the upstream closes."""
        head = await _read_head(reader)
        if not head:
            return
        request_line, *lines = head.decode("latin-1").rstrip("\r\n").split("\r\n")
        method, target, _version = request_line.split(" ", 2)
        headers = httpx.Headers([_header(line) for line in lines])
        length = int(headers.get("content-length", "0"))
        raw = await reader.readexactly(length) if length else b""
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        self.requests.append(
            RecordedRequest(method, url.path, query, headers, json.loads(raw) if raw else None)
        )
        failure = self._failures.take(method, url.path, url.query)
        if failure is not None:
            await self._answer_failure(
                writer, failure, watch=query.get("watch") in (["true"], ["1"])
            )
            return
        up_reader, up_writer = await asyncio.open_connection(
            *self.upstream, ssl=self.upstream_ssl, server_hostname=self.upstream[0]
        )
        self._writers.add(up_writer)
        kept = [
            f"{k}: {v}"
            for k, v in headers.multi_items()
            if k.lower() not in ("connection", "keep-alive")
        ]
        up_writer.write(
            "\r\n".join([request_line, *kept, "Connection: close", "", ""]).encode("latin-1") + raw
        )
        await up_writer.drain()
        try:
            while data := await up_reader.read(65536):
                if delay:
                    await asyncio.sleep(self.latency_seconds)
                    delay = False
                writer.write(data)
                await writer.drain()
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()

    async def _answer_failure(
        self, writer: asyncio.StreamWriter, failure: FailureRule, *, watch: bool
    ) -> None:
        message = f"injected {failure.status}"
        line = b""
        if failure.stream_line is not None:
            line = failure.stream_line.encode() + b"\n"
        elif watch and failure.status == 410:  # kube-apiserver: 200, then an ERROR event
            event = {"type": "ERROR", "object": status_body(410, failure.reason, message)}
            line = json.dumps(event).encode() + b"\n"
        if line:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                + f"{len(line):x}\r\n".encode()
                + line
                + b"\r\n0\r\n\r\n"
            )
        else:
            body = json.dumps(status_body(failure.status, failure.reason, message)).encode()
            writer.write(
                f"HTTP/1.1 {failure.status} {failure.reason}\r\n"
                "Content-Type: application/json\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
        await writer.drain()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delay: bool
    ) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            return  # upstream down: the client sees a closed connection
        self._writers.add(up_writer)

        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter, hold: bool) -> None:
            try:
                while data := await src.read(65536):
                    if hold:
                        await asyncio.sleep(self.latency_seconds)
                        hold = False  # once per response start is enough for HTTP
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(
            copy(reader, up_writer, False), copy(up_reader, writer, delay), return_exceptions=True
        )
        self._writers.discard(up_writer)
