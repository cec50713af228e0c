"""Acceptance, as a user runs it: `python -m config carbon forecast --region GB --source uk
--format json` in a subprocess, with the UK API base URL pointed at a local server; then with
that server stopped, the same command falls back to the last known value and says so in
stderr and in the JSON (source, stale, age).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from tests.unit.carbon.conftest import ReplayServer, Reply, _Handler

pytestmark = pytest.mark.integration

COMMAND = [
    sys.executable, "-m", "config", "carbon", "forecast", "--region", "GB", "--source", "uk",
    "--format", "json", "--at", "2025-01-20T12:00Z", "--horizon", "2h",
]  # fmt: skip


@pytest.fixture
def uk_server() -> Iterator[ReplayServer]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    replay = ReplayServer(httpd)
    httpd.replay = replay  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    replay.route("/intensity/", Reply.fixture("uk", "national_fw48h"))
    yield replay
    httpd.shutdown()
    httpd.server_close()


def run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        COMMAND, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_forecast_from_local_server_then_fallback(uk_server: ReplayServer, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    env |= {
        "GRIDSHIFT_CARBON__UK__BASE_URL": uk_server.url,
        "GRIDSHIFT_CARBON__LAST_KNOWN_PATH": str(tmp_path / "carbon.json"),
        "GRIDSHIFT_CARBON__HTTP__RETRY_ATTEMPTS": "2",
        "GRIDSHIFT_CARBON__HTTP__RETRY_BASE_DELAY_SECONDS": "0.05",
    }
    up = run(env)
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)
    assert (doc["source"], doc["stale"]) == ("uk", False)
    assert [p["value"] for p in doc["points"]] == [182, 175, 168, 160]
    assert up.stderr == ""

    uk_server.httpd.shutdown()
    uk_server.httpd.server_close()
    down = run(env)
    assert down.returncode == 0, down.stderr
    stale = json.loads(down.stdout)
    assert (stale["source"], stale["provider"], stale["stale"]) == ("last-known", "uk", True)
    assert stale["age_seconds"] >= 0
    assert stale["points"] == doc["points"]
    assert "no source answered; serving a stale value" in down.stderr
    assert "Traceback" not in down.stderr
