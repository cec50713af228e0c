"""The built-in dashboard in headless Chromium (Debian's `chromium`, driven by Playwright).

Aspects: `gridshift run` on the sample scenario serves /dashboard and its local assets;
every request the page makes stays on the scaler's own origin (no CDN); the charts draw SVG
paths with data; the KPIs and legends show numbers; the modes timeline and reasons fill in;
the extender panel says "no extender configured"; the actual-replicas note is shown; no
console errors or page errors; a screenshot goes to tests/artifacts/dashboard.png. With
`server.extender_metrics_url` pointing at a local extender-style /metrics, the extender panel
lists its figures (tests/artifacts/dashboard-extender.png).
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.extender_exposition import serving_extender_metrics
from tests.gridshift_process import RUN_ARGS, running_gridshift

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _require_browser() -> None:
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"{CHROMIUM} missing: apt-get install chromium (make install-system)")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")


def _launch(pw: Any, profile: str) -> Any:
    """Debian's chromium, headless, with a fresh --user-data-dir and no background traffic
    (this machine's network is closed; background connections would only be refused)."""
    return pw.chromium.launch_persistent_context(
        profile,
        executable_path=CHROMIUM,
        headless=True,
        viewport={"width": 1280, "height": 1000},
        args=[
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )


def test_dashboard_renders_live_charts_offline() -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    foreign: list[str] = []
    with (
        running_gridshift() as gs,
        tempfile.TemporaryDirectory() as profile,
        sync_playwright() as pw,
    ):
        context = _launch(pw, profile)
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "request",
                lambda r: None if r.url.startswith(gs.base_url) else foreign.append(r.url),
            )
            response = page.goto(f"{gs.base_url}/dashboard")
            assert response is not None
            assert response.status == 200
            # ten or more snapshots, so every line has several points
            page.wait_for_function(
                "Number(document.body.dataset.points || 0) >= 10", timeout=60_000
            )
            page.wait_for_timeout(2500)  # one more poll cycle with the newest points

            for chart in ("chart-carbon", "chart-replicas", "chart-saved"):
                paths = page.eval_on_selector_all(
                    f"#{chart} svg path.series", "els => els.map(e => e.getAttribute('d'))"
                )
                assert paths, f"{chart} drew no series"
                assert all(d and d.count("L") + d.count("H") >= 2 for d in paths[:1]), paths

            carbon_labels = page.eval_on_selector_all(
                "#chart-carbon svg path.series", "els => els.map(e => e.dataset.label)"
            )
            assert {"sample-solar", "sample-wind", "sample-hydro"} <= set(carbon_labels)
            assert any(lbl.endswith("forecast") for lbl in carbon_labels)

            for kpi in ("kpi-saved", "kpi-emitted", "kpi-cf"):
                assert NUMBER.search(page.inner_text(f"#{kpi}")), kpi
            assert re.fullmatch(r"\d+ / 5", page.inner_text("#kpi-eco").strip())
            assert NUMBER.search(page.inner_text("#legend-carbon"))

            assert page.locator("#modes .moderow").count() == 5
            assert page.locator("#modes rect[data-mode]").count() >= 5
            assert page.locator("#reasons li").count() >= 5
            assert "counterfactual" in page.inner_text("#replicas-hint")
            assert page.inner_text("#replicas-note") == "actual unknown: no cluster connection"
            assert "SAMPLE DATA" in page.inner_text("#data-note")
            assert page.locator("#freshness tbody tr").count() == 3 + 5
            assert page.inner_text("#extender").strip() == "no extender configured"

            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            context.close()

    assert not errors, errors
    assert not foreign, f"the page fetched from elsewhere: {foreign}"


def test_dashboard_lists_extender_figures_when_configured() -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with (
        serving_extender_metrics() as url,
        running_gridshift([*RUN_ARGS, "--set", f"server.extender_metrics_url={url}"]) as gs,
        tempfile.TemporaryDirectory() as profile,
        sync_playwright() as pw,
    ):
        context = _launch(pw, profile)
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{gs.base_url}/dashboard")
            page.wait_for_function(
                "document.querySelectorAll('#extender td').length > 0", timeout=60_000
            )
            text = page.inner_text("#extender")
            assert "filter requests" in text
            assert "prioritize errors" in text
            assert url in text
            ARTIFACTS.mkdir(exist_ok=True)
            page.locator("#extender").screenshot(path=str(ARTIFACTS / "dashboard-extender.png"))
        finally:
            context.close()
    assert not errors, errors
