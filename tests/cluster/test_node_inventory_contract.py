"""The NodeInventory contract (tests/contract/test_node_inventory_contract.py) for the real
`KubeNodeInventory` on the real API server: the same test functions, with a `case` of
nodes `a` and `b` registered on the plane (labelled for this test, which the inventory's
label selector keeps to) and `late` added."""

from __future__ import annotations

import uuid

import pytest
from kubernetes import client as k8s
from prometheus_client import CollectorRegistry

from extender.core.nodes import RegionRules
from extender.inventory import KubeNodeInventory
from tests.cluster.proxied import ProxiedApi
from tests.contract.test_node_inventory_contract import (
    Case,
    test_a_view_does_not_change_under_its_reader,
    test_facts_are_keyed_by_node_name_with_regions,
)

__all__ = [
    "test_a_view_does_not_change_under_its_reader",
    "test_facts_are_keyed_by_node_name_with_regions",
]

pytestmark = pytest.mark.cluster


@pytest.fixture
def case(api: ProxiedApi) -> Case:
    mark = {"gridshift.test/contract": uuid.uuid4().hex[:12]}
    api.gpu_node("a", "eu-west-1", labels=mark)
    api.gpu_node("b", "eu-central-1", labels=mark)
    inv = KubeNodeInventory(
        k8s.CoreV1Api(api.client()),
        rules=RegionRules(aliases={"eu-west-1": "IE", "eu-central-1": "DE"}),
        registry=CollectorRegistry(),
        label_selector=",".join(f"{k}={v}" for k, v in mark.items()),
    )
    inv.relist()

    def add() -> None:
        api.gpu_node("late", "eu-west-1", labels=mark)
        inv.relist()

    return inv, add
