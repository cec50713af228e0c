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


def test_command_starts_on_a_read_only_home_without_plotting_libraries(tmp_path: Path) -> None:
    """Containers run with a read-only root filesystem: importing the command must not pull
    in matplotlib (it wants a writable cache under $HOME and crashed `gridshift run` in the
    image); reports import it only when they draw."""
    code = (
        "import sys, config.cli\n"
        "heavy = sorted(m for m in ('matplotlib', 'prophet', 'cmdstanpy') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o500)
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HOME": str(home), "MPLCONFIGDIR": str(home / "mpl")},
        check=True,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
