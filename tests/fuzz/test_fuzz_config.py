"""Fuzzing configuration loading (hypothesis).

Aspects: any file text (random bytes, random YAML/JSON documents, mutations of a valid
config), any GRIDSHIFT_* environment and any `--set` override either loads or raises one
`ConfigError` naming the problems; nothing else escapes. Default profile: 60 cases per test;
`HYPOTHESIS_PROFILE=fuzz` (`make fuzz`): 10,000.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from config.errors import ConfigError
from config.loading import Override, load_config
from config.settings import Settings
from tests.fuzz import timeout_s

# 60 cases per test in the unit run: more than the 2 s unit budget on a shared machine
pytestmark = pytest.mark.timeout(timeout_s(60))

KEYS = st.sampled_from(
    [
        "prometheus",
        "carbon",
        "scaler",
        "extender",
        "server",
        "forecast",
        "url",
        "timeout_seconds",
        "tick_interval_seconds",
        "workloads",
        "name",
        "min_replicas",
        "max_replicas",
        "regions",
        "token",
        "listen",
        "state_file",
        "x",
    ]
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30)
)
DOCS: st.SearchStrategy[Any] = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=20,
)


def _load(text: str | bytes, *, environ: dict[str, str] | None = None, overrides=()) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "gridshift.yaml"
        path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "replace"))
        problem = ""
        try:
            load_config(
                model=Settings, environ=environ or {}, config_file=path, overrides=overrides
            )
        except ConfigError as exc:
            problem = str(exc) or "(empty message)"
        assert problem != "(empty message)"  # a refusal always says something


@given(st.binary(max_size=300))
def test_any_bytes(raw: bytes) -> None:
    _load(raw)


@given(DOCS)
def test_any_yaml_document(doc: Any) -> None:
    _load(yaml.safe_dump(doc))


@given(DOCS)
def test_any_json_document(doc: Any) -> None:
    _load(json.dumps(doc))


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS",
                "GRIDSHIFT_PROMETHEUS__URL",
                "GRIDSHIFT_SERVER__LISTEN",
                "GRIDSHIFT_SCALER__WORKLOADS",
                "GRIDSHIFT_CARBON",
                "GRIDSHIFT_X",
                "GRIDSHIFT_SCALER__STATE_FILE",
            ]
        ),
        st.text(max_size=40),
        max_size=4,
    )
)
def test_any_environment(environ: dict[str, str]) -> None:
    _load("{}", environ=environ)


@given(
    st.lists(
        st.tuples(st.lists(KEYS, min_size=1, max_size=3).map(".".join), st.text(max_size=30)),
        max_size=3,
    )
)
def test_any_set_override(pairs: list[tuple[str, str]]) -> None:
    _load("{}", overrides=[Override(path=p, value=v) for p, v in pairs])
