"""Metrics API latency (p50/p99) and sustained requests/s on loopback, measured by a
separate load-generator process (tests/benchmarks/loadgen.py) against the real server:
plain HTTP and HTTPS with the aggregator's front-proxy client certificate, one connection
(latency) and several keep-alive connections (throughput), 200 workloads in the namespace.
Prints figures; the machine is shared, so read them together with the load average printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
import trustme

from forecasts.time import FrozenClock
from scaler.apiauth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    ReloadingTlsContext,
    RequestHeaderConfig,
)
from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer
from scaler.snapshot import Mode, RegionCarbon, Snapshot, SnapshotHolder, WorkloadStatus

# Not a unit test: `make bench` runs it (it takes ~25 s of wall time).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECONDS = float(os.environ.get("GRIDSHIFT_BENCH_SECONDS", "5"))
AT = datetime(2025, 3, 1, 12, tzinfo=UTC)
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/gridshift_desired_replicas?" + (
    urlencode({"labelSelector": "workload in (web-17),region notin (us-east-1)"})
)


def big_snapshot(n: int = 200) -> Snapshot:
    workloads = {
        f"shop/web-{i}": WorkloadStatus(
            name=f"web-{i}",
            namespace="shop",
            region="eu-west-1",
            desired_replicas=i % 9 + 1,
            mode=Mode.ECO if i % 2 else Mode.PERFORMANCE,
            reasons=("r",),
            decided_at=AT,
        )
        for i in range(n)
    }
    regions = {"eu-west-1": RegionCarbon("eu-west-1", 312.5, AT, "x", False, 1.0)}
    return Snapshot(taken_at=AT, workloads=workloads, regions=regions, tick_seconds=60)


def run_loadgen(port: int, *, connections: int, extra: list[str]) -> dict[str, float]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.benchmarks.loadgen",
            PATH,
            "--port",
            str(port),
            "--connections",
            str(connections),
            "--seconds",
            str(SECONDS),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SECONDS * 4 + 30,
        check=True,
    )
    figures: dict[str, float] = json.loads(result.stdout)
    return figures


def report(label: str, figures: dict[str, float]) -> None:
    print(
        f"\n[metrics-api bench] {label}: {figures['rps']:.0f} req/s, "
        f"p50 {figures['p50_ms']:.2f} ms, p90 {figures['p90_ms']:.2f} ms, "
        f"p99 {figures['p99_ms']:.2f} ms, max {figures['max_ms']:.1f} ms, "
        f"{int(figures['requests'])} requests, {int(figures['errors'])} errors "
        f"(load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)"
    )


@pytest.fixture(scope="module")
def holder():
    return SnapshotHolder(big_snapshot())


def test_plain_http(holder):
    api = ExternalMetricsApi(holder, clock=FrozenClock(AT + timedelta(seconds=1)))
    server = MetricsApiServer(
        api,
        host="127.0.0.1",
        port=0,
        authenticator=None,
        authorizer=Authorizer(allow_anonymous=True),
    )
    with server:
        port = server.address[1]
        for connections in (1, 4):
            figures = run_loadgen(port, connections=connections, extra=[])
            report(f"HTTP, {connections} connection(s)", figures)
            assert figures["errors"] == 0
            assert figures["requests"] > 0


def test_https_front_proxy(holder, tmp_path):
    serving_ca, proxy_ca = trustme.CA(), trustme.CA()
    leaf = serving_ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    serving_ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    proxy = proxy_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    proxy.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "proxy.pem"))
    config = AuthenticationConfig(
        requestheader=RequestHeaderConfig(
            client_ca_pem=proxy_ca.cert_pem.bytes().decode(), allowed_names=("front-proxy-client",)
        )
    )
    authenticator = Authenticator(config)
    tls = ReloadingTlsContext(
        cert_file=tmp_path / "tls.crt",
        key_file=tmp_path / "tls.key",
        client_ca_pem=config.trusted_ca_pem,
    )
    api = ExternalMetricsApi(holder, clock=FrozenClock(AT + timedelta(seconds=1)))
    server = MetricsApiServer(
        api, host="127.0.0.1", port=0, authenticator=authenticator, authorizer=Authorizer(), tls=tls
    )
    extra = [
        "--tls-ca",
        str(tmp_path / "ca.pem"),
        "--tls-cert",
        str(tmp_path / "proxy.pem"),
        "--header",
        "X-Remote-User:system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        "--header",
        "X-Remote-Group:system:serviceaccounts",
        "--header",
        "Accept:application/vnd.kubernetes.protobuf, */*",
    ]
    with server:
        port = server.address[1]
        for connections in (1, 4):
            figures = run_loadgen(port, connections=connections, extra=extra)
            report(f"HTTPS+front-proxy, {connections} connection(s)", figures)
            assert figures["errors"] == 0
            assert figures["requests"] > 0
