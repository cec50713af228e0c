"""Benchmark: a fleet replay (many workloads x 3 regions) in one process and on a local Dask
cluster of 2 and 4 workers: wall time, speedup against one process, identical results, and
peak memory per worker.

Inputs (../shared/data; skipped without it): the carbon of CISO, DE and PL (EnsembleCI 2021)
and the German Wikipedia's hourly requests, from `config/scenarios/bench-runtime.yaml`;
workload i runs in region i mod 3 with the Wikipedia demand scaled by a seeded factor in
[0.5, 1.5] (its own load trace), all six policies, the scenario's forecast models.

`GRIDSHIFT_BENCH_FLEET_WORKLOADS` (default 1,000) and `GRIDSHIFT_BENCH_FLEET_DAYS` (default
365) scale it, `GRIDSHIFT_BENCH_FLEET_WORKERS` (default `2,4`; empty: the one process alone)
picks the clusters; on a shared 2-core machine the issue's 1,000 x one year on one process
and two clusters takes about an hour, so the README says which sizes were measured how.
One process: `run_replay` in a fresh spawned process (its peak RSS is the single-process
memory). Cluster: the wall time of
`run_replay_parallel` (and the cluster's start on its own), each worker's peak RSS.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.replay_scenario import LoadedScenario, load_scenario
from forecasts.series import RegularSeries
from scaler.core.workload import LoadSourceKind, LoadSpec
from scaler.replay.engine import run_replay, run_replay_parallel
from scaler.replay.model import ReplayResult, ReplayScenario, ReplayWorkload
from scaler.replay.summary import summarise

pytestmark = pytest.mark.slow

N = int(os.environ.get("GRIDSHIFT_BENCH_FLEET_WORKLOADS", "1000"))
DAYS = int(os.environ.get("GRIDSHIFT_BENCH_FLEET_DAYS", "365"))
#: the local clusters to compare with one process ("" for the one process alone)
WORKERS = tuple(
    int(n) for n in os.environ.get("GRIDSHIFT_BENCH_FLEET_WORKERS", "2,4").split(",") if n.strip()
)
REGIONS = ("CISO", "DE", "PL")
SCENARIO = Path(__file__).resolve().parents[2] / "config" / "scenarios" / "bench-runtime.yaml"


def _fleet(loaded: LoadedScenario, n: int) -> ReplayScenario:
    base = loaded.scenario
    template = next(w for w in base.workloads if w.name == "wiki-DE-s")
    assert template.demand is not None
    rng = np.random.default_rng(1000)
    workloads = []
    for i in range(n):
        name = f"w{i:04d}"
        demand = template.demand
        workloads.append(
            ReplayWorkload(
                replace(
                    template.workload,
                    name=name,
                    region=REGIONS[i % len(REGIONS)],
                    load=LoadSpec(LoadSourceKind.TRACE, name, template.workload.load.unit),
                ),
                RegularSeries(
                    start=demand.start,
                    step=demand.step,
                    values=demand.values * rng.uniform(0.5, 1.5),
                    unit=demand.unit,
                ),
            )
        )
    return replace(
        base,
        name=f"fleet-{n}x{len(REGIONS)}",
        workloads=tuple(workloads),
        carbon={r: base.carbon[r] for r in REGIONS},
    )


def _common(loaded: LoadedScenario) -> dict[str, Any]:
    return dict(loaded.replay_options)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _one_process(scenario: ReplayScenario, common: dict[str, Any]) -> tuple[ReplayResult, float]:
    """Runs in a fresh process: the single-process path and its peak RSS."""
    result = run_replay(scenario, **common)
    return result, _peak_rss_mb()


def _same(a: ReplayResult, b: ReplayResult) -> None:
    for policy, per_workload in a.outcomes.items():
        assert list(per_workload) == list(b.outcomes[policy])
        for name, x in per_workload.items():
            y = b.outcomes[policy][name]
            np.testing.assert_array_equal(x.replicas, y.replicas)
            np.testing.assert_array_equal(x.emitted_g_per_interval, y.emitted_g_per_interval)
    sa, sb = summarise(a), summarise(b)
    sa.pop("seconds")
    sb.pop("seconds")
    assert sa == sb


def test_fleet_replay_on_1_2_and_4_workers(shared_data: Path) -> None:
    import logging

    from distributed import Client, LocalCluster

    loaded = load_scenario(
        SCENARIO,
        environ={"GRIDSHIFT_SHARED_DATA": str(shared_data)},
        end=None,
    )
    if DAYS < 365:
        loaded = load_scenario(
            SCENARIO,
            environ={"GRIDSHIFT_SHARED_DATA": str(shared_data)},
            end=loaded.scenario.start + timedelta(days=DAYS),
        )
    scenario = _fleet(loaded, N)
    common = _common(loaded)
    cells = N * scenario.intervals
    print(
        f"\n[bench fleet] {N} workloads x {len(REGIONS)} regions x {scenario.intervals} hourly "
        f"intervals ({DAYS} days; {cells:,} workload-intervals; issue target 1,000 x 3 x one "
        f"year = {1000 * 8760:,}), {len(scenario.policies)} policies, "
        f"{os.cpu_count()} CPUs"
    )
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        t0 = time.perf_counter()
        single, single_rss = pool.submit(_one_process, scenario, common).result()
        single_s = time.perf_counter() - t0
    print(
        f"  1 process: {single_s:.1f} s wall ({cells / single_s:,.0f} workload-intervals/s), "
        f"peak RSS {single_rss:.0f} MB"
    )
    logging.getLogger("distributed").setLevel(logging.ERROR)
    for workers in WORKERS:
        t0 = time.perf_counter()
        with (
            LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                silence_logs=logging.ERROR,
            ) as cluster,
            Client(cluster) as client,
        ):
            start_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            with warnings.catch_warnings():
                # each part ships its workloads' demand whole (1,000 workloads x 91 days is a
                # 22 MB graph); Dask warns about graphs over 10 MB, which pytest makes an error
                warnings.filterwarnings("ignore", "Sending large graph", UserWarning)
                got = run_replay_parallel(
                    scenario, executor=client.get_executor(), parts=workers, **common
                )
            run_s = time.perf_counter() - t0
            peaks = sorted(client.run(_peak_rss_mb).values())
        _same(single, got)
        print(
            f"  {workers} workers: {run_s:.1f} s wall + {start_s:.1f} s cluster start "
            f"(speedup {single_s / run_s:.2f}x, {single_s / (run_s + start_s):.2f}x with the "
            f"start), peak RSS per worker {', '.join(f'{p:.0f}' for p in peaks)} MB, "
            f"results identical: yes"
        )
