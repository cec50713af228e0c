"""`gridshift ci expand` and the history rendering of `gridshift prometheus history`.

Aspects: runs listed in UTC and local time across a DST change; cron and option errors exit 2
with the field named; settings errors of `prometheus history` exit 2 naming the setting;
`format_history` as table, JSON and CSV with the gap kinds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from click.testing import CliRunner

from config.cli import cli
from config.cmd_load import format_history
from forecasts.load import LoadHistory

T0 = datetime(2024, 1, 15, tzinfo=UTC)


def test_ci_expand_lists_runs_across_dst() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "ci",
            "expand",
            "0 9 * * 1-5",
            "--timezone",
            "Europe/London",
            "--duration",
            "45m",
            "--window",
            "8d",
            "--from",
            "2024-03-28T00:00:00Z",
        ],
    )
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "2024-03-28T09:00:00Z  2024-03-28T09:00:00+00:00  until 09:45"
    assert lines[2] == "2024-04-01T08:00:00Z  2024-04-01T09:00:00+01:00  until 09:45"
    assert lines[-1].startswith("6 run(s)")


def test_ci_expand_limit() -> None:
    result = CliRunner().invoke(
        cli,
        [
            "ci",
            "expand",
            "@hourly",
            "--window",
            "1d",
            "--from",
            "2024-01-01T00:00:00Z",
            "--limit",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "24 run(s) in 1 day, 0:00:00 (22 not shown)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["0 9 * * * *"], "got 6", id="6 fields"),
        pytest.param(["0 25 * * *"], "hour field '25'", id="hour"),
        pytest.param(["@daily", "--timezone", "Nowhere/City"], "not an IANA", id="zone"),
        pytest.param(["@daily", "--duration", "soon"], "invalid duration", id="duration"),
        pytest.param(["@daily", "--window", "0s"], "must be positive", id="window"),
        pytest.param(["@daily", "--from", "yesterday"], "ISO 8601", id="from"),
    ],
)
def test_ci_expand_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["ci", "expand", *args])
    assert result.exit_code == 2
    assert message in result.output


def _history() -> LoadHistory:
    values = np.array([1.0, np.nan, 3.0, np.nan, np.nan, np.nan, np.nan, 8.0])
    return LoadHistory.from_samples(
        "sum(rate(x[1m]))",
        values,
        start=T0,
        step=timedelta(minutes=1),
        unit="requests/s",
        short_gap_steps=2,
        non_finite_samples=1,
        warnings=("careful",),
    )


def test_history_as_table() -> None:
    text = format_history(_history(), fmt="table")
    assert "query: sum(rate(x[1m]))" in text
    assert "8 steps of 1m, 37.5% measured" in text
    assert "interpolated: 2024-01-15T00:01:00+00:00 (1 steps)" in text
    assert "marked (NaN): 2024-01-15T00:03:00+00:00 (4 steps)" in text
    assert "NaN/Inf samples treated as missing: 1" in text
    assert "warning: careful" in text
    assert "2024-01-15T00:01:00Z             2  interpolated" in text
    assert text.rstrip().endswith("8  measured")


def test_history_as_json_and_csv() -> None:
    data = json.loads(format_history(_history(), fmt="json"))
    assert data["coverage"] == 0.375
    assert data["marked"] == [["2024-01-15T00:03:00+00:00", 4]]
    assert data["points"][3] == {"at": "2024-01-15T00:03:00Z", "value": None, "kind": "missing"}
    rows = format_history(_history(), fmt="csv").splitlines()
    assert rows[0] == "at,value,kind"
    assert rows[2] == "2024-01-15T00:01:00Z,2.0,interpolated"
    assert rows[4] == "2024-01-15T00:03:00Z,,missing"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--url", "prom:9090"], "prometheus.url: must start with http", id="url"),
        pytest.param(
            ["--set", "prometheus.short_gap_steps=-1"], "prometheus.short_gap_steps", id="set"
        ),
    ],
)
def test_history_settings_errors_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["prometheus", "history", "up", *args])
    assert result.exit_code == 2
    assert message in result.output
