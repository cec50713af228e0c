"""Benchmark: a scaler tick over many workloads on the real Prometheus, per workload vs
batched (one range query per `prometheus.batch_size` workloads).

Inputs: Debian's Prometheus, backfilled with promtool from seeded OpenMetrics: one gauge
series per workload (`gs_load{namespace, workload}`, a sample every 5 minutes over 26 hours,
a daily shape scaled per workload). Each workload's own query is
`sum(gs_load{namespace="...",workload="..."})`, what a user would write per workload.

Reports, for the same workloads, clock and models: range queries per tick, tick wall time and
refit time for three ways of asking: per workload (`batch_size` 1: what the tick did before),
tagged batches of 500 (`label_replace(...) or ...`, any expressions) and one grouped family
(`sum by (namespace, workload) (gs_load)` with each workload's `load.match`). Per workload
and grouped: median of 3 ticks, interleaved; tagged: one tick, and only up to 2,000
workloads (it is the slowest by far: 41 s a tick at 1,000). Asserts every path decides the
same replicas for every workload.

`GRIDSHIFT_BENCH_PROM_SERIES` sets the workload count (default 10,000); the per-workload
tick is measured on all of them. Run with `make bench`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from forecasts.platform.http import RetryPolicy
from forecasts.sources.prometheus import PrometheusConnection, PrometheusLoadSource
from forecasts.sources.sample import SAMPLE_REGIONS, SampleCarbonSource
from forecasts.time import FrozenClock
from scaler.core.policy import PolicyParams
from scaler.core.workload import Workload
from scaler.loop import LoopSettings, ScalerLoop
from scaler.snapshot import Snapshot, SnapshotHolder
from tests.integration.prom_fixture import PrometheusServer, backfill, running_prometheus
from tests.workloads import promql_workload

pytestmark = pytest.mark.slow

N = int(os.environ.get("GRIDSHIFT_BENCH_PROM_SERIES", "10000"))
T0 = datetime(2024, 3, 4, tzinfo=UTC)
STEP = timedelta(minutes=5)
SPAN = timedelta(hours=26)
NOW = T0 + SPAN - timedelta(minutes=2)


def _openmetrics(n: int) -> str:
    rng = np.random.default_rng(18)
    times = np.arange(int(T0.timestamp()), int((T0 + SPAN).timestamp()), int(STEP.total_seconds()))
    shape = 1.0 + 0.5 * np.sin(2 * np.pi * (times % 86400) / 86400)
    scale = rng.uniform(5.0, 200.0, size=n)
    lines = ["# TYPE gs_load gauge"]
    for i in range(n):
        labels = f'{{namespace="ns{i % 50}",workload="w{i:05d}"}}'
        values = np.round(scale[i] * shape * 2) / 2  # multiples of 0.5: exact in text
        lines.extend(f"gs_load{labels} {v} {t}" for t, v in zip(times, values, strict=True))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


GROUPED = "sum by (namespace, workload) (gs_load)"


def _workloads(n: int, *, grouped: bool = False) -> list[Workload]:
    out = []
    for i in range(n):
        ns, name = f"ns{i % 50}", f"w{i:05d}"
        region = SAMPLE_REGIONS[i % len(SAMPLE_REGIONS)]
        match: tuple[tuple[str, str], ...]
        if grouped:
            query, match = GROUPED, (("namespace", ns), ("workload", name))
        else:
            query, match = f'sum(gs_load{{namespace="{ns}",workload="{name}"}})', ()
        out.append(
            promql_workload(name, query, match=match, region=region, namespace=ns, max_replicas=50)
        )
    return out


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    workdir = tmp_path_factory.mktemp("prom-bench")
    t0 = time.perf_counter()
    text = _openmetrics(N)
    tsdb = backfill(text, workdir / "tsdb", timeout_seconds=1200)
    (workdir / "tsdb.om").unlink()
    print(
        f"\n[bench prometheus] backfilled {N} series x {len(text.splitlines()) // max(N, 1)} "
        f"samples in {time.perf_counter() - t0:.1f} s"
    )
    del text
    with running_prometheus(workdir, tsdb_dir=tsdb, ready_timeout_seconds=300) as server:
        yield server


def _source(url: str, *, batch_size: int) -> tuple[PrometheusLoadSource, list[int]]:
    source = PrometheusLoadSource.connect(
        PrometheusConnection(url=url, timeout_seconds=120.0),
        clock=FrozenClock(NOW),
        retry=RetryPolicy(attempts=1),
        batch_size=batch_size,
    )
    sent = [0]

    def count(request: httpx.Request) -> None:
        if request.url.path.endswith("/query_range"):
            sent[0] += 1

    source.http.client.event_hooks = {"request": [count]}
    return source, sent


def _loop(load: object, clock: FrozenClock, *, grouped: bool) -> ScalerLoop:
    return ScalerLoop(
        _workloads(N, grouped=grouped),
        carbon=SampleCarbonSource(),
        load=load,  # type: ignore[arg-type]
        clock=clock,
        holder=SnapshotHolder(),
        params=PolicyParams(),
        settings=LoopSettings(
            load_step=STEP, tick_history=timedelta(hours=25), load_history=timedelta(hours=25)
        ),
    )


class _Path:
    """One way of asking, with its own source, loop and figures."""

    def __init__(self, url: str, *, grouped: bool, batch_size: int) -> None:
        self.source, self.sent = _source(url, batch_size=batch_size)
        self.clock = FrozenClock(NOW)
        self.loop = _loop(self.source, self.clock, grouped=grouped)
        t0 = time.perf_counter()
        self.loop.refit()
        self.refit_s, self.refit_queries = time.perf_counter() - t0, self.sent[0]
        self.durations: list[float] = []
        self.queries: list[int] = []
        self.first: Snapshot | None = None

    def tick(self) -> None:
        self.sent[0] = 0
        t0 = time.perf_counter()
        snap = self.loop.tick()
        self.durations.append(time.perf_counter() - t0)
        self.queries.append(self.sent[0])
        self.first = self.first or snap  # the first: the same state in every path
        self.clock.advance(timedelta(seconds=1))

    @property
    def tick_s(self) -> float:
        return statistics.median(self.durations)


def test_tick_queries_per_workload_vs_batched_vs_grouped(prometheus: PrometheusServer) -> None:
    url = prometheus.url
    per_workload = _Path(url, grouped=False, batch_size=1)
    grouped = _Path(url, grouped=True, batch_size=1)
    for _ in range(3):  # interleaved, so load on the shared machine hits both alike
        per_workload.tick()
        grouped.tick()
    paths = {"per workload (before)": per_workload, "grouped family (load.match)": grouped}
    if N <= 2000:
        tagged = paths["tagged batches of 500"] = _Path(url, grouped=False, batch_size=500)
        tagged.tick()
        assert set(tagged.queries) == {-(-N // 500)}
    try:
        assert per_workload.first is not None
        decided = {n: ws.desired_replicas for n, ws in per_workload.first.workloads.items()}
        for name, path in paths.items():
            snap = path.first
            assert snap is not None
            assert len(snap.workloads) == N, name
            assert all(ws.stale_inputs == () for ws in snap.workloads.values()), name
            assert {n: ws.desired_replicas for n, ws in snap.workloads.items()} == decided, name
        # one family; more than one range request only where the answer outgrows the
        # response cap (then cut into shorter ranges, the same number every tick)
        assert len(set(grouped.queries)) == 1
        assert grouped.queries[0] <= 1 + N * 300 * 30 // (32 * 1024 * 1024)
        assert set(per_workload.queries) == {N}
    finally:
        for path in paths.values():
            path.source.close()
    base = per_workload.tick_s
    print(f"\n[bench prometheus] {N} workloads, 25 h of 5-minute steps each (300 points)")
    for label, path in paths.items():
        print(
            f"  {label}: {path.queries[0]} range queries per tick, tick median "
            f"{path.tick_s:.2f} s of {len(path.durations)} ({base / path.tick_s:.1f}x the "
            f"per-workload speed); refit {path.refit_queries} queries {path.refit_s:.2f} s"
        )
    print(f"  decisions identical in every path for all {N} workloads: yes")
    print(
        f"  grouped: one family, {grouped.queries[0]} range request(s) per tick (an answer "
        f"over the 32 MB response cap is asked in shorter ranges)"
    )
