"""Every PromQL expression we ship, evaluated by the real Prometheus scraping our processes.

Aspects: the Grafana dashboard's panel queries and the alert rules' expressions (from
deploy/grafana and deploy/prometheus) are sent to a real Prometheus (Debian's package, via
`running_prometheus`) that scrapes a running `gridshift run` on the sample scenario AND the
real `gridshift extender` (tests/sample_cluster.py: both against a Kubernetes API stand-in;
the scaler leads, actuates the stand-in's Deployments/StatefulSet/ScaledObject and reads
their actual replicas every tick; the extender lists GPU nodes, reads carbon from a trace,
and answers filter/prioritize rounds sent every second, one in five with a malformed body).
Every expression parses and evaluates (`status: success`); every panel query returns a
non-empty result (actual replicas and extender panels included); every alert expression
without its numeric threshold returns data (so an alert that only fires under faults is
about series that really exist); and the rules files pass `promtool check rules` and
`promtool test rules`.

Only `gridshift agent` is a stand-in (tests/extender_exposition.py): GPU power needs a GPU,
so its names and labels are checked against extender/agent.py instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.extender_exposition import agent_registry, serving
from tests.gridshift_process import wait_for
from tests.integration.prom_fixture import running_prometheus
from tests.sample_cluster import running_sample_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "gridshift-rules.yaml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yaml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "gridshift-dashboard.json"
NAME = re.compile(r"\bgridshift_[a-z0-9_]+")
# `<expr> > 0.5`, `<expr> == 0`: the comparison with a number that makes it an alert
THRESHOLD = re.compile(r"^(?P<expr>.+?)\s*(?:==|!=|>=|<=|>|<)\s*-?[0-9.]+(?:e-?[0-9]+)?\s*$", re.S)
# metrics served by `gridshift extender` / `gridshift agent`, not by `gridshift run`
OTHER_COMPONENTS = ("gridshift_extender_", "gridshift_gpu_", "gridshift_nvml_")


def rule_exprs() -> list[tuple[str, str]]:
    doc = yaml.safe_load(RULES.read_text())
    return [(r["alert"], r["expr"]) for g in doc["groups"] for r in g["rules"]]


def panel_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [
        (f"{p['title']} [{t['refId']}]", t["expr"])
        for p in dash["panels"]
        for t in p.get("targets", [])
    ]


def is_scaler_only(expr: str) -> bool:
    return not any(n.startswith(OTHER_COMPONENTS) for n in NAME.findall(expr))


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.skip("promtool missing: apt-get install prometheus (make install-system)")
    return tool


def test_promtool_check_rules() -> None:
    out = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(rule_exprs())} rules found" in out.stdout


def test_promtool_rule_unit_tests() -> None:
    assert RULE_TESTS
    out = subprocess.run(
        [_promtool(), "test", "rules", *map(str, RULE_TESTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    tested = {
        t["alertname"]
        for f in RULE_TESTS
        for case in yaml.safe_load(f.read_text())["tests"]
        for t in case.get("alert_rule_test", [])
        if t["exp_alerts"]
    }
    assert tested == {name for name, _ in rule_exprs()}, "every alert has a firing case"


def _query(client: httpx.Client, expr: str) -> list[dict[str, object]]:
    r = client.get("/api/v1/query", params={"query": expr})
    body = r.json()
    assert r.status_code == 200, f"{expr!r}: {body.get('error')}"
    assert body["status"] == "success", body
    result = body["data"]["result"]
    assert isinstance(result, list)
    return result


def without_threshold(expr: str) -> str | None:
    """The alert's expression without its final comparison with a number, if it has one."""
    m = THRESHOLD.match(expr.strip())
    return m.group("expr") if m else None


@pytest.mark.parametrize(
    ("expr", "stripped"),
    [
        pytest.param("rate(x_total[5m]) == 0", "rate(x_total[5m])", id="== 0"),
        pytest.param(
            "histogram_quantile(0.99, sum(r)) > 0.5", "histogram_quantile(0.99, sum(r))", id="> 0.5"
        ),
        pytest.param("a < on (w) b", None, id="vector comparison kept"),
        pytest.param("x > 1e-3", "x", id="exponent"),
    ],
)
def test_without_threshold(expr, stripped) -> None:
    assert without_threshold(expr) == stripped


def test_every_expression_evaluates_against_the_scraped_processes(tmp_path: Path) -> None:
    with (
        running_sample_stack(tmp_path) as stack,
        serving(agent_registry()) as agent_url,
        running_prometheus(
            tmp_path,
            scrape_targets=[
                stack.gridshift.host_port,
                stack.extender.host_port,
                agent_url.removeprefix("http://").removesuffix("/metrics"),
            ],
            scrape_interval="1s",
        ) as prom,
        httpx.Client(base_url=prom.url, timeout=10.0) as client,
    ):
        # enough scrapes for rate()/increase() over the counters of both processes
        wait_for(
            lambda: _query(client, "count_over_time(gridshift_ticks_total[1m]) >= 6"),
            timeout_s=60,
            what="six scrapes of the scaler",
        )
        wait_for(
            lambda: _query(
                client, 'count_over_time(gridshift_extender_requests_total{code="400"}[1m]) >= 3'
            ),
            timeout_s=60,
            what="scrapes of the extender after a malformed request",
        )
        time.sleep(1.0)
        empty_panels = []
        for title, expr in panel_exprs():
            if not _query(client, expr):
                empty_panels.append(f"{title}: {expr}")
        assert not empty_panels, "panel queries without data:\n" + "\n".join(empty_panels)

        without_data = []
        for alert, expr in rule_exprs():
            _query(client, expr)  # parses and evaluates; fires only under faults
            body = without_threshold(expr)
            if body is not None and not _query(client, body):
                without_data.append(f"{alert}: {body}")
            for name in NAME.findall(expr):
                if not _query(client, f'count({{__name__="{name}"}})'):
                    without_data.append(f"{alert}: {name}")
        assert not without_data, "alerts about series nobody exports:\n" + "\n".join(without_data)

        # the data is the processes' own: actual replicas from the stand-in cluster, the
        # extender's decisions from the requests sent to it
        actual = _query(client, "gridshift_actual_replicas")
        assert {r["metric"]["workload"] for r in actual} == {  # type: ignore[index]
            "web-frontend",
            "checkout-api",
            "search",
            "nightly-training",
            "report-batch",
        }
        decisions = _query(client, "sum by (verb, outcome) (gridshift_extender_decisions_total)")
        assert {(r["metric"]["verb"], r["metric"]["outcome"]) for r in decisions} == {  # type: ignore[index]
            ("filter", "passed"),
            ("prioritize", "scored"),
        }
        fresh = _query(client, "gridshift_extender_carbon_fresh")
        assert {r["metric"]["region"]: r["value"][1] for r in fresh} == {"DE": "1", "FR": "0"}  # type: ignore[index]

        scaler_panels = [e for _, e in panel_exprs() if is_scaler_only(e)]
        assert len(scaler_panels) >= 20


def test_extender_and_agent_names_match_their_code() -> None:
    names = {
        n.removesuffix("_total").removesuffix("_bucket")
        for _, e in [*panel_exprs(), *rule_exprs()]
        for n in NAME.findall(e)
        if n.startswith(OTHER_COMPONENTS)
    }
    assert len(names) >= 6
    sources = [ROOT / "extender" / f for f in ("server.py", "agent.py", "metrics.py")]
    if not all(p.exists() for p in sources):
        pytest.skip("extender code (issue 6) not on this branch: names checked after the merge")
    code = "\n".join(p.read_text() for p in sources)
    assert sorted(n for n in names if f'"{n}"' not in code) == []


def test_invalid_promql_is_rejected(tmp_path: Path) -> None:
    """The evaluation above can fail: Prometheus answers 400 to broken PromQL."""
    with (
        running_prometheus(tmp_path) as prom,
        httpx.Client(base_url=prom.url, timeout=10.0) as client,
    ):
        bad = client.get("/api/v1/query", params={"query": "sum by (le (broken"})
        assert bad.status_code == 400
