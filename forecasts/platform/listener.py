"""Bounded HTTP listeners: the one server stack every gridshift listener runs on.

uvicorn with its h11 protocol (pure-Python, strict HTTP/1.1: conflicting `Content-Length`,
bad chunk framing and malformed heads are refused) on asyncio, so a slow or idle
connection costs a few kilobytes, not a thread. What uvicorn lacks, a subclass of its h11
protocol adds (measured in `tests/benchmarks/test_listener_attack.py`):

* a cap on open connections (`max_connections`); past it a connection gets one 503 and is
  closed before any of its bytes are read;
* a deadline for the whole request head (`head_timeout_seconds`), counted from the
  connection (or from the first byte of a keep-alive request) and never restarted by a
  byte: a slowloris connection is answered 408 and closed;
* a limit on the total bytes of the request head (`max_header_bytes`): 431 and close, also
  when the whole head arrived in one read (h11 alone only bounds an incomplete head);
* `Transfer-Encoding` together with `Content-Length` (RFC 9112 §6.3: a smuggling sign), or a
  chunked body where the listener takes none: 400 and close;
* a deadline for reading the request body (`body_timeout_seconds`): 408 and close;
* the idle keep-alive timeout (`keep_alive_timeout_seconds`, uvicorn's own);
* with TLS: a handshake deadline, failed handshakes counted, and the peer certificate in
  the ASGI TLS extension (`scope["extensions"]["tls"]["client_cert_chain"]`, PEM); a lower
  cap on open TLS connections (`max_tls_connections`) and a rate for new handshakes
  (`tls_handshakes_per_second`, in bursts of `tls_handshake_burst`): past either, the
  connection is closed at accept, before any TLS state is built for it. A handshake costs
  the loop ~0.7 ms of CPU and a TLS connection ~25 KB of OpenSSL state: without them 1,000
  reconnecting attackers took +116 MB and the legitimate callers' p99 to 271 ms;
* one TLS read buffer per listener, not one per connection (asyncio zeroes 256 KiB each);
* uvicorn's log line per malformed request goes to debug: each refusal is counted instead,
  and an attacker cannot fill the log at a line per connection;
* after a burst of connections (an attack) the freed heap is given back to the OS, so the
  process returns to its baseline memory;
* every refusal is JSON in the listener's own error format (`error_body`) and counted in
  `ListenerStats`, exported by `ListenerCollector` as `gridshift_listener_refusals_total`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import gc
import http
import logging
import socket
import ssl
import sys
import threading
import time
from asyncio.sslproto import SSLProtocol
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import h11
import msgspec
import uvicorn
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "ErrorBody",
    "ListenerCollector",
    "ListenerLimits",
    "ListenerStats",
    "ThreadedServer",
    "bind_socket",
    "build_server",
    "json_error_body",
]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]

ErrorBody = Callable[[int, str], bytes]
"""(HTTP status, message) -> the JSON body a listener's clients expect for an error."""


def json_error_body(status: int, message: str) -> bytes:
    """The default error body: `{"error": message}`."""
    return msgspec.json.encode({"error": message})


@dataclass(frozen=True, slots=True)
class ListenerLimits:
    """Bounds for one listener; the defaults hold 1,000 hostile connections in < 64 MB."""

    #: request line + headers; kube-aggregator and kube-scheduler send well under 8 KiB
    max_header_bytes: int = 32 * 1024
    #: the whole head, from connect (or a keep-alive request's first byte) to its last byte
    head_timeout_seconds: float = 10.0
    #: the whole body, from the end of the head
    body_timeout_seconds: float = 30.0
    #: an idle kept-alive connection is closed after this
    keep_alive_timeout_seconds: float = 30.0
    #: open connections (TLS handshakes in progress included); past it: 503 and close
    max_connections: int = 2048
    #: open TLS connections (handshakes included), each ~25-60 KB of OpenSSL and asyncio
    #: state; past it a connection is closed at accept. Callers (kube-aggregator,
    #: kube-scheduler) keep a few connections alive
    max_tls_connections: int = 512
    #: new TLS handshakes per second (~0.7 ms of CPU each); past it a connection is closed
    #: at accept, so reconnecting attackers cannot take the event loop from kept-alive callers
    tls_handshakes_per_second: float = 100.0
    #: handshakes allowed at once above that rate (a restarted client's reconnects)
    tls_handshake_burst: int = 50
    #: a TLS handshake not finished by then is aborted (counted as a failure)
    tls_handshake_timeout_seconds: float = 10.0
    #: False where no endpoint takes a body: a chunked request is refused with 400
    accept_chunked: bool = True


@dataclass(slots=True)
class ListenerStats:
    """What a listener refused, by reason (mutated on its event loop thread only)."""

    refused_connections: int = 0
    head_timeouts: int = 0
    body_timeouts: int = 0
    oversized_heads: int = 0
    bad_requests: int = 0
    handshake_failures: int = 0
    handshake_rate_refusals: int = 0
    open_connections: int = 0
    pending_handshakes: int = 0
    #: set while many connections are open; cleared (and memory trimmed) once few are
    crowded: bool = False

    def refusals(self) -> dict[str, int]:
        return {
            "too_many_connections": self.refused_connections,
            "head_timeout": self.head_timeouts,
            "body_timeout": self.body_timeouts,
            "header_too_large": self.oversized_heads,
            "bad_request": self.bad_requests,
            "tls_handshake": self.handshake_failures,
            "tls_handshake_rate": self.handshake_rate_refusals,
        }


class ListenerCollector(Collector):
    """`gridshift_listener_refusals_total{listener, reason}` and open connections."""

    def __init__(self, listeners: Mapping[str, ListenerStats]) -> None:
        self._listeners = listeners

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "gridshift_listener_refusals",
            "Connections or requests a listener refused before its handler, by reason",
            labels=["listener", "reason"],
        )
        open_ = GaugeMetricFamily(
            "gridshift_listener_open_connections",
            "Open connections (TLS handshakes in progress included)",
            labels=["listener"],
        )
        for name, stats in sorted(self._listeners.items()):
            for reason, count in stats.refusals().items():
                refused.add_metric([name, reason], float(count))
            open_.add_metric([name], float(stats.open_connections + stats.pending_handshakes))
        yield refused
        yield open_


_CROWDED = 256  # open connections that mark a burst (an attack, a thundering herd)
_CALM = 16  # back under this many: give the burst's freed heap back to the OS


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def _trim_heap() -> None:
    """Collect the burst's reference cycles (protocol <-> transport) and return free heap
    pages to the OS (glibc keeps them), so the process goes back to its baseline memory
    instead of staying at its attack peak. One pause of a few ms, once per burst."""
    gc.collect()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _no_delay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY: a response's head and body records leave at once (without it Nagle
    holds the second until the client's delayed ACK, 40 ms)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def _closed(scope: Scope, receive: Receive, send: Send) -> None:
    """What a closed connection's protocol points at instead of its own bound methods."""


def _raw_response(status: int, body: bytes) -> bytes:
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _head_bytes(scope: Scope) -> int:
    """The request head's size as sent (request line, headers, CRLFs), within a few bytes."""
    size = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 14
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
    return size


class _ProtocolLog(logging.Logger):
    """uvicorn's protocol log, its per-request warning ("Invalid HTTP request received.")
    at debug: the listener answers and counts each refusal itself, and a log line per
    hostile connection would fill the log and take the event loop's time."""

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.debug(msg, *args, **kwargs)


@functools.cache
def _protocol_log(source: logging.Logger) -> logging.Logger:
    quiet = _ProtocolLog(source.name)
    quiet.parent = source  # its handlers, by propagation
    quiet.level = source.getEffectiveLevel()  # uvicorn reads .level to skip its trace lines
    return quiet


@dataclass(frozen=True, slots=True)
class _Bounds:
    limits: ListenerLimits
    stats: ListenerStats
    error_body: ErrorBody


class _BoundedH11(H11Protocol):
    """uvicorn's h11 protocol with the bounds of `ListenerLimits` (see the module doc)."""

    bounds: ClassVar[_Bounds]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = self.bounds.limits
        self.stats = self.bounds.stats
        self.error_body = self.bounds.error_body
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._made = False
        self._counted = False
        self._peer_pem: str | None = None
        self._inner = self.app
        self.app = self._guard
        self.logger = _protocol_log(self.logger)

    # ------------------------------------------------------------------ connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._made = True
        stats, limits = self.stats, self.limits
        if stats.open_connections >= limits.max_connections:
            stats.refused_connections += 1
            self._refuse(503, f"over {limits.max_connections} open connections; retry later")
            return
        stats.open_connections += 1
        stats.crowded = stats.crowded or stats.open_connections > _CROWDED
        _no_delay(transport)
        self._counted = True
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            der = ssl_object.getpeercert(binary_form=True)
            self._peer_pem = ssl.DER_cert_to_PEM_cert(der) if der else None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if self._counted:
            self._counted = False
            stats = self.stats
            stats.open_connections -= 1
            if stats.crowded and stats.open_connections + stats.pending_handshakes < _CALM:
                stats.crowded = False
                self.loop.call_later(1.0, _trim_heap)
        super().connection_lost(exc)
        # self.app is a bound method of self: a reference cycle that would keep this
        # protocol, its h11 buffer (up to max_header_bytes) and its transport alive until a
        # full GC. Break it, so a closed connection's memory is freed at once.
        self.app = self._inner = _closed

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE:
            if self._head_timer is None:
                self._arm_head_timer()
            self._head_bytes += len(data)
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        # Called by uvicorn inside its `except h11.RemoteProtocolError`: the error is current.
        exc = sys.exc_info()[1]
        if self._head_bytes > self.limits.max_header_bytes:
            self.stats.oversized_heads += 1
            self._refuse(431, f"request head over {self.limits.max_header_bytes} bytes")
            return
        self.stats.bad_requests += 1
        detail = f": {exc}" if isinstance(exc, h11.RemoteProtocolError) else ""
        status = getattr(exc, "error_status_hint", 400)
        self._refuse(status if 400 <= status < 600 else 400, f"malformed HTTP/1.1 request{detail}")

    def _refuse(self, status: int, message: str) -> None:
        self._cancel_head_timer()
        if not self.transport.is_closing():
            self.transport.write(_raw_response(status, self.error_body(status, message)))
            self.transport.close()

    # ------------------------------------------------------------------ head deadline
    def _arm_head_timer(self) -> None:
        self._head_bytes = 0
        self._head_timer = self.loop.call_later(
            self.limits.head_timeout_seconds, self._on_head_timeout
        )

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _on_head_timeout(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE:
            self.stats.head_timeouts += 1
            self._refuse(
                408, f"request head not complete within {self.limits.head_timeout_seconds:g}s"
            )

    # ------------------------------------------------------------------ per request
    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._cancel_head_timer()
        self._head_bytes = 0
        limits = self.limits
        if _head_bytes(scope) > limits.max_header_bytes:
            self.stats.oversized_heads += 1
            await self._answer(send, 431, f"request head over {limits.max_header_bytes} bytes")
            return
        names = [name for name, _ in scope["headers"]]
        chunked = b"transfer-encoding" in names
        if chunked and b"content-length" in names:
            self.stats.bad_requests += 1
            await self._answer(send, 400, "both Transfer-Encoding and Content-Length are set")
            return
        if chunked and not limits.accept_chunked:
            self.stats.bad_requests += 1
            await self._answer(send, 400, "chunked request bodies are not accepted here")
            return
        if self._peer_pem is not None:
            scope.setdefault("extensions", {})["tls"] = {"client_cert_chain": [self._peer_pem]}
        await self._inner(scope, self._bounded_receive(receive), send)

    def _bounded_receive(self, receive: Receive) -> Receive:
        deadline = time.monotonic() + self.limits.body_timeout_seconds
        done = False

        async def bounded() -> Message:
            nonlocal done
            if done:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), deadline - time.monotonic())
            except TimeoutError:
                self.stats.body_timeouts += 1
                seconds = self.limits.body_timeout_seconds
                self._refuse(408, f"request body not complete within {seconds:g}s")
                done = True
                return {"type": "http.disconnect"}
            if message["type"] != "http.request" or not message.get("more_body", False):
                done = True
            return message

        return bounded

    async def _answer(self, send: Send, status: int, message: str) -> None:
        body = self.error_body(status, message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _CountingTls(SSLProtocol):
    """asyncio's TLS layer with a handshake deadline, failed handshakes counted and the
    listener's one read buffer."""

    # The most read from the socket at once. Each read is copied into the connection's
    # incoming MemoryBIO, whose OpenSSL buffer keeps its high-water mark for the
    # connection's life (~1.3x the largest read): one TLS record's worth, not asyncio's
    # 256 KiB.
    max_size = 16 * 1024

    def __init__(
        self,
        app: _BoundedH11,
        context: ssl.SSLContext,
        limits: ListenerLimits,
        read_buffer: memoryview,
    ) -> None:
        super().__init__(
            asyncio.get_running_loop(),
            app,
            context,
            None,  # type: ignore[arg-type]  # no waiter: nobody awaits the handshake
            server_side=True,
            ssl_handshake_timeout=limits.tls_handshake_timeout_seconds,  # type: ignore[arg-type]
        )
        # asyncio allocated (and zeroed: resident at once) a read buffer for this
        # connection. A read only lives in it from the socket's recv_into to the copy into
        # the incoming BIO (get_buffer, then buffer_updated, in one call on the listener's
        # one event loop thread), so the listener's buffer serves every connection.
        self._ssl_buffer = read_buffer.obj
        self._ssl_buffer_view = read_buffer
        self._app: _BoundedH11 | None = app
        self._stats = app.stats
        self._pending = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._stats.pending_handshakes += 1
        self._pending = True
        _no_delay(transport)
        super().connection_made(transport)

    def _done_pending(self) -> None:
        if self._pending:
            self._pending = False
            self._stats.pending_handshakes -= 1

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        self._done_pending()
        super()._on_handshake_complete(handshake_exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._done_pending()
        if self._app is not None and not self._app._made:
            self._stats.handshake_failures += 1
            log.debug("TLS handshake failed: %s", exc)
        super().connection_lost(exc)
        self._app = None  # app -> its TLS transport -> this protocol: break the cycle


class _Refused(asyncio.Protocol):
    """A TLS connection refused at accept (over the cap or the handshake rate): closed at
    once, no TLS or HTTP state built for it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


class _HandshakeRate:
    """A token bucket: `per_second` handshakes, up to `burst` at once."""

    def __init__(self, per_second: float, burst: int) -> None:
        self._per_second = per_second
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._per_second)
        self._at = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True


class _ProtocolFactory:
    """What uvicorn calls per accepted connection (on the listener's event loop): the
    bounded h11 protocol, under TLS when a context is given (TLS is done here, not by
    uvicorn, for the deadline, the cap, the handshake rate and the count)."""

    def __init__(self, protocol: type[_BoundedH11], tls_context: ssl.SSLContext | None) -> None:
        self._protocol = protocol
        self._tls_context = tls_context
        limits = protocol.bounds.limits
        self._tls_cap = min(limits.max_connections, limits.max_tls_connections)
        self._handshakes = _HandshakeRate(
            limits.tls_handshakes_per_second, limits.tls_handshake_burst
        )
        self._read_buffer = memoryview(bytearray(_CountingTls.max_size))

    def __call__(self, **kwargs: Any) -> asyncio.BaseProtocol:
        if self._tls_context is None:
            return self._protocol(**kwargs)
        stats = self._protocol.bounds.stats
        if stats.open_connections + stats.pending_handshakes >= self._tls_cap:
            stats.refused_connections += 1
            return _Refused()
        if not self._handshakes.take():
            stats.handshake_rate_refusals += 1
            return _Refused()
        app = self._protocol(**kwargs)
        return _CountingTls(app, self._tls_context, app.limits, self._read_buffer)


def _protocol_class(
    limits: ListenerLimits, stats: ListenerStats, error_body: ErrorBody
) -> type[_BoundedH11]:
    return cast(
        "type[_BoundedH11]",
        type(
            "BoundedH11Protocol",
            (_BoundedH11,),
            {"bounds": _Bounds(limits, stats, error_body)},
        ),
    )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket (IPv6 when `host` has a colon), SO_REUSEADDR set."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def build_server(
    app: Asgi,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    limits: ListenerLimits | None = None,
    stats: ListenerStats | None = None,
    tls_context: Callable[[], ssl.SSLContext] | None = None,
    error_body: ErrorBody = json_error_body,
    log_level: str = "warning",
    loop: str = "uvloop",
    lifespan: str = "off",
) -> uvicorn.Server:
    """A uvicorn server for `app` with the bounds of `limits` (`.run()` serves until
    `should_exit`). `tls_context` (called once, here) serves HTTPS; pass
    `ReloadingTlsContext.listener_context` for certificate rotation."""
    limits = limits or ListenerLimits()
    protocol = _protocol_class(limits, stats or ListenerStats(), error_body)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        http=cast(
            "type[asyncio.Protocol]",
            _ProtocolFactory(protocol, tls_context() if tls_context is not None else None),
        ),
        loop=loop,
        lifespan=lifespan,  # type: ignore[arg-type]
        timeout_keep_alive=max(1, round(limits.keep_alive_timeout_seconds)),
        h11_max_incomplete_event_size=limits.max_header_bytes,
        server_header=False,
        backlog=1024,
        interface="asgi3",
    )
    return uvicorn.Server(config)


class ThreadedServer:
    """A bounded server on its own thread and event loop (beside a synchronous main)."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket, *, name: str) -> None:
        self.server = server
        self._sock = sock
        self._name = name
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def start(self, *, timeout_seconds: float = 10.0) -> None:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self._sock]}, name=self._name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_seconds
        while not self.server.started and self._thread.is_alive():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self._name}: server did not start in {timeout_seconds}s")
            time.sleep(0.005)
        if not self.server.started:
            raise RuntimeError(f"{self._name}: server stopped while starting")

    def stop(self, *, timeout_seconds: float = 5.0) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=timeout_seconds)
        with contextlib.suppress(OSError):
            self._sock.close()
