"""Packaging and tooling that a clean checkout relies on.

Aspects: the pyproject readme exists (pip refuses to install without it) and the console script
resolves to `config.cli:main`; pre-commit hooks are all local (no network) and their tools are
installed; each package ships `py.typed`; `make check` runs every static check and the tests.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))


def test_readme_exists_and_console_script_resolves() -> None:
    assert (REPO / PYPROJECT["project"]["readme"]).is_file()
    module, _, attr = PYPROJECT["project"]["scripts"]["gridshift"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


HOOKS = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text(encoding="utf-8"))["repos"]


def test_pre_commit_hooks_are_local() -> None:
    assert [repo["repo"] for repo in HOOKS] == ["local"]
    ids = [hook["id"] for hook in HOOKS[0]["hooks"]]
    assert ids == ["ruff-format", "ruff-check", "import-linter"]
    assert all(hook["language"] == "system" for hook in HOOKS[0]["hooks"])


@pytest.mark.parametrize("hook", HOOKS[0]["hooks"], ids=lambda h: h["id"])
def test_pre_commit_tools_are_installed(hook) -> None:
    tool = shlex.split(hook["entry"])[0]
    assert shutil.which(tool), f"{tool} not on PATH: pip install -e '.[dev]'"


@pytest.mark.parametrize("package", ["forecasts", "scaler", "extender", "config"])
def test_packages_are_typed(package) -> None:
    assert (REPO / package / "py.typed").is_file()


def test_make_check_runs_every_static_check_and_the_unit_tests() -> None:
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^check:(.*)$", makefile, re.MULTILINE)
    assert match is not None
    assert match.group(1).split() == ["lint", "typecheck", "imports", "unit"]
