"""Nodes without a cluster: a NodeList file, or the bundled SAMPLE DATA nodes.

`gridshift extender --nodes FILE` (`extender.nodes_file`) serves the nodes of a NodeList
(`kubectl get nodes -o yaml` / `-o json`), a YAML/JSON list of Node objects, or one Node,
read once at start; nothing watches a cluster. With neither a file nor Kubernetes
credentials the extender serves `sample_node_list()`: six synthetic GPU nodes, two in each
SAMPLE DATA region (`sample-solar`, `sample-wind`, `sample-hydro`, whose intensity the
sample carbon generator answers offline), labelled SAMPLE DATA like everything else sample.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from extender.core.nodes import RegionRules, node_facts
from extender.core.scoring import NodeFacts
from forecasts.sources.sample import SAMPLE_REGIONS

__all__ = [
    "SAMPLE_NODE_REGIONS",
    "NodeFileError",
    "StaticNodeInventory",
    "node_facts_of",
    "read_node_file",
    "sample_inventory",
    "sample_node_list",
]

SAMPLE_NODE_REGIONS = SAMPLE_REGIONS  # the regions the sample carbon generator answers


class NodeFileError(ValueError):
    """The node file cannot be read or holds no usable Node; the message names the problem."""


class StaticNodeInventory:
    """A fixed set of node facts (the `NodeInventory` role, always synced)."""

    def __init__(self, facts: Mapping[str, NodeFacts], *, origin: str) -> None:
        self._view: Mapping[str, NodeFacts] = MappingProxyType(dict(facts))
        self.origin = origin

    def facts(self) -> Mapping[str, NodeFacts]:
        return self._view

    @property
    def synced(self) -> bool:
        return True

    def describe(self) -> str:
        regions = sorted({f.region for f in self._view.values() if f.region})
        return f"{len(self._view)} nodes from {self.origin}" + (
            f" in {', '.join(regions)}" if regions else ""
        )


def _items(doc: Any, *, where: str) -> list[Any]:
    if isinstance(doc, list):
        return doc
    if isinstance(doc, Mapping):
        if doc.get("kind") == "NodeList" or "items" in doc:
            items = doc.get("items")
            if not isinstance(items, list):
                raise NodeFileError(f"{where}: items: expected a list of Node objects")
            return items
        return [doc]  # one Node
    raise NodeFileError(f"{where}: expected a NodeList, a list of Nodes or one Node")


def node_facts_of(doc: Any, *, rules: RegionRules, where: str) -> dict[str, NodeFacts]:
    """Facts of every Node in a parsed NodeList/list/Node (`NodeFileError` names the item)."""
    facts: dict[str, NodeFacts] = {}
    for i, item in enumerate(_items(doc, where=where)):
        try:
            f = node_facts(item, rules=rules, where=f"{where}: items[{i}]")
        except ValueError as exc:
            raise NodeFileError(str(exc)) from None
        facts[f.name] = f
    if not facts:
        raise NodeFileError(f"{where}: no nodes")
    return facts


def read_node_file(path: str | Path, *, rules: RegionRules) -> StaticNodeInventory:
    """The nodes of a NodeList file (YAML or JSON)."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise NodeFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise NodeFileError(f"{path}: not YAML/JSON: {exc}") from None
    return StaticNodeInventory(node_facts_of(doc, rules=rules, where=str(path)), origin=str(path))


def _sample_node(name: str, region: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "gridshift.io/region": region,
                "kubernetes.io/hostname": name,
                "nvidia.com/gpu.present": "true",
                "gridshift.io/sample-data": "true",
            },
            "annotations": {"gridshift.io/note": "SAMPLE DATA: a synthetic node"},
        },
        "status": {
            "capacity": {"cpu": "64", "memory": "512Gi", "nvidia.com/gpu": str(gpus)},
            "allocatable": {"cpu": "63", "memory": "500Gi", "nvidia.com/gpu": str(gpus)},
        },
    }


def sample_node_list() -> dict[str, Any]:
    """The SAMPLE DATA NodeList: `gpu-<region>-1` (8 GPUs) and `gpu-<region>-2` (4 GPUs)
    in each sample region, e.g. `gpu-sample-wind-1`."""
    items = [
        _sample_node(f"gpu-{region}-{i}", region, gpus)
        for region in SAMPLE_NODE_REGIONS
        for i, gpus in ((1, 8), (2, 4))
    ]
    return {"apiVersion": "v1", "kind": "NodeList", "items": items}


def sample_inventory(*, rules: RegionRules) -> StaticNodeInventory:
    facts = node_facts_of(sample_node_list(), rules=rules, where="sample nodes")
    return StaticNodeInventory(facts, origin="the SAMPLE DATA node list")
