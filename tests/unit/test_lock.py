"""The lock files pin every dependency pyproject.toml declares (runtime in requirements.lock,
runtime + dev in requirements-dev.lock), each with hashes, and the image installs the runtime
lock only."""

from __future__ import annotations

import re
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
