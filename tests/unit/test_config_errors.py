"""The shared error printer (config.errors).

Aspects: any pydantic ValidationError becomes the readable list (path, message, value, source);
union/validator tags are dropped from paths; secrets are masked by schema, by SecretStr type and
by key name, and scrubbed from the text; long values are shortened; ConfigError's str/repr.
"""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from config.errors import (
    MASK,
    ConfigError,
    Problem,
    display_value,
    format_path,
    problems_from_validation_error,
    render_errors,
    scrub,
)


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    weight_kg: float = Field(gt=0)


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: SecretStr
    count: int | str = 0
    items: list[Item] = Field(default_factory=list)
    limit: int = 0

    @field_validator("limit")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("limit must be even")
        return value


def errors_of(data: dict[str, object]) -> ValidationError:
    with pytest.raises(ValidationError) as exc:
        Wire.model_validate(data)
    return exc.value


def test_validation_error_to_problems() -> None:
    exc = errors_of(
        {
            "token": ["s3cret-value"],
            "items": [{"name": "a", "weight_kg": -1}, {"nam": "b", "weight_kg": 1}],
            "limit": 3,
            "cnt": 1,
        }
    )
    found = {p.path: p for p in problems_from_validation_error(exc, model=Wire)}
    assert set(found) == {
        "token",
        "items[0].weight_kg",
        "items[1].name",
        "items[1].nam",
        "limit",
        "cnt",
    }
    assert found["token"].value == MASK
    assert found["items[0].weight_kg"].value == "-1"
    assert found["items[1].name"].message == "required, but not set"
    assert found["items[1].name"].value is None
    assert found["items[1].nam"].message == "unknown key (did you mean 'name'?)"
    assert found["limit"].message == "limit must be even"
    assert found["cnt"].message == "unknown key (did you mean 'count'?)"


def test_union_tags_are_dropped_from_paths() -> None:
    exc = errors_of({"token": "x", "count": [1]})
    paths = {p.path for p in problems_from_validation_error(exc, model=Wire)}
    assert paths == {"count"}


def test_without_model_secrets_are_masked_by_type_and_name() -> None:
    exc = errors_of({"token": 12345678, "items": [{"name": "a", "weight_kg": 0}]})
    text = render_errors(exc)
    assert "12345678" not in text
    assert "token:" in text
    assert "items[0].weight_kg: Input should be greater than 0" in text


def test_render_lists_every_problem_with_count_and_sources() -> None:
    text = render_errors(
        [
            Problem("a.b", "bad", '"x"', "env:GRIDSHIFT_A__B"),
            Problem("", "config file not found", None, "file:/nope.yaml"),
        ]
    )
    assert text.splitlines() == [
        "gridshift: configuration error (2 problems)",
        "  - a.b: bad",
        '      value: "x"  (from env:GRIDSHIFT_A__B)',
        "  - config file not found",
        "      (from file:/nope.yaml)",
    ]
    assert render_errors([Problem("x", "y")], title="bad input").startswith(
        "gridshift: bad input (1 problem)"
    )


def test_scrub_and_long_values() -> None:
    assert scrub("token abcd and ab", {"abcd", "ab"}) == "token *** and ab"
    long = display_value("x" * 500)
    assert len(long) == 80
    assert long.endswith("...")
    assert display_value({"password": "p4ss", "n": 1}) == '{"password": "***", "n": 1}'
    assert display_value(SecretStr("zz")) == MASK


def test_config_error_str_and_repr() -> None:
    err = ConfigError([Problem("a", "bad", MASK)])
    assert "a: bad" in str(err)
    assert repr(err) == "ConfigError(1 problems: ['a'])"
    with pytest.raises(ValueError):
        ConfigError([])


@pytest.mark.parametrize(
    ("loc", "text"),
    [
        pytest.param(("a", "b"), "a.b", id="dotted"),
        pytest.param(("a", 0, "b"), "a[0].b", id="index"),
        pytest.param((), "", id="root"),
    ],
)
def test_format_path(loc, text) -> None:
    assert format_path(loc) == text
