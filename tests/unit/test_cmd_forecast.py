"""`gridshift forecast` and `gridshift backtest` on the bundled CSV trace.

(The PNG/HTML and `--model auto` cases are marked slow.)
Aspects: table/JSON/CSV output of a forecast; --model auto explains its choice; backtest
prints the results table with the selection and writes backtest.json, a PNG and a
self-contained HTML page; bad input gets a clear error naming the option."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from config.cli import cli
from tests.fixtures import backtest_series

TRACE = str(backtest_series.PATH)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_forecast_json_has_quantiles() -> None:
    res = run(
        "forecast",
        "--trace",
        TRACE,
        "--model",
        "seasonal_naive_day",
        "--horizon",
        "6h",
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["model"] == "seasonal_naive_day"
    assert len(doc["points"]) == 6
    first = doc["points"][0]
    assert first["timestamp_utc"] == "2024-02-26T00:00:00Z"
    assert first["p05"] <= first["p10"] <= first["p50"] <= first["p90"] <= first["p95"]


def test_forecast_csv_and_table() -> None:
    res = run(
        "forecast",
        "--trace",
        TRACE,
        "--model",
        "seasonal_regression",
        "--horizon",
        "3h",
        "--format",
        "csv",
    )
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0] == "timestamp_utc,mean,p05,p10,p25,p50,p75,p90,p95"
    assert len(lines) == 4
    res = run("forecast", "--trace", TRACE, "--model", "seasonal_naive_week", "--horizon", "2h")
    assert "model seasonal_naive_week" in res.output
    assert "p95" in res.output


@pytest.mark.slow  # backtests ETS too: several seconds on a busy machine
def test_forecast_auto_explains_choice() -> None:
    res = run("forecast", "--trace", TRACE, "--horizon", "4h", "--origins", "2", "--format", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["selection"]["model"] == doc["model"]
    assert any("baseline" in r for r in doc["selection"]["reasons"])


@pytest.mark.slow  # matplotlib's first render takes seconds
def test_backtest_writes_table_json_png_html(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run(
        "backtest",
        "--series",
        TRACE,
        "--models",
        "seasonal_naive_day,seasonal_regression",
        "--origins",
        "3",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert "MASEb" in res.output
    assert "seasonal_regression *" in res.output
    doc = json.loads((out / "backtest.json").read_text())
    entry = doc["backtest_series"]
    assert entry["selected"] == "seasonal_regression"
    assert entry["origins"] == 3
    png = (out / "backtest_series.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    page = (out / "backtest_series.html").read_text()
    assert "data:image/png;base64," in page
    assert "http://" not in page
    assert "https://" not in page


def test_backtest_adds_a_baseline_and_reports_json(tmp_path: Path) -> None:
    res = run(
        "backtest",
        "--series",
        TRACE,
        "--models",
        "seasonal_regression",
        "--origins",
        "2",
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output[res.output.index("{") :])
    assert doc["backtest_series"]["baseline"] == "seasonal_naive_day"


def test_bad_input_names_the_option(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["forecast", "--trace", str(tmp_path / "nope.csv")])
    assert res.exit_code == 2
    assert "no such file" in res.output
    res = CliRunner().invoke(cli, ["forecast", "--trace", TRACE, "--horizon", "90m"])
    assert res.exit_code == 2
    assert "--horizon" in res.output
    res = CliRunner().invoke(cli, ["backtest", "--series", TRACE, "--models", "magic"])
    assert res.exit_code == 2
    assert "unknown 'magic'" in res.output


def test_forecast_uses_provider_column(tmp_path: Path) -> None:
    """A trace whose provider forecast runs 4 steps past the last actual, biased by -20."""
    rows = ["timestamp_utc,gco2,forecast"]
    rng = np.random.default_rng(0)
    start = datetime(2023, 1, 1, tzinfo=UTC)
    n = 48 * 10
    for i in range(n + 4):
        at = (start + timedelta(minutes=30 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        truth = 200 + 50 * np.sin(2 * np.pi * i / 48)
        actual = f"{truth + rng.normal(0, 2):.1f}" if i < n else ""
        rows.append(f"{at},{actual},{truth - 20 + rng.normal(0, 2):.1f}")
    trace = tmp_path / "gb.csv"
    trace.write_text("\n".join(rows) + "\n")
    res = run(
        "forecast",
        "--trace",
        str(trace),
        "--column",
        "gco2",
        "--provider-column",
        "forecast",
        "--model",
        "seasonal_naive_day",
        "--horizon",
        "2h",
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["model"].endswith("+correction"), doc["carbon_plan"]  # the provider is 20 g low
    assert doc["points"][0]["timestamp_utc"] == "2023-01-11T00:00:00Z"
    truth0 = 200 + 50 * np.sin(2 * np.pi * n / 48)
    assert abs(doc["points"][0]["mean"] - truth0) < 8
    assert len(doc["points"]) == 2  # carbon forecasts are hourly
    assert any("corrected (half-life" in r for r in doc["carbon_plan"])
