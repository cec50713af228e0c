"""Walking a pydantic model's *shape*: which keys exist, which are secrets, what nests where.

The loader needs this to map `GRIDSHIFT_A__B` and `--set a.b=...` onto fields (and to reject
unknown names with a suggestion), to find `*_file` secret references, and the error printer needs
it to mask secret values and to tidy pydantic's error locations. No I/O here.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, SecretBytes, SecretStr

__all__ = [
    "SECRET_FILE_SUFFIX",
    "FieldDoc",
    "Node",
    "child",
    "describe_fields",
    "field_name",
    "field_names",
    "is_complex",
    "is_secret",
    "node_at",
    "root_node",
    "suggest",
    "type_name",
]

SECRET_FILE_SUFFIX = "_file"
"""`token_file: /run/secrets/token` sets the secret field `token` from that file's contents."""

Kind = Literal["model", "dict", "list", "leaf"]


@dataclass(frozen=True, slots=True)
class Node:
    """One position in the settings tree: what kind of value lives there and its annotation."""

    kind: Kind
    annotation: Any
    model: type[BaseModel] | None = None


def _members(annotation: Any) -> tuple[Any, ...]:
    """The non-None members of `X | Y | None` (or just `(annotation,)`)."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return tuple(a for a in get_args(annotation) if a is not type(None))
    return (annotation,)


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _node(annotation: Any) -> Node:
    for member in _members(annotation):
        if _is_model(member):
            return Node("model", member, member)
    for member in _members(annotation):
        origin = get_origin(member)
        if origin in (dict, Mapping) or member is dict:
            args = get_args(member)
            return Node("dict", args[1] if len(args) == 2 else Any)
        if origin in (list, tuple, set, frozenset, Sequence) or member in (list, tuple):
            args = get_args(member)
            return Node("list", args[0] if args else Any)
    return Node("leaf", annotation)


def root_node(model: type[BaseModel]) -> Node:
    return Node("model", model, model)


def field_names(model: type[BaseModel]) -> list[str]:
    """The keys a model accepts: field names, and aliases where a field has one."""
    names = list(model.model_fields)
    names.extend(f.alias for f in model.model_fields.values() if f.alias and f.alias not in names)
    return names


def child(node: Node, key: str | int) -> Node | None:
    """The node under `key`, or None when `key` does not exist there."""
    if node.kind == "model" and node.model is not None:
        name = field_name(node.model, key) if isinstance(key, str) else None
        return None if name is None else _node(node.model.model_fields[name].annotation)
    if node.kind == "dict" and isinstance(key, str):
        return _node(node.annotation)
    if node.kind == "list" and isinstance(key, int):
        return _node(node.annotation)
    return None


def field_name(model: type[BaseModel], key: str) -> str | None:
    """The canonical field name for `key` (a name or an alias), or None when unknown."""
    if key in model.model_fields:
        return key
    for name, candidate in model.model_fields.items():
        if key in (candidate.alias, candidate.validation_alias):
            return name
    return None


def node_at(model: type[BaseModel], path: Iterable[str | int]) -> Node | None:
    node: Node | None = root_node(model)
    for key in path:
        if node is None:
            return None
        node = child(node, key)
    return node


def is_secret(node: Node | None) -> bool:
    return node is not None and any(
        isinstance(m, type) and issubclass(m, SecretStr | SecretBytes)
        for m in _members(node.annotation)
    )


def is_complex(node: Node) -> bool:
    """Values for this node come as JSON/YAML text from env and flags (pydantic-settings' rule)."""
    return node.kind != "leaf"


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One setting as documented by its declaration: for `gridshift config fields`."""

    path: str
    env: str
    type: str
    default: Any
    required: bool
    constraints: tuple[str, ...]
    description: str
    secret: bool


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type (`float | None`, `list[Workload]`, `secret`)."""
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        return " | ".join(type_name(a) for a in get_args(annotation))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(annotation))
    if origin is not None:
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(map(type_name, args))}]"
    if annotation is type(None):
        return "None"
    if isinstance(annotation, type) and issubclass(annotation, SecretStr | SecretBytes):
        return "secret"
    return getattr(annotation, "__name__", str(annotation))


def _constraints(info: Any) -> tuple[str, ...]:
    out = []
    for meta in getattr(info, "metadata", ()):
        for attr, symbol in _BOUNDS:
            bound = getattr(meta, attr, None)
            if bound is not None:
                out.append(f"{symbol} {bound}")
        for attr, words in (("min_length", "min length"), ("max_length", "max length")):
            bound = getattr(meta, attr, None)
            if bound is not None:
                out.append(f"{words} {bound}")
    return tuple(out)


def describe_fields(
    model: type[BaseModel], *, env_prefix: str = "GRIDSHIFT_", env_delimiter: str = "__"
) -> list[FieldDoc]:
    """Every setting reachable through nested models, in declaration order. Maps and lists
    (of models too) are one entry each: they are set as a whole from env and flags."""
    docs: list[FieldDoc] = []

    def walk(cls: type[BaseModel], loc: tuple[str, ...]) -> None:
        for name, info in cls.model_fields.items():
            node = _node(info.annotation)
            here = (*loc, name)
            if node.kind == "model" and node.model is not None:
                walk(node.model, here)
                continue
            secret = is_secret(node)
            required = info.is_required()
            default = None if required else info.get_default(call_default_factory=True)
            docs.append(
                FieldDoc(
                    path=".".join(here),
                    env=env_prefix + env_delimiter.join(here).upper(),
                    type=type_name(info.annotation),
                    default=default,
                    required=required,
                    constraints=_constraints(info),
                    description=info.description or "",
                    secret=secret,
                )
            )

    walk(model, ())
    return docs
