"""The `LoadSource` role, re-exported for the adapters' callers, and `history_many`.

The role is defined in the pure kernel (`forecasts.load`), next to `LoadHistory` and the gap
rule, so pure code can name it; this module keeps the imports of `scaler.loop` and
`config.wiring` working. Adapters: `forecasts.sources.prometheus.PrometheusLoadSource`
(PromQL), `forecasts.sources.sample.SampleLoadSource` (SAMPLE DATA).

`history_grouped` asks a grouped query (one series per workload, picked by labels) where the
source can answer it (Prometheus, through the router).

`history_many` is how a caller with many queries (the scaler's tick) asks for them: one
batched request where the source offers `history_many` (Prometheus), else one `history` call
per query. Either way the answer is per query, a series or the `SourceError` that query alone
would have raised, so one failing query never fails the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from forecasts.load import LoadSource
from forecasts.platform.errors import SourceError, SourceRequestError
from forecasts.series import RegularSeries

__all__ = ["BatchLoadSource", "GroupedLoadSource", "LoadSource", "history_grouped", "history_many"]


@runtime_checkable
class BatchLoadSource(Protocol):
    """A `LoadSource` that answers many queries in fewer requests than one per query."""

    @property
    def name(self) -> str: ...

    def history(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> RegularSeries: ...

    def history_many(
        self, queries: Sequence[str], *, start: datetime, end: datetime, step: timedelta
    ) -> Mapping[str, RegularSeries | SourceError]: ...


@runtime_checkable
class GroupedLoadSource(Protocol):
    """A `LoadSource` that answers a grouped query with every series it returns, by labels."""

    @property
    def name(self) -> str: ...

    def history_grouped(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> Mapping[frozenset[tuple[str, str]], RegularSeries]: ...


def history_grouped(
    source: LoadSource, query: str, *, start: datetime, end: datetime, step: timedelta
) -> Mapping[frozenset[tuple[str, str]], RegularSeries]:
    """Every series of the grouped `query`, by labels; a source that cannot group raises
    `SourceRequestError` (grouped loads need PromQL)."""
    if not isinstance(source, GroupedLoadSource):
        raise SourceRequestError(
            f"{source.name} cannot answer the grouped query {query!r} (load `match` needs a "
            f"PromQL source)",
            source=source.name,
        )
    return source.history_grouped(query, start=start, end=end, step=step)


def history_many(
    source: LoadSource,
    queries: Sequence[str],
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
) -> dict[str, RegularSeries | SourceError]:
    """Every distinct query's history (or its `SourceError`) over the same window."""
    distinct = list(dict.fromkeys(queries))
    if not distinct:
        return {}
    if isinstance(source, BatchLoadSource):
        got = source.history_many(distinct, start=start, end=end, step=step)
        return {q: got[q] for q in distinct}
    out: dict[str, RegularSeries | SourceError] = {}
    for q in distinct:
        try:
            out[q] = source.history(q, start=start, end=end, step=step)
        except SourceError as exc:
            out[q] = exc
    return out
