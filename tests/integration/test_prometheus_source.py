"""The Prometheus adapter against the real Debian Prometheus, backfilled with seeded history.

Aspects: counters with resets through rate(); short gaps interpolated and long/edge gaps
marked; a stale series; NaN/+Inf samples; several series (error, sum); the >11,000-point
split against the generator's truth and against one direct query, and the server's own
refusal of an unsplit range; instant queries; long queries by POST; Prometheus down
(connection refused), slow (a delaying proxy and a short client timeout; Prometheus' own
query timeout -> 503 `timeout`), and answering
errors (bad PromQL -> bad_data, many-to-many -> execution).
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from forecasts.platform.errors import SourceDataError, SourceRequestError, SourceUnavailable
from forecasts.platform.http import RetryPolicy
from forecasts.sources.prometheus import PrometheusConnection, PrometheusLoadSource, rate_query
from forecasts.time import FrozenClock, to_epoch_s
from tests.integration.history import (
    INF_AT,
    NAN_AT,
    SPAN_S,
    STALE_AFTER,
    T0,
    History,
)
from tests.integration.prom_fixture import PrometheusServer, free_port

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)
S = timedelta(seconds=1)
END = T0 + timedelta(seconds=SPAN_S)


def _source(url: str, *, timeout: float = 10.0, **kwargs: Any) -> PrometheusLoadSource:
    return PrometheusLoadSource.connect(
        PrometheusConnection(url=url, timeout_seconds=timeout),
        clock=FrozenClock(END + timedelta(days=1)),
        retry=RetryPolicy(attempts=1),
        **kwargs,
    )


@pytest.fixture
def make_source() -> Iterator[Callable[..., PrometheusLoadSource]]:
    """`_source` whose clients are closed after the test, even when it fails."""
    made: list[PrometheusLoadSource] = []

    def make(url: str, **kwargs: Any) -> PrometheusLoadSource:
        made.append(_source(url, **kwargs))
        return made[-1]

    yield make
    for source in made:
        source.close()


@pytest.fixture
def prom(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., PrometheusLoadSource]
) -> PrometheusLoadSource:
    return make_source(backfilled_prometheus.url)


def test_counter_resets_are_absorbed_by_rate(
    prom: PrometheusLoadSource, prom_history: History
) -> None:
    raw = prom.fetch("gs_requests_total", start=T0, end=END, step=15 * S, unit="requests")
    drops = np.flatnonzero(np.diff(raw.series.values) < 0)
    assert len(drops) == 2  # the data really has two resets
    query = rate_query("gs_requests_total", scrape_interval=15 * S, step=M)
    assert query == "sum(rate(gs_requests_total[75s]))"
    got = prom.fetch(query, start=T0 + 5 * M, end=END, step=M, unit="requests/s")
    rates = got.series.values
    assert np.isfinite(rates).all()
    truth = prom_history.true_rate_per_s
    # A mishandled reset would show as a negative rate or a spike of ~counter/window.
    assert ((rates > 0.75 * truth) & (rates < 1.25 * truth)).all()
    empirical = sum(prom_history.increments) / SPAN_S
    assert rates.mean() == pytest.approx(empirical, rel=0.02)


def test_short_gaps_are_interpolated_and_long_ones_marked(
    prom: PrometheusLoadSource,
    prom_history: History,
    make_source: Callable[..., PrometheusLoadSource],
) -> None:
    step = 5 * M
    got = prom.fetch('gs_queue_depth{instance="a"}', start=T0, end=END - step, step=step)
    truth = prom_history.values_at("queue_a", got.series.epoch_s())
    assert [(g.start - T0, g.steps) for g in got.interpolated] == [(70 * M, 3)]
    assert [(g.start - T0, g.steps) for g in got.marked] == [(0 * M, 1), (160 * M, 11)]
    measured = got.measured_mask
    np.testing.assert_array_equal(got.series.values[measured], truth[measured])
    left, right = truth[13], truth[17]  # 65 and 85 minutes
    np.testing.assert_allclose(
        got.series.values[14:17], left + (right - left) * np.array([1, 2, 3]) / 4
    )
    assert np.isnan(got.series.values[32:43]).all()
    strict = make_source(str(prom.http.client.base_url), short_gap_steps=0)
    assert [
        g.steps
        for g in strict.fetch(
            'gs_queue_depth{instance="a"}', start=T0, end=END - step, step=step
        ).marked
    ] == [1, 3, 11]


def test_a_stale_series_ends_in_a_marked_gap(prom: PrometheusLoadSource) -> None:
    got = prom.fetch('gs_worker_busy{instance="old"}', start=T0, end=END, step=5 * M)
    assert got.last_observed_at == T0 + 125 * M  # the last sample (120:30) is 4.5 min old
    assert got.last_observed_at - STALE_AFTER < timedelta(minutes=5)
    trailing = got.marked[-1]
    assert (trailing.start, trailing.end) == (T0 + 130 * M, END)
    with pytest.raises(SourceDataError, match="no series"):
        prom.fetch('gs_worker_busy{instance="old"}', start=T0 + 3 * 60 * M, end=END, step=M)


def test_nan_and_inf_samples_count_as_missing(prom: PrometheusLoadSource) -> None:
    got = prom.fetch("gs_ratio", start=T0, end=T0 + 30 * M, step=M)
    assert got.non_finite_samples == 2
    assert [g.start for g in got.interpolated] == [NAN_AT, INF_AT]
    assert np.isfinite(got.series.values).all()


def test_several_series_error_or_sum(
    prom: PrometheusLoadSource, make_source: Callable[..., PrometheusLoadSource]
) -> None:
    with pytest.raises(SourceDataError, match=r'2 series.*instance="a".*instance="b"'):
        prom.fetch("gs_queue_depth", start=T0, end=END, step=5 * M)
    strict = make_source(str(prom.http.client.base_url), short_gap_steps=0)
    summed = strict.fetch("gs_queue_depth", start=T0, end=END, step=5 * M, aggregate="sum")
    server_side = strict.fetch("sum(gs_queue_depth)", start=T0, end=END, step=5 * M)
    np.testing.assert_array_equal(summed.series.values, server_side.series.values)


def test_long_ranges_are_split_and_match_the_data(
    prom: PrometheusLoadSource, prom_history: History
) -> None:
    query = 'gs_fine{job="api"}'
    got = prom.fetch(query, start=T0, end=T0 + 12_001 * S, step=S)
    assert len(got.series) == 12_001
    assert got.requests == 2
    truth = prom_history.values_at("fine", got.series.epoch_s())
    np.testing.assert_array_equal(got.series.values, truth)
    assert got.marked == ()
    assert got.interpolated == ()


def test_split_equals_one_direct_query(
    prom: PrometheusLoadSource, make_source: Callable[..., PrometheusLoadSource]
) -> None:
    base = str(prom.http.client.base_url)
    direct = make_source(base, max_points_per_request=11_001)
    pieces = make_source(base, max_points_per_request=2_500)
    window: dict[str, Any] = {"start": T0 + 7 * S, "end": T0 + 11_008 * S, "step": S}
    one = direct.fetch('gs_fine{job="api"}', **window)
    many = pieces.fetch('gs_fine{job="api"}', **window)
    assert (one.requests, many.requests) == (1, 5)
    assert len(one.series) == 11_001
    np.testing.assert_array_equal(one.series.values, many.series.values)


def test_prometheus_refuses_an_unsplit_range(prom: PrometheusLoadSource) -> None:
    start = to_epoch_s(T0)
    with pytest.raises(SourceRequestError, match="exceeded maximum resolution") as info:
        prom.http.get_json(
            "/api/v1/query_range",
            params={"query": "gs_fine", "start": start, "end": start + 11_001, "step": 1},
        )
    assert (info.value.error_type, info.value.status) == ("bad_data", 400)


def test_instant_queries(prom: PrometheusLoadSource, prom_history: History) -> None:
    at = T0 + 10 * M
    value = prom.instant_value('gs_queue_depth{instance="b"}', at=at)
    assert value == prom_history.values_at("queue_b", np.array([to_epoch_s(at)]))[0]
    samples = prom.instant("gs_queue_depth", at=at)
    assert sorted(s.labels["instance"] for s in samples) == ["a", "b"]
    assert all(s.at == at for s in samples)
    assert prom.instant_value("scalar(vector(3))", at=at) == 3.0
    assert prom.instant_value('gs_worker_busy{instance="old"}', at=END) is None


def test_long_queries_go_by_post(prom: PrometheusLoadSource) -> None:
    methods: list[str] = []
    prom.http.client.event_hooks = {"request": [lambda r: methods.append(r.method)]}
    short = 'gs_queue_depth{instance="b"}'
    long = short + "".join(f" + 0 * {i}" for i in range(600))
    window: dict[str, Any] = {"start": T0, "end": T0 + 60 * M, "step": 5 * M}
    a = prom.fetch(short, **window)
    b = prom.fetch(long, **window)
    assert methods == ["GET", "POST"]
    np.testing.assert_array_equal(a.series.values, b.series.values)


@pytest.mark.parametrize(
    ("query", "error_type", "status", "text"),
    [
        pytest.param(
            "sum(rate(gs_requests_total[5m])", "bad_data", 400, "parse error", id="bad PromQL"
        ),
        pytest.param(
            "gs_queue_depth * on() gs_queue_depth",
            "execution",
            422,
            "many-to-many",
            id="execution",
        ),
    ],
)
def test_answering_errors_are_typed(
    prom: PrometheusLoadSource, query: str, error_type: str, status: int, text: str
) -> None:
    with pytest.raises(SourceRequestError) as info:
        prom.fetch(query, start=T0, end=T0 + 10 * M, step=M)
    assert info.value.error_type == error_type
    assert info.value.status == status
    assert text in str(info.value)
    assert query in str(info.value)


def test_prometheus_down_is_unavailable(make_source: Callable[..., PrometheusLoadSource]) -> None:
    source = make_source(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(SourceUnavailable, match="connection failed"):
        source.fetch("up", start=T0, end=T0 + M, step=M)


class _DelayingProxy(ThreadingHTTPServer):
    """Forwards GET requests to `target` after `delay_seconds` (a slow Prometheus)."""

    daemon_threads = True

    def __init__(self, target: str, delay_seconds: float) -> None:
        self.target = urlsplit(target)
        self.delay_seconds = delay_seconds
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _DelayingProxy

    def do_GET(self) -> None:
        time.sleep(self.server.delay_seconds)
        upstream = http.client.HTTPConnection(
            self.server.target.hostname or "127.0.0.1", self.server.target.port, timeout=10
        )
        try:
            upstream.request("GET", self.path)
            answer = upstream.getresponse()
            body = answer.read()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up first
            pass
        finally:
            upstream.close()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def slow_proxy(backfilled_prometheus: PrometheusServer) -> Iterator[str]:
    proxy = _DelayingProxy(backfilled_prometheus.url, delay_seconds=1.0)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    proxy.server_close()
    thread.join(timeout=5)


def test_slow_prometheus_times_out_as_unavailable(
    slow_proxy: str, prom: PrometheusLoadSource, make_source: Callable[..., PrometheusLoadSource]
) -> None:
    impatient = make_source(slow_proxy, timeout=0.3)
    with pytest.raises(SourceUnavailable, match="timed out"):
        impatient.fetch("gs_ratio", start=T0, end=T0 + 5 * M, step=M)
    patient = make_source(slow_proxy, timeout=5.0)
    through_proxy = patient.fetch("gs_ratio", start=T0, end=T0 + 5 * M, step=M)
    direct = prom.fetch("gs_ratio", start=T0, end=T0 + 5 * M, step=M)
    np.testing.assert_array_equal(through_proxy.series.values, direct.series.values)


def test_server_side_timeout_is_unavailable_with_its_errortype(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., PrometheusLoadSource]
) -> None:
    source = make_source(backfilled_prometheus.url)
    source.query_timeout_seconds = 0.001  # Prometheus' own `timeout` parameter
    with pytest.raises(SourceUnavailable, match="query timed out") as info:
        # quantile_over_time sorts each 4 h window at every one of 11,000 steps: far over 1 ms
        source.fetch(
            "sum(quantile_over_time(0.5, gs_fine[4h]))", start=T0, end=T0 + 11_000 * S, step=S
        )
    assert (info.value.error_type, info.value.status) == ("timeout", 503)
