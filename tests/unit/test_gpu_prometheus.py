"""extender.gpu_prometheus through httpx.MockTransport: DCGM (Hostname and hostname label
spellings, MIG rows counted once per GPU, NaN skipped), Kepler (node_name), malformed and
error answers raise SourceDataError, HTTP errors come through HttpSource as SourceErrors."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from extender.gpu_prometheus import GpuExporter, PrometheusGpuPower
from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.platform.http import HttpSource, RetryPolicy
from forecasts.time import FrozenClock

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
TS = 1772452800.123


def source(
    exporter: GpuExporter, answer, *, status: int = 200
) -> tuple[PrometheusGpuPower, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, content=msgspec.json.encode(answer))

    http = HttpSource(
        name="prom",
        client=httpx.Client(transport=httpx.MockTransport(handler), base_url="http://prom"),
        clock=FrozenClock(NOW),
        retry=RetryPolicy(attempts=1),
        sleep=lambda _: None,
    )
    return PrometheusGpuPower(http, exporter=exporter), seen


def vector(*rows):
    return {"status": "success", "data": {"resultType": "vector", "result": list(rows)}}


def row(labels, value):
    return {"metric": labels, "value": [TS, value]}


def test_dcgm_both_hostname_spellings_and_mig_rows_once() -> None:
    src, seen = source(
        GpuExporter.DCGM,
        vector(
            row({"gpu": "0", "UUID": "GPU-1", "Hostname": "node-a"}, "300"),
            row({"gpu": "1", "UUID": "GPU-2", "Hostname": "node-a"}, "100"),
            row({"gpu": "0", "UUID": "GPU-9", "hostname": "node-b", "GPU_I_ID": "1"}, "250"),
            row({"gpu": "0", "UUID": "GPU-9", "hostname": "node-b", "GPU_I_ID": "2"}, "250"),
            row({"gpu": "0", "UUID": "GPU-7", "hostname": "node-c"}, "NaN"),
            row({"gpu": "0"}, "1"),
        ),
    )
    power = src.node_power(at=NOW)
    assert seen[0].url.params["query"] == "DCGM_FI_DEV_POWER_USAGE"
    assert float(seen[0].url.params["time"]) == NOW.timestamp()
    assert set(power) == {"node-a", "node-b"}
    assert (power["node-a"].power_watts, power["node-a"].gpu_count) == (200.0, 2)
    assert (power["node-b"].power_watts, power["node-b"].gpu_count) == (250.0, 1)
    assert power["node-a"].source == "prometheus-dcgm"
    assert power["node-a"].measured_at.timestamp() == pytest.approx(TS)


def test_kepler_node_gpu_watts() -> None:
    src, seen = source(
        GpuExporter.KEPLER,
        vector(
            row({"node_name": "n1", "gpu": "0", "gpu_uuid": "GPU-1", "vendor": "nvidia"}, "80"),
            row({"node_name": "n1", "gpu": "1", "gpu_uuid": "GPU-2", "vendor": "nvidia"}, "120"),
        ),
    )
    assert src.node_power(at=NOW)["n1"].power_watts == 100.0
    assert seen[0].url.params["query"] == "kepler_node_gpu_watts"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param({"status": "error", "error": "bad_data"}, id="error status"),
        pytest.param({"status": "success", "data": {"resultType": "matrix"}}, id="matrix"),
        pytest.param({"status": "success", "data": {"resultType": "vector"}}, id="no result"),
        pytest.param(vector({"metric": {"Hostname": "a"}, "value": [1]}), id="short value"),
        pytest.param(vector(row({"Hostname": "a"}, "watts")), id="text value"),
        pytest.param([1, 2], id="not an object"),
    ],
)
def test_malformed_answers(answer) -> None:
    src, _ = source(GpuExporter.DCGM, answer)
    with pytest.raises(SourceDataError):
        src.node_power(at=NOW)


def test_http_errors_are_source_errors() -> None:
    src, _ = source(GpuExporter.DCGM, {"status": "error", "error": "parse error"}, status=400)
    with pytest.raises(SourceRequestError, match="parse error"):
        src.node_power(at=NOW)
