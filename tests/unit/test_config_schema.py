"""Reading a settings model's shape (config.schema).

Aspects: readable type names; nodes for models, maps, lists and leaves (aliases included);
secret detection; describe_fields walks nested models and reports required fields and bounds.
"""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, Field, SecretStr

from config.schema import child, describe_fields, field_name, is_secret, node_at, type_name
from tests.unit.demo_settings import DemoSettings, RegionDemo


@pytest.mark.parametrize(
    ("annotation", "text"),
    [
        pytest.param(float, "float", id="plain"),
        pytest.param(float | None, "float | None", id="optional"),
        pytest.param(SecretStr | None, "secret | None", id="secret"),
        pytest.param(Literal["eco", "performance"], "one of 'eco', 'performance'", id="literal"),
        pytest.param(tuple[float, ...], "tuple[float]", id="variadic tuple"),
        pytest.param(dict[str, RegionDemo], "dict[str, RegionDemo]", id="map of models"),
    ],
)
def test_type_name(annotation, text) -> None:
    assert type_name(annotation) == text


def test_nodes_and_aliases() -> None:
    assert node_at(DemoSettings, ("vault", "regions", "GB", "class")) is not None
    assert field_name(RegionDemo, "class") == "region_class"
    assert field_name(RegionDemo, "nope") is None
    region = node_at(DemoSettings, ("vault", "regions", "GB"))
    assert region is not None
    assert region.kind == "model"
    assert is_secret(child(region, "api_key"))
    assert not is_secret(child(region, "zone"))
    assert child(region, 0) is None
    zones = node_at(DemoSettings, ("vault", "zones"))
    assert zones is not None
    assert zones.kind == "list"
    assert child(zones, 3) is not None
    assert child(zones, "x") is None


class Inner(BaseModel):
    name: str = Field(min_length=1, description="why")
    size: int = Field(3, gt=0, le=9)


class Outer(BaseModel):
    inner: Inner | None = None
    items: list[Inner] = Field(default_factory=list)


def test_describe_fields_walks_models_only() -> None:
    docs = {d.path: d for d in describe_fields(Outer, env_prefix="X_")}
    assert list(docs) == ["inner.name", "inner.size", "items"]
    assert docs["inner.name"].required
    assert docs["inner.name"].constraints == ("min length 1",)
    assert docs["inner.name"].description == "why"
    assert docs["inner.size"].constraints == ("> 0", "<= 9")
    assert docs["inner.size"].env == "X_INNER__SIZE"
    assert docs["items"].default == []
