"""Hypothesis/schemathesis fuzzing."""

from __future__ import annotations

import os


def timeout_s(default: int) -> int:
    """A module's per-test timeout: `default` in the normal run; 0 (none) under the `fuzz`
    hypothesis profile, where each test runs 10,000 cases."""
    return 0 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else default
