"""Nodes without a cluster (extender/static_nodes.py).

Aspects: a NodeList in YAML or JSON, a bare list and one Node all read; the region comes
from the labels through the same rules as the cluster inventory; unreadable files and bad
items are errors naming the file and the item; the SAMPLE DATA node list has two GPU nodes
in every sample region.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from extender.core.nodes import RegionRules
from extender.static_nodes import NodeFileError, read_node_file, sample_inventory
from forecasts.sources.sample import SAMPLE_REGIONS

RULES = RegionRules(aliases={"eu-central-1": "DE"}, default_region=None)
FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "extender" / "node.json"


def _node(name: str, region: str) -> dict[str, object]:
    return {
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/region": region}},
        "status": {"allocatable": {"nvidia.com/gpu": "2"}},
    }


@pytest.mark.parametrize(
    ("doc", "suffix"),
    [
        pytest.param(
            {"kind": "NodeList", "items": [_node("a", "eu-central-1")]}, "yaml", id="yaml"
        ),
        pytest.param(
            {"apiVersion": "v1", "items": [_node("a", "eu-central-1")]}, "json", id="json"
        ),
        pytest.param([_node("a", "eu-central-1")], "json", id="bare list"),
        pytest.param(_node("a", "eu-central-1"), "yaml", id="one node"),
    ],
)
def test_node_files_read_with_regions(tmp_path: Path, doc: object, suffix: str) -> None:
    path = tmp_path / f"nodes.{suffix}"
    path.write_text(yaml.safe_dump(doc) if suffix == "yaml" else json.dumps(doc))
    inv = read_node_file(path, rules=RULES)
    assert inv.synced
    (facts,) = inv.facts().values()
    assert (facts.name, facts.region, facts.gpu_capacity) == ("a", "DE", 2)
    assert inv.describe() == f"1 nodes from {path} in DE"


def test_a_real_node_object_reads(tmp_path: Path) -> None:
    node = json.loads(FIXTURE.read_text())
    path = tmp_path / "nodes.json"
    path.write_text(json.dumps({"kind": "NodeList", "items": [node]}))
    (facts,) = read_node_file(path, rules=RULES).facts().values()
    assert facts.name == "gpu-a-001"
    assert facts.gpu_capacity == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(None, "No such file", id="missing"),
        pytest.param("items: [", "not YAML/JSON", id="syntax"),
        pytest.param("kind: NodeList\nitems: 3\n", "items: expected a list", id="items"),
        pytest.param("kind: NodeList\nitems: []\n", "no nodes", id="empty"),
        pytest.param("42\n", "expected a NodeList", id="scalar"),
        pytest.param("- metadata: {}\n", r"items\[0\]\.metadata\.name", id="nameless node"),
    ],
)
def test_bad_node_files_name_the_problem(tmp_path: Path, text: str | None, message: str) -> None:
    path = tmp_path / "nodes.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(NodeFileError, match=message) as info:
        read_node_file(path, rules=RULES)
    assert str(path) in str(info.value)


def test_sample_nodes_cover_every_sample_region() -> None:
    inv = sample_inventory(rules=RULES)
    facts = inv.facts()
    assert len(facts) == 6
    assert {f.region for f in facts.values()} == set(SAMPLE_REGIONS)
    assert facts["gpu-sample-wind-1"].gpu_capacity == 8
    assert "SAMPLE DATA" in inv.describe()
