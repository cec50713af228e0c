"""Route one role to several adapters: carbon by region, load by query prefix.

`gridshift run` may mix SAMPLE DATA workloads with real ones (PromQL loads, provider-backed
regions); the loop takes one `CarbonSource` and one `LoadSource`, so these routers dispatch
each call to the adapter that owns the region or the query.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from forecasts.load import LoadSource
from forecasts.platform.errors import SourceError, SourceRequestError
from forecasts.series import CarbonSeries, RegularSeries
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.load import history_grouped, history_many

__all__ = ["PrefixRoutedLoadSource", "RegionRoutedCarbonSource"]


class RegionRoutedCarbonSource:
    """`by_region[region]` answers for that region; `default` for every other region."""

    def __init__(
        self, *, by_region: Mapping[str, CarbonSource], default: CarbonSource | None = None
    ) -> None:
        self._by_region = dict(by_region)
        self._default = default

    @property
    def name(self) -> str:
        names = sorted({s.name for s in self._by_region.values()})
        if self._default is not None:
            names.append(self._default.name)
        return "+".join(dict.fromkeys(names)) or "none"

    def _for(self, region: str) -> CarbonSource:
        source = self._by_region.get(region, self._default)
        if source is None:
            raise SourceRequestError(
                f"no carbon source is configured for region {region!r} "
                f"(known: {', '.join(sorted(self._by_region)) or 'none'})",
                source="carbon-router",
            )
        return source

    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        return self._for(region).latest(region, at=at)

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        return self._for(region).history(region, start=start, end=end)

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        return self._for(region).forecast(region, at=at, horizon=horizon)


class PrefixRoutedLoadSource:
    """The first `(prefix, source)` whose prefix starts the query answers; else `default`
    (typically Prometheus, whose queries are PromQL without a prefix)."""

    def __init__(
        self,
        *,
        routes: Sequence[tuple[str, LoadSource]],
        default: LoadSource | None = None,
    ) -> None:
        self._routes = tuple(routes)
        self._default = default

    @property
    def name(self) -> str:
        names = [s.name for _, s in self._routes]
        if self._default is not None:
            names.append(self._default.name)
        return "+".join(dict.fromkeys(names)) or "none"

    def _for(self, query: str) -> LoadSource:
        for prefix, source in self._routes:
            if query.startswith(prefix):
                return source
        if self._default is None:
            raise SourceRequestError(
                f"no load source answers {query!r} "
                f"(prefixes: {', '.join(p for p, _ in self._routes) or 'none'})",
                source="load-router",
            )
        return self._default

    def history(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> RegularSeries:
        return self._for(query).history(query, start=start, end=end, step=step)

    def history_many(
        self, queries: Sequence[str], *, start: datetime, end: datetime, step: timedelta
    ) -> dict[str, RegularSeries | SourceError]:
        """Each route's queries in one `history_many` of its source (one batch for
        Prometheus); a query no route answers gets its `SourceRequestError`."""
        out: dict[str, RegularSeries | SourceError] = {}
        by_source: dict[int, tuple[LoadSource, list[str]]] = {}
        for q in dict.fromkeys(queries):
            try:
                source = self._for(q)
            except SourceRequestError as exc:
                out[q] = exc
                continue
            by_source.setdefault(id(source), (source, []))[1].append(q)
        for source, qs in by_source.values():
            out.update(history_many(source, qs, start=start, end=end, step=step))
        return {q: out[q] for q in dict.fromkeys(queries)}

    def history_grouped(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> Mapping[frozenset[tuple[str, str]], RegularSeries]:
        """The grouped query from the source its prefix routes to."""
        return history_grouped(self._for(query), query, start=start, end=end, step=step)
