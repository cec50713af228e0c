"""The NodeInventory role: `FakeNodeInventory` and the real `KubeNodeInventory` (driven by the
kubernetes client against a local API stand-in) honour the same contract: `facts()` maps
node name -> NodeFacts with that name, views do not change under the reader when the source
updates, and `synced` says whether the facts reflect the cluster."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from prometheus_client import CollectorRegistry

from extender.core.nodes import RegionRules
from extender.core.scoring import NodeFacts
from extender.inventory import KubeNodeInventory
from extender.refresh import NodeInventory
from tests.fakes import FakeNodeInventory
from tests.integration.kube_api import FakeApiServer, make_node

# (source, add a node "late" and let the source see it)
Case = tuple[NodeInventory, Callable[[], None]]


def fake_case() -> Iterator[Case]:
    source = FakeNodeInventory(
        {"a": NodeFacts("a", region="IE"), "b": NodeFacts("b", region="DE")}, synced=True
    )

    def add() -> None:
        source.nodes["late"] = NodeFacts("late", region="IE")

    yield source, add


def inventory_case() -> Iterator[Case]:
    with FakeApiServer() as server:
        server.nodes = {
            "a": make_node("a", "eu-west-1"),
            "b": make_node("b", "eu-central-1"),
        }
        inv = KubeNodeInventory(
            server.api(),
            rules=RegionRules(aliases={"eu-west-1": "IE", "eu-central-1": "DE"}),
            registry=CollectorRegistry(),
        )
        inv.relist()

        def add() -> None:
            server.nodes["late"] = make_node("late", "eu-west-1")
            inv.relist()

        yield inv, add


@pytest.fixture(
    params=[
        pytest.param(fake_case, id="FakeNodeInventory"),
        pytest.param(inventory_case, id="KubeNodeInventory", marks=pytest.mark.integration),
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
