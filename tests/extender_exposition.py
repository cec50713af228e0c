"""Fixed expositions with `gridshift extender`'s and `gridshift agent`'s metric names and
labels, from real `CollectorRegistry`s, served on 127.0.0.1 by prometheus_client's own HTTP
server: exact, hand-picked numbers for the unit and integration tests of the dashboard's
extender summary (`scaler.extender_watch`), and the GPU agent's metrics for the PromQL test
(GPU power needs a GPU). The PromQL and browser tests scrape the REAL extender process
(tests/sample_cluster.py); tests/unit/test_extender_watch.py checks that every family here
exists in the real extender's registry with the same type.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.registry import CollectorRegistry

__all__ = ["agent_registry", "extender_registry", "serving", "serving_extender_metrics"]


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
    age = Gauge(
        "gridshift_extender_carbon_age_seconds", "age", ["region", "provider"], registry=reg
    )
    age.labels("DE", "electricitymaps").set(300)
    age.labels("FR", "electricitymaps").set(9000)
    for _ in range(8):
        latency.labels("filter").observe(0.002)
        requests.labels("filter", "200").inc()
        decisions.labels("filter", "passed").inc()
    latency.labels("prioritize").observe(0.004)
    requests.labels("prioritize", "200").inc()
    requests.labels("prioritize", "500").inc()
    decisions.labels("prioritize", "scored").inc()
    return reg


def agent_registry() -> CollectorRegistry:
    """The names and labels of `gridshift agent`'s /metrics on a node with one GPU."""
    reg = CollectorRegistry()
    Gauge("gridshift_nvml_available", "nvml", registry=reg).set(1)
    power = Gauge("gridshift_gpu_power_watts", "power", ["gpu", "uuid", "model"], registry=reg)
    power.labels("0", "GPU-0000", "NVIDIA H100").set(312.5)
    return reg


@contextlib.contextmanager
def serving(registry: CollectorRegistry) -> Iterator[str]:
    """Serve `registry` on 127.0.0.1:<free port>; yields the /metrics URL."""
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def serving_extender_metrics() -> contextlib.AbstractContextManager[str]:
    return serving(extender_registry())
