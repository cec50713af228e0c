"""The NodeInventory role: `FakeNodeInventory` and the real `KubeNodeInventory` (driven by the
kubernetes client against the real API server: these tests, imported by
tests/cluster/test_node_inventory_contract.py with its own `case`) honour the same contract:
`facts()` maps node name -> NodeFacts with that name, views do not change under the reader
when the source updates, and `synced` says whether the facts reflect the cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from extender.core.scoring import NodeFacts
from extender.refresh import NodeInventory
from tests.fakes import FakeNodeInventory

# (source, add a node "late" and let the source see it)
Case = tuple[NodeInventory, Callable[[], None]]


def fake_case() -> Iterator[Case]:
    source = FakeNodeInventory(
        {"a": NodeFacts("a", region="IE"), "b": NodeFacts("b", region="DE")}, synced=True
    )

    def add() -> None:
        source.nodes["late"] = NodeFacts("late", region="IE")

    yield source, add


@pytest.fixture(
    params=[
        pytest.param(fake_case, id="FakeNodeInventory"),
    ]
)
def case(request: pytest.FixtureRequest) -> Iterator[Case]:
    yield from request.param()


def test_facts_are_keyed_by_node_name_with_regions(case: Case) -> None:
    source, _ = case
    facts = source.facts()
    assert source.synced
    assert set(facts) == {"a", "b"}
    assert all(f.name == name for name, f in facts.items())
    assert (facts["a"].region, facts["b"].region) == ("IE", "DE")


def test_a_view_does_not_change_under_its_reader(case: Case) -> None:
    source, add = case
    before = source.facts()
    add()
    assert set(before) == {"a", "b"}
    assert set(source.facts()) == {"a", "b", "late"}
