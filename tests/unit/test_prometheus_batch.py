"""Batching many PromQL queries into one and splitting the answer (pure), and the batched
dispatch around it.

Aspects: the tag is a valid, escaped `label_replace`; the `or` tree is balanced (depth
log2 n, every query once, in order); splitting by the tag gives back each query's own label
sets, refuses an unattributable series; chunks; `history_many` on a source without batching
(one call per distinct query, errors per query) and on the prefix router (each route's
queries in one batch of its source; an unrouted query fails alone); the scaler's tick asks a
batching source once per tick for all loads, once for measured power, and carbon once per
region, and an error marks only the workloads whose query failed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.platform.errors import SourceError, SourceRequestError, SourceUnavailable
from forecasts.series import RegularSeries
from forecasts.sources.load import BatchLoadSource, history_many
from forecasts.sources.prometheus_batch import (
    BATCH_LABEL,
    batch_query,
    chunks,
    select_series,
    split_by_label,
    tag,
)
from forecasts.sources.routing import PrefixRoutedLoadSource
from forecasts.time import FrozenClock
from scaler.core.policy import PolicyParams
from scaler.loop import LoopSettings, ScalerLoop
from scaler.snapshot import SnapshotHolder
from tests.fakes import FakeDailyCarbonSource, FakeLoadSource
from tests.workloads import promql_workload

T0 = datetime(2024, 1, 15, 9, tzinfo=UTC)
STEP = timedelta(minutes=5)


def _labels(**kw: str) -> frozenset[tuple[str, str]]:
    return frozenset(kw.items())


@pytest.mark.parametrize(
    ("query", "key", "expected"),
    [
        pytest.param("up", "0", 'label_replace(up, "gridshift_query", "0", "", "")', id="plain"),
        pytest.param(
            'a{x="q\\"z"}',
            'k"\\',
            'label_replace(a{x="q\\"z"}, "gridshift_query", "k\\"\\\\", "", "")',
            id="quotes and backslashes in the key are escaped",
        ),
    ],
)
def test_tag(query: str, key: str, expected: str) -> None:
    assert tag(query, key) == expected


def test_tag_refuses_an_empty_query() -> None:
    with pytest.raises(ValueError, match="empty"):
        tag("  ", "0")


@pytest.mark.parametrize("n", [1, 2, 3, 7, 8, 1000])
def test_batch_query_is_a_balanced_or_of_every_query_in_order(n: int) -> None:
    queries = [f"q{i}" for i in range(n)]
    text = batch_query(queries)
    assert text.count("label_replace(") == n
    assert text.count(" or ") == n - 1
    positions = [text.index(f'label_replace(q{i}, "{BATCH_LABEL}", "{i}",') for i in range(n)]
    assert positions == sorted(positions)
    depth = deepest = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        deepest = max(deepest, depth)
    # each level of the tree adds one pair of parentheses around label_replace's own
    assert deepest <= int(np.ceil(np.log2(n))) + 1


def test_batch_query_refuses_nothing() -> None:
    with pytest.raises(ValueError, match="no queries"):
        batch_query([])


def test_split_by_label_gives_back_each_querys_own_series() -> None:
    answer = {
        _labels(gridshift_query="0"): 1,
        _labels(gridshift_query="1", instance="a"): 2,
        _labels(gridshift_query="1", instance="b"): 3,
        _labels(gridshift_query="2", __name__="up", job="x"): 4,
    }
    assert split_by_label(answer) == {
        "0": {frozenset(): 1},
        "1": {_labels(instance="a"): 2, _labels(instance="b"): 3},
        "2": {_labels(__name__="up", job="x"): 4},
    }


def test_split_by_label_refuses_a_series_without_the_tag() -> None:
    with pytest.raises(ValueError, match=r"\{job='x'\} carries no gridshift_query label"):
        split_by_label({_labels(gridshift_query="0"): 1, _labels(job="x"): 2})


GROUPED = {
    _labels(namespace="a", workload="web"): 1,
    _labels(namespace="b", workload="web"): 2,
    _labels(namespace="a", workload="api"): 3,
}


@pytest.mark.parametrize(
    ("match", "expected"),
    [
        pytest.param((("namespace", "a"), ("workload", "web")), 1, id="both labels"),
        pytest.param((("workload", "api"),), 3, id="one label singles it out"),
    ],
)
def test_select_series_picks_the_one_matching_series(
    match: tuple[tuple[str, str], ...], expected: int
) -> None:
    assert select_series(GROUPED, match) == expected


@pytest.mark.parametrize(
    ("match", "text"),
    [
        pytest.param((("workload", "web"),), r'2 series match \{workload="web"\}', id="several"),
        pytest.param(
            (("namespace", "c"), ("workload", "web")),
            r'no series matches \{namespace="c", workload="web"\} among the 3',
            id="none",
        ),
        pytest.param((), "names no label", id="empty match"),
    ],
)
def test_select_series_refuses_none_or_several(
    match: tuple[tuple[str, str], ...], text: str
) -> None:
    with pytest.raises(ValueError, match=text):
        select_series(GROUPED, match)


@pytest.mark.parametrize(
    ("n", "size", "lengths"),
    [
        pytest.param(0, 3, [], id="empty"),
        pytest.param(5, 2, [2, 2, 1], id="remainder"),
        pytest.param(4, 4, [4], id="exact"),
    ],
)
def test_chunks(n: int, size: int, lengths: list[int]) -> None:
    got = chunks(list(range(n)), size)
    assert [len(c) for c in got] == lengths
    assert [x for c in got for x in c] == list(range(n))


def test_chunks_refuses_a_size_below_one() -> None:
    with pytest.raises(ValueError, match="size"):
        chunks([1], 0)


# ------------------------------------------------------------------ dispatch
def test_history_many_without_batching_asks_each_distinct_query_once() -> None:
    source = FakeLoadSource(levels={"a": 1.0, "b": 2.0})
    got = history_many(source, ["a", "b", "a", "zzz"], start=T0, end=T0 + 3 * STEP, step=STEP)
    assert source.calls == ["a", "b", "zzz"]
    assert list(got) == ["a", "b", "zzz"]
    a, b = got["a"], got["b"]
    assert isinstance(a, RegularSeries)
    assert isinstance(b, RegularSeries)
    assert (a.values == 1.0).all()
    assert (b.values == 2.0).all()
    assert isinstance(got["zzz"], SourceRequestError)


@dataclass
class FakeBatchLoadSource(FakeLoadSource):
    """A `FakeLoadSource` that also answers batches, recording each batch it is asked."""

    batches: list[tuple[str, ...]] = field(default_factory=list)
    broken: frozenset[str] = frozenset()

    def history_many(
        self, queries: Sequence[str], *, start: datetime, end: datetime, step: timedelta
    ) -> Mapping[str, RegularSeries | SourceError]:
        self.batches.append(tuple(queries))
        if self.fail_with is not None:
            return dict.fromkeys(queries, self.fail_with)
        out: dict[str, RegularSeries | SourceError] = {}
        for q in queries:
            if q in self.broken:
                out[q] = SourceRequestError(f"bad {q}", source=self.name, status=400)
            else:
                out[q] = FakeLoadSource.history(self, q, start=start, end=end, step=step)
        self.calls.clear()
        return out


def test_the_fake_batch_source_is_a_batch_source_and_the_plain_one_is_not() -> None:
    assert isinstance(FakeBatchLoadSource(), BatchLoadSource)
    assert not isinstance(FakeLoadSource(), BatchLoadSource)


def test_the_router_batches_each_route_and_fails_unrouted_queries_alone() -> None:
    sample = FakeBatchLoadSource(levels={"sample:a": 1.0, "sample:b": 2.0}, name="sample")
    prom = FakeBatchLoadSource(levels={"x": 3.0, "y": 4.0}, name="prom")
    router = PrefixRoutedLoadSource(routes=[("sample:", sample)], default=prom)
    got = router.history_many(
        ["x", "sample:a", "y", "sample:b"], start=T0, end=T0 + STEP, step=STEP
    )
    assert sample.batches == [("sample:a", "sample:b")]
    assert prom.batches == [("x", "y")]
    assert list(got) == ["x", "sample:a", "y", "sample:b"]
    alone = PrefixRoutedLoadSource(routes=[("sample:", sample)])
    unrouted = alone.history_many(["sample:a", "x"], start=T0, end=T0 + STEP, step=STEP)
    assert isinstance(unrouted["sample:a"], RegularSeries)
    assert isinstance(unrouted["x"], SourceRequestError)


def test_a_tick_asks_once_per_kind_and_errors_stay_with_their_workloads() -> None:
    load = FakeBatchLoadSource(
        levels={"a": 100.0, "b": 50.0, "w": 400.0}, broken=frozenset({"bad"})
    )
    carbon = FakeDailyCarbonSource({"r1": [100.0] * 24, "r2": [300.0] * 24})
    workloads = [
        promql_workload("a", "a", watts="w"),
        promql_workload("b", "b", region="r2"),
        promql_workload("also-a", "a", region="r2"),
        promql_workload("bad", "bad"),
    ]
    clock = FrozenClock(T0)
    loop = ScalerLoop(
        workloads,
        carbon=carbon,
        load=load,
        clock=clock,
        holder=SnapshotHolder(),
        params=PolicyParams(max_step_replicas=100),
        settings=LoopSettings(),
    )
    loop.refit()
    assert load.batches == [("a", "b", "bad")]  # the refit's histories: one batch
    load.batches.clear()
    carbon.calls.clear()
    loop.tick()
    clock.advance(STEP)
    snap = loop.tick()
    assert load.batches == [("a", "b", "bad"), ("a", "b", "bad"), ("w",)]
    assert load.calls == []  # nothing asked one query at a time
    # carbon: per region per tick, not per workload: the calls of these two ticks (two
    # workloads in each region) are those of a loop with one workload per region
    alone = FakeDailyCarbonSource({"r1": [100.0] * 24, "r2": [300.0] * 24})
    clock_1 = FrozenClock(T0)
    loop_1 = ScalerLoop(
        [workloads[0], workloads[1]],
        carbon=alone,
        load=FakeBatchLoadSource(levels={"a": 100.0, "b": 50.0, "w": 400.0}),
        clock=clock_1,
        holder=SnapshotHolder(),
        params=PolicyParams(max_step_replicas=100),
        settings=LoopSettings(),
    )
    loop_1.refit()
    alone.calls.clear()
    loop_1.tick()
    clock_1.advance(STEP)
    loop_1.tick()
    assert Counter(carbon.calls) == Counter(alone.calls)
    assert Counter(c[1] for c in carbon.calls if c[0] == "latest") == {"r1": 2, "r2": 2}
    stale = {n: w.stale_inputs for n, w in snap.workloads.items()}
    assert stale == {"a": (), "b": (), "also-a": (), "bad": ("load",)}
    assert snap.workloads["a"].desired_replicas == snap.workloads["also-a"].desired_replicas
    assert snap.source_errors_total["fake-load"] == 3  # refit + two ticks, "bad" only


def test_an_unavailable_batch_marks_every_workload_of_it_stale() -> None:
    load = FakeBatchLoadSource(
        levels={"a": 100.0, "b": 50.0},
        fail_with=SourceUnavailable("down", source="fake-load"),
    )
    loop = ScalerLoop(
        [promql_workload("a", "a"), promql_workload("b", "b")],
        carbon=FakeDailyCarbonSource({"r1": [100.0] * 24}),
        load=load,
        clock=FrozenClock(T0),
        holder=SnapshotHolder(),
        params=PolicyParams(),
        settings=LoopSettings(),
    )
    snap = loop.tick()
    assert load.batches == [("a", "b")]
    assert {w.stale_inputs for w in snap.workloads.values()} == {("load",)}


@dataclass
class FakeGroupedLoadSource(FakeBatchLoadSource):
    """Also answers grouped queries: `groups[query]` maps label sets to constant levels."""

    groups: dict[str, dict[frozenset[tuple[str, str]], float]] = field(default_factory=dict)
    grouped_calls: list[str] = field(default_factory=list)
    grouped_error: SourceError | None = None

    def history_grouped(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> Mapping[frozenset[tuple[str, str]], RegularSeries]:
        self.grouped_calls.append(query)
        if self.grouped_error is not None:
            raise self.grouped_error
        n = round((end - start) / step)
        return {
            labels: RegularSeries(start=start, step=step, values=np.full(n, level), unit="1")
            for labels, level in self.groups[query].items()
        }


FAMILY = "sum by (workload) (rate(http_requests_total[2m]))"


def _grouped_loop(load: FakeLoadSource) -> tuple[ScalerLoop, FrozenClock]:
    clock = FrozenClock(T0)
    workloads = [
        promql_workload("web", FAMILY, match=(("workload", "web"),)),
        promql_workload("api", FAMILY, match=(("workload", "api"),)),
        promql_workload("gone", FAMILY, match=(("workload", "gone"),)),
        promql_workload("plain", "a"),
    ]
    loop = ScalerLoop(
        workloads,
        carbon=FakeDailyCarbonSource({"r1": [100.0] * 24}),
        load=load,
        clock=clock,
        holder=SnapshotHolder(),
        params=PolicyParams(max_step_replicas=100),
        settings=LoopSettings(),
    )
    return loop, clock


def test_a_grouped_family_is_one_query_per_tick_and_a_missing_series_fails_alone() -> None:
    load = FakeGroupedLoadSource(
        levels={"a": 100.0},
        groups={FAMILY: {_labels(workload="web"): 100.0, _labels(workload="api"): 50.0}},
    )
    loop, _ = _grouped_loop(load)
    loop.refit()
    snap = loop.tick()
    assert load.grouped_calls == [FAMILY, FAMILY]  # the refit's and the tick's
    assert load.batches == [("a",), ("a",)]
    stale = {n: w.stale_inputs for n, w in snap.workloads.items()}
    assert stale == {"web": (), "api": (), "gone": ("load",), "plain": ()}
    assert snap.workloads["web"].load_now == 100.0
    assert snap.workloads["api"].load_now == 50.0
    assert snap.workloads["web"].desired_replicas == snap.workloads["plain"].desired_replicas


def test_a_failed_family_marks_its_workloads_stale_only() -> None:
    load = FakeGroupedLoadSource(
        levels={"a": 100.0},
        groups={FAMILY: {}},
        grouped_error=SourceUnavailable("down", source="fake-load"),
    )
    loop, _ = _grouped_loop(load)
    snap = loop.tick()
    assert load.grouped_calls == [FAMILY]  # asked once, not once per workload
    assert {n for n, w in snap.workloads.items() if w.stale_inputs} == {"web", "api", "gone"}
    assert snap.source_errors_total["fake-load"] == 3


def test_a_source_without_grouping_fails_grouped_workloads_with_a_clear_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    loop, _ = _grouped_loop(FakeBatchLoadSource(levels={"a": 100.0}))
    snap = loop.tick()
    assert snap.workloads["plain"].stale_inputs == ()
    assert snap.workloads["web"].stale_inputs == ("load",)
    assert "cannot answer the grouped query" in caplog.text
