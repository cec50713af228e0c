"""`gridshift replay` and the argument/config checks of `gridshift run` (CliRunner).

Aspects: replay of the sample scenario prints a JSON summary (gCO2, saved, replica-hours,
provenance, SAMPLE DATA note) and a human table; ticks = window / step; invalid instants,
reversed windows, invalid or unsupported config files give clear errors naming the problem;
the run sources' `close()` closes the HTTP clients of the real adapters they built (carbon
providers, Prometheus).
`gridshift run` itself is exercised as a subprocess in tests/integration.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

import config.wiring.run
from config.cli import cli
from config.settings import Settings
from config.wiring import build_prometheus_source, build_run_sources
from forecasts.sources.prometheus import PrometheusLoadSource
from forecasts.sources.routing import PrefixRoutedLoadSource, RegionRoutedCarbonSource
from forecasts.time import FrozenClock
from tests.unit.carbon.conftest import RecordingClients

T0 = datetime(2026, 3, 2, tzinfo=UTC)

SAMPLE_WORKLOAD = {
    "name": "svc",
    "target": {"name": "svc"},
    "load": {"trace": "sample:svc"},
    "capacity_per_replica": 20,
    "region": "sample-wind",
}


def replay(*args: str):
    return CliRunner().invoke(cli, ["replay", *args], catch_exceptions=False)


@pytest.mark.timeout(10)  # a whole sample replay: about 1 s alone, over 2 s under load
def test_replay_json_summary() -> None:
    r = replay(
        "--from",
        "2026-03-02T00:00:00Z",
        "--to",
        "2026-03-02T02:00:00Z",
        "--step-seconds",
        "300",
        "--json",
    )
    assert r.exit_code == 0, r.output
    s = json.loads(r.stdout)
    assert s["ticks"] == 24
    assert s["data_note"].startswith("SAMPLE DATA")
    assert s["total"]["emitted_g"] > 0
    assert s["total"]["saved_g"] == s["total"]["counterfactual_g"] - s["total"]["emitted_g"]
    assert s["total"]["replica_hours"] > 0
    assert s["provenance"]["sample-wind"] == ["sample/average"]
    assert set(s["workloads"]) == {
        "web-frontend",
        "checkout-api",
        "search",
        "nightly-training",
        "report-batch",
    }


@pytest.mark.timeout(10)  # a whole sample replay: about 1 s alone, over 2 s under load
def test_replay_table_output() -> None:
    r = replay(
        "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-02T01:00:00Z", "--step-seconds", "600"
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("SAMPLE DATA")
    assert "replica-hours" in r.output
    assert "region sample-solar" in r.output


def test_replay_bad_arguments() -> None:
    r = CliRunner().invoke(cli, ["replay", "--from", "yesterday", "--to", "2026-03-02T00:00:00Z"])
    assert r.exit_code == 2
    assert "expected an ISO 8601 instant" in r.output
    r = CliRunner().invoke(
        cli, ["replay", "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-01T00:00:00Z"]
    )
    assert r.exit_code == 2
    assert "--to must be after --from" in r.output


def test_replay_with_a_sample_config(tmp_path: Path) -> None:
    cfg = tmp_path / "gridshift.yaml"
    cfg.write_text(yaml.safe_dump({"scaler": {"workloads": [SAMPLE_WORKLOAD]}}))
    r = replay(
        "--from",
        "2026-03-02T00:00:00Z",
        "--to",
        "2026-03-02T00:30:00Z",
        "--config",
        str(cfg),
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert list(json.loads(r.stdout)["workloads"]) == ["svc"]


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(
        yaml.safe_dump({"scaler": {"workloads": [{**SAMPLE_WORKLOAD, "capacity_per_replica": -1}]}})
    )
    r = CliRunner().invoke(
        cli,
        [
            "replay",
            "--from",
            "2026-03-02T00:00:00Z",
            "--to",
            "2026-03-02T01:00:00Z",
            "--config",
            str(cfg),
        ],
    )
    assert r.exit_code == 2
    assert "scaler.workloads[0].capacity_per_replica: Input should be greater than 0" in r.output
    cfg.write_text("- just\n- a list\n")
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert r.exit_code == 2
    assert "top level must be a mapping" in r.output
    cfg.write_text("scaler: {workloads: []}\n")
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert r.exit_code == 2
    assert "defines no scaler.workloads" in r.output
    cfg.write_text("scaler: [unclosed\n")
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert r.exit_code == 2
    assert "YAML syntax error" in r.output
    assert "line 2, column 1" in r.output


def test_csv_trace_workloads_are_sent_to_replay(tmp_path: Path) -> None:
    cfg = tmp_path / "csv.yaml"
    workload = {**SAMPLE_WORKLOAD, "load": {"trace": "loads.csv"}, "region": "DE"}
    cfg.write_text(yaml.safe_dump({"scaler": {"workloads": [workload]}}))
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert r.exit_code == 2
    assert "workloads svc load CSV traces" in r.output
    assert "gridshift replay --scenario" in r.output


def test_run_sources_route_sample_and_real_inputs() -> None:
    """PromQL loads go to Prometheus, `sample:` traces to the generator; provider regions to
    the carbon fallback chain, sample regions to the generator."""
    workloads = [
        {**SAMPLE_WORKLOAD, "name": "a"},
        {**SAMPLE_WORKLOAD, "name": "b", "load": {"promql": "sum(rate(x[5m]))"}, "region": "DE"},
    ]
    settings = Settings.model_validate({"scaler": {"workloads": workloads}})
    sources = build_run_sources(settings, clock=FrozenClock(T0))
    assert isinstance(sources.load, PrefixRoutedLoadSource)
    assert isinstance(sources.carbon, RegionRoutedCarbonSource)
    assert "prometheus" in sources.load.name
    assert "sample" in sources.carbon.name
    assert "SAMPLE DATA" in sources.note
    only_sample = Settings.model_validate({"scaler": {"workloads": [SAMPLE_WORKLOAD]}})
    plain = build_run_sources(only_sample, clock=FrozenClock(T0))
    assert plain.load.name == plain.carbon.name == "sample"


def test_closing_the_run_sources_closes_the_clients_they_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[PrometheusLoadSource] = []

    def prometheus(*args: Any, **kwargs: Any) -> PrometheusLoadSource:
        built.append(build_prometheus_source(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(config.wiring.run, "build_prometheus_source", prometheus)
    workload = {**SAMPLE_WORKLOAD, "load": {"promql": "sum(rate(x[5m]))"}, "region": "GB"}
    settings = Settings.model_validate({"scaler": {"workloads": [workload]}})
    clients = RecordingClients()
    sources = build_run_sources(settings, clock=FrozenClock(T0), http_client_factory=clients)
    assert len(clients.made) == 1  # the keyless UK API, the one provider configured
    assert [p.http.client.is_closed for p in built] == [False]
    sources.close()
    assert clients.closed == [True]
    assert [p.http.client.is_closed for p in built] == [True]


def test_run_refuses_a_bad_listen_address() -> None:
    r = CliRunner().invoke(cli, ["run", "--listen", "nowhere"])
    assert r.exit_code == 2
    assert "expected HOST:PORT" in r.output
