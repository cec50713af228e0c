"""The shipped deploy/scaler/example-carbonawarescaler.yaml, applied alone (no config-file
workload) to a cluster running deploy/overlays/scaler-hpa, gets a status and drives its target.

Aspects: the scaler runs as the overlay's Deployment configures it (metrics API served through
the aggregator, leader election, ConfigMap state) with no workloads of its own; its load comes
from the CR's PromQL, answered by a real Prometheus backfilled with the CR's
`http_requests_total` series; its carbon region (eu-west-1, placed in IE by the carbon regions'
match rules) from a carbon trace; the CR gets Ready=True with a decision, its Deployment's
replicas are set to that decision (actuation mode scale, not a dry run), and the decision is
an Event on the CR (what `kubectl describe cas web` shows).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.install import (
    DEPLOY,
    deployment,
    running_scaler,
    scaler_config,
    wire_metrics_api,
    write_carbon_trace,
)
from tests.cluster.plane import KubePlane, free_port, wait_until
from tests.integration.prom_fixture import backfill, running_prometheus

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(300)]

REQUESTS_PER_SECOND = 120.0


def request_history(*, hours: int = 48, step_s: int = 60) -> str:
    """OpenMetrics for the example's `http_requests_total{namespace="shop", service="web"}`:
    a counter growing at REQUESTS_PER_SECOND for `hours` up to a minute ago."""
    end = int(time.time()) - 60  # noqa: TID251 (the backfill must end at the wall clock's now)
    start = end - hours * 3600
    lines = ["# TYPE http_requests counter"]
    for at in range(start, end + 1, step_s):
        total = (at - start) * REQUESTS_PER_SECOND
        lines.append(f'http_requests_total{{namespace="shop",service="web"}} {total:.0f} {at}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture
def shop(plane: KubePlane, scaler_hpa: str) -> Iterator[str]:
    with plane.namespace("shop") as name:
        plane.apply(deployment("web", name, 1))
        yield name


def test_shipped_example_cr_alone_gets_a_status_and_scales_its_deployment(
    plane: KubePlane, shop: str, fresh_scaler_state: None, tmp_path: Path
) -> None:
    applied = plane.kubectl(
        "apply", "-f", str(DEPLOY / "scaler" / "example-carbonawarescaler.yaml")
    )
    assert "carbonawarescaler.gridshift.io/web created" in applied.stdout
    tsdb = backfill(request_history(), tmp_path / "prometheus" / "tsdb")
    with running_prometheus(tmp_path / "prometheus", tsdb_dir=tsdb) as prometheus:
        port = free_port()
        wire_metrics_api(plane, port=port)
        config = scaler_config(
            plane,
            tmp_path,
            workloads=[],
            identity="a",
            metrics_port=port,
            extra={
                "prometheus": {"url": prometheus.url},
                "carbon": {
                    "trace": {"path": str(write_carbon_trace(tmp_path / "c.csv", {"IE": 300}))},
                    "uk": {"enabled": False},
                },
            },
        )
        with running_scaler(plane, config) as scaler:

            def decided() -> dict[str, Any] | None:
                obj = plane.custom.get_namespaced_custom_object(
                    "gridshift.io", "v1alpha1", shop, "carbonawarescalers", "web"
                )
                status: dict[str, Any] = obj.get("status") or {}
                applied = (status.get("lastActuation") or {}).get("applied")
                return status if applied else None

            try:
                status = wait_until(decided, timeout_s=90, what="a decision actuated on the CR")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nscaler: {''.join(scaler.output)[-3000:]}") from None
            ready = {c["type"]: c for c in status["conditions"]}["Ready"]
            assert ready["status"] == "True", status["conditions"]
            desired = status["desiredReplicas"]
            assert 1 <= desired <= 20
            assert status["lastActuation"]["dryRun"] is False
            assert status["lastActuation"]["target"] == "Deployment/web"
            wait_until(
                lambda: (
                    plane.apps.read_namespaced_deployment("web", shop).spec.replicas
                    == plane.custom.get_namespaced_custom_object(
                        "gridshift.io", "v1alpha1", shop, "carbonawarescalers", "web"
                    )["status"]["desiredReplicas"]
                ),
                timeout_s=60,
                what="the Deployment at the CR's desired replicas",
            )
            # 120 req/s at 50 per replica: more than the one replica it started with
            assert plane.apps.read_namespaced_deployment("web", shop).spec.replicas >= 3
    described = plane.kubectl("describe", "cas", "web", "-n", shop).stdout
    assert "Events:" in described
    assert "ScalingDecision" in described, described
