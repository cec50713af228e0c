"""Static checks of the ops files (no Docker, no cluster, no Prometheus needed).

Aspects: the Dockerfile is multi-stage, pins its base by a version tag (never `latest`),
never ADDs (so no URL downloads), installs no compilers in the runtime stage, copies only
wheels from the build stage and ends as a numeric non-root USER; the PrometheusRule CR carries
exactly the plain rules file's groups; every alert has a severity, a summary and a runbook
anchor that deploy/README.md really has; the Grafana dashboard has unique panel ids, a
datasource variable on every panel and target, an expr on every target, and grid positions
inside 24 columns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
RULES = ROOT / "deploy" / "prometheus" / "gridshift-rules.yaml"
RULE_CR = ROOT / "deploy" / "components" / "monitoring" / "prometheus-rule.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "gridshift-dashboard.json"
README = ROOT / "deploy" / "README.md"


def instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for op, rest in instructions(text):
        if op == "FROM":
            result.append([])
        if result:
            result[-1].append((op, rest))
    return result


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    ins = instructions(text)
    args = dict(rest.split("=", 1) for op, rest in ins if op == "ARG" and "=" in rest)
    st = stages(text)
    if len(st) < 2:
        problems.append("not multi-stage")
    for stage in st:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image)
        tag = image.partition("@")[0].rpartition(":")[2] if ":" in image else ""
        if not tag or tag == "latest":
            problems.append(f"base {image!r} not pinned by tag")
    if any(op == "ADD" for op, _ in ins):
        problems.append("ADD used (use COPY; never fetch URLs)")
    if st:
        runtime = st[-1]
        users = [rest for op, rest in runtime if op == "USER"]
        if not users:
            problems.append("runtime stage has no USER")
        else:
            uid = users[-1].split(":")[0]
            if not uid.isdigit() or int(uid) == 0:
                problems.append(f"final USER {users[-1]!r} is not a numeric non-root UID")
        for op, rest in runtime:
            if op == "RUN" and re.search(r"\b(gcc|g\+\+|build-essential|clang|make)\b", rest):
                problems.append(f"compiler in runtime stage: {rest}")
            if op == "COPY" and "--from=" not in rest:
                problems.append(f"runtime stage copies from the context: {rest}")
    return problems


def test_dockerfile_is_multistage_pinned_and_non_root():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []
    runtime = stages(DOCKERFILE.read_text())[-1]
    assert ("USER", "65532:65532") in runtime


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("FROM python:3.11-slim\nUSER 1000\n", "not multi-stage", id="one stage"),
        pytest.param(
            "FROM python AS b\nFROM python:3.11-slim\nCOPY --from=b /w /w\nUSER 1000\n",
            "not pinned",
            id="unpinned base",
        ),
        pytest.param(
            "FROM python:3.11-slim AS b\nFROM python:latest\nCOPY --from=b /w /w\nUSER 1\n",
            "not pinned",
            id="latest",
        ),
        pytest.param(
            "FROM python:3.11-slim AS b\nADD https://x/y.tgz /y\nFROM python:3.11-slim\n"
            "COPY --from=b /w /w\nUSER 1000\n",
            "ADD used",
            id="ADD url",
        ),
        pytest.param(
            "FROM python:3.11-slim AS b\nFROM python:3.11-slim\nCOPY --from=b /w /w\nUSER root\n",
            "not a numeric non-root",
            id="root user",
        ),
        pytest.param(
            "FROM python:3.11-slim AS b\nFROM python:3.11-slim\nCOPY --from=b /w /w\n",
            "no USER",
            id="no user",
        ),
        pytest.param(
            "FROM python:3.11-slim AS b\nFROM python:3.11-slim\nRUN apt-get install -y \\\n"
            "  gcc\nCOPY --from=b /w /w\nUSER 1000\n",
            "compiler",
            id="compiler",
        ),
    ],
)
def test_dockerfile_checks_really_reject(text, problem):
    assert any(problem in p for p in dockerfile_problems(text)), dockerfile_problems(text)


def test_prometheus_rule_cr_matches_the_rules_file():
    cr = yaml.safe_load(RULE_CR.read_text())
    assert cr["kind"] == "PrometheusRule"
    assert cr["spec"] == yaml.safe_load(RULES.read_text())


def test_every_alert_has_severity_summary_and_a_real_runbook_anchor():
    readme = README.read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", readme, flags=re.M)
    }
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 10
    for rule in rules:
        assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        anchor = rule["annotations"]["runbook_url"].rpartition("#")[2]
        assert anchor == rule["alert"].lower()
        assert anchor in anchors, f"deploy/README.md has no section for {rule['alert']}"


def test_grafana_dashboard_structure():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"]
    assert dash["title"]
    names = [v["name"] for v in dash["templating"]["list"]]
    assert "datasource" in names
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert len(panels) >= 20
    for p in panels:
        assert p["datasource"]["uid"] == "${datasource}", p["title"]
        pos = p["gridPos"]
        assert pos["x"] >= 0, p["title"]
        assert pos["x"] + pos["w"] <= 24, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip(), p["title"]
            assert t["datasource"]["uid"] == "${datasource}"
    titles = " ".join(p["title"].lower() for p in panels)
    for topic in ("saved", "capacity", "carbon", "eco", "age", "errors", "extender", "nvml"):
        assert topic in titles, topic
