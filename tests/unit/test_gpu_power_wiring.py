"""The extender's GPU power source as the wiring builds it (`build_gpu_power_source`, DCGM or
Kepler through Prometheus) is a bounded outbound client, against a raw peer on 127.0.0.1:

* an oversized body, and a gzip bomb, end in `SourceResponseTooLarge` at the byte cap;
* a peer that answers a byte at a time ends at the call's deadline (the `prometheus` group's
  timeout) with `SourceDeadlineExceeded`, not at timeout x bytes;
* four concurrent polls open at most `GPU_POWER_MAX_CONNECTIONS` connections;
* the `prometheus` group's bearer token reaches that Prometheus, and never an error message;
* `gpu_source: agent` (the default) builds no HTTP client at all;
* the extender's stop closes the client's connections (`build_extender`'s runtime).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from config.settings import Settings
from config.wiring.extender import (
    GPU_POWER_MAX_CONNECTIONS,
    build_extender,
    build_gpu_power_source,
)
from extender.gpu_prometheus import PrometheusGpuPower
from extender.refresh import GpuPowerSource
from forecasts.platform.errors import (
    SourceDeadlineExceeded,
    SourceError,
    SourceResponseTooLarge,
)
from forecasts.platform.http import DEFAULT_MAX_RESPONSE_BYTES, RetryPolicy
from forecasts.time import FrozenClock
from tests.fakes import FakeNodeInventory
from tests.unit.carbon.conftest import T0

Behaviour = Callable[[socket.socket, bytes], None]

VECTOR = msgspec.json.encode(
    {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"Hostname": "node-a", "UUID": "GPU-1"}, "value": [1, "300"]}],
        },
    }
)


@dataclass
class Peer:
    """A raw HTTP peer: every connection on its own thread, handed to `behaviour` with the
    request head; counts connections open at once."""

    behaviour: Behaviour
    listener: socket.socket = field(init=False)
    open_now: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _acceptor: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        try:
            with conn, contextlib.suppress(OSError):  # the client gave up, as it should
                while head := conn.recv(65536):
                    self.requests.append(head)
                    self.behaviour(conn, head)
        finally:
            with self._lock:
                self.open_now -= 1

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=1)
        self.listener.close()


@pytest.fixture
def peer() -> Iterator[Callable[[Behaviour], Peer]]:
    made: list[Peer] = []

    def start(behaviour: Behaviour) -> Peer:
        made.append(Peer(behaviour))
        return made[-1]

    yield start
    for p in made:
        p.close()


def _answer(extra: str, body: bytes = b"") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{extra}\r\n".encode() + body


_CLIENTS: list[PrometheusGpuPower] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop()._http.client.close()


def _gpu_power(url: str, *, timeout_seconds: float = 1.0, **prometheus: object) -> GpuPowerSource:
    settings = Settings.model_validate(
        {
            "prometheus": {"url": url, "timeout_seconds": timeout_seconds, **prometheus},
            "extender": {"gpu_source": "dcgm"},
        }
    )
    source = build_gpu_power_source(settings, clock=FrozenClock(T0))
    assert isinstance(source, PrometheusGpuPower)
    _CLIENTS.append(source)
    source._http.retry = RetryPolicy(attempts=1)  # one try: the bound, not the retries
    return source


def test_oversized_body_stops_at_the_cap(peer) -> None:
    body = b" " * (DEFAULT_MAX_RESPONSE_BYTES + 1)
    p = peer(lambda s, _: s.sendall(_answer(f"Content-Length: {len(body)}\r\n", body)))
    with pytest.raises(SourceResponseTooLarge):
        _gpu_power(p.url).node_power(at=T0)


def test_gzip_bomb_stops_at_the_cap_after_decompression(peer) -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    cap_mib = DEFAULT_MAX_RESPONSE_BYTES >> 20
    bomb = b"".join(compressor.compress(block) for _ in range(cap_mib + 4)) + compressor.flush()
    head = f"Content-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n"
    p = peer(lambda s, _: s.sendall(_answer(head, bomb)))
    with pytest.raises(SourceResponseTooLarge, match="after decompression"):
        _gpu_power(p.url).node_power(at=T0)


def test_dripping_peer_ends_at_the_deadline(peer) -> None:
    def drip(s: socket.socket, _: bytes) -> None:
        s.sendall(_answer(f"Content-Length: {len(VECTOR)}\r\n"))
        for byte in VECTOR:
            s.sendall(bytes([byte]))
            time.sleep(0.05)  # each read well within the read timeout, the whole far past it

    p = peer(drip)
    started = time.monotonic()
    with pytest.raises(SourceDeadlineExceeded):
        _gpu_power(p.url, timeout_seconds=0.5).node_power(at=T0)
    assert time.monotonic() - started < 1.2


def test_concurrent_polls_share_a_bounded_pool(peer) -> None:
    def slow(s: socket.socket, _: bytes) -> None:
        time.sleep(0.15)
        s.sendall(_answer(f"Content-Length: {len(VECTOR)}\r\n", VECTOR))

    p = peer(slow)
    source = _gpu_power(p.url, timeout_seconds=1.5)
    results: list[object] = []
    threads = [
        threading.Thread(target=lambda: results.append(source.node_power(at=T0))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=3)
    assert len(results) == 4  # every poll answered, waiting for a connection in turn
    assert 1 <= p.most_open <= GPU_POWER_MAX_CONNECTIONS


def test_prometheus_credentials_reach_it_and_stay_out_of_errors(peer) -> None:
    def refuse(s: socket.socket, _: bytes) -> None:
        body = b'{"status": "error", "error": "bad"}'
        s.sendall(f"HTTP/1.1 403 Forbidden\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)

    p = peer(refuse)
    token = "s3cr3t-gpu-token"
    with pytest.raises(SourceError) as info:
        _gpu_power(p.url, bearer_token=token).node_power(at=T0)
    assert f"authorization: bearer {token}".encode() in p.requests[0].lower()
    assert token not in str(info.value)


def test_no_client_unless_a_prometheus_exporter_is_chosen() -> None:
    assert build_gpu_power_source(Settings(), clock=FrozenClock(T0)) is None


def test_the_extenders_stop_closes_its_gpu_power_connections(peer) -> None:
    # the connection the refresh job's poll left open (keep-alive) is closed by the
    # runtime's stop, not left to the process's exit
    p = peer(lambda s, _: s.sendall(_answer(f"Content-Length: {len(VECTOR)}\r\n", VECTOR)))
    settings = Settings.model_validate(
        {"prometheus": {"url": p.url, "timeout_seconds": 1.0}, "extender": {"gpu_source": "dcgm"}}
    )
    runtime = build_extender(
        settings,
        clock=FrozenClock(T0),
        registry=CollectorRegistry(),
        carbon=None,
        kube_api=None,
        nodes=FakeNodeInventory(),
    )
    runtime.start()
    try:
        assert _within(1.0, lambda: p.open_now == 1 and len(p.requests) >= 1)
    finally:
        runtime.stop()
    assert _within(0.5, lambda: p.open_now == 0)


def _within(seconds: float, condition: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
