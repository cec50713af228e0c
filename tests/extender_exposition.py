"""A local HTTP server exposing extender-named metrics (the names and labels of
`gridshift extender`'s /metrics) from a real `CollectorRegistry`, for the dashboard's
extender panel tests. Served on 127.0.0.1 by prometheus_client's own HTTP server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.registry import CollectorRegistry

__all__ = ["extender_registry", "serving_extender_metrics"]


def extender_registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    latency = Histogram(
        "gridshift_extender_request_duration_seconds", "latency", ["verb"], registry=reg
    )
    requests = Counter("gridshift_extender_requests", "requests", ["verb", "code"], registry=reg)
    decisions = Counter(
        "gridshift_extender_decisions", "decisions", ["verb", "outcome"], registry=reg
    )
    Gauge("gridshift_extender_nodes", "nodes", registry=reg).set(12)
    fresh = Gauge("gridshift_extender_carbon_fresh", "fresh", ["region"], registry=reg)
    fresh.labels("DE").set(1)
    fresh.labels("FR").set(0)
    for _ in range(8):
        latency.labels("filter").observe(0.002)
        requests.labels("filter", "200").inc()
        decisions.labels("filter", "passed").inc()
    latency.labels("prioritize").observe(0.004)
    requests.labels("prioritize", "200").inc()
    requests.labels("prioritize", "500").inc()
    decisions.labels("prioritize", "scored").inc()
    return reg


@contextlib.contextmanager
def serving_extender_metrics() -> Iterator[str]:
    server, thread = start_http_server(0, addr="127.0.0.1", registry=extender_registry())
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
