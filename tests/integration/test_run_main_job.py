"""`python -m config run` (the main job) as a subprocess on the embedded SAMPLE DATA default.

Aspects: it prints where it serves; within two ticks `/metrics` shows non-zero `gridshift_`
series and `/status` shows every workload's decision with reasons, labelled SAMPLE DATA;
`/status/{workload}` answers; SIGTERM stops it cleanly. Also: the APScheduler service alone
ticks and refits on a short interval.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from config.scenario import sample_settings
from config.wiring import build_scaler
from forecasts.sources.clock import SystemClock
from forecasts.sources.sample import SampleCarbonSource, SampleLoadSource
from tests.gridshift_process import running_gridshift, wait_for

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


_wait_for = wait_for


def test_run_serves_metrics_and_status_within_two_ticks() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "config", "run", "--listen", "127.0.0.1:0", "--tick-seconds", "1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"metrics:\s+(http://127\.0\.0\.1:\d+)/metrics", line)
            if m:
                base = m.group(1)
                break
        else:
            raise AssertionError("run exited early:\n" + "".join(lines))
        assert "SAMPLE DATA" in "".join(lines)
        started = time.monotonic()
        with httpx.Client(base_url=base, timeout=5.0) as client:
            _wait_for(lambda: client.get("/readyz").status_code == 200, timeout_s=30, what="ready")
            status = _wait_for(
                lambda: (s := client.get("/status").json())["ticks_total"] >= 2 and s,
                timeout_s=10,
                what="two ticks",
            )
            assert time.monotonic() - started < 10
            assert status["data_note"].startswith("SAMPLE DATA")
            assert len(status["workloads"]) == 5
            for ws in status["workloads"].values():
                assert ws["reasons"], ws
                assert ws["reasons"][0].startswith("SAMPLE DATA")
                assert any("target" in r for r in ws["reasons"])
            one = client.get("/status/web-frontend").json()
            assert one["desired_replicas"] >= 2
            text = client.get("/metrics").text
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
            if s.name.startswith("gridshift_")
        }
        nonzero = {name for (name, _), v in samples.items() if v}
        for name in (
            "gridshift_desired_replicas",
            "gridshift_load",
            "gridshift_load_forecast",
            "gridshift_carbon_intensity_grams_per_kwh",
            "gridshift_emitted_grams_total",
            "gridshift_energy_joules_total",
            "gridshift_ticks_total",
            "gridshift_scaler_data_info",
        ):
            assert name in nonzero, f"{name} missing or zero"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
    # uvicorn shuts down gracefully, the tick in progress finishes; a clean stop is 0
    assert proc.returncode == 0


def test_service_ticks_and_refits_on_its_own_schedule() -> None:
    now = SystemClock().now()
    settings = sample_settings(now)
    settings = settings.model_copy(
        update={
            "scaler": settings.scaler.model_copy(update={"tick_interval_seconds": 0.2}),
            "forecast": settings.forecast.model_copy(update={"refit_interval_seconds": 0.5}),
        }
    )
    built = build_scaler(
        settings,
        clock=SystemClock(),
        registry=CollectorRegistry(),
        carbon=SampleCarbonSource(),
        load=SampleLoadSource(),
    )
    built.service.start()
    try:
        snap = _wait_for(
            lambda: (
                (s := built.holder.current()) is not None
                and s.ticks_total >= 3
                and s.refits_total >= 2
                and s
            ),
            timeout_s=10,
            what="ticks and refits",
        )
        assert snap.workloads["web-frontend"].desired_replicas >= 2
        assert snap.taken_at - now < timedelta(minutes=1)
    finally:
        built.service.shutdown()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_run_stops_cleanly_on_ctrl_c_like_sigterm(sig: signal.Signals) -> None:
    """Ctrl-C (SIGINT) stops `gridshift run` like SIGTERM: the banner names the dashboard,
    each tick logs one line, `/` redirects to the dashboard, and the stop says how many
    ticks ran and exits 0 (not "Aborted!", 1)."""
    with running_gridshift() as run:
        banner = "".join(run.output)
        assert f"dashboard: {run.base_url}/dashboard" in banner
        assert f"{run.base_url}/status" in banner
        with httpx.Client(base_url=run.base_url, timeout=5.0) as client:
            _wait_for(
                lambda: client.get("/status").json()["ticks_total"] >= 2,
                timeout_s=20,
                what="two ticks",
            )
            root = client.get("/")
            assert root.status_code == 307
            assert root.headers["location"] == "/dashboard"
            assert client.get("/", follow_redirects=True).text.startswith("<!doctype html")
        run.process.send_signal(sig)
        assert run.process.wait(timeout=20) == 0
        out = _wait_for(
            lambda: "stopped after" in (text := "".join(run.output)) and text,
            timeout_s=5,
            what="the stop line",
        )
    assert "Aborted" not in out
    assert re.search(r"INFO gridshift\.scaler: stopped after [1-9]\d* ticks", out), out[-2000:]
    ticks = re.findall(
        r"INFO gridshift\.scaler: tick \d+ at .*: (.*); saved ([\d.]+) gCO2 so far", out
    )
    assert len(ticks) >= 2
    assert "web-frontend" in ticks[-1][0]
    assert "(eco" in ticks[-1][0] or "(performance" in ticks[-1][0]
