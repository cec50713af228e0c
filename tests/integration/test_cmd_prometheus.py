"""`gridshift prometheus history` against the real, backfilled Prometheus.

Aspects: settings from the environment and --url; the gap report in the output; several
series refused without --sum; connection refused and bad PromQL exit 1 with the reason."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from config.cli import cli
from tests.integration.prom_fixture import PrometheusServer, free_port

pytestmark = pytest.mark.integration

WINDOW = ["--until", "2024-01-15T04:00:00Z", "--since", "4h", "--step", "5m"]


def test_history_from_env_settings(
    backfilled_prometheus: PrometheusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDSHIFT_PROMETHEUS__URL", backfilled_prometheus.url)
    result = CliRunner().invoke(
        cli, ["prometheus", "history", 'gs_queue_depth{instance="a"}', *WINDOW, "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["interpolated"] == [["2024-01-15T01:10:00+00:00", 3]]
    assert data["marked"][-1] == ["2024-01-15T02:40:00+00:00", 11]
    assert len(data["points"]) == 48


def test_history_table_and_sum(backfilled_prometheus: PrometheusServer) -> None:
    runner = CliRunner()
    args = ["prometheus", "history", "gs_queue_depth", *WINDOW, "--url", backfilled_prometheus.url]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1
    assert "2 series where one was expected" in refused.output
    summed = runner.invoke(cli, [*args, "--sum"])
    assert summed.exit_code == 0, summed.output
    assert "48 steps of 5m" in summed.output


@pytest.mark.parametrize(
    ("query", "url", "message"),
    [
        pytest.param("sum(", None, "bad_data", id="bad PromQL"),
        pytest.param("up", "down", "connection failed", id="down"),
    ],
)
def test_history_errors_exit_1(
    backfilled_prometheus: PrometheusServer, query: str, url: str | None, message: str
) -> None:
    target = f"http://127.0.0.1:{free_port()}" if url == "down" else backfilled_prometheus.url
    result = CliRunner().invoke(cli, ["prometheus", "history", query, *WINDOW, "--url", target])
    assert result.exit_code == 1
    assert message in result.output


def test_history_of_a_counter_rate(
    backfilled_prometheus: PrometheusServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRIDSHIFT_PROMETHEUS__SCRAPE_INTERVAL_SECONDS", "15")
    result = CliRunner().invoke(
        cli,
        [
            "prometheus",
            "history",
            "gs_requests_total",
            "--rate",
            *WINDOW,
            "--url",
            backfilled_prometheus.url,
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["query"] == "sum(rate(gs_requests_total[315s]))"  # 5m step + 1 scrape
    values = [p["value"] for p in data["points"][1:]]
    assert all(15 < v < 25 for v in values)  # about 20 requests/s, resets included
