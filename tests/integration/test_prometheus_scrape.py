"""Prometheus scraping a live prometheus_client endpoint, read back through the adapter.

Aspects: the reusable `running_prometheus(scrape_targets=...)` fixture; a fresh
`CollectorRegistry` served on 127.0.0.1 (the scaler's /metrics plugs in the same way);
`up`, a counter and a gauge read back with instant and range queries; `rate()` of the
scraped counter; a target that vanishes goes stale (staleness markers) and its history ends in
a marked gap.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from forecasts.platform.http import RetryPolicy
from forecasts.sources.clock import SystemClock
from forecasts.sources.prometheus import PrometheusConnection, PrometheusLoadSource
from tests.integration.prom_fixture import running_prometheus

pytestmark = pytest.mark.integration


@dataclass
class App:
    target: str
    requests: Counter
    replicas: Gauge
    stop: Callable[[], None]


@pytest.fixture
def app() -> Iterator[App]:
    registry = CollectorRegistry()
    requests = Counter("gridshift_test_requests", "Requests served.", registry=registry)
    replicas = Gauge("gridshift_test_replicas", "Replicas wanted.", registry=registry)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

    yield App(f"127.0.0.1:{server.server_port}", requests, replicas, stop)
    stop()


def _eventually(check: Callable[[], bool], *, timeout_seconds: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        time.sleep(0.2)


def test_scraped_metrics_read_back_through_the_adapter(app: App, tmp_path: Path) -> None:
    app.requests.inc(42)
    app.replicas.set(3)
    clock = SystemClock()
    with (
        running_prometheus(tmp_path, scrape_targets=[app.target], scrape_interval="1s") as srv,
        contextlib.closing(
            PrometheusLoadSource.connect(
                PrometheusConnection(url=srv.url, timeout_seconds=5),
                clock=clock,
                retry=RetryPolicy(attempts=1),
            )
        ) as source,
    ):

        def value(query: str) -> float | None:
            return source.instant_value(query, at=clock.now())

        _eventually(lambda: value("gridshift_test_requests_total") == 42.0)
        assert value('up{job="app"}') == 1.0
        assert value("gridshift_test_replicas") == 3.0

        app.requests.inc(100)
        _eventually(lambda: value("gridshift_test_requests_total") == 142.0)
        _eventually(lambda: (value("sum(rate(gridshift_test_requests_total[5s]))") or 0.0) > 0)

        def recent_replicas() -> list[float]:
            now = clock.now()
            got = source.fetch(
                "gridshift_test_replicas",
                start=now - timedelta(seconds=10),
                end=now,
                step=timedelta(seconds=1),
            )
            return [float(v) for v in got.series.values[got.measured_mask]]

        # Scraped every second: a few seconds on, the range shows one point per second.
        _eventually(lambda: len(recent_replicas()) >= 3)
        assert set(recent_replicas()) == {3.0}


def test_a_vanished_target_goes_stale(app: App, tmp_path: Path) -> None:
    """Real staleness: when scrapes fail Prometheus writes staleness markers, so the series
    disappears at once (no 5 min lookback) and the history ends in a marked gap."""
    app.replicas.set(7)
    clock = SystemClock()
    with (
        running_prometheus(tmp_path, scrape_targets=[app.target], scrape_interval="1s") as srv,
        contextlib.closing(
            PrometheusLoadSource.connect(
                PrometheusConnection(url=srv.url, timeout_seconds=5),
                clock=clock,
                retry=RetryPolicy(attempts=1),
            )
        ) as source,
    ):

        def replicas() -> float | None:
            return source.instant_value("gridshift_test_replicas", at=clock.now())

        _eventually(lambda: replicas() == 7.0)
        time.sleep(2.5)  # a few more scrapes
        app.stop()
        _eventually(lambda: source.instant_value('up{job="app"}', at=clock.now()) == 0.0)
        _eventually(lambda: replicas() is None)
        time.sleep(2.5)  # a few steps after the marker
        now = clock.now()
        got = source.fetch(
            "gridshift_test_replicas",
            start=now - timedelta(seconds=30),
            end=now,
            step=timedelta(seconds=1),
        )
        last = got.last_observed_at
        assert last is not None
        assert now - last >= timedelta(seconds=2)
        assert got.marked[-1].end == got.series.end  # trailing gap, never interpolated
        assert set(got.series.values[got.measured_mask]) == {7.0}
