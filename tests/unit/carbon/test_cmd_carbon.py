"""`gridshift carbon now|history|forecast` in-process (click's runner) against the local server.

Aspects: the acceptance path (UK base URL pointed at a local server prints the series as
JSON; with that server down the last known value answers, stale with its age, and stderr says
so); fallback to a second provider; json/csv/table formats; usage errors (unknown region,
unconfigured --source, bad times, bad durations, invalid configuration) exit 2 without a
traceback; nothing to answer exits 1; the providers' HTTP clients are closed when the command
ends, answered or not.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

import config.cmd_carbon
from config.cli import cli
from config.wiring import build_carbon_source
from tests.unit.carbon.conftest import RecordingClients, ReplayServer, Reply

AT = "2025-01-20T12:00Z"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: ReplayServer) -> Path:
    """UK API on the local server, one attempt (no real sleeping), a private last-known file."""
    monkeypatch.setenv("GRIDSHIFT_CARBON__UK__BASE_URL", server.url)
    monkeypatch.setenv("GRIDSHIFT_CARBON__UK__TIMEOUT_SECONDS", "0.5")
    monkeypatch.setenv("GRIDSHIFT_CARBON__HTTP__RETRY_ATTEMPTS", "1")
    monkeypatch.setenv("GRIDSHIFT_CARBON__LAST_KNOWN_PATH", str(tmp_path / "carbon.json"))
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["carbon", *args], catch_exceptions=False)


FORECAST = ("forecast", "--region", "GB", "--source", "uk", "--at", AT, "--horizon", "3h")


def test_forecast_json_then_fallback_to_last_known(
    env: Path, server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.route("/intensity/", Reply.fixture("uk", "national_fw48h"))
    first = run(*FORECAST, "--format", "json")
    assert first.exit_code == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["source"] == "uk"
    assert doc["provider"] == "uk"
    assert doc["stale"] is False
    assert doc["unit"] == "gCO2eq/kWh"
    assert [p["value"] for p in doc["points"]] == [182, 175, 168, 160, 171, 190]
    assert {p["quality"] for p in doc["points"]} == {"forecast"}
    assert 0 <= doc["age_seconds"] < 60
    assert first.stderr == ""

    monkeypatch.setenv("GRIDSHIFT_CARBON__UK__BASE_URL", closed_port_url())  # server down
    second = run(*FORECAST, "--format", "json")
    assert second.exit_code == 0, second.stderr
    stale = json.loads(second.stdout)
    assert stale["source"] == "last-known"
    assert stale["provider"] == "uk"
    assert stale["stale"] is True
    assert stale["age_seconds"] >= 0
    assert stale["points"] == doc["points"]
    assert "connection failed" in stale["note"]
    cache = env / "carbon.json"
    assert f"warning: no source answered; serving a stale value from {cache}: last known" in (
        second.stderr
    )
    table = run(*FORECAST)  # the table itself says so, not only stderr
    assert table.exit_code == 0, table.stderr
    assert "(provider uk; STALE," in table.stdout
    assert f"STALE: no source answered; this is the last known value from {cache}" in (table.stdout)


def test_nothing_to_fall_back_to_exits_1(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_CARBON__UK__BASE_URL", closed_port_url())
    result = run(*FORECAST, "--format", "json")
    assert result.exit_code == 1
    assert "no last known value" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


NOW_GB = ("now", "--region", "gb", "--at", "2025-01-20T12:10Z", "--format", "json")


def _electricitymaps_down_uk_up(server: ReplayServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two providers on the local server: Electricity Maps in maintenance, UK answering."""
    monkeypatch.setenv("GRIDSHIFT_CARBON__ELECTRICITYMAPS__BASE_URL", server.url + "/v3")
    monkeypatch.setenv("GRIDSHIFT_CARBON__ELECTRICITYMAPS__TOKEN", "em-cli-token")
    server.route("/v3/carbon-intensity/", Reply(503, b'{"error": "maintenance"}'))
    server.route("/intensity/", Reply.fixture("uk", "national_range"))


def test_second_provider_answers_and_stderr_says_so(
    env: Path, server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _electricitymaps_down_uk_up(server, monkeypatch)
    result = run(*NOW_GB)
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["source"] == "uk"
    assert doc["stale"] is False
    assert doc["region"] == "GB"
    assert [p["value"] for p in doc["points"]] == [176]
    assert "electricitymaps did not answer; uk did" in result.stderr
    assert "maintenance" in result.stderr
    assert "em-cli-token" not in result.stderr + result.stdout


def test_history_csv(env: Path, server: ReplayServer) -> None:
    server.route("/intensity/", Reply.fixture("uk", "national_range"))
    result = run(
        "history", "-r", "GB", "--start", "2025-01-20T11:00Z", "--end", "2025-01-20T12:30Z",
        "--format", "csv",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["timestamp_utc"], r["value"], r["quality"]) for r in rows] == [
        ("2025-01-20T11:00:00Z", "204", "measured"),
        ("2025-01-20T11:30:00Z", "188", "measured"),
        ("2025-01-20T12:00:00Z", "176", "measured"),
    ]
    assert {r["source"] for r in rows} == {"uk"}
    assert {r["stale"] for r in rows} == {"false"}


def test_table(env: Path, server: ReplayServer) -> None:
    server.route("/intensity/", Reply.fixture("uk", "national_fw48h"))
    result = run(*FORECAST)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("GB forecast from uk (provider uk; fetched ")
    assert "average signal in gCO2eq/kWh, 30m00s resolution, 6 points" in lines[1]
    assert lines[3].split() == ["2025-01-20", "12:00Z", "182.0", "forecast"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(("now", "--region", "Atlantis"), "unknown region 'Atlantis'", id="region"),
        pytest.param(
            ("now", "--region", "GB", "--source", "watttime"),
            "needs carbon.watttime.username and .password",
            id="unconfigured source",
        ),
        pytest.param(("now", "--region", "GB", "--source", "bogus"), "bogus", id="unknown source"),
        pytest.param(("now", "--region", "GB", "--at", "noon"), "not an ISO 8601 time", id="time"),
        pytest.param(
            ("forecast", "--region", "GB", "--horizon", "3 days"), "invalid duration", id="horizon"
        ),
        pytest.param(
            ("forecast", "--region", "GB", "--horizon", "0h"), "positive duration", id="zero"
        ),
        pytest.param(
            ("history", "--region", "GB", "--start", "2025-01-02", "--end", "2025-01-01"),
            "must be before --end",
            id="reversed range",
        ),
        pytest.param(("now",), "Missing option '--region'", id="no region"),
    ],
)
def test_usage_errors_exit_2(env: Path, args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_invalid_configuration_exits_2(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_CARBON__HTTP__RETRY_ATTEMPTS", "0")
    result = run("now", "--region", "GB")
    assert result.exit_code == 2
    assert "carbon.http.retry_attempts" in result.stderr


def test_region_without_a_zone_for_the_preferred_source_warns(
    env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: ReplayServer
) -> None:
    server.route("/intensity/", Reply.fixture("uk", "national_range"))
    trace = tmp_path / "t.csv"
    trace.write_text("timestamp_utc,region,gco2_per_kwh\n2025-01-20T12:00:00Z,DE,300\n")
    monkeypatch.setenv("GRIDSHIFT_CARBON__TRACE__PATH", str(trace))
    result = run("now", "-r", "gb-london", "--source", "trace", "--at", "2025-01-20T12:10Z")
    assert "region gb-london has no trace zone" in result.stderr


@pytest.mark.parametrize("query", ["now", "history", "forecast"])
@pytest.mark.parametrize("region", ["sample-solar", "sample-wind", "sample-hydro"])
def test_sample_source_answers_offline_for_the_regions_run_uses(
    env: Path, server: ReplayServer, query: str, region: str
) -> None:
    """`--source sample` (and a sample-* region alone) answers from SAMPLE DATA: no request
    reaches any provider, nothing lands in the last-known cache."""
    for args in (("--source", "sample"), ()):
        result = run(query, "--region", region, *args, "--format", "json")
        assert result.exit_code == 0, result.stderr
        doc = json.loads(result.stdout)
        assert doc["source"] == "sample"
        assert doc["stale"] is False
        assert doc["note"].startswith("SAMPLE DATA")
        assert doc["points"]
        assert all(p["value"] > 0 for p in doc["points"])
    assert server.seen == []
    assert not (env / "carbon.json").exists()


def test_sample_source_rejects_a_real_region(env: Path) -> None:
    result = run("now", "--region", "GB", "--source", "sample")
    assert result.exit_code == 2
    assert "'GB' is not a SAMPLE DATA region" in result.stderr
    assert "sample-solar, sample-wind, sample-hydro" in result.stderr


def test_no_configured_source_never_answers_from_the_cache(
    env: Path, server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value cached by an earlier command is not served when no source is configured for
    the region: that is a configuration error naming what is missing."""
    server.route("/intensity/", Reply.fixture("uk", "national_fw48h"))
    assert run(*FORECAST).exit_code == 0  # fills the last-known cache
    assert (env / "carbon.json").exists()
    monkeypatch.setenv("GRIDSHIFT_CARBON__UK__ENABLED", "false")
    result = run(*FORECAST[:3], "--at", AT)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "no carbon source is configured for region GB" in result.stderr
    assert "uk: disabled by carbon.uk.enabled=false" in result.stderr
    assert "--source sample" in result.stderr


def test_the_providers_clients_are_closed_when_the_command_ends(
    env: Path, server: ReplayServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = RecordingClients()
    monkeypatch.setattr(
        config.cmd_carbon,
        "build_carbon_source",
        functools.partial(build_carbon_source, http_client_factory=clients),
    )
    _electricitymaps_down_uk_up(server, monkeypatch)
    answered = run(*NOW_GB)
    assert answered.exit_code == 0, answered.stderr
    assert len(server.hits("/intensity/")) == 1  # the clients were used
    assert clients.closed == [True, True]  # electricitymaps, uk
    monkeypatch.setenv("GRIDSHIFT_CARBON__UK__BASE_URL", closed_port_url())
    failed = run("forecast", "--region", "gb", "--at", "2025-01-20T12:10Z", "--horizon", "3h")
    assert failed.exit_code == 1, failed.stderr
    assert clients.closed == [True] * 4
