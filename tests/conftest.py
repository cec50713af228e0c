"""Shared fixtures: a clean GRIDSHIFT_* environment for every test, and the shared data path.

Aspects: environment isolation; locating ../shared/data (GRIDSHIFT_SHARED_DATA overrides)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("fuzz", deadline=None, max_examples=10_000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout, or `$GRIDSHIFT_SHARED_DATA`."""
    env = os.environ.get("GRIDSHIFT_SHARED_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _clean_gridshift_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("GRIDSHIFT_") and key != "GRIDSHIFT_SHARED_DATA":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture(autouse=True)
def _unfreeze_gc() -> Iterator[None]:
    """The extender freezes its snapshots out of the cyclic GC (extender/refresh.py); undo it
    after each test so one test's objects never outlive it in the permanent generation."""
    yield
    if gc.get_freeze_count():
        gc.unfreeze()


@pytest.fixture
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data not found at {path} (set GRIDSHIFT_SHARED_DATA to its folder)")
    return path
