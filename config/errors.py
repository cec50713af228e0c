"""Readable configuration errors: one `Problem` per mistake, all of them at once, secrets masked.

Every command turns a `ConfigError` or a pydantic `ValidationError` into the same list with
`render_errors` and exits 2 (`config.cli` does that for you: raise either from a command).

    gridshift: configuration error (2 problems)
      - scaler.tick_interval_seconds: Input should be greater than 0
          value: -5  (from file:gridshift.yaml, line 3, column 26)
      - scaler.tick_intervall_seconds: unknown key (did you mean 'tick_interval_seconds'?)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError

from config.schema import Node, child, field_names, is_secret, node_at, root_node, suggest

__all__ = [
    "EXIT_CONFIG_ERROR",
    "MASK",
    "ConfigError",
    "Problem",
    "display_value",
    "format_path",
    "looks_secret",
    "problems_from_validation_error",
    "render_errors",
    "scrub",
    "unknown_key",
]

MASK = "***"
EXIT_CONFIG_ERROR = 2
_MAX_VALUE_CHARS = 80
_MIN_SCRUB_CHARS = 4
_SECRETISH = ("token", "password", "secret", "apikey", "api_key", "credential", "private")

Loc = tuple[str | int, ...]
SourceOf = Callable[[Loc], str | None]


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake: where (dotted path), what is wrong, the offending value (already masked)."""

    path: str
    message: str
    value: str | None = None
    source: str | None = None

    def render(self) -> str:
        head = f"  - {self.path}: {self.message}" if self.path else f"  - {self.message}"
        tail = []
        if self.value is not None:
            tail.append(f"value: {self.value}")
        if self.source:
            tail.append(f"(from {self.source})")
        return head + ("\n      " + "  ".join(tail) if tail else "")


class ConfigError(Exception):
    """Invalid configuration: carries every `Problem` found, never a secret value."""

    def __init__(self, problems: Sequence[Problem], *, title: str = "configuration error") -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems: tuple[Problem, ...] = tuple(problems)
        self.title = title
        super().__init__(render_errors(self))

    def __repr__(self) -> str:
        return f"ConfigError({len(self.problems)} problems: {[p.path for p in self.problems]!r})"


def format_path(loc: Iterable[str | int]) -> str:
    """`('carbon', 'regions', 0, 'zone')` -> `carbon.regions[0].zone`."""
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out


def scrub(text: str, secrets: Collection[str]) -> str:
    """Replace every known secret value (of 4+ characters) in `text` with `***`."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_SCRUB_CHARS:
            text = text.replace(secret, MASK)
    return text


def looks_secret(key: str | int) -> bool:
    """Whether a key *name* suggests a secret (for unknown keys, whose schema says nothing)."""
    return isinstance(key, str) and any(word in key.lower() for word in _SECRETISH)


def _masked(value: Any, node: Node | None) -> Any:
    if isinstance(value, SecretStr | SecretBytes) or is_secret(node):
        return MASK if value not in (None, "") else value
    if isinstance(value, Mapping):
        return {
            k: (
                MASK
                if looks_secret(k) and (node is None or child(node, k) is None)
                else _masked(v, None if node is None else child(node, k))
            )
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_masked(v, None if node is None else child(node, i)) for i, v in enumerate(value)]
    return value


def display_value(value: Any, node: Node | None = None) -> str:
    """A short, one-line rendering of `value` with anything secret at or under `node` masked."""
    masked = _masked(value, node)
    if masked == MASK:
        return MASK
    try:
        text = json.dumps(masked, default=str, ensure_ascii=False)
    except (TypeError, ValueError):  # pragma: no cover - default=str makes this unreachable
        text = repr(masked)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _clean_loc(loc: Sequence[str | int], model: type[BaseModel] | None) -> tuple[Loc, Node | None]:
    """Drop pydantic's union/validator tags (`'function-after[...]'`, `'int'`) from a location."""
    node: Node | None = None if model is None else root_node(model)
    kept: list[str | int] = []
    for key in loc:
        nxt = None if node is None else child(node, key)
        if nxt is None and node is not None and isinstance(key, str) and _is_tag(key):
            continue
        kept.append(key)
        node = nxt
    return tuple(kept), node


def _is_tag(key: str) -> bool:
    return "[" in key or key in {"int", "float", "str", "bool", "list", "dict", "none"}


def unknown_key(parent: Node | None, key: str | int) -> tuple[str, bool]:
    """The message for an unknown `key` under `parent` (with a "did you mean"), and whether
    its value must be masked: a secret-like name, or a near-miss of a secret field's name."""
    if parent is None or parent.kind != "model" or parent.model is None:
        return "unknown key", looks_secret(key)
    moved: Mapping[str, str] = getattr(parent.model, "moved_fields", {})
    if str(key) in moved:
        return f"unknown key: {moved[str(key)]}", looks_secret(key)
    names = field_names(parent.model)
    hint = suggest(str(key), names)
    more = f"did you mean '{hint}'?" if hint else "valid keys here: " + ", ".join(names)
    secretish = looks_secret(key) or (hint is not None and is_secret(child(parent, hint)))
    return f"unknown key ({more})", secretish


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def problems_from_validation_error(
    exc: ValidationError,
    *,
    model: type[BaseModel] | None = None,
    source_of: SourceOf | None = None,
) -> list[Problem]:
    """One `Problem` per pydantic error; `model` (the validated class) enables masking by schema
    and "did you mean" hints; `source_of(loc)` says which layer supplied the value."""
    problems = []
    for err in exc.errors(include_url=False):
        loc, node = _clean_loc(err.get("loc", ()), model)
        kind = err.get("type")
        value: str | None
        if kind == "missing":
            message, value = "required, but not set", None
        elif kind == "extra_forbidden" and loc:
            parent = node_at(model, loc[:-1]) if model is not None else None
            message, secretish = unknown_key(parent, loc[-1])
            value = MASK if secretish else display_value(err.get("input"))
        else:
            message = _message(err)
            secretish = model is None and any(looks_secret(k) for k in loc)
            value = MASK if secretish else display_value(err.get("input"), node)
        source = source_of(loc) if source_of is not None else None
        problems.append(Problem(format_path(loc), message, value, source))
    return problems


def render_errors(
    error: ConfigError | ValidationError | Sequence[Problem],
    *,
    title: str | None = None,
    secrets: Collection[str] = (),
    model: type[BaseModel] | None = None,
) -> str:
    """The readable list for any configuration failure. A `ValidationError` is converted with
    `problems_from_validation_error` (pass the validated `model` for schema-aware masking);
    every known `secrets` value is scrubbed from the text."""
    if isinstance(error, ConfigError):
        problems: Sequence[Problem] = error.problems
        title = title or error.title
    elif isinstance(error, ValidationError):
        problems = problems_from_validation_error(error, model=model)
    else:
        problems = error
    title = title or "configuration error"
    count = f"{len(problems)} problem" + ("" if len(problems) == 1 else "s")
    lines = [f"gridshift: {title} ({count})", *(p.render() for p in problems)]
    return scrub("\n".join(lines), secrets)
