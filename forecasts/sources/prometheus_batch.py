"""Batching many workloads' PromQL into one range query, and splitting the answer (pure).

Two ways, both answering per workload:

- **Grouped families** (the fast one): workloads that share one grouped expression, such as
  `sum by (namespace, workload) (rate(http_requests_total[2m]))`, each name the labels of
  their series (`load.match`); the expression is asked once per tick and `select_series` picks
  each workload's series out of the answer. Prometheus evaluates one aggregation over all
  series, which costs less than the per-workload queries it replaces.
- **Tagged batches** (any expressions): below.

Each workload declares its own PromQL expression (`load.promql`, `power.measured_promql`), so
the batch cannot assume a shared metric or label schema. Instead every distinct expression is
tagged with a label naming its position and the tagged expressions are joined with `or`:

    label_replace(<q0>, "gridshift_query", "0", "", "") or label_replace(<q1>, ...) or ...

`label_replace` with an empty source regex sets the tag on every series of that expression and
changes nothing else, and `or` keeps every series of both sides whose label sets differ, which
distinct tags guarantee. So each expression is evaluated exactly as it would be alone, and the
answer splits back by the tag into the series each query would have returned by itself; the
adapter then applies its one-series rule and the gap rule per query, as for a single query.

The `or`s are nested as a balanced tree (depth log2 n): Prometheus evaluates `a or b` by
hashing both sides, and a left-deep chain of n terms would rehash the growing left side n
times (quadratic in the batch size).

A query whose expression cannot be tagged (a scalar such as `42`, a syntax error) makes the
whole batch fail at parse; the adapter then asks each query alone, so only the broken one
fails, and keeps asking that one alone afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Generic, TypeVar

__all__ = [
    "BATCH_LABEL",
    "SeriesIndex",
    "batch_query",
    "chunks",
    "select_series",
    "split_by_label",
    "tag",
]

#: The label that carries a series' position in the batch. Queries that already return a
#: label of this name cannot be batched (their own value would be overwritten).
BATCH_LABEL = "gridshift_query"

V = TypeVar("V")


def _string_literal(text: str) -> str:
    """A PromQL double-quoted string literal (Go escapes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tag(query: str, key: str, *, label: str = BATCH_LABEL) -> str:
    """`query` with `label="key"` added to every series it returns, nothing else changed."""
    if not query.strip():
        raise ValueError("query is empty")
    return f'label_replace({query}, {_string_literal(label)}, {_string_literal(key)}, "", "")'


def batch_query(queries: Sequence[str], *, label: str = BATCH_LABEL) -> str:
    """One PromQL expression answering every query of `queries`, tagged by index ("0", ...).

    One query is tagged too, so the answer always splits the same way."""
    if not queries:
        raise ValueError("no queries to batch")
    tagged = [tag(q, str(i), label=label) for i, q in enumerate(queries)]
    return _balanced_or(tagged)


def _balanced_or(terms: Sequence[str]) -> str:
    if len(terms) == 1:
        return terms[0]
    mid = len(terms) // 2
    left, right = _balanced_or(terms[:mid]), _balanced_or(terms[mid:])
    return f"({left}) or ({right})"


def split_by_label(
    series: Mapping[frozenset[tuple[str, str]], V], *, label: str = BATCH_LABEL
) -> dict[str, dict[frozenset[tuple[str, str]], V]]:
    """Group a batch answer's series by the value of `label`, with that label removed.

    Each group holds the series exactly as the untagged query would have labelled them. A
    series without the label cannot be attributed and raises `ValueError` (the answer did
    not come from `batch_query`)."""
    out: dict[str, dict[frozenset[tuple[str, str]], V]] = {}
    for labels, value in series.items():
        key = next((v for k, v in labels if k == label), None)
        if key is None:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(labels))
            raise ValueError(f"series {{{shown}}} carries no {label} label")
        rest = frozenset((k, v) for k, v in labels if k != label)
        out.setdefault(key, {})[rest] = value
    return out


def chunks(items: Sequence[V], size: int) -> list[Sequence[V]]:
    """`items` cut into runs of at most `size` (the last may be shorter)."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


class SeriesIndex(Generic[V]):
    """A grouped answer's series, looked up by labels: each distinct set of `match` label
    names is indexed once (one pass over the series), so picking every workload's series
    costs one pass per label set, not one per workload."""

    def __init__(self, series: Mapping[frozenset[tuple[str, str]], V]) -> None:
        self._series = series
        self._by_names: dict[tuple[str, ...], dict[tuple[str, ...], list[V]]] = {}

    def select(self, match: Sequence[tuple[str, str]]) -> V:
        """The one series whose labels include every `match` pair; `ValueError` naming the
        labels when none or several match (a `by (...)` that drops a matched label, or
        labels that do not single out one group)."""
        wanted = dict(match)
        if not wanted:
            raise ValueError("match names no label")
        names = tuple(sorted(wanted))
        index = self._by_names.get(names)
        if index is None:
            index = self._by_names[names] = {}
            for labels, value in self._series.items():
                have = dict(labels)
                if all(name in have for name in names):
                    index.setdefault(tuple(have[k] for k in names), []).append(value)
        found = index.get(tuple(wanted[k] for k in names), [])
        shown = ", ".join(f'{k}="{wanted[k]}"' for k in names)
        if not found:
            raise ValueError(
                f"no series matches {{{shown}}} among the {len(self._series)} the grouped "
                f"query returned: check that its `by (...)` keeps these labels, or whether "
                f"the workload stopped reporting"
            )
        if len(found) > 1:
            raise ValueError(
                f"{len(found)} series match {{{shown}}}; keep only the matched labels in the "
                f"query's `by (...)` or add labels to `match`"
            )
        return found[0]


def select_series(
    series: Mapping[frozenset[tuple[str, str]], V], match: Sequence[tuple[str, str]]
) -> V:
    """`SeriesIndex(series).select(match)`, for one lookup."""
    return SeriesIndex(series).select(match)
