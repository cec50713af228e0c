"""Every HTTP listener is bounded (`forecasts.platform.listener`), over real loopback sockets.

Listeners: the External Metrics API (HTTPS, client certificates), the extender webhook,
the scaler's status/dashboard server and the GPU agent's metrics server. For each:

* a request head over the header limit gets 431 (in one read, and dribbled in pieces);
* a head that never finishes is answered 408 and closed at the head deadline, although
  a byte arrives every 100 ms (the deadline does not restart on each byte);
* a silent connection is closed at the head deadline; an idle kept-alive one after the
  keep-alive timeout;
* past the connection cap a new connection is refused at once, and served again after;
* Transfer-Encoding with Content-Length, or two different Content-Lengths: 400 and close;
* each refusal is counted in `gridshift_listener_refusals_total` and the listener keeps
  serving legitimate requests;
* no log line per refused request (an attacker cannot fill the log);
* TLS: past `max_tls_connections` or the handshake rate a connection is closed before its
  handshake, and served again after; the listener's one TLS read buffer keeps interleaved
  connections' bytes apart.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import trustme
from prometheus_client import CollectorRegistry

from extender.agent import create_agent_app
from forecasts.platform.listener import (
    ListenerCollector,
    ListenerLimits,
    ListenerStats,
    ThreadedServer,
    bind_socket,
)
from forecasts.platform.listener import build_server as build_listener
from forecasts.time import FrozenClock
from scaler.apiauth import Authorizer, ReloadingTlsContext
from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer
from scaler.status_api import create_status_app
from tests.integration.test_extender_http import app as extender_app
from tests.snapshots import TAKEN_AT, sample_holder

pytestmark = pytest.mark.integration

LIMITS = ListenerLimits(
    max_header_bytes=8 * 1024,
    head_timeout_seconds=0.6,
    body_timeout_seconds=0.6,
    keep_alive_timeout_seconds=1.0,
    max_connections=8,
    tls_handshake_timeout_seconds=0.6,
)


@dataclass
class Listener:
    name: str
    address: tuple[str, int]
    stats: ListenerStats
    path: str
    client_context: ssl.SSLContext | None = None

    def connect(self) -> socket.socket:
        raw = socket.create_connection(self.address, timeout=5)
        if self.client_context is None:
            return raw
        return self.client_context.wrap_socket(raw, server_hostname="127.0.0.1")

    def get(self, extra: bytes = b"") -> tuple[int, bytes]:
        with self.connect() as sock:
            sock.sendall(f"GET {self.path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n")
            return read_response(sock)


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """(status, body) of one response; the server must close or send Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head else 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            while len(body) < int(value):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
    return status, body


def closed_by_server(sock: socket.socket, within_seconds: float) -> bool:
    sock.settimeout(within_seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except (ConnectionResetError, ssl.SSLError, OSError):
        return True
    return True


def _threaded(app, stats: ListenerStats, **kwargs) -> ThreadedServer:
    server = ThreadedServer(
        build_listener(app, limits=LIMITS, stats=stats, **kwargs),
        bind_socket("127.0.0.1", 0),
        name="test",
    )
    server.start()
    return server


@contextlib.contextmanager
def metrics_api(tmp_path, limits: ListenerLimits = LIMITS) -> Iterator[Listener]:
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    server = MetricsApiServer(
        ExternalMetricsApi(sample_holder(), clock=FrozenClock(TAKEN_AT)),
        host="127.0.0.1",
        port=0,
        authenticator=None,
        authorizer=Authorizer(allow_anonymous=True),
        tls=ReloadingTlsContext(cert_file=cert, key_file=key),
        limits=limits,
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with server:
        yield Listener("metrics-api", server.address, server.stats, "/healthz", context)


@contextlib.contextmanager
def plain(name: str, app, path: str) -> Iterator[Listener]:
    stats = ListenerStats()
    server = _threaded(app, stats)
    try:
        yield Listener(name, server.address, stats, path)
    finally:
        server.stop()


LISTENERS: dict[str, Callable[..., contextlib.AbstractContextManager[Listener]]] = {
    "metrics-api": metrics_api,
    "extender": lambda tmp: plain("extender", extender_app(), "/healthz"),
    "status": lambda tmp: plain(
        "status", create_status_app(sample_holder(), registry=CollectorRegistry()), "/healthz"
    ),
    "agent": lambda tmp: plain("agent", create_agent_app(CollectorRegistry()), "/healthz"),
}


@pytest.fixture(params=sorted(LISTENERS))
def listener(request, tmp_path) -> Iterator[Listener]:
    with LISTENERS[request.param](tmp_path) as running:
        assert running.get()[0] == 200
        yield running


def test_oversized_head_is_431_whole_or_dribbled(listener: Listener) -> None:
    status, body = listener.get(b"X-Big: " + b"a" * 20_000 + b"\r\n")
    assert status == 431
    assert b"request head over 8192 bytes" in body
    with listener.connect() as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for i in range(12):  # the server answers past 8 KiB and closes: maybe mid-send
                sock.sendall(f"X-Line-{i}: ".encode() + b"b" * 1000 + b"\r\n")
        with contextlib.suppress(ConnectionResetError):  # our late bytes may reset it first
            assert read_response(sock)[0] == 431
    assert listener.stats.oversized_heads == 2
    assert listener.get()[0] == 200


def test_head_deadline_does_not_restart_on_each_byte(listener: Listener) -> None:
    with listener.connect() as sock:
        started = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\n")
        answered = b""
        with contextlib.suppress(OSError):
            for _ in range(40):  # one header line every 100 ms, never the blank line
                sock.sendall(b"X-a: b\r\n")
                time.sleep(0.1)
        with contextlib.suppress(OSError):
            answered = sock.recv(4096)
        elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"a dribbling head kept its connection {elapsed:.1f}s"
    assert answered.startswith(b"HTTP/1.1 408") or answered == b""
    assert listener.stats.head_timeouts == 1
    with listener.connect() as silent:  # never sends a byte
        assert closed_by_server(silent, within_seconds=2.0)


def test_idle_keep_alive_connection_is_closed(listener: Listener) -> None:
    with listener.connect() as sock:
        sock.sendall(f"GET {listener.path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert read_response(sock)[0] == 200
        assert closed_by_server(sock, within_seconds=3.0)


def test_connection_cap_refuses_at_once_and_recovers(listener: Listener) -> None:
    held = [listener.connect() for _ in range(LIMITS.max_connections)]
    try:
        deadline = time.monotonic() + 2
        while listener.stats.refused_connections == 0 and time.monotonic() < deadline:
            started = time.monotonic()
            with contextlib.suppress(OSError), listener.connect() as extra:
                assert closed_by_server(extra, within_seconds=1.0)
            assert time.monotonic() - started < 1.0
        assert listener.stats.refused_connections >= 1
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if listener.get()[0] == 200:
                break
        time.sleep(0.05)
    else:
        pytest.fail("the listener did not serve again after the held connections closed")


@pytest.mark.parametrize(
    "framing",
    [
        pytest.param(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", id="TE and CL"),
        pytest.param(b"Content-Length: 3\r\nContent-Length: 5\r\n", id="two lengths"),
    ],
)
def test_ambiguous_framing_is_400_and_closes(listener: Listener, framing: bytes) -> None:
    with listener.connect() as sock:
        sock.sendall(
            f"POST {listener.path} HTTP/1.1\r\nHost: x\r\n".encode()
            + framing
            + b"\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        status, _ = read_response(sock)
        assert status == 400
        assert closed_by_server(sock, within_seconds=2.0)
    assert listener.stats.bad_requests == 1
    assert listener.get()[0] == 200


def test_refusals_are_exported() -> None:
    stats = ListenerStats(head_timeouts=2, oversized_heads=1, open_connections=3)
    registry = CollectorRegistry()
    registry.register(ListenerCollector({"extender": stats}))
    value = registry.get_sample_value
    labels = {"listener": "extender", "reason": "head_timeout"}
    assert value("gridshift_listener_refusals_total", labels) == 2
    labels = {"listener": "extender", "reason": "header_too_large"}
    assert value("gridshift_listener_refusals_total", labels) == 1
    assert value("gridshift_listener_open_connections", {"listener": "extender"}) == 3


def test_slow_body_is_408_at_the_body_deadline() -> None:
    with plain("extender", extender_app(), "/healthz") as listener, listener.connect() as sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /scheduler/prioritize HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"
        )
        status, _ = read_response(sock)
        assert status == 408
        assert time.monotonic() - started < 2.0
        assert listener.stats.body_timeouts == 1


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_refused_requests_are_not_logged_one_line_each(listener: Listener) -> None:
    records = _Records()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(records)
    try:
        for _ in range(3):
            assert listener.get(b"X-Big: " + b"a" * 20_000 + b"\r\n")[0] == 431
            with listener.connect() as sock:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
                assert read_response(sock)[0] == 400
    finally:
        uvicorn_log.removeHandler(records)
    assert listener.stats.oversized_heads == 3
    assert listener.stats.bad_requests == 3
    assert [r.getMessage() for r in records.records if r.levelno >= logging.WARNING] == []


def _handshake_refused(listener: Listener) -> bool:
    try:
        with listener.connect():
            return False
    except (ssl.SSLError, OSError):
        return True


def test_tls_connection_cap_closes_before_the_handshake(tmp_path) -> None:
    limits = dataclasses.replace(LIMITS, max_tls_connections=3)
    with metrics_api(tmp_path, limits) as listener:
        held = [listener.connect() for _ in range(3)]
        try:
            started = time.monotonic()
            assert _handshake_refused(listener)
            assert time.monotonic() - started < 1.0
            assert listener.stats.refused_connections == 1
            assert listener.stats.handshake_failures == 0  # refused, not a failed handshake
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 3
        while listener.stats.open_connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert listener.get()[0] == 200


def test_tls_handshake_rate_refuses_past_the_burst_and_refills(tmp_path) -> None:
    limits = dataclasses.replace(LIMITS, tls_handshakes_per_second=2.0, tls_handshake_burst=3)
    with metrics_api(tmp_path, limits) as listener:
        time.sleep(1.6)  # the bucket refills to its burst after the fixture's first request
        for _ in range(3):
            assert listener.get()[0] == 200
        assert _handshake_refused(listener)
        assert listener.stats.handshake_rate_refusals == 1
        registry = CollectorRegistry()
        registry.register(ListenerCollector({"metrics-api": listener.stats}))
        labels = {"listener": "metrics-api", "reason": "tls_handshake_rate"}
        assert registry.get_sample_value("gridshift_listener_refusals_total", labels) == 1
        time.sleep(0.6)  # one more token
        assert listener.get()[0] == 200


def test_tls_connections_sharing_the_read_buffer_keep_their_bytes_apart(tmp_path) -> None:
    with metrics_api(tmp_path) as listener:
        first, second = listener.connect(), listener.connect()
        with first, second:
            paths = {first: b"/healthz", second: b"/apis/external.metrics.k8s.io/v1beta1"}
            for sock, path in paths.items():
                sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nX-Fill: ")
            for sock in paths:  # each head finished after the other's bytes went through
                sock.sendall(b"f" * 6000 + b"\r\nConnection: close\r\n\r\n")
            first_status, first_body = read_response(first)
            second_status, second_body = read_response(second)
        assert (first_status, second_status) == (200, 200)
        assert b"APIResourceList" in second_body
        assert b"APIResourceList" not in first_body
