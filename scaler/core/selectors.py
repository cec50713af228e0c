"""Kubernetes label selectors: the `labels.Parse` grammar and matching. Pure.

Grammar (apimachinery `pkg/labels/selector.go`), requirements joined by commas:
`k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k` (exists), `!k` (does not exist),
`k>3`, `k<3` (integers). Keys are qualified names (`[prefix/]name`), values label values.
Semantics: `=`/`in` need the key; `!=`/`notin` also match when the key is absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["LabelSelector", "Operator", "Requirement", "SelectorError", "parse_selector"]


class SelectorError(ValueError):
    """A label selector that `labels.Parse` would reject; the message says where and why."""


class Operator(StrEnum):
    EQUALS = "="
    DOUBLE_EQUALS = "=="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"


_NAME_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_RE = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
_VALUE_RE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_SPECIAL = "!=(),<>"


def _check_key(key: str) -> None:
    prefix, sep, name = key.rpartition("/")
    if sep and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN_RE.fullmatch(prefix)):
        raise SelectorError(f"invalid label key {key!r}: prefix must be a DNS-1123 subdomain")
    if not name or len(name) > 63 or not _NAME_RE.fullmatch(name):
        raise SelectorError(
            f"invalid label key {key!r}: name must be 1-63 alphanumerics, '-', '_' or '.', "
            "starting and ending alphanumeric"
        )


def _check_value(value: str) -> None:
    if len(value) > 63 or not _VALUE_RE.fullmatch(value):
        raise SelectorError(
            f"invalid label value {value!r}: at most 63 alphanumerics, '-', '_' or '.', "
            "starting and ending alphanumeric"
        )


@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        present = self.key in labels
        if op in (Operator.EQUALS, Operator.DOUBLE_EQUALS, Operator.IN):
            return present and labels[self.key] in self.values
        if op in (Operator.NOT_EQUALS, Operator.NOT_IN):
            return not present or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return present
        if op is Operator.DOES_NOT_EXIST:
            return not present
        if not present:
            return False
        try:
            actual = int(labels[self.key])
        except ValueError:
            return False
        bound = int(self.values[0])
        return actual > bound if op is Operator.GREATER_THAN else actual < bound

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return f"!{self.key}"
        if op in (Operator.IN, Operator.NOT_IN):
            return f"{self.key} {op.value} ({','.join(sorted(self.values))})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, op.value)
        return f"{self.key}{symbol}{self.values[0]}"


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """All requirements must hold (AND). The empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in sorted(self.requirements, key=lambda r: r.key))


def _tokenize(text: str) -> list[tuple[str, str, int]]:
    """Tokens as (kind, text, position); kinds: id, op, (, ), ','."""
    tokens: list[tuple[str, str, int]] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "(),":
            tokens.append((ch, ch, i))
            i += 1
        elif ch in "!=<>":
            two = text[i : i + 2]
            if two in ("!=", "=="):
                tokens.append(("op", two, i))
                i += 2
            else:
                tokens.append(("op", ch, i))
                i += 1
        else:
            start = i
            while i < len(text) and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            tokens.append(("id", text[start:i], start))
    return tokens


def parse_selector(text: str) -> LabelSelector:
    """Parse a selector as `labels.Parse` does; raises SelectorError (a ValueError)."""
    if not text.strip():
        return LabelSelector()
    return _Parser(text).selector()


class _Parser:
    """Recursive descent over the tokens: requirements separated by commas."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    def peek(self) -> tuple[str, str, int] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def fail(self, message: str) -> SelectorError:
        token = self.peek()
        where = f"at position {token[2]}" if token else "at end of input"
        return SelectorError(f"unable to parse label selector {self.text!r}: {message} {where}")

    def selector(self) -> LabelSelector:
        requirements: list[Requirement] = []
        while True:
            requirements.append(self.requirement())
            token = self.peek()
            if token is None:
                break
            if token[0] != ",":
                raise self.fail("expected ',' between requirements")
            self.pos += 1
        return LabelSelector(tuple(requirements))

    def requirement(self) -> Requirement:
        """`!key`, `key`, `key OP value` or `key in|notin (values)`."""
        token = self.peek()
        if token is None:
            raise self.fail("expected a requirement")
        negate = token == ("op", "!", token[2])
        if negate:
            self.pos += 1
            token = self.peek()
        if token is None or token[0] != "id":
            raise self.fail("expected a label key")
        key = token[1]
        if key in ("in", "notin"):
            raise self.fail(f"found keyword {key!r}, expected a label key")
        _check_key(key)
        self.pos += 1
        if negate:
            return Requirement(key, Operator.DOES_NOT_EXIST)
        nxt = self.peek()
        if nxt is None or nxt[0] == ",":
            return Requirement(key, Operator.EXISTS)
        if nxt[0] == "op":
            self.pos += 1
            return self.comparison(key, nxt[1])
        if nxt[0] == "id" and nxt[1] in ("in", "notin"):
            self.pos += 1
            return self.membership(key, nxt[1])
        raise self.fail(f"expected an operator after key {key!r}")

    def comparison(self, key: str, symbol: str) -> Requirement:
        """`key>N`, `key<N` (integers), `key=v`, `key==v`, `key!=v`."""
        if symbol in (">", "<"):
            value = self.value()
            try:
                int(value)
            except ValueError:
                raise SelectorError(
                    f"unable to parse label selector {self.text!r}: "
                    f"{key}{symbol}{value!r} needs an integer value"
                ) from None
            op = Operator.GREATER_THAN if symbol == ">" else Operator.LESS_THAN
            return Requirement(key, op, (value,))
        if symbol in ("=", "==", "!="):
            value = self.value()
            op = {"=": Operator.EQUALS, "==": Operator.DOUBLE_EQUALS}.get(
                symbol, Operator.NOT_EQUALS
            )
            return Requirement(key, op, (value,))
        raise self.fail(f"unexpected operator {symbol!r}")

    def membership(self, key: str, word: str) -> Requirement:
        """`key in (a, b)` / `key notin (a, b)`; `()`, `(a,)` and `(,a)` hold ""."""
        if (self.peek() or ("",))[0] != "(":
            raise self.fail(f"expected '(' after {word!r}")
        self.pos += 1
        values: list[str] = []
        expecting = True  # a value may follow
        while True:
            token = self.peek()
            if token is None:
                raise self.fail("expected ')'")
            self.pos += 1
            if token[0] == ")":
                if expecting:
                    values.append("")
                break
            if token[0] == ",":
                if expecting:
                    values.append("")
                expecting = True
                continue
            if token[0] != "id" or not expecting:
                self.pos -= 1
                raise self.fail("expected a value, ',' or ')'")
            _check_value(token[1])
            values.append(token[1])
            expecting = False
        op = Operator.IN if word == "in" else Operator.NOT_IN
        return Requirement(key, op, tuple(dict.fromkeys(values)))

    def value(self) -> str:
        token = self.peek()
        if token is None or token[0] != "id":
            # `k=` and `k=,x` are legal: the empty value.
            if token is None or token[0] == ",":
                return ""
            raise self.fail("expected a value")
        self.pos += 1
        _check_value(token[1])
        return token[1]
