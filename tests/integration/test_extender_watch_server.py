"""`ExtenderWatch` against real local HTTP servers on 127.0.0.1.

Aspects: a reachable extender-style /metrics becomes figures in `view()`; a closed port and
a server that is not an extender each become `reachable: false` with a note naming the
problem (the status API never raises); the background thread polls and stops.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry

from forecasts.time import FrozenClock
from scaler.extender_watch import ExtenderWatch
from tests.extender_exposition import serving_extender_metrics
from tests.snapshots import TAKEN_AT

pytestmark = pytest.mark.integration


def _watch(url: str, interval_seconds: float = 60.0) -> ExtenderWatch:
    return ExtenderWatch(
        url,
        client=httpx.Client(timeout=2.0),
        clock=FrozenClock(TAKEN_AT),
        interval_seconds=interval_seconds,
    )


def test_reachable_extender_metrics_become_figures():
    with serving_extender_metrics() as url:
        watch = _watch(url)
        assert watch.view()["reachable"] is False
        watch.poll_once()
        view = watch.view()
        watch.stop()
    assert view["reachable"] is True
    assert view["figures"]["filter requests"] == 8
    assert view["polled_at"] == "2025-03-01T12:00:00.250000Z"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_and_wrong_targets_are_notes():
    watch = _watch(f"http://127.0.0.1:{_closed_port()}/metrics")
    watch.poll_once()
    assert watch.view()["reachable"] is False
    assert "unreachable" in watch.view()["note"]
    watch.stop()
    # a live server that is not an extender (prometheus_client serves any path)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=CollectorRegistry())
    try:
        watch = _watch(f"http://127.0.0.1:{server.server_port}/metrics")
        watch.poll_once()
        watch.stop()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    assert watch.view()["reachable"] is False
    assert "no gridshift_extender_" in watch.view()["note"]


def test_background_thread_polls_and_stops():
    with serving_extender_metrics() as url:
        watch = _watch(url, interval_seconds=0.05)
        watch.start()
        deadline = time.monotonic() + 5
        while not watch.view().get("reachable") and time.monotonic() < deadline:
            time.sleep(0.02)
        watch.stop()
    assert watch.view()["reachable"] is True
