"""Batched range queries (`fetch_many`) and the batched tick against the real Prometheus.

Aspects: every kind of query of the seeded history (counter rate, gaps interpolated and
marked, a stale series, NaN/+Inf samples) answers exactly what it answers alone, in one
request; per-query errors stay per query (no series, several series) inside a successful
batch; a batch Prometheus refuses (a scalar, a syntax error) is asked query by query, so
only the broken query fails, and that query is asked alone afterwards; batches of
`batch_size`; Prometheus down fails every query of the batch; a scaler tick over several
workloads issues one range query for all their loads and marks only the broken one stale.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import numpy as np
import pytest

from forecasts.load import LoadHistory
from forecasts.platform.errors import (
    SourceDataError,
    SourceError,
    SourceRequestError,
    SourceUnavailable,
)
from forecasts.platform.http import RetryPolicy
from forecasts.sources.prometheus import PrometheusConnection, PrometheusLoadSource, rate_query
from forecasts.time import FrozenClock
from scaler.core.policy import PolicyParams
from scaler.core.workload import TargetKind, TargetRef
from scaler.loop import LoopSettings, ScalerLoop
from scaler.snapshot import SnapshotHolder
from tests.fakes import FakeDailyCarbonSource
from tests.integration.history import SPAN_S, T0
from tests.integration.prom_fixture import PrometheusServer, free_port
from tests.workloads import promql_workload

pytestmark = pytest.mark.integration

M = timedelta(minutes=1)
END = T0 + timedelta(seconds=SPAN_S)

GOOD = [
    rate_query("gs_requests_total", scrape_interval=15 * timedelta(seconds=1), step=M),
    'gs_queue_depth{instance="a"}',  # short gap interpolated, long and edge gaps marked
    'gs_worker_busy{instance="old"}',  # stale: ends in a marked gap
    "gs_ratio",  # one NaN and one +Inf sample
    "sum(gs_queue_depth)",
]


def _source(url: str, **kwargs: Any) -> PrometheusLoadSource:
    kwargs.setdefault("batch_size", 500)  # tagged batches are off by default
    return PrometheusLoadSource.connect(
        PrometheusConnection(url=url, timeout_seconds=10.0),
        clock=FrozenClock(END + timedelta(days=1)),
        retry=RetryPolicy(attempts=1),
        **kwargs,
    )


@pytest.fixture
def make_source() -> Iterator[Callable[..., tuple[PrometheusLoadSource, list[str]]]]:
    """A source and the list of query_range requests it sends (their `query` parameters)."""
    made: list[PrometheusLoadSource] = []

    def make(url: str, **kwargs: Any) -> tuple[PrometheusLoadSource, list[str]]:
        source = _source(url, **kwargs)
        sent: list[str] = []

        def record(request: httpx.Request) -> None:
            if request.url.path.endswith("/query_range"):
                form = httpx.QueryParams(request.content.decode()) if request.content else None
                sent.append((form or request.url.params).get("query", ""))

        source.http.client.event_hooks = {"request": [record]}
        made.append(source)
        return source, sent

    yield make
    for source in made:
        source.close()


def _same(batched: LoadHistory | SourceError, alone: LoadHistory) -> None:
    assert isinstance(batched, LoadHistory), batched
    np.testing.assert_array_equal(batched.series.values, alone.series.values)
    assert batched.series.start == alone.series.start
    assert batched.interpolated == alone.interpolated
    assert batched.marked == alone.marked
    assert batched.non_finite_samples == alone.non_finite_samples
    assert batched.query == alone.query


def test_a_batch_answers_each_query_as_alone_in_one_request(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., Any]
) -> None:
    source, sent = make_source(backfilled_prometheus.url)
    window: dict[str, Any] = {"start": T0, "end": END, "step": 5 * M}
    got = source.fetch_many([*GOOD, GOOD[0]], **window)  # a repeated query is asked once
    assert len(sent) == 1
    assert list(got) == GOOD
    assert sum(1 for h in got.values() if isinstance(h, LoadHistory) and h.marked) >= 2
    for query in GOOD:
        _same(got[query], source.fetch(query, **window))


def test_per_query_errors_stay_with_their_query(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., Any]
) -> None:
    source, sent = make_source(backfilled_prometheus.url)
    window: dict[str, Any] = {"start": T0, "end": END, "step": 5 * M}
    several, absent = "gs_queue_depth", 'gs_nothing{job="x"}'
    got = source.fetch_many([GOOD[1], several, absent], **window)
    assert len(sent) == 1
    _same(got[GOOD[1]], source.fetch(GOOD[1], **window))
    for query, text in ((several, "2 series"), (absent, "no series")):
        error = got[query]
        assert isinstance(error, SourceDataError)
        assert text in str(error)
        with pytest.raises(SourceDataError, match=text):
            source.fetch(query, **window)


@pytest.mark.parametrize(
    ("broken", "text"),
    [
        pytest.param("42", "", id="scalar"),
        pytest.param("sum(rate(gs_requests_total[5m])", "parse error", id="bad PromQL"),
    ],
)
def test_a_refused_batch_is_bisected_and_the_broken_query_asked_alone(
    backfilled_prometheus: PrometheusServer,
    make_source: Callable[..., Any],
    broken: str,
    text: str,
) -> None:
    source, sent = make_source(backfilled_prometheus.url)
    window: dict[str, Any] = {"start": T0, "end": END, "step": 5 * M}
    queries = [GOOD[1], broken, GOOD[3]]
    got = source.fetch_many(queries, **window)
    # [a, b, c] refused; [a] ok; [b, c] refused; [b] refused, then b alone; [c] ok
    assert len(sent) == 6
    error = got[broken]
    if broken == "42":  # a scalar is a fine query alone; it only cannot be tagged
        assert isinstance(error, LoadHistory)
        assert (error.series.values == 42).all()
    else:
        assert isinstance(error, SourceRequestError)
        assert text in str(error)
    for query in (GOOD[1], GOOD[3]):
        _same(got[query], source.fetch(query, **window))
    sent.clear()
    again = source.fetch_many(queries, **window)
    assert sent == [sent[0], broken]  # the good ones batched, the broken one alone
    assert "label_replace" in sent[0]
    assert broken not in sent[0]
    assert type(again[broken]) is type(got[broken])


def test_batches_hold_at_most_batch_size_queries(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., Any]
) -> None:
    source, sent = make_source(backfilled_prometheus.url, batch_size=2)
    window: dict[str, Any] = {"start": T0, "end": END, "step": 5 * M}
    got = source.fetch_many(GOOD, **window)
    assert len(sent) == 3  # 2 + 2 + 1 (the last one alone, untagged)
    assert "label_replace" not in sent[-1]
    for query in GOOD:
        _same(got[query], source.fetch(query, **window))


def test_prometheus_down_fails_every_query_of_the_batch(
    make_source: Callable[..., Any],
) -> None:
    source, _ = make_source(f"http://127.0.0.1:{free_port()}")
    got = source.fetch_many(GOOD[:3], start=T0, end=END, step=5 * M)
    assert list(got) == GOOD[:3]
    assert all(isinstance(e, SourceUnavailable) for e in got.values())


def test_a_tick_asks_once_for_every_load_and_marks_only_the_broken_one_stale(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., Any]
) -> None:
    source, sent = make_source(backfilled_prometheus.url)
    now = T0 + 100 * M
    workloads = [
        promql_workload("rate", GOOD[0], watts="sum(gs_queue_depth)"),
        promql_workload("sum", GOOD[4], watts="gs_ratio"),
        promql_workload("broken", "sum(rate(gs_requests_total[5m])"),
        promql_workload("absent", 'gs_nothing{job="x"}'),
    ]
    clock = FrozenClock(now)
    loop = ScalerLoop(
        workloads,
        carbon=FakeDailyCarbonSource({"r1": [100.0] * 24}),
        load=source,
        clock=clock,
        holder=SnapshotHolder(),
        params=PolicyParams(),
        settings=LoopSettings(load_step=5 * M, tick_history=60 * M, load_history=60 * M),
    )
    first = loop.tick()  # refused batch bisected; the broken one is remembered
    assert len(sent) == 6  # [r,s,b,a] no; [r,s] ok; [b,a] no; [b] no; b alone; [a] ok
    clock.advance(5 * M)
    sent.clear()
    snap = loop.tick()
    # loads: one batch for three + the broken one alone; power: one batch for both
    assert len(sent) == 3
    assert sorted("label_replace" in q for q in sent) == [False, True, True]
    for snapshot in (first, snap):
        stale = {n: w.stale_inputs for n, w in snapshot.workloads.items()}
        assert "load" not in stale["rate"]
        assert "load" not in stale["sum"]
        assert "load" in stale["broken"]
        assert "load" in stale["absent"]
    # power is read from the second tick on (it accounts the interval since the first)
    assert snap.workloads["rate"].stale_inputs == snap.workloads["sum"].stale_inputs == ()
    assert snap.workloads["rate"].load_now == pytest.approx(
        source.fetch(GOOD[0], start=now - 55 * M, end=now + 5 * M, step=5 * M).series.values[-1]
    )
    assert snap.source_errors_total["prometheus"] == 4  # two stale loads, two ticks


def test_a_grouped_query_answers_each_group_as_its_own_query(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., Any]
) -> None:
    source, sent = make_source(backfilled_prometheus.url)
    window: dict[str, Any] = {"start": T0, "end": END, "step": 5 * M}
    got = source.fetch_grouped("sum by (instance) (gs_queue_depth)", **window)
    assert len(sent) == 1
    assert sorted(dict(k)["instance"] for k in got) == ["a", "b"]
    for labels, history in got.items():
        instance = dict(labels)["instance"]
        alone = source.fetch(f'sum(gs_queue_depth{{instance="{instance}"}})', **window)
        np.testing.assert_array_equal(history.series.values, alone.series.values)
        assert history.interpolated == alone.interpolated
        assert history.marked == alone.marked
    with pytest.raises(SourceDataError, match="no series"):
        source.fetch_grouped('sum by (job) (gs_nothing{job="x"})', **window)


def test_a_tick_asks_a_grouped_family_once(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., Any]
) -> None:
    source, sent = make_source(backfilled_prometheus.url)
    family = "sum by (instance) (gs_queue_depth)"
    workloads = [
        promql_workload(
            f"queue-{instance}",
            family,
            match=(("instance", instance),),
            target=TargetRef(TargetKind.DEPLOYMENT, instance),
        )
        for instance in ("a", "b", "gone")
    ]
    now = T0 + 100 * M
    loop = ScalerLoop(
        workloads,
        carbon=FakeDailyCarbonSource({"r1": [100.0] * 24}),
        load=source,
        clock=FrozenClock(now),
        holder=SnapshotHolder(),
        params=PolicyParams(),
        settings=LoopSettings(load_step=5 * M, tick_history=60 * M, load_history=60 * M),
    )
    snap = loop.tick()
    assert sent == [family]
    stale = {n: w.stale_inputs for n, w in snap.workloads.items()}
    assert stale == {"queue-a": (), "queue-b": (), "queue-gone": ("load",)}
    alone = source.fetch(
        'sum(gs_queue_depth{instance="b"})', start=now - 60 * M, end=now, step=5 * M
    )
    assert snap.workloads["queue-b"].load_now == alone.series.values[-1]


def test_a_grouped_answer_over_the_response_cap_is_asked_in_shorter_ranges(
    backfilled_prometheus: PrometheusServer, make_source: Callable[..., Any]
) -> None:
    source, sent = make_source(backfilled_prometheus.url)
    window: dict[str, Any] = {"start": T0, "end": END, "step": M}
    query = "sum by (instance) (gs_queue_depth)"
    whole = source.fetch_grouped(query, **window)
    assert len(sent) == 1
    source.http.max_response_bytes = 6_000  # under the 240-step answer, over 120 steps
    sent.clear()
    cut = source.fetch_grouped(query, **window)
    assert len(sent) == 3  # 240 steps refused, then 2 x 120
    assert cut.keys() == whole.keys()
    for labels, history in whole.items():
        np.testing.assert_array_equal(cut[labels].series.values, history.series.values)
        assert cut[labels].marked == history.marked
    sent.clear()
    source.fetch_grouped(query, **window)  # the step count that fits is remembered
    assert len(sent) == 2
