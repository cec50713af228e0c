"""Outbound HTTP calls are bounded (`forecasts.platform.http.read_bounded`, used by every
`HttpSource`), against a raw server on 127.0.0.1 that misbehaves on purpose:

* a gzip bomb (16 KB that inflate to 16 times the cap) stops at the byte cap, decompressed, with
  `SourceResponseTooLarge`, and memory never holds much more than the cap;
* a plain body over the cap, declared or not, and an endless chunked body: same error;
* a body dripping a byte every 50 ms ends at the call's deadline with
  `SourceDeadlineExceeded` (a `SourceUnavailable`, retried like a timeout);
* an unsupported Content-Encoding is a `SourceDataError`; gzip and deflate bodies within
  the cap decode as before.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator

import httpx
import pytest

from forecasts.platform.errors import (
    SourceDataError,
    SourceDeadlineExceeded,
    SourceResponseTooLarge,
    SourceUnavailable,
)
from forecasts.platform.http import HttpSource, RetryPolicy, read_bounded
from forecasts.time import FrozenClock
from tests.unit.carbon.conftest import T0

CAP = 1 << 20


@functools.cache
def _bomb() -> bytes:
    """16 MB of zeros (16 times the cap), gzip-compressed to about 16 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    return b"".join(compressor.compress(block) for _ in range(16)) + compressor.flush()


Behaviour = Callable[[socket.socket], None]


@pytest.fixture
def raw_server() -> Iterator[Callable[[Behaviour], str]]:
    """A one-connection-at-a-time server: each accepted socket is handed to `behaviour`."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    behaviour: list[Behaviour] = []

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                with contextlib.suppress(OSError):  # the client gave up, as it should
                    behaviour[0](conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()

    def start(b: Behaviour) -> str:
        behaviour[:] = [b]
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    thread.join(timeout=2)
    listener.close()


def _head(extra: str) -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}\r\n".encode()


_CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _source(url: str, *, timeout: float = 1.0, deadline: float | None = None) -> HttpSource:
    client = httpx.Client(base_url=url, timeout=timeout)
    _CLIENTS.append(client)
    return HttpSource(
        name="provider",
        client=client,
        clock=FrozenClock(T0),
        retry=RetryPolicy(attempts=1),
        cache_ttl_seconds=0.0,
        max_response_bytes=CAP,
        deadline_seconds=deadline,
        sleep=lambda s: None,
    )


def test_gzip_bomb_stops_at_the_cap_without_inflating_it(raw_server) -> None:
    bomb = _bomb()
    url = raw_server(
        lambda s: s.sendall(
            _head(f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n") + bomb
        )
    )
    tracemalloc.start()
    try:
        with pytest.raises(SourceResponseTooLarge, match="after decompression"):
            _source(url).get_json("/")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * CAP, f"peak {peak / 1e6:.0f} MB while refusing a gzip bomb"


@pytest.mark.parametrize(
    "declared", [pytest.param(True, id="declared length"), pytest.param(False, id="no length")]
)
def test_plain_body_over_the_cap(raw_server, declared: bool) -> None:
    body = b"[" + b"0," * CAP + b"0]"
    length = f"Content-Length: {len(body)}\r\n" if declared else "Connection: close\r\n"
    url = raw_server(lambda s: s.sendall(_head(length) + body))
    with pytest.raises(SourceResponseTooLarge):
        _source(url).get_json("/")


def test_endless_chunked_body_stops_at_the_cap(raw_server) -> None:
    def endless(s: socket.socket) -> None:
        s.sendall(_head("Transfer-Encoding: chunked\r\n"))
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        while True:
            s.sendall(chunk)

    url = raw_server(endless)
    with pytest.raises(SourceResponseTooLarge):
        _source(url).get_json("/")


def test_dripping_body_ends_at_the_deadline(raw_server) -> None:
    def drip(s: socket.socket) -> None:
        s.sendall(_head("Content-Length: 1000\r\n"))
        for _ in range(1000):
            s.sendall(b" ")
            time.sleep(0.05)

    url = raw_server(drip)
    started = time.monotonic()
    with pytest.raises(SourceDeadlineExceeded, match=r"0\.5s deadline") as info:
        _source(url, timeout=0.4, deadline=0.5).get_json("/")
    assert time.monotonic() - started < 0.9
    assert isinstance(info.value, SourceUnavailable)  # transient: retried like a timeout


def test_unsupported_encoding_is_a_data_error(raw_server) -> None:
    url = raw_server(
        lambda s: s.sendall(_head("Content-Encoding: br\r\nContent-Length: 2\r\n") + b"{}")
    )
    with pytest.raises(SourceDataError, match="unsupported Content-Encoding"):
        _source(url).get_json("/")


@pytest.mark.parametrize(
    "encode",
    [
        pytest.param(gzip.compress, id="gzip"),
        pytest.param(zlib.compress, id="deflate"),
    ],
)
def test_compressed_bodies_within_the_cap_decode(raw_server, encode) -> None:
    body = encode(b'{"ok": [1, 2, 3]}')
    name = "gzip" if encode is gzip.compress else "deflate"
    url = raw_server(
        lambda s: s.sendall(
            _head(f"Content-Encoding: {name}\r\nContent-Length: {len(body)}\r\n") + body
        )
    )
    assert _source(url).get_json("/") == {"ok": [1, 2, 3]}


def test_read_bounded_default_deadline_is_the_clients_longest_timeout(raw_server) -> None:
    url = raw_server(lambda s: s.sendall(_head("Content-Length: 2\r\n") + b"{}"))
    with httpx.Client(timeout=httpx.Timeout(1.0, connect=0.5)) as client:
        response, body = read_bounded(client, client.build_request("GET", url), source="x")
    assert (response.status_code, body) == (200, b"{}")
