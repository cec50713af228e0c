"""Fleet replays and backtests on a real Dask cluster give exactly the one-process results.

Aspects: `gridshift replay --workers 2` (a local cluster the command starts) and
`--scheduler-address` (a cluster started here, standing in for a remote one) print the same
summary as `--workers 1`, wall time aside; `gridshift backtest --workers 2` prints the same
report (run as `python -m config`, whose spawned workers must not rerun the command);
an unreachable scheduler is a clear error, exit 1, no traceback.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from config.cli import cli
from tests.fixtures import backtest_series
from tests.integration.prom_fixture import free_port

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "config" / "scenarios" / "sample.yaml"
REPLAY = [
    "replay",
    "--scenario",
    str(SAMPLE),
    "--from",
    "2026-01-05T00:00:00Z",
    "--to",
    "2026-01-09T00:00:00Z",
    "--format",
    "json",
    "--no-progress",
]


def _summary(*extra: str) -> dict[str, Any]:
    res = CliRunner().invoke(cli, [*REPLAY, *extra])
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.stdout[res.stdout.index("{") :])
    doc.pop("seconds")
    return doc


@pytest.fixture(scope="module")
def one_process() -> dict[str, Any]:
    return _summary("--workers", "1")


@pytest.fixture
def scheduler() -> Iterator[str]:
    from distributed import LocalCluster

    logging.getLogger("distributed").setLevel(logging.ERROR)
    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    ) as cluster:
        yield str(cluster.scheduler_address)


def test_local_cluster_replay_equals_one_process(one_process: dict[str, Any]) -> None:
    res = CliRunner().invoke(cli, [*REPLAY, "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert "local Dask cluster of 2 workers" in res.stderr
    doc = json.loads(res.stdout[res.stdout.index("{") :])
    doc.pop("seconds")
    assert doc == one_process
    assert len(doc["workloads"]) == 4


def test_remote_scheduler_replay_equals_one_process(
    one_process: dict[str, Any], scheduler: str
) -> None:
    assert _summary("--scheduler-address", scheduler) == one_process


def test_backtest_on_a_cluster_equals_one_process() -> None:
    args = [
        "backtest",
        "--series",
        str(backtest_series.PATH),
        "--models",
        "seasonal_naive_day,seasonal_regression",
        "--origins",
        "3",
        "--format",
        "json",
    ]
    one = CliRunner().invoke(cli, [*args, "--workers", "1"])
    assert one.exit_code == 0, one.output
    # as users run it: `python -m config` (its spawned workers must not rerun the command)
    two = subprocess.run(
        [sys.executable, "-m", "config", *args, "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert two.returncode == 0, two.stderr
    assert "local Dask cluster of 2 workers" in two.stderr
    doc = _without_timings(json.loads(two.stdout))
    assert doc == _without_timings(json.loads(one.stdout[one.stdout.index("{") :]))
    assert doc["backtest_series"]["origins"] == 3


def _without_timings(doc: Any) -> Any:
    """The report minus fit/predict wall times (they differ run to run)."""
    if isinstance(doc, dict):
        return {k: _without_timings(v) for k, v in doc.items() if not k.endswith("_seconds")}
    return doc


def test_an_unreachable_scheduler_is_a_clear_error() -> None:
    res = CliRunner().invoke(
        cli, [*REPLAY, "--scheduler-address", f"tcp://127.0.0.1:{free_port()}"]
    )
    assert res.exit_code == 1
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:" in res.output
    assert "Traceback" not in res.output
