"""`make audit`'s summary (.ci/audit_report.py): packages pip-audit could not audit are
counted and named, and make the result INCOMPLETE (exit 3), never clean; known
vulnerabilities fail (exit 1) and are listed with their fixes; only a full audit with no
finding is clean (exit 0)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "audit_report.py"


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_report", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dep(name: str, *, vulns=(), skip: str | None = None) -> dict[str, object]:
    if skip:
        return {"name": name, "skip_reason": skip}
    return {"name": name, "version": "1.0", "vulns": list(vulns)}


SKIP = "Dependency not found on PyPI and could not be audited: x (1.0)"


def test_unaudited_packages_are_never_a_clean_result(audit) -> None:
    text, status = audit.report({"dependencies": [dep("a"), dep("b", skip=SKIP)]})
    assert status == 3
    assert "1 of 2 packages audited, 1 not audited" in text
    assert "INCOMPLETE" in text
    assert "clean" not in text.replace("not a clean result", "")
    assert "No known vulnerabilities found" not in text


def test_vulnerabilities_fail_with_their_fixes(audit) -> None:
    vuln = {"id": "GHSA-xxxx", "fix_versions": ["1.1"]}
    text, status = audit.report({"dependencies": [dep("a", vulns=[vuln]), dep("b", skip=SKIP)]})
    assert status == 1
    assert "VULNERABLE a 1.0: GHSA-xxxx (1.1)" in text
    assert "1 known vulnerabilities in 1 packages" in text


def test_full_audit_without_findings_is_clean(audit) -> None:
    text, status = audit.report({"dependencies": [dep("a"), dep("b")]})
    assert status == 0
    assert "clean: no known vulnerability in all 2 packages" in text
