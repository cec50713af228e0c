"""The built-in dashboard in headless Chromium (Debian's `chromium`, driven by Playwright).

Aspects: `gridshift run` on the sample scenario, connected to a Kubernetes API stand-in and
to the real `gridshift extender` (tests/sample_cluster.py), serves /dashboard and its local
assets; every request the page makes stays on the scaler's own origin (no CDN); the charts
draw SVG paths with data, the replicas chart with desired, ACTUAL (read from the stand-in,
following the scaler's own actuation) and counterfactual lines for every workload; the KPIs
and legends show numbers; the modes timeline and reasons fill in; the extender panel lists
the real extender's figures (requests, errors, decisions by outcome, nodes, fresh regions);
no console errors or page errors; value ticks are round and evenly spaced, time labels
distinct, and the cumulative chart draws saved, emitted and counterfactual (every line its
legend lists); `/` redirects to the dashboard; a screenshot goes to
tests/artifacts/dashboard.png.
Without a cluster or extender, the page says so: "actual unknown: no cluster connection"
and "no extender configured" (tests/artifacts/dashboard-no-cluster.png).
"""

from __future__ import annotations

import itertools
import math
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster.plane import wait_until
from tests.gridshift_process import running_gridshift
from tests.sample_cluster import DEPLOYMENTS, running_sample_stack

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


WORKLOADS = ("checkout-api", "nightly-training", "report-batch", "search", "web-frontend")


def _is_round_step(step: float) -> bool:
    """1, 2 or 5 x 10^k."""
    mantissa = step / 10 ** math.floor(math.log10(step))
    return any(math.isclose(mantissa, m, rel_tol=1e-6) for m in (1, 2, 5, 10))


def assert_axes_readable(page: Any) -> None:
    """Every chart's value ticks are round and evenly spaced (0, 100, 200 ... not 13, 107,
    200, 293) and its time labels are distinct (no 10:42 10:42 10:43 early on); the
    cumulative chart draws every line its legend lists."""
    for chart in ("chart-carbon", "chart-replicas", "chart-saved"):
        ticks = [
            float(v)
            for v in page.eval_on_selector_all(
                f"#{chart} svg text[data-tick]", "els => els.map(e => e.dataset.tick)"
            )
        ]
        assert len(ticks) >= 3, (chart, ticks)
        steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1, (chart, ticks)
        (step,) = steps
        assert _is_round_step(step), (chart, ticks)
        assert all(math.isclose(t / step, round(t / step), abs_tol=1e-6) for t in ticks), ticks
        labels = page.eval_on_selector_all(
            f"#{chart} svg text.xtick", "els => els.map(e => e.textContent)"
        )
        assert labels, chart
        assert len(labels) == len(set(labels)), (chart, labels)
    drawn = page.eval_on_selector_all(
        "#chart-saved svg path.series", "els => els.map(e => e.dataset.label)"
    )
    assert sorted(drawn) == ["counterfactual", "emitted", "saved"]
    legend = page.inner_text("#legend-saved")
    for name in ("saved", "emitted", "counterfactual"):
        assert name in legend


def test_dashboard_renders_live_charts_offline(tmp_path: Path) -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    foreign: list[str] = []
    with (
        running_sample_stack(tmp_path) as stack,
        tempfile.TemporaryDirectory() as profile,
        sync_playwright() as pw,
    ):
        gs = stack.gridshift
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
            page.wait_for_function(
                "document.querySelectorAll('#extender td').length > 0", timeout=30_000
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

            # desired, actual (from the cluster) and counterfactual for every workload
            replica_labels = page.eval_on_selector_all(
                "#chart-replicas svg path.series", "els => els.map(e => e.dataset.label)"
            )
            for kind in ("desired", "actual", "counterfactual"):
                assert {f"{w} {kind}" for w in WORKLOADS} <= set(replica_labels), kind
            actual_paths = page.eval_on_selector_all(
                "#chart-replicas svg path.series.dashed", "els => els.map(e => e.dataset.label)"
            )
            assert sorted(actual_paths) == sorted(f"{w} actual" for w in WORKLOADS)
            assert "dashed: actual" in page.inner_text("#replicas-hint")
            assert page.inner_text("#replicas-note").strip() == ""
            replicas_legend = page.inner_text("#legend-replicas")
            assert re.search(r"web-frontend actual \d+", replicas_legend), replicas_legend

            # the scaler actuated the stand-in's Deployment and the actual count followed: the
            # status is as of the last tick, and the stand-in settles status.replicas on its own
            # timer, so the two agree once a tick has seen the latest settle
            def agreed() -> tuple[dict[str, Any], dict[str, Any]] | None:
                status = httpx.get(f"{gs.base_url}/status/web-frontend", timeout=5).json()
                deployment = stack.api.get_object(f"{DEPLOYMENTS}/web-frontend")
                assert deployment is not None
                if status["actual_replicas"] != deployment["status"]["replicas"]:
                    return None
                return status, deployment

            status, deployment = wait_until(agreed, timeout_s=30, what="actual replicas followed")
            assert deployment["spec"]["replicas"] == min(20, max(2, status["desired_replicas"]))
            assert status["actual_replicas"] == deployment["status"]["replicas"]

            for kpi in ("kpi-saved", "kpi-emitted", "kpi-cf"):
                assert NUMBER.search(page.inner_text(f"#{kpi}")), kpi
            assert re.fullmatch(r"\d+ / 5", page.inner_text("#kpi-eco").strip())
            assert NUMBER.search(page.inner_text("#legend-carbon"))

            assert page.locator("#modes .moderow").count() == 5
            assert page.locator("#modes rect[data-mode]").count() >= 5
            assert page.locator("#reasons li").count() >= 5
            assert "SAMPLE DATA" in page.inner_text("#data-note")
            assert page.locator("#freshness tbody tr").count() == 3 + 5

            # the real extender's figures, from the requests the test sent it
            extender = page.inner_text("#extender")
            assert stack.extender.metrics_url in extender
            figures = dict(line.rsplit("\t", 1) for line in extender.splitlines() if "\t" in line)
            assert float(figures["filter requests"]) >= 2
            assert float(figures["prioritize scored decisions"]) >= 1
            assert float(figures["filter errors"]) >= 1  # the malformed bodies
            assert float(figures["filter mean latency ms"]) > 0
            assert figures["nodes known"] == "2"
            assert (figures["regions with fresh carbon"], figures["regions"]) == ("1", "2")
            # and its answers: the node with the leaner GPUs and fresh carbon scores higher
            scores = {a["Host"]: a["Score"] for a in stack.extender_answers[-1]["prioritize"]}
            assert scores["gpu-de-1"] > scores["gpu-fr-1"], scores

            assert_axes_readable(page)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            context.close()

    assert not errors, errors
    assert not foreign, f"the page fetched from elsewhere: {foreign}"


def test_dashboard_without_cluster_or_extender_says_so() -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
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
            page.goto(f"{gs.base_url}/dashboard")
            page.wait_for_function("Number(document.body.dataset.points || 0) >= 3", timeout=60_000)
            assert page.inner_text("#replicas-note") == "actual unknown: no cluster connection"
            assert page.inner_text("#replicas-hint") == "solid: desired · dotted: counterfactual"
            labels = page.eval_on_selector_all(
                "#chart-replicas svg path.series", "els => els.map(e => e.dataset.label)"
            )
            assert labels
            assert not [lbl for lbl in labels if lbl.endswith(" actual")]
            # the region policy (shown whatever the extender state), then the extender's state
            assert page.inner_text("#extender").strip() == (
                "Region policy: threshold off · prefer none · avoid none (per pod: "
                "gridshift.io/max-gco2-per-kwh, gridshift.io/prefer-regions, "
                "gridshift.io/avoid-regions)\nno extender configured"
            )
            assert_axes_readable(page)  # early on: a few points, minutes apart
            root = page.goto(gs.base_url + "/")  # `/` redirects to the dashboard
            assert root is not None
            assert page.url == f"{gs.base_url}/dashboard"
            page.wait_for_function("Number(document.body.dataset.points || 0) >= 3", timeout=30_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-no-cluster.png"), full_page=True)
        finally:
            context.close()
    assert not errors, errors
