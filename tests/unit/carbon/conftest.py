"""A replaying HTTP server on 127.0.0.1 (real sockets, the real httpx stack) and helpers to
build adapters against it with a frozen clock and an injected, recording sleep.

One server per session (starting a socket server per test would waste time); each test gets
it with its routes and request log cleared.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from config.wiring.carbon import default_http_client
from forecasts.platform.http import CircuitBreaker, HttpSource, RetryPolicy
from forecasts.regions import NodeRule, Region, RegionMap
from forecasts.time import FrozenClock

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "carbon"
T0 = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)
# the whole call's deadline too (read_bounded): slack for a loaded CI machine
CLIENT_TIMEOUT_SECONDS = 0.3
STALL_SECONDS = 0.6


def fixture_bytes(provider: str, case: str) -> bytes:
    name = case if "." in case else f"{case}.json"
    return (FIXTURES / provider / name).read_bytes()


HTML_ERROR_PAGE = (FIXTURES / "error.html").read_bytes()


@dataclass(frozen=True)
class Reply:
    """One canned answer. `truncate` cuts the body in half (with a matching
    Content-Length); `stall_seconds` holds the answer back past the client timeout."""

    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"
    stall_seconds: float = 0.0

    @classmethod
    def fixture(cls, provider: str, case: str, *, status: int = 200, **kw: object) -> Reply:
        return cls(status=status, body=fixture_bytes(provider, case), **kw)  # type: ignore[arg-type]

    def truncated(self) -> Reply:
        return Reply(status=self.status, body=self.body[: len(self.body) // 2])


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


@dataclass
class ReplayServer:
    httpd: ThreadingHTTPServer
    routes: dict[str, list[Reply]] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, prefix: str, *replies: Reply) -> None:
        """Answer requests whose path starts with `prefix` with `replies` in turn; the last
        one repeats. The longest matching prefix wins."""
        with self.lock:
            self.routes[prefix] = list(replies)

    def reset(self) -> None:
        with self.lock:
            self.routes.clear()
            self.seen.clear()

    def hits(self, prefix: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path.startswith(prefix)]

    def next_reply(self, seen: Seen) -> Reply:
        with self.lock:
            self.seen.append(seen)
            matches = [p for p in self.routes if seen.path.startswith(p)]
            if not matches:
                return Reply(status=404, body=b'{"error": "no such route in the test server"}')
            replies = self.routes[max(matches, key=len)]
            return replies.pop(0) if len(replies) > 1 else replies[0]


class _Handler(BaseHTTPRequestHandler):
    server_version = "gridshift-test/1"

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self._answer()

    def _answer(self) -> None:
        replay: ReplayServer = self.server.replay  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        reply = replay.next_reply(
            Seen(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
            )
        )
        if reply.stall_seconds:
            time.sleep(reply.stall_seconds)
        try:
            self.send_response(reply.status)
            if reply.status != 204:
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(reply.body)))
            for key, value in reply.headers:
                self.send_header(key, value)
            self.end_headers()
            if reply.status != 204:
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def _replay_server() -> Iterator[ReplayServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    replay = ReplayServer(httpd)
    httpd.replay = replay  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield replay
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def server(_replay_server: ReplayServer) -> Iterator[ReplayServer]:
    _replay_server.reset()
    yield _replay_server
    _replay_server.reset()


@dataclass
class Harness:
    """What a test needs to build an adapter against the server."""

    server: ReplayServer
    clock: FrozenClock
    sleeps: list[float]

    def http(
        self,
        name: str,
        *,
        prefix: str = "",
        attempts: int = 3,
        timeout_seconds: float = CLIENT_TIMEOUT_SECONDS,
        cache_ttl_seconds: float = 0.0,
        max_retry_after_seconds: float = 120.0,
        breaker: CircuitBreaker | None = None,
    ) -> HttpSource:
        client = httpx.Client(
            base_url=self.server.url + prefix, timeout=httpx.Timeout(timeout_seconds)
        )
        return HttpSource(
            name=name,
            client=client,
            clock=self.clock,
            retry=RetryPolicy(
                attempts=attempts,
                base_delay_seconds=0.5,
                max_delay_seconds=10.0,
                max_retry_after_seconds=max_retry_after_seconds,
            ),
            breaker=breaker or CircuitBreaker(failure_threshold=100),
            cache_ttl_seconds=cache_ttl_seconds,
            sleep=self.sleeps.append,
        )


@pytest.fixture
def harness(server: ReplayServer) -> Harness:
    return Harness(server=server, clock=FrozenClock(T0), sleeps=[])


def _regions() -> RegionMap:
    return RegionMap.of(
        [
            Region("GB", {"uk": "national", "electricitymaps": "GB", "trace": "GB"}),
            Region("london", {"uk": "13", "electricitymaps": "GB"}),
            Region(
                "DE",
                {"electricitymaps": "DE", "trace": "DE"},
                rules=(NodeRule({"topology.kubernetes.io/region": "europe-west3"}),),
            ),
            Region("caiso", {"watttime": "CAISO_NORTH", "trace": "CISO"}),
            Region("eastus", {"carbon_aware_sdk": "eastus"}),
            Region("FR", {"trace": "FR"}),
            Region("SE", {"trace": "SE"}),
            Region("nowhere", {"uk": "99", "trace": "XX"}),
        ]
    )


REGIONS = _regions()


class RecordingClients:
    """The production client factory (`default_http_client`), keeping every client it makes:
    a test checks their state after the owner stops (`httpx.Client.is_closed`)."""

    def __init__(self) -> None:
        self.made: list[httpx.Client] = []

    def __call__(self, base_url: str, *, timeout_seconds: float) -> httpx.Client:
        client = default_http_client(base_url, timeout_seconds=timeout_seconds)
        self.made.append(client)
        return client

    @property
    def closed(self) -> list[bool]:
        return [c.is_closed for c in self.made]
