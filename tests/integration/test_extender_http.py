"""The extender over real sockets (uvicorn on 127.0.0.1): oversized bodies by declared and
by streamed size get 413, truncated/garbage bodies 400, a client that lies about its
Content-Length and hangs up, and the server keeps answering afterwards; HTTPS with a
test CA (trustme); keep-alive reuse as kube-scheduler's Go client does."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Generator, Iterator
from datetime import UTC, datetime

import httpx
import msgspec
import pytest
import trustme
from prometheus_client import CollectorRegistry

from extender.core.nodes import RegionRules
from extender.core.scoring import NodeFacts, ScoringPolicy
from extender.server import create_app
from extender.snapshot import ExtenderSnapshot, SnapshotHolder
from forecasts.platform.serving import build_server
from forecasts.time import FrozenClock
from tests.fakes import hourly_series

pytestmark = pytest.mark.integration

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LIMIT = 1 << 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app():
    holder = SnapshotHolder(
        ExtenderSnapshot(
            taken_at=NOW,
            nodes={"a": NodeFacts("a", region="FR"), "b": NodeFacts("b", region="PL")},
            carbon={
                "FR": hourly_series("FR", NOW, [50]),
                "PL": hourly_series("PL", NOW, [650]),
            },
            nodes_synced=True,
        )
    )
    return create_app(
        holder,
        clock=FrozenClock(NOW),
        policy=ScoringPolicy(),
        rules=RegionRules(),
        registry=CollectorRegistry(),
        max_body_bytes=LIMIT,
    )


def running(tls_cert: str | None = None, tls_key: str | None = None) -> Generator[str, None, None]:
    port = free_port()
    server = build_server(
        app(), listen=f"127.0.0.1:{port}", log_level="warning", tls_cert=tls_cert, tls_key=tls_key
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    scheme = "https" if tls_cert else "http"
    try:
        yield f"{scheme}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def base_url() -> Iterator[str]:
    yield from running()


ARGS = {"Pod": {"metadata": {"name": "p"}}, "Nodes": None, "NodeNames": ["a", "b"]}


def ok(client: httpx.Client) -> None:
    r = client.post("/scheduler/prioritize", content=msgspec.json.encode(ARGS))
    assert r.status_code == 200
    assert r.json() == [{"Host": "a", "Score": 10}, {"Host": "b", "Score": 0}]


def test_oversized_and_malformed_bodies_and_the_server_stays_up(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        ok(c)
        huge = msgspec.json.encode({**ARGS, "NodeNames": [f"node-{i:07d}" for i in range(200_000)]})
        assert len(huge) > LIMIT
        r = c.post("/scheduler/filter", content=huge)
        assert r.status_code == 413
        assert "limit" in r.json()["Error"]

        def stream() -> Iterator[bytes]:
            for i in range(0, len(huge), 65536):
                yield huge[i : i + 65536]

        r = c.post("/scheduler/prioritize", content=stream())  # chunked, no Content-Length
        assert r.status_code == 413
        for body in (huge[: len(huge) // 3], b"\x00\xff garbage", b"", b"null"):
            r = c.post("/scheduler/filter", content=body[:LIMIT])
            assert r.status_code == 400, body[:20]
            assert r.json()["Error"]
        ok(c)


def test_a_client_that_hangs_up_mid_body_does_not_hurt(base_url: str) -> None:
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as s:
        s.sendall(
            b"POST /scheduler/filter HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100000\r\n\r\n{"Pod": {'
        )
    with httpx.Client(base_url=base_url, timeout=10) as c:
        ok(c)


def test_keep_alive_connection_serves_many_requests(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        for _ in range(20):
            ok(c)
        assert c.get("/healthz").json() == {"status": "ok"}


def test_https_with_a_test_ca(tmp_path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "carbon-extender.carbon-system.svc")
    cert_file = tmp_path / "tls.crt"
    key_file = tmp_path / "tls.key"
    ca_file = tmp_path / "ca.crt"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    gen = running(tls_cert=str(cert_file), tls_key=str(key_file))
    url = next(gen)
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file))
        with httpx.Client(base_url=url, verify=ctx, timeout=10) as c:
            ok(c)
        with httpx.Client(base_url=url, timeout=10) as c, pytest.raises(httpx.ConnectError):
            c.get("/healthz")  # not trusted without the CA
    finally:
        gen.close()


def test_tls_needs_both_files() -> None:
    with pytest.raises(ValueError, match="both"):
        build_server(app(), listen="127.0.0.1:0", tls_cert="x.crt")


def test_metrics_over_http(base_url: str) -> None:
    with httpx.Client(base_url=base_url, timeout=10) as c:
        ok(c)
        text = c.get("/metrics").text
    assert 'gridshift_extender_requests_total{code="200",verb="prioritize"} 1.0' in text
    assert "gridshift_extender_carbon_fresh" in text
    json.loads(json.dumps(text))  # plain text exposition, no binary
