"""The lock files pin every dependency pyproject.toml declares (runtime in requirements.lock,
runtime + dev in requirements-dev.lock), each with hashes, and the image installs the runtime
lock only; every third-party module the product imports comes from a distribution the runtime
lock pins, every one the tests import (importorskip included) from one the dev lock pins."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    name = re.split(r"[<>=!~\[;( ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(lock: str) -> dict[str, str]:
    text = (ROOT / lock).read_text()
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.M))
    return {re.sub(r"[-_.]+", "-", k).lower(): v for k, v in pins.items()}


PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
RUNTIME = sorted({_name(r) for r in PROJECT["dependencies"]})
DEV = sorted({_name(r) for r in PROJECT["optional-dependencies"]["dev"]})


@pytest.mark.parametrize(("lock", "names"), [("requirements.lock", RUNTIME),
                                             ("requirements-dev.lock", RUNTIME + DEV)])  # fmt: skip
def test_lock_pins_every_declared_dependency(lock: str, names: list[str]) -> None:
    pinned = _pinned(lock)
    assert [n for n in names if n not in pinned] == []


def test_runtime_lock_has_no_dev_tool_and_every_pin_is_hashed() -> None:
    pinned = _pinned("requirements.lock")
    assert not {"pytest", "mypy", "ruff", "schemathesis", "playwright"} & set(pinned)
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", text.split("\n", 2)[2])
    pins = [b for b in blocks if "==" in b]
    assert len(pins) == len(pinned)  # every pin is a block of its own, so each is checked
    assert all("--hash=sha256:" in b for b in pins)


def test_image_installs_the_runtime_lock_only() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r /tmp/requirements.lock" in dockerfile
    assert "requirements-dev.lock" not in dockerfile


def _imported_top_level(packages: list[str]) -> dict[str, str]:
    """Top-level module -> one file that imports it (statements and `pytest.importorskip`)."""
    found: dict[str, str] = {}
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                elif (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "importorskip"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    names = [node.args[0].value]
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


PRODUCT = ["forecasts", "scaler", "extender", "config"]


@pytest.mark.parametrize(
    ("packages", "lock"),
    [
        pytest.param(PRODUCT, "requirements.lock", id="product: runtime lock"),
        pytest.param(["tests"], "requirements-dev.lock", id="tests: dev lock"),
    ],
)
@pytest.mark.timeout(10)  # ~1 s alone (every file parsed, the installed distributions listed)
def test_every_imported_distribution_is_pinned(packages: list[str], lock: str) -> None:
    """What the code imports is installed from the lock it is shipped or tested with: a module
    no installed distribution provides (a test would `importorskip` itself away) or one from a
    distribution the lock does not pin fails here, naming the importing file."""
    local = {*PRODUCT, "tests"}
    provides = importlib.metadata.packages_distributions()
    pinned = _pinned(lock)
    missing = []
    for module, where in sorted(_imported_top_level(packages).items()):
        if module in sys.stdlib_module_names or module in local or module == "__future__":
            continue
        dists = {re.sub(r"[-_.]+", "-", d).lower() for d in provides.get(module, [])}
        if not dists & set(pinned):
            missing.append(f"{module} ({where}): {sorted(dists) or 'not installed'}")
    assert missing == []
