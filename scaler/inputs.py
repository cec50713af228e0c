"""The tick's load inputs: every workload's load and measured power in as few queries as the
source allows, answered per workload (a series or the `SourceError` fetching it).

- **Grouped families**: workloads with `load.match` that share a grouped query
  (`sum by (namespace, workload) (...)`) are one range query per tick, each workload's series
  picked by its labels (`forecasts.sources.prometheus_batch.select_series`).
- **Other queries** go through `forecasts.sources.load.history_many` where the source batches
  (`BatchLoadSource`): tagged batches of `prometheus.batch_size` queries.
- Without batching, or when a batch fails unexpectedly, each workload asks on its own as
  before, so one bad query never stops the others; errors mark only the workloads whose
  query failed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

from forecasts.platform.errors import SourceDataError, SourceError
from forecasts.series import RegularSeries
from forecasts.sources.load import BatchLoadSource, LoadSource, history_grouped, history_many
from forecasts.sources.prometheus_batch import SeriesIndex
from scaler.core.workload import Workload

__all__ = ["LoadInputs"]

Window = tuple[datetime, datetime]


class LoadInputs:
    """Fetches load inputs for the loop (see the module docstring)."""

    def __init__(
        self,
        source: LoadSource,
        *,
        step: timedelta,
        logger: logging.Logger,
        on_internal_error: Callable[[], None],
    ) -> None:
        self._source = source
        self._step = step
        self._log = logger
        self._on_internal_error = on_internal_error

    def queries(
        self, queries: Sequence[str], window: Window, what: str
    ) -> Mapping[str, RegularSeries | SourceError]:
        """Every query's series in one batched call (`history_many`) where the source
        batches; else empty, and each workload asks on its own as before. Empty too on an
        unexpected failure of the batch, so one bad query cannot stop the others."""
        if not queries or not isinstance(self._source, BatchLoadSource):
            return {}
        start, end = window
        try:
            return history_many(self._source, queries, start=start, end=end, step=self._step)
        except Exception:
            self._log.exception("batched %s query failed; asking per workload", what)
            self._on_internal_error()
            return {}

    def loads(
        self, workloads: Sequence[Workload], window: Window, what: str
    ) -> dict[str, RegularSeries | SourceError]:
        """Each workload's load (or its error) by workload name: one range query per
        grouped family (workloads with `load.match` sharing a query), the other queries
        through `queries`. A workload missing from the answer asks on its own."""
        plain = [w for w in workloads if not w.load.match]
        by_query = self.queries([w.load.query for w in plain], window, what)
        out = {w.name: by_query[w.load.query] for w in plain if w.load.query in by_query}
        grouped = [w for w in workloads if w.load.match]
        families: dict[str, SeriesIndex[RegularSeries] | SourceError] = {}
        for query in dict.fromkeys(w.load.query for w in grouped):
            try:
                families[query] = SeriesIndex(self._family(query, window))
            except SourceError as exc:
                families[query] = exc
            except Exception:
                self._log.exception("grouped %s query failed: %s", what, query)
                self._on_internal_error()
        for w in grouped:
            family = families.get(w.load.query)
            if family is not None:
                out[w.name] = self._pick(w, family)
        return out

    def _family(
        self, query: str, window: Window
    ) -> Mapping[frozenset[tuple[str, str]], RegularSeries]:
        start, end = window
        return history_grouped(self._source, query, start=start, end=end, step=self._step)

    def _pick(
        self, w: Workload, family: SeriesIndex[RegularSeries] | SourceError
    ) -> RegularSeries | SourceError:
        if isinstance(family, SourceError):
            return family
        try:
            return family.select(w.load.match)
        except ValueError as exc:
            return SourceDataError(f"{w.load.query!r}: {exc}", source=self._source.name)

    def load_of(
        self,
        w: Workload,
        window: Window,
        prefetched: Mapping[str, RegularSeries | SourceError],
    ) -> RegularSeries:
        """`w`'s load from `prefetched` (by workload name), else asked on its own."""
        got = prefetched.get(w.name)
        if got is None:
            got = (
                self._pick(w, SeriesIndex(self._family(w.load.query, window)))
                if w.load.match
                else self.history(w.load.query, window, {})
            )
        if isinstance(got, SourceError):
            raise got
        return got

    def history(
        self,
        query: str,
        window: Window,
        prefetched: Mapping[str, RegularSeries | SourceError],
    ) -> RegularSeries:
        got = prefetched.get(query)
        if got is None:
            start, end = window
            return self._source.history(query, start=start, end=end, step=self._step)
        if isinstance(got, SourceError):
            raise got
        return got
