"""Benchmark server: the real External Metrics API server (plain HTTP, anonymous allowed)
over a 200-workload snapshot, as its own process.

`python -m tests.benchmarks.metrics_api_server --port P` serves until SIGTERM."""

from __future__ import annotations

import argparse
import signal
import threading
from datetime import timedelta

from forecasts.time import FrozenClock
from scaler.apiauth import Authorizer
from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer
from scaler.snapshot import SnapshotHolder
from tests.benchmarks.test_metrics_api_bench import AT, big_snapshot


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    holder = SnapshotHolder()
    holder.publish(big_snapshot())
    api = ExternalMetricsApi(holder, clock=FrozenClock(AT + timedelta(seconds=30)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server = MetricsApiServer(
        api,
        host="127.0.0.1",
        port=args.port,
        authenticator=None,
        authorizer=Authorizer(allow_anonymous=True),
    )
    with server:
        stop.wait()


if __name__ == "__main__":
    main()
