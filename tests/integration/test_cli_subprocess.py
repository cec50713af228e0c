"""`python -m config` as a real process: the acceptance case and the top-level handler.

Aspects: `config check --config bad.yaml` lists all three mistakes and exits 2 with no
traceback; a good file exits 0; `--version` works; env errors exit 2.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "config"

pytestmark = pytest.mark.integration


def gridshift(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    return subprocess.run(
        [sys.executable, "-m", "config", *args],
        cwd=REPO,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_bad_file_lists_three_problems_and_exits_2() -> None:
    proc = gridshift("config", "check", "--config", str(FIXTURES / "bad.yaml"))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("gridshift: configuration error (3 problems)\n")
    for path in (
        "prometheus.timeout_seconds",
        "carbon.stale_after_seconds",
        "scaler.tick_interval_secnds",
    ):
        assert f"  - {path}: " in proc.stderr
    assert "Traceback" not in proc.stderr


def test_good_file_env_error_and_version() -> None:
    ok = gridshift("config", "check", "--config", str(FIXTURES / "good.yaml"))
    assert ok.returncode == 0, ok.stderr
    bad_env = gridshift("config", "show", env={"GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "x"})
    assert bad_env.returncode == 2
    assert "env:GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS" in bad_env.stderr
    assert "Traceback" not in bad_env.stderr
    version = gridshift("--version")
    assert version.returncode == 0
    assert version.stdout.startswith("gridshift ")
