"""Schemathesis against our HTTP APIs' OpenAPI documents, in process (ASGI).

Targets: the status API (`scaler/status_openapi.json`) and the extender webhook
(`extender/openapi.json`), both kept in the repo and checked here against the
implementation: every route the app serves is documented and every documented operation is
served. Checks:
no 5xx, documented status codes, content types and response schemas. Default profile: 60
cases per operation; `HYPOTHESIS_PROFILE=fuzz` (`make fuzz`): 10,000.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from prometheus_client import CollectorRegistry
from schemathesis import checks
from starlette.routing import Route

from extender.core.nodes import RegionRules
from extender.core.scoring import NodeFacts, ScoringPolicy
from extender.server import create_app
from extender.snapshot import ExtenderSnapshot, SnapshotHolder
from forecasts.time import FrozenClock
from scaler.status_api import create_status_app
from tests.fakes import hourly_series
from tests.fuzz import timeout_s
from tests.snapshots import sample_holder

pytestmark = pytest.mark.timeout(timeout_s(300))

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

status_app = create_status_app(sample_holder(), registry=CollectorRegistry())
STATUS_DOC = json.loads((ROOT / "scaler" / "status_openapi.json").read_text())
status_schema = schemathesis.openapi.from_dict(STATUS_DOC)
status_schema.app = status_app

extender_app = create_app(
    SnapshotHolder(
        ExtenderSnapshot(
            taken_at=NOW,
            nodes={"a": NodeFacts("a", region="FR"), "b": NodeFacts("b", region="PL")},
            carbon={"FR": hourly_series("FR", NOW, [50]), "PL": hourly_series("PL", NOW, [650])},
            nodes_synced=True,
        )
    ),
    clock=FrozenClock(NOW),
    policy=ScoringPolicy(),
    rules=RegionRules(),
    registry=CollectorRegistry(),
    max_body_bytes=1 << 20,
)
EXTENDER_DOC = json.loads((ROOT / "extender" / "openapi.json").read_text())
extender_schema = schemathesis.openapi.from_dict(EXTENDER_DOC)
extender_schema.app = extender_app


def _served(app: Any) -> set[tuple[str, str]]:
    return {
        (method.lower(), route.path)
        for route in app.routes
        if isinstance(route, Route) and route.path != "/"
        for method in (route.methods or set()) - {"HEAD"}
    }


@pytest.mark.parametrize(
    ("app", "doc"),
    [(extender_app, EXTENDER_DOC), (status_app, STATUS_DOC)],
    ids=["extender", "status"],
)
def test_document_matches_the_routes(app: Any, doc: dict[str, Any]) -> None:
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert _served(app) == documented


@status_schema.parametrize()
def test_status_api(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate()


# Both are about how strict validation is, not robustness: the extender decodes nodes only as
# deeply as its answer needs (lazy), so malformed items it never reads are accepted, and the
# documented `duration` is a free string that the server parses (bad ones get 400).
LENIENT = [checks.positive_data_acceptance, checks.negative_data_rejection]


@extender_schema.parametrize()
def test_extender_api(case: schemathesis.Case[Any]) -> None:
    case.call_and_validate(excluded_checks=LENIENT)
