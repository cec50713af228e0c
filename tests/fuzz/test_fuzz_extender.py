"""Fuzzing the extender's request parsing (hypothesis).

Aspects: any body (random bytes, random JSON, ExtenderArgs-shaped documents with wrong
types, nulls, huge/negative numbers, odd annotations and labels) for filter and prioritize
either parses or raises `WireError` with a 4xx status and a message; nothing else escapes.
Default profile: 60 cases per test; `HYPOTHESIS_PROFILE=fuzz` (`make fuzz`): 10,000.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extender.core.nodes import RegionRules
from extender.server import ParsedArgs, WireError, parse_args
from tests.fuzz import timeout_s

pytestmark = pytest.mark.timeout(timeout_s(60))

RULES = RegionRules(aliases={"eu-west-1": "IE"})
VERBS = st.sampled_from(["filter", "prioritize"])
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20)
)
ANY_JSON: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=12,
)
ANNOTATIONS = st.dictionaries(
    st.sampled_from(
        [
            "gridshift.io/max-gco2-per-kwh",
            "gridshift.io/opt-out",
            "gridshift.io/gpu-watts",
            "gridshift.io/deadline",
            "other",
        ]
    ),
    st.one_of(
        st.sampled_from(["100", "-1", "nan", "1e999", "true", "", "x"]), st.text(max_size=10)
    ),
    max_size=3,
)
LABELS = st.dictionaries(
    st.sampled_from(
        [
            "topology.kubernetes.io/region",
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
            "nvidia.com/gpu.product",
        ]
    ),
    st.text(max_size=12),
    max_size=3,
)
META = st.fixed_dictionaries(
    {"name": st.text(max_size=12) | SCALARS},
    optional={
        "namespace": st.text(max_size=8),
        "labels": LABELS | ANY_JSON,
        "annotations": ANNOTATIONS | ANY_JSON,
    },
)
NODE = st.fixed_dictionaries(
    {"metadata": META | ANY_JSON},
    optional={"status": ANY_JSON, "spec": ANY_JSON},
)
POD = st.fixed_dictionaries(
    {"metadata": META | ANY_JSON},
    optional={"spec": st.fixed_dictionaries({}, optional={"containers": ANY_JSON}) | ANY_JSON},
)
ARGS = st.fixed_dictionaries(
    {},
    optional={
        "Pod": POD | ANY_JSON,
        "Nodes": st.none()
        | st.fixed_dictionaries({"items": st.lists(NODE, max_size=4) | ANY_JSON}),
        "NodeNames": st.none() | st.lists(st.text(max_size=10) | SCALARS, max_size=5),
    },
)


def _check(body: bytes, verb: str) -> None:
    refused: WireError | None = None
    try:
        parsed = parse_args(body, rules=RULES, verb=verb)
    except WireError as exc:
        refused = exc
    if refused is None:
        assert isinstance(parsed, ParsedArgs)
    else:
        assert 400 <= refused.status < 500
        assert str(refused)


@given(st.binary(max_size=400), VERBS)
def test_any_bytes(body: bytes, verb: str) -> None:
    _check(body, verb)


@given(ANY_JSON, VERBS)
def test_any_json(doc: Any, verb: str) -> None:
    _check(json.dumps(doc).encode(), verb)


@given(ARGS, VERBS)
def test_extender_args_shaped(doc: Any, verb: str) -> None:
    _check(json.dumps(doc).encode(), verb)
