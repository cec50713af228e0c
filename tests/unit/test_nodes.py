"""extender.core.nodes: region rules (label order, aliases for regions and zones, default) and
node JSON -> NodeFacts (GPU capacity, the agent annotation, malformed objects named)."""

from __future__ import annotations

import pytest

from extender.core.energy import ANNOTATION_KEY
from extender.core.nodes import RegionRules, node_facts

RULES = RegionRules(aliases={"eu-west-1": "IE", "europe-west4-a": "NL"}, default_region=None)


@pytest.mark.parametrize(
    ("labels", "region"),
    [
        pytest.param({"topology.kubernetes.io/region": "eu-west-1"}, "IE", id="alias"),
        pytest.param({"topology.kubernetes.io/region": "FR"}, "FR", id="raw value"),
        pytest.param(
            {"gridshift.io/region": "DE", "topology.kubernetes.io/region": "eu-west-1"},
            "DE",
            id="own label first",
        ),
        pytest.param(
            {
                "topology.kubernetes.io/region": "europe-west4",
                "topology.kubernetes.io/zone": "europe-west4-a",
            },
            "NL",
            id="zone alias wins",
        ),
        pytest.param({"failure-domain.beta.kubernetes.io/region": "PL"}, "PL", id="legacy"),
        pytest.param({}, None, id="unlabelled"),
    ],
)
def test_region_rules(labels, region) -> None:
    assert RULES.region_for(labels) == region


def test_default_region_for_unlabelled_nodes() -> None:
    assert RegionRules(default_region="GB").region_for({}) == "GB"


def test_node_facts_from_api_json() -> None:
    obj = {
        "metadata": {
            "name": "gpu-a-001",
            "labels": {
                "topology.kubernetes.io/region": "eu-west-1",
                "topology.kubernetes.io/zone": "eu-west-1a",
            },
            "annotations": {ANNOTATION_KEY: '{"v":1,"w":250.5,"gpus":4,"at":1767225600}'},
        },
        "status": {"capacity": {"nvidia.com/gpu": "4"}, "allocatable": {"nvidia.com/gpu": "3"}},
    }
    f = node_facts(obj, rules=RULES)
    assert (f.name, f.region, f.zone, f.gpu_capacity) == ("gpu-a-001", "IE", "eu-west-1a", 3)
    assert f.gpu is not None
    assert f.gpu.power_watts == 250.5


def test_bad_gpu_annotation_means_no_gpu_facts() -> None:
    obj = {"metadata": {"name": "n", "annotations": {ANNOTATION_KEY: "garbage"}}}
    assert node_facts(obj, rules=RULES).gpu is None


@pytest.mark.parametrize(
    ("obj", "fragment"),
    [
        pytest.param([], "node: expected an object", id="not object"),
        pytest.param({}, "node.metadata: missing", id="no metadata"),
        pytest.param({"metadata": {"name": ""}}, "node.metadata.name", id="empty name"),
        pytest.param(
            {"metadata": {"name": "n", "labels": {"a": 1}}},
            "node.metadata.labels.a: expected a string",
            id="label not string",
        ),
        pytest.param(
            {"metadata": {"name": "n", "annotations": []}},
            "node.metadata.annotations: expected an object",
            id="annotations list",
        ),
    ],
)
def test_malformed_nodes_name_the_field(obj, fragment) -> None:
    with pytest.raises(ValueError, match="^" + fragment.replace(".", r"\.")):
        node_facts(obj, rules=RULES)


def test_gpu_count_takes_the_first_block_that_has_gpus() -> None:
    from extender.core.nodes import gpu_count

    assert gpu_count(None, {"nvidia.com/gpu": 2}) == 2
    assert gpu_count({"cpu": "4"}, {"nvidia.com/gpu": "8"}) == 8
    assert gpu_count({"nvidia.com/gpu": "lots"}) == 0
    assert gpu_count() == 0


def test_gpu_energy_decoding_can_be_skipped() -> None:
    from extender.core.nodes import build_node_facts

    annotations = {ANNOTATION_KEY: '{"v":1,"w":250.5,"gpus":4,"at":1767225600}'}
    f = build_node_facts(
        "n", labels={}, annotations=annotations, gpus=4, rules=RULES, with_gpu_energy=False
    )
    assert (f.gpu, f.gpu_capacity) == (None, 4)
