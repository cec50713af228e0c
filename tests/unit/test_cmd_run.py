"""`gridshift replay` and the argument/config checks of `gridshift run` (CliRunner).

Aspects: replay of the sample scenario prints a JSON summary (gCO2, saved, replica-hours,
provenance, SAMPLE DATA note) and a human table; ticks = window / step; invalid instants,
reversed windows, invalid or unsupported config files give clear errors naming the problem.
`gridshift run` itself is exercised as a subprocess in tests/integration.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from click.testing import CliRunner

from config.cli import cli

SAMPLE_WORKLOAD = {
    "name": "svc",
    "target": {"name": "svc"},
    "load": {"trace": "sample:svc"},
    "capacity_per_replica": 20,
    "region": "sample-wind",
}


def replay(*args: str):
    return CliRunner().invoke(cli, ["replay", *args], catch_exceptions=False)


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
    s = json.loads(r.output)
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


def test_replay_table_output() -> None:
    r = replay(
        "--from", "2026-03-02T00:00:00Z", "--to", "2026-03-02T01:00:00Z", "--step-seconds", "600"
    )
    assert r.exit_code == 0, r.output
    assert r.output.startswith("SAMPLE DATA")
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
    assert list(json.loads(r.output)["workloads"]) == ["svc"]


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
    assert "scaler.workloads.0.capacity_per_replica" in r.output
    cfg.write_text("- just\n- a list\n")
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert "top level must be a mapping" in r.output
    cfg.write_text("scaler: {workloads: []}\n")
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert "defines no scaler.workloads" in r.output
    cfg.write_text("scaler: [unclosed\n")
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert "cannot read" in r.output


def test_real_sources_not_in_this_build_are_named(tmp_path: Path) -> None:
    cfg = tmp_path / "prom.yaml"
    workload = {**SAMPLE_WORKLOAD, "load": {"promql": "sum(rate(x[5m]))"}, "region": "DE"}
    cfg.write_text(yaml.safe_dump({"scaler": {"workloads": [workload]}}))
    r = CliRunner().invoke(cli, ["run", "--config", str(cfg)])
    assert r.exit_code == 2
    assert "workloads svc need the Prometheus load adapter" in r.output


def test_run_refuses_a_bad_listen_address() -> None:
    r = CliRunner().invoke(cli, ["run", "--listen", "nowhere"])
    assert r.exit_code == 2
    assert "expected HOST:PORT" in r.output
