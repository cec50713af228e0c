"""Benchmark server: the real extender (wiring, app, uvicorn) over a synthetic cluster.

`python -m tests.benchmarks.extender_server --listen 127.0.0.1:PORT --nodes 5000` builds the
extender with `build_extender` (nodes from a fake inventory, carbon from a fake source:
24 regions with hourly series and forecasts), publishes one snapshot and serves until SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
from datetime import timedelta

from prometheus_client import CollectorRegistry

from config.settings import ExtenderSettings, Settings
from config.wiring import build_extender
from extender.core.energy import GpuEnergy
from extender.core.scoring import NodeFacts
from forecasts.platform.serving import serve
from forecasts.sources.clock import SystemClock
from forecasts.time import floor_to
from tests.fakes import FakeNodeInventory, FakeSeriesCarbonSource, hourly_series

REGIONS = [f"region-{i:02d}" for i in range(24)]


def synthetic(n_nodes: int, clock: SystemClock) -> tuple[FakeNodeInventory, FakeSeriesCarbonSource]:
    now = clock.now()
    start = floor_to(now, timedelta(hours=1)) - timedelta(hours=2)
    series = {}
    for i, r in enumerate(REGIONS):
        values = [50.0 + 25 * i + 10 * ((h * 7 + i) % 5) for h in range(30)]
        series[r] = hourly_series(r, start, values, fetched_at=now, forecast_from=3)
    nodes = {}
    for i in range(n_nodes):
        name = f"node-{i:05d}"
        gpu = None
        if i % 4 == 0:
            gpu = GpuEnergy(200.0 + i % 300, 60.0, 300.0 + i % 500, 8, now, 300.0)
        nodes[name] = NodeFacts(name, region=REGIONS[i % len(REGIONS)], gpu_capacity=8, gpu=gpu)
    return FakeNodeInventory(nodes), FakeSeriesCarbonSource(series=series)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--listen", required=True)
    parser.add_argument("--nodes", type=int, default=5000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    clock = SystemClock()
    nodes, carbon = synthetic(args.nodes, clock)
    settings = Settings(extender=ExtenderSettings(listen=args.listen))
    runtime = build_extender(
        settings,
        clock=clock,
        registry=CollectorRegistry(),
        carbon=carbon,
        kube_api=None,
        nodes=nodes,
    )
    runtime.refresher.refresh()
    serve(runtime.app, listen=args.listen, log_level="warning")


if __name__ == "__main__":
    main()
