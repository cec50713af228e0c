"""Every test under tests/fuzz carries the `fuzz` marker, so the default tier skips it (the
schemathesis and hypothesis runs take minutes); `make test-integration` and `make fuzz` run it."""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.fuzz)
