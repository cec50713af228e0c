"""Fault injection: the scaler's dependencies behind `tests.faultproxy.FaultProxy`.

Components: the carbon API (the UK Carbon Intensity adapter against a local replay server)
and Prometheus (the real Debian Prometheus, backfilled). Faults: latency past the client
timeout, connection reset, 5xx, a 429 storm with Retry-After, a truncated body, a hang.

For every fault x component: the tick still completes (bounded by the client timeout and
retries), the input is marked stale and the replica target never drops (hold), the metrics
(`gridshift_input_stale`, `gridshift_source_errors_total`) and a WARNING log name the
degraded source, and after the proxy passes traffic again the next tick is fresh by itself.
The outcomes are written to `tests/artifacts/faults_scaler.md` (the README's RELIABILITY table).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.platform.http import CircuitBreaker, HttpSource, RetryPolicy
from forecasts.sources.carbon.uk import UkCarbonIntensitySource
from forecasts.sources.prometheus import PrometheusConnection, PrometheusLoadSource
from forecasts.time import FrozenClock
from scaler.core.policy import PolicyParams
from scaler.core.workload import LoadSourceKind, LoadSpec
from scaler.loop import LoopSettings, ScalerLoop
from scaler.metrics import register_scaler_metrics
from scaler.snapshot import SnapshotHolder
from tests.fakes import FakeDailyCarbonSource, FakeLoadSource
from tests.faultproxy import Fault, FaultProxy
from tests.integration import history as prom_history
from tests.integration.carbon_replay import uk_replay_server
from tests.integration.prom_fixture import PrometheusServer
from tests.unit.carbon.conftest import REGIONS, ReplayServer
from tests.unit.carbon.conftest import T0 as CARBON_T0
from tests.unit.test_loop import web

pytestmark = pytest.mark.integration

ARTIFACTS = Path(__file__).resolve().parents[2] / "tests" / "artifacts"
CLIENT_TIMEOUT_S = 0.3
BREAKER_RESET_S = 0.2
FAULTS = [Fault.LATENCY, Fault.RESET, Fault.HTTP_5XX, Fault.STORM_429, Fault.TRUNCATED, Fault.HANG]
ROWS: list[tuple[str, str, str]] = []
STEP = timedelta(minutes=5)


@pytest.fixture(scope="module", autouse=True)
def _write_table() -> Iterator[None]:
    yield
    if not ROWS:
        return
    ARTIFACTS.mkdir(exist_ok=True)
    lines = ["| fault | component | outcome |", "|---|---|---|"]
    lines += [f"| {f} | {c} | {o} |" for f, c, o in ROWS]
    (ARTIFACTS / "faults_scaler.md").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayServer]:
    with uk_replay_server() as server:
        yield server


@dataclass
class Rig:
    component: str
    stale_kind: str
    error_source: str
    loop: ScalerLoop
    clock: FrozenClock
    registry: CollectorRegistry
    proxy: FaultProxy
    close: Callable[[], None]


def _breaker() -> CircuitBreaker:
    return CircuitBreaker(failure_threshold=2, reset_timeout_seconds=BREAKER_RESET_S)


def carbon_rig(proxy: FaultProxy) -> Rig:
    clock = FrozenClock(CARBON_T0 + timedelta(minutes=10))
    client = httpx.Client(base_url=proxy.url, timeout=httpx.Timeout(CLIENT_TIMEOUT_S))
    http = HttpSource(
        name="uk",
        client=client,
        clock=clock,
        retry=RetryPolicy(attempts=2, max_retry_after_seconds=5.0),
        breaker=_breaker(),
        cache_ttl_seconds=0.0,
        sleep=lambda _s: None,  # retries do not really wait (Retry-After is still parsed)
    )
    holder = SnapshotHolder()
    registry = CollectorRegistry()
    register_scaler_metrics(registry, holder)
    loop = ScalerLoop(
        [web(region="GB")],
        carbon=UkCarbonIntensitySource(http, regions=REGIONS),
        load=FakeLoadSource(levels={"web_rps": 100.0}),
        clock=clock,
        holder=holder,
        params=PolicyParams(max_step_replicas=100),
    )
    return Rig("carbon API (uk)", "carbon", "uk", loop, clock, registry, proxy, client.close)


def prom_rig(proxy: FaultProxy) -> Rig:
    clock = FrozenClock(prom_history.T0 + timedelta(hours=3, minutes=50))
    source = PrometheusLoadSource.connect(
        PrometheusConnection(url=proxy.url, timeout_seconds=CLIENT_TIMEOUT_S),
        clock=clock,
        retry=RetryPolicy(attempts=2, base_delay_seconds=0.01, max_delay_seconds=0.02),
        breaker=_breaker(),
    )
    holder = SnapshotHolder()
    registry = CollectorRegistry()
    register_scaler_metrics(registry, holder)
    loop = ScalerLoop(
        [web(load=LoadSpec(LoadSourceKind.PROMQL, "sum(gs_queue_depth)"))],
        carbon=FakeDailyCarbonSource({"r1": [200.0] * 24}),
        load=source,
        clock=clock,
        holder=holder,
        params=PolicyParams(max_step_replicas=100),
        settings=LoopSettings(load_history=timedelta(hours=3), tick_history=timedelta(hours=2)),
        forecaster=SeasonalNaive(period=12),
    )
    return Rig("Prometheus", "load", "prometheus", loop, clock, registry, proxy, source.close)


def _check_fault(rig: Rig, fault: Fault, caplog: pytest.LogCaptureFixture) -> None:
    loop, clock, proxy = rig.loop, rig.clock, rig.proxy
    loop.refit()
    first = loop.tick().workloads["web"]
    assert rig.stale_kind not in first.stale_inputs, first.reasons
    before = first.desired_replicas
    assert before > 1  # a real decision, so holding is visible

    proxy.fault = fault
    worst_s = 0.0
    with caplog.at_level(logging.WARNING, logger="gridshift.scaler"):
        for _ in range(3):
            clock.advance(STEP)
            started = time.monotonic()
            ws = loop.tick().workloads["web"]
            worst_s = max(worst_s, time.monotonic() - started)
            assert ws.desired_replicas >= before, f"scaled down under {fault.value}"
            assert rig.stale_kind in ws.stale_inputs
    labels = {
        "workload": "web",
        "namespace": "default",
        "region": first.region,
        "input": rig.stale_kind,
    }
    assert rig.registry.get_sample_value("gridshift_input_stale", labels) == 1.0
    errors = rig.registry.get_sample_value(
        "gridshift_source_errors_total", {"source": rig.error_source}
    )
    assert errors is not None
    assert errors >= 1
    assert "input marked stale" in caplog.text
    assert worst_s < 5.0

    proxy.fault = Fault.PASS
    time.sleep(BREAKER_RESET_S * 1.5)  # the breaker half-opens and lets a probe through
    clock.advance(STEP)
    recovered = loop.tick().workloads["web"]
    assert rig.stale_kind not in recovered.stale_inputs, recovered.reasons
    assert rig.registry.get_sample_value("gridshift_input_stale", labels) == 0.0
    ROWS.append(
        (
            fault.value,
            rig.component,
            f"held {before} replicas (never below), input `{rig.stale_kind}` stale, "
            f"{errors:.0f} errors counted, worst tick {worst_s:.2f} s; recovered on the "
            "first tick after the fault cleared",
        )
    )


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_carbon_api_fault(
    fault: Fault, replay: ReplayServer, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = replay.httpd.server_address[:2]
    with FaultProxy(str(host), int(port), latency_seconds=1.0) as proxy:
        rig = carbon_rig(proxy)
        try:
            _check_fault(rig, fault, caplog)
        finally:
            rig.close()


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_prometheus_fault(
    fault: Fault,
    backfilled_prometheus: PrometheusServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host, port = backfilled_prometheus.url.removeprefix("http://").rsplit(":", 1)
    with FaultProxy(host, int(port), latency_seconds=1.0) as proxy:
        rig = prom_rig(proxy)
        try:
            _check_fault(rig, fault, caplog)
        finally:
            rig.close()
