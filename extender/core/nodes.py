"""Node JSON (as the API server or kube-scheduler sends it) -> `NodeFacts` (pure).

Region rules: the one region model (`forecasts.regions.RegionResolver`): an alias of the
node's zone or region label, a region label naming a configured region, the carbon regions'
`match` rules (a node in `eu-west-2` is in `GB` by default), the default region.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from extender.core.energy import ANNOTATION_KEY, decode_annotation
from extender.core.scoring import GPU_RESOURCE, NodeFacts, gpu_quantity
from forecasts.regions import DEFAULT_REGION_LABELS, DEFAULT_ZONE_LABELS, RegionResolver

__all__ = [
    "DEFAULT_REGION_LABELS",
    "DEFAULT_ZONE_LABELS",
    "RegionRules",
    "build_node_facts",
    "gpu_count",
    "node_facts",
]

#: The region model is shared with the scaler (`forecasts.regions.RegionResolver`).
RegionRules = RegionResolver


def _str_map(value: object, *, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(value).__name__}")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            raise ValueError(f"{where}.{k}: expected a string, got {type(v).__name__}")
        out[str(k)] = v
    return out


def gpu_count(*blocks: Mapping[str, object] | None) -> int:
    """`nvidia.com/gpu` from the first of `allocatable`, `capacity` that has it (else 0)."""
    for block in blocks:
        raw = None if block is None else block.get(GPU_RESOURCE)
        if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            return gpu_quantity(raw)
        if isinstance(raw, str) and raw.strip().isdigit():
            return gpu_quantity(raw)  # ValueError for "²" or 5,000 digits
    return 0


def build_node_facts(
    name: str,
    *,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    gpus: int,
    rules: RegionRules,
    with_gpu_energy: bool = True,
) -> NodeFacts:
    """NodeFacts from a node's fields. An unusable GPU energy annotation is not an error:
    the node simply has no GPU facts. `with_gpu_energy=False` skips decoding it."""
    gpu = None
    raw = annotations.get(ANNOTATION_KEY) if with_gpu_energy else None
    if raw is not None:
        gpu, _problem = decode_annotation(raw)
    return NodeFacts(
        name=name,
        region=rules.region_for(labels),
        zone=rules.zone_for(labels),
        gpu_capacity=gpus,
        gpu=gpu,
    )


def node_facts(obj: Mapping[str, Any], *, rules: RegionRules, where: str = "node") -> NodeFacts:
    """Facts of one v1.Node object (parsed JSON); raises `ValueError` naming the field."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(obj).__name__}")
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise ValueError(f"{where}.metadata: missing or not an object")
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}.metadata.name: missing or not a non-empty string")
    status = obj.get("status")
    blocks: list[Mapping[str, object] | None] = []
    if isinstance(status, Mapping):
        for key in ("allocatable", "capacity"):
            block = status.get(key)
            blocks.append(block if isinstance(block, Mapping) else None)
    return build_node_facts(
        name,
        labels=_str_map(meta.get("labels"), where=f"{where}.metadata.labels"),
        annotations=_str_map(meta.get("annotations"), where=f"{where}.metadata.annotations"),
        gpus=gpu_count(*blocks),
        rules=rules,
    )
