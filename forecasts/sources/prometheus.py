"""Prometheus adapter: load history (`LoadSource`) and instant values over the HTTP API.

What it owns:

- **Aligned range queries.** `start` is floored to a multiple of `step`, so every call lands
  on the same grid; points sit at `start + k*step` for every such instant before `end` (the
  last one is `end` floored to the step, or one step earlier when `end` is on the grid), so
  the result is half-open like `RegularSeries` and `series.end` is the first step to
  forecast.
- **Splitting.** Prometheus refuses more than 11,001 points per series (`(end-start)/step >
  11000`). Longer ranges are cut into requests of at most `max_points_per_request` points
  whose grids continue each other exactly (no point twice, none missing), then merged.
- **One series per query.** `fetch` expects the query to return one series; several raise
  `SourceDataError` naming them, unless `aggregate="sum"` (the per-step sum of the series
  present at that step; prefer `sum(...)` in PromQL, which does the same server-side).
- **Values.** Prometheus sends values as strings. `"NaN"`, `"+Inf"` and `"-Inf"` are counted
  (`LoadHistory.non_finite_samples`) and treated as missing samples; anything that does not
  parse as a number raises `SourceDataError`.
- **Gaps.** The gap rule of `forecasts.load` (short gaps interpolated, long and edge gaps
  marked NaN) is applied to the merged grid. Prometheus itself already carries the last
  sample forward for up to its lookback delta (5 min by default), so missed scrapes shorter
  than that never reach the rule; a target that disappears is marked stale by Prometheus at
  once, and its history ends in a marked gap (see `LoadHistory.last_observed_at`).
- **Counters.** `rate_query` builds `rate(counter[window])` with the window rule of
  `rate_window`.
- **Errors.** Through `HttpSource`: timeouts, refused connections and 5xx/503 (Prometheus'
  `timeout`/`canceled`) raise `SourceUnavailable`; 400 `bad_data` and 422 `execution` raise
  `SourceRequestError` with `error_type` set and Prometheus' own message; a success envelope
  with the wrong `resultType` or broken samples raises `SourceDataError`.
- **Long queries** go by POST with a form body once their encoded parameters exceed
  `post_above_bytes` (URL length limits of proxies and servers).
"""

from __future__ import annotations

import math
import ssl
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import numpy as np
import numpy.typing as npt

from forecasts.load import LoadHistory
from forecasts.platform.errors import (
    SourceDataError,
    SourceError,
    SourceRequestError,
    SourceResponseTooLarge,
)
from forecasts.platform.http import CircuitBreaker, HttpSource, RetryPolicy
from forecasts.series import RegularSeries
from forecasts.sources.prometheus_batch import batch_query, chunks, split_by_label
from forecasts.time import Clock, ensure_utc, floor_to, from_epoch_s, to_epoch_s

__all__ = [
    "PROMETHEUS_MAX_POINTS",
    "InstantSample",
    "PrometheusConnection",
    "PrometheusLoadSource",
    "build_client",
    "format_duration",
    "rate_query",
    "rate_window",
]

FloatArray = npt.NDArray[np.float64]

#: Prometheus accepts `(end - start) / step <= 11000`, i.e. at most 11,001 points per series.
PROMETHEUS_MAX_POINTS = 11_001
_QUERY_RANGE = "/api/v1/query_range"
_QUERY = "/api/v1/query"


# --------------------------------------------------------------------------- PromQL helpers
def format_duration(duration: timedelta) -> str:
    """A Prometheus duration literal: the largest of w/d/h/m/s/ms that divides it exactly."""
    ms = round(duration.total_seconds() * 1000)
    if ms <= 0:
        raise ValueError(f"duration must be at least 1ms, got {duration}")
    for unit, size in (("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000)):
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def rate_window(*, scrape_interval: timedelta, step: timedelta) -> timedelta:
    """The `rate()` window: `max(4 * scrape_interval, step + scrape_interval)`.

    Four scrape intervals keep at least two samples in every window even when a scrape or
    two fail (`rate` needs two). `step + scrape_interval` makes consecutive windows overlap
    by one scrape, so no increase falls between two steps (Grafana's `$__rate_interval`).
    """
    if scrape_interval <= timedelta(0) or step <= timedelta(0):
        raise ValueError(
            f"scrape_interval and step must be positive, got {scrape_interval}, {step}"
        )
    return max(4 * scrape_interval, step + scrape_interval)


def _check_selector(counter: str) -> str:
    text = counter.strip()
    if not text:
        raise ValueError("counter selector is empty")
    if "[" in text or "(" in text:
        raise ValueError(
            f"counter must be a plain series selector such as "
            f'http_requests_total{{job="api"}}, got {counter!r} (rate_query adds the range '
            f"and the function itself)"
        )
    return text


def rate_query(
    counter: str,
    *,
    scrape_interval: timedelta,
    step: timedelta,
    sum_by: Sequence[str] | None = (),
) -> str:
    """`sum by (...) (rate(<counter>[<window>]))` with the window of `rate_window`.

    `rate()` handles counter resets (a drop is taken as a restart from zero). `sum_by=()`
    sums every series into one (the usual load signal), a list of labels keeps one series per
    combination, and `None` leaves the rates unaggregated.
    """
    selector = _check_selector(counter)
    window = format_duration(rate_window(scrape_interval=scrape_interval, step=step))
    inner = f"rate({selector}[{window}])"
    if sum_by is None:
        return inner
    labels = ", ".join(sum_by)
    return f"sum by ({labels}) ({inner})" if labels else f"sum({inner})"


# --------------------------------------------------------------------------- connection
@dataclass(frozen=True, slots=True)
class PrometheusConnection:
    """Where and how to reach Prometheus (derived from `PrometheusSettings` in the wiring).

    `basic_auth` is (user, password); `bearer_token` and `basic_auth` exclude each other.
    """

    url: str
    timeout_seconds: float = 10.0
    bearer_token: str | None = field(default=None, repr=False)
    basic_auth: tuple[str, str] | None = field(default=None, repr=False)
    ca_file: Path | None = None
    insecure_skip_verify: bool = False

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url must start with http:// or https://, got {self.url!r}")
        if self.timeout_seconds <= 0:
            raise ValueError(f"timeout_seconds must be positive, got {self.timeout_seconds}")
        if self.bearer_token is not None and self.basic_auth is not None:
            raise ValueError("set either bearer_token or basic_auth, not both")
        if self.ca_file is not None and self.insecure_skip_verify:
            raise ValueError("ca_file has no effect with insecure_skip_verify: set only one")

    @property
    def secrets(self) -> tuple[str, ...]:
        found = [self.bearer_token or ""]
        if self.basic_auth is not None:
            found.append(self.basic_auth[1])
        return tuple(s for s in found if s)


def build_client(
    connection: PrometheusConnection,
    *,
    transport: httpx.BaseTransport | None = None,
    max_connections: int | None = None,
) -> httpx.Client:
    """An `httpx.Client` for `connection`: base URL, timeout, auth and TLS verification.

    `max_connections` caps the open connections (None: httpx's pool of 100, 20 kept alive); a
    call past it waits for one within the timeout. `transport` replaces the network (tests
    pass an `httpx.MockTransport`)."""
    verify: ssl.SSLContext | bool
    if connection.insecure_skip_verify:
        verify = False
    elif connection.ca_file is not None:
        if not connection.ca_file.is_file():
            raise ValueError(f"ca_file {connection.ca_file} does not exist or is not a file")
        verify = ssl.create_default_context(cafile=str(connection.ca_file))
    else:
        verify = True
    headers = {"Accept": "application/json"}
    if connection.bearer_token is not None:
        headers["Authorization"] = f"Bearer {connection.bearer_token}"
    return httpx.Client(
        base_url=connection.url.rstrip("/"),
        timeout=connection.timeout_seconds,
        headers=headers,
        auth=connection.basic_auth,
        verify=verify,
        transport=transport,
        limits=(
            httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's default
            if max_connections is None
            else httpx.Limits(max_connections=max_connections)
        ),
    )


# --------------------------------------------------------------------------- values
@dataclass(frozen=True, slots=True)
class InstantSample:
    """One series' value from an instant query (`labels` without change after parsing)."""

    labels: Mapping[str, str]
    value: float
    at: datetime


def _labels_text(labels: Mapping[str, str]) -> str:
    name = labels.get("__name__", "")
    rest = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}"


def _parse_pairs(pairs: list[Any]) -> tuple[FloatArray, FloatArray] | None:
    """(epoch seconds, values) of `[time, "value"]` pairs in one go; None when any pair is
    malformed (the caller then finds and names it)."""
    try:
        times = np.array([p[0] for p in pairs], dtype=np.float64)
        values = np.array([p[1] for p in pairs], dtype=np.float64)
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    if times.ndim != 1 or values.ndim != 1 or any(len(p) != 2 for p in pairs):
        return None
    if any(not isinstance(p[1], str) for p in pairs):
        return None
    return times, values


def _format_seconds(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True, slots=True)
class _Window:
    start: datetime
    end: datetime
    step: timedelta
    unit: str


@dataclass(slots=True)
class _RangeAnswer:
    """Every series of one range query on its grid, as the requests brought them."""

    first: datetime
    step: timedelta
    n: int
    per_series: dict[frozenset[tuple[str, str]], FloatArray] = field(default_factory=dict)
    non_finite: dict[frozenset[tuple[str, str]], int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    requests: int = 0


# --------------------------------------------------------------------------- the adapter
@dataclass(slots=True)
class PrometheusLoadSource:
    """`LoadSource` over Prometheus' HTTP API, plus instant queries.

    Build it with `PrometheusLoadSource.connect(...)` or from an `HttpSource` whose client
    has Prometheus' base URL. `query_timeout_seconds` is sent as the `timeout` parameter;
    `connect` sets it to 90% of the client timeout, so Prometheus abandons a slow query (and
    answers 503 `timeout`, a `SourceUnavailable`) just before the client would give up.
    """

    http: HttpSource
    max_points_per_request: int = 11_000
    short_gap_steps: int = 3
    query_timeout_seconds: float | None = None
    post_above_bytes: int = 2048
    batch_size: int = 1
    _unbatchable: set[str] = field(default_factory=set, init=False, repr=False)
    _grouped_points: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not 2 <= self.max_points_per_request <= PROMETHEUS_MAX_POINTS:
            raise ValueError(
                f"max_points_per_request must be in [2, {PROMETHEUS_MAX_POINTS}], "
                f"got {self.max_points_per_request}"
            )
        if self.short_gap_steps < 0:
            raise ValueError(f"short_gap_steps must be >= 0, got {self.short_gap_steps}")
        if self.query_timeout_seconds is not None and self.query_timeout_seconds <= 0:
            raise ValueError(
                f"query_timeout_seconds must be positive, got {self.query_timeout_seconds}"
            )

    @classmethod
    def connect(
        cls,
        connection: PrometheusConnection,
        *,
        clock: Clock,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        max_points_per_request: int = 11_000,
        short_gap_steps: int = 3,
        batch_size: int = 1,
        name: str = "prometheus",
        transport: httpx.BaseTransport | None = None,
    ) -> PrometheusLoadSource:
        """Build the adapter and its HTTP client from `connection`."""
        http = HttpSource(
            name=name,
            client=build_client(connection, transport=transport),
            clock=clock,
            # Bounded: a tick must not wait out four timed-out heavy queries.
            retry=retry or RetryPolicy(attempts=3, max_delay_seconds=5.0),
            breaker=breaker or CircuitBreaker(),
            cache_ttl_seconds=0.0,
            secrets=connection.secrets,
        )
        return cls(
            http=http,
            max_points_per_request=max_points_per_request,
            short_gap_steps=short_gap_steps,
            batch_size=batch_size,
            # Prometheus stops (and says `timeout`) a little before the client gives up.
            query_timeout_seconds=round(connection.timeout_seconds * 0.9, 3),
        )

    @property
    def name(self) -> str:
        return self.http.name

    def close(self) -> None:
        self.http.close()

    # ------------------------------------------------------------------ range queries
    def history(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> RegularSeries:
        return self.fetch(query, start=start, end=end, step=step).series

    def fetch(
        self,
        query: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
        aggregate: Literal["one", "sum"] = "one",
        unit: str = "1",
    ) -> LoadHistory:
        """Range query over the aligned window; see the module docstring for the rules."""
        if not query.strip():
            raise ValueError("query is empty")
        got = self._range(query, start=start, end=end, step=step, shown=query)
        return self._history(
            query, got, got.per_series, non_finite=got.non_finite, aggregate=aggregate, unit=unit
        )

    def fetch_many(
        self,
        queries: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
        unit: str = "1",
    ) -> dict[str, LoadHistory | SourceError]:
        """`fetch` of every query of `queries` in one range request per `batch_size` queries.

        Answers per query: its `LoadHistory`, or the `SourceError` that `fetch(query)` would
        have raised (no series, several series, ...), so one broken query fails alone. A batch
        Prometheus refuses (400/422: a query that cannot be tagged, a syntax error) is cut in
        halves until the refused query is found (a few requests per broken query, not one
        per query); that query is asked alone, now and from then on. An unreachable
        Prometheus fails every query of the batch. See
        `forecasts.sources.prometheus_batch` for how the batch is built and split.
        """
        distinct = list(dict.fromkeys(queries))
        if any(not q.strip() for q in distinct):
            raise ValueError("query is empty")
        window = _Window(start, end, step, unit)
        out: dict[str, LoadHistory | SourceError] = {}
        batched = [q for q in distinct if q not in self._unbatchable]
        for part in chunks(batched, self.batch_size):
            if len(part) == 1:
                self._fetch_alone(part[0], window, out)
            else:
                self._fetch_batch(part, window, out)
        for q in distinct:
            if q in self._unbatchable and q not in out:
                self._fetch_alone(q, window, out)
        return {q: out[q] for q in distinct}

    def _fetch_alone(
        self, query: str, window: _Window, out: dict[str, LoadHistory | SourceError]
    ) -> None:
        try:
            out[query] = self.fetch(
                query, start=window.start, end=window.end, step=window.step, unit=window.unit
            )
        except SourceError as exc:
            out[query] = exc

    def _fetch_batch(
        self, part: Sequence[str], window: _Window, out: dict[str, LoadHistory | SourceError]
    ) -> None:
        """One tagged request for `part`; a refused one is bisected until the query that
        cannot be batched is found (it is then asked alone, now and from then on)."""
        try:
            got = self._range(
                batch_query(part),
                start=window.start,
                end=window.end,
                step=window.step,
                shown=f"batch of {len(part)} queries",
            )
        except SourceRequestError:
            if len(part) == 1:
                self._unbatchable.add(part[0])
                self._fetch_alone(part[0], window, out)
                return
            mid = len(part) // 2
            self._fetch_batch(part[:mid], window, out)
            self._fetch_batch(part[mid:], window, out)
            return
        except SourceError as exc:
            out.update(dict.fromkeys(part, exc))
            return
        try:
            groups = split_by_label(got.per_series)
            non_finite = split_by_label(got.non_finite)
        except ValueError as exc:
            out.update(dict.fromkeys(part, self._data_error(f"batch answer: {exc}")))
            return
        for i, q in enumerate(part):
            key = str(i)
            try:
                out[q] = self._history(
                    q,
                    got,
                    groups.get(key, {}),
                    non_finite=non_finite.get(key, {}),
                    unit=window.unit,
                )
            except SourceError as exc:
                out[q] = exc

    def fetch_grouped(
        self, query: str, *, start: datetime, end: datetime, step: timedelta, unit: str = "1"
    ) -> dict[frozenset[tuple[str, str]], LoadHistory]:
        """Every series of a grouped `query` (e.g. `sum by (namespace, workload) (...)`) as
        its own `LoadHistory` (the gap rule per series), keyed by its labels; one range query
        (split only past `max_points_per_request` steps). A query with no series raises
        `SourceDataError`; picking a workload's series is `select_series`."""
        if not query.strip():
            raise ValueError("query is empty")
        got = self._grouped_range(query, start=start, end=end, step=step)
        if not got.per_series:
            raise self._data_error(f"query {query!r} returned no series in the window")
        return {
            labels: self._history(
                query,
                got,
                {labels: values},
                non_finite={labels: got.non_finite.get(labels, 0)},
                unit=unit,
            )
            for labels, values in got.per_series.items()
        }

    def _grouped_range(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> _RangeAnswer:
        """A grouped answer can outgrow the response cap (10,000 series x 300 steps is about
        75 MB of JSON): an answer over it is asked again in requests of half the steps, until
        each fits; the step count that fits is kept for the query's next calls."""
        points = self._grouped_points.get(query, self.max_points_per_request)
        while True:
            try:
                got = self._range(
                    query, start=start, end=end, step=step, shown=query, max_points=points
                )
            except SourceResponseTooLarge:
                steps = max(1, round((end - start) / step))
                if points <= 1:
                    raise
                points = max(1, min(points, steps) // 2)
                continue
            if points != self.max_points_per_request:
                self._grouped_points[query] = points
            return got

    def history_grouped(
        self, query: str, *, start: datetime, end: datetime, step: timedelta
    ) -> dict[frozenset[tuple[str, str]], RegularSeries]:
        """`fetch_grouped`, series only (the `GroupedLoadSource` role)."""
        got = self.fetch_grouped(query, start=start, end=end, step=step)
        return {labels: h.series for labels, h in got.items()}

    def history_many(
        self, queries: Sequence[str], *, start: datetime, end: datetime, step: timedelta
    ) -> dict[str, RegularSeries | SourceError]:
        """`history` of every query in as few requests as `fetch_many` takes."""
        got = self.fetch_many(queries, start=start, end=end, step=step)
        return {q: v if isinstance(v, SourceError) else v.series for q, v in got.items()}

    def _range(
        self,
        query: str,
        *,
        start: datetime,
        end: datetime,
        step: timedelta,
        shown: str,
        max_points: int | None = None,
    ) -> _RangeAnswer:
        """Every series of `query` on the aligned grid, in requests of at most `max_points`
        steps (default `max_points_per_request`)."""
        per_request = max_points or self.max_points_per_request
        if step < timedelta(milliseconds=1):
            raise ValueError(f"step must be at least 1ms, got {step}")
        first = floor_to(ensure_utc(start, name="start"), step)
        end = ensure_utc(end, name="end")
        last = floor_to(end, step)
        if last == end:
            last -= step  # half-open: instants before `end`
        if last < first:
            raise ValueError(
                f"window [{start.isoformat()}, {end.isoformat()}) holds no {step} step "
                f"(start is floored to the step, end is exclusive)"
            )
        step_s = step.total_seconds()
        first_s = to_epoch_s(first)
        n = round((to_epoch_s(last) - first_s) / step_s) + 1
        got = _RangeAnswer(first=first, step=step, n=n)
        for lo in range(0, n, per_request):
            hi = min(n, lo + per_request) - 1
            params = {
                "query": query,
                "start": _format_seconds(first_s + lo * step_s),
                "end": _format_seconds(first_s + hi * step_s),
                "step": _format_seconds(step_s),
            }
            data = self._call(_QUERY_RANGE, params, query=shown, warnings=got.warnings)
            got.requests += 1
            self._merge_matrix(data, got, first_s=first_s, step_s=step_s, query=shown)
        return got

    def _history(
        self,
        query: str,
        got: _RangeAnswer,
        per_series: dict[frozenset[tuple[str, str]], FloatArray],
        *,
        non_finite: Mapping[frozenset[tuple[str, str]], int],
        aggregate: Literal["one", "sum"] = "one",
        unit: str,
    ) -> LoadHistory:
        raw = self._combine(per_series, n=got.n, query=query, aggregate=aggregate)
        return LoadHistory.from_samples(
            query,
            raw,
            start=got.first,
            step=got.step,
            unit=unit,
            short_gap_steps=self.short_gap_steps,
            non_finite_samples=sum(non_finite.values()),
            requests=got.requests,
            warnings=tuple(dict.fromkeys(got.warnings)),
        )

    # ------------------------------------------------------------------ instant queries
    def instant(self, query: str, *, at: datetime) -> tuple[InstantSample, ...]:
        """Every series' value at `at` (a vector or scalar result)."""
        if not query.strip():
            raise ValueError("query is empty")
        at = ensure_utc(at, name="at")
        params = {"query": query, "time": _format_seconds(to_epoch_s(at))}
        data = self._call(_QUERY, params, query=query, warnings=[])
        kind = data.get("resultType")
        result = data.get("result")
        if kind == "scalar":
            ts, value = self._sample(result, query=query)
            return (InstantSample(labels=types.MappingProxyType({}), value=value, at=ts),)
        if kind != "vector" or not isinstance(result, list):
            raise self._data_error(
                f"query {query!r}: expected resultType vector or scalar, got {kind!r}"
            )
        samples = []
        for item in result:
            labels = self._labels(item, query=query)
            ts, value = self._sample(item.get("value"), query=query)
            samples.append(InstantSample(labels=types.MappingProxyType(labels), value=value, at=ts))
        return tuple(samples)

    def instant_value(self, query: str, *, at: datetime) -> float | None:
        """The single value of `query` at `at`; None when it returns nothing.

        Several series raise `SourceDataError` (aggregate in PromQL, e.g. `sum(...)`).
        """
        samples = self.instant(query, at=at)
        if len(samples) > 1:
            names = ", ".join(_labels_text(s.labels) for s in samples[:3])
            raise self._data_error(
                f"query {query!r} returned {len(samples)} series where one was expected "
                f"({names}{', ...' if len(samples) > 3 else ''}); aggregate it, e.g. sum(...)"
            )
        return samples[0].value if samples else None

    # ------------------------------------------------------------------ internals
    def _call(
        self, path: str, params: dict[str, str], *, query: str, warnings: list[str]
    ) -> dict[str, Any]:
        if self.query_timeout_seconds is not None:
            params["timeout"] = _format_seconds(self.query_timeout_seconds)
        encoded = urlencode(params)
        try:
            if len(encoded) > self.post_above_bytes:
                body = self.http.request_json("POST", path, form=params)
            else:
                body = self.http.request_json("GET", path, params=params)
        except SourceError as exc:
            shown = query if len(query) <= 200 else query[:200] + "..."
            exc.args = (f"{exc.args[0]} (query {shown!r})", *exc.args[1:])
            raise
        if not isinstance(body, dict):
            raise self._data_error(f"expected a JSON object, got {type(body).__name__}")
        status = body.get("status")
        if status != "success":
            raise self._data_error(
                f"query {query!r}: status {status!r}: {body.get('errorType')}: {body.get('error')}"
            )
        for w in body.get("warnings") or ():
            warnings.append(str(w))
        data = body.get("data")
        if not isinstance(data, dict):
            raise self._data_error(f"query {query!r}: answer has no data object")
        return data

    def _data_error(self, message: str) -> SourceDataError:
        return SourceDataError(message, source=self.name)

    def _labels(self, item: Any, *, query: str) -> dict[str, str]:
        if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
            raise self._data_error(f"query {query!r}: result item without a metric object")
        return {str(k): str(v) for k, v in item["metric"].items()}

    def _sample(self, pair: Any, *, query: str) -> tuple[datetime, float]:
        if not isinstance(pair, list) or len(pair) != 2:
            raise self._data_error(f"query {query!r}: sample {pair!r} is not [time, value]")
        ts, text = pair
        try:
            return from_epoch_s(float(ts)), float(text)
        except (TypeError, ValueError):
            raise self._data_error(
                f"query {query!r}: sample {pair!r} does not hold a number"
            ) from None

    def _merge_matrix(
        self,
        data: dict[str, Any],
        got: _RangeAnswer,
        *,
        first_s: float,
        step_s: float,
        query: str,
    ) -> None:
        """Place one answer's samples on the grid of `got`, counting non-finite samples."""
        kind = data.get("resultType")
        result = data.get("result")
        if kind != "matrix" or not isinstance(result, list):
            raise self._data_error(
                f"query {query!r}: expected resultType matrix from query_range, got {kind!r}"
            )
        n = got.n
        for item in result:
            key = frozenset(self._labels(item, query=query).items())
            pairs = item.get("values")
            if not isinstance(pairs, list):
                raise self._data_error(f"query {query!r}: series without a values list")
            seen = got.per_series.get(key)
            if seen is None:
                seen = got.per_series[key] = np.full(n, np.nan)
            fast = _parse_pairs(pairs)
            if fast is None:  # malformed somewhere: the exact per-sample error below
                self._merge_pairs(
                    pairs, seen, got, key, first_s=first_s, step_s=step_s, query=query
                )
                continue
            times, values = fast
            pos = (times - first_s) / step_s
            idx = np.rint(pos).astype(np.int64)
            bad = (np.abs(pos - idx) > 1e-6) | (idx < 0) | (idx >= n)
            finite = np.isfinite(values)
            clash = ~bad & finite
            clash[clash] &= ~np.isnan(seen[idx[clash]]) & (seen[idx[clash]] != values[clash])
            if bad.any() or clash.any() or np.unique(idx[finite]).size != int(finite.sum()):
                self._merge_pairs(
                    pairs, seen, got, key, first_s=first_s, step_s=step_s, query=query
                )
                continue
            non_finite = int((~finite).sum())
            if non_finite:
                got.non_finite[key] = got.non_finite.get(key, 0) + non_finite
            seen[idx[finite]] = values[finite]

    def _merge_pairs(
        self,
        pairs: list[Any],
        seen: FloatArray,
        got: _RangeAnswer,
        key: frozenset[tuple[str, str]],
        *,
        first_s: float,
        step_s: float,
        query: str,
    ) -> None:
        """Sample by sample, raising on the first sample that cannot be placed (the slow path
        of `_merge_matrix`, for answers its vectorised path finds fault with)."""
        n = got.n
        for pair in pairs:
            ts, value = self._sample(pair, query=query)
            pos = (to_epoch_s(ts) - first_s) / step_s
            idx = round(pos)
            if abs(pos - idx) > 1e-6 or not 0 <= idx < n:
                raise self._data_error(
                    f"query {query!r}: sample at {ts.isoformat()} is off the requested "
                    f"grid (start {from_epoch_s(first_s).isoformat()}, step {step_s}s, "
                    f"{n} points)"
                )
            if not math.isfinite(value):
                got.non_finite[key] = got.non_finite.get(key, 0) + 1
                continue
            if not np.isnan(seen[idx]) and seen[idx] != value:
                raise self._data_error(
                    f"query {query!r}: two different values for {ts.isoformat()}"
                )
            seen[idx] = value

    def _combine(
        self,
        per_series: dict[frozenset[tuple[str, str]], FloatArray],
        *,
        n: int,
        query: str,
        aggregate: Literal["one", "sum"],
    ) -> FloatArray:
        if not per_series:
            raise self._data_error(
                f"query {query!r} returned no series in the window: check the metric name "
                f"and labels, or whether the target stopped reporting"
            )
        if len(per_series) == 1:
            return next(iter(per_series.values()))
        if aggregate == "sum":
            stacked = np.vstack(list(per_series.values()))
            present = ~np.isnan(stacked)
            total = np.where(present, stacked, 0.0).sum(axis=0)
            return np.where(present.any(axis=0), total, np.nan)
        names = [_labels_text(dict(k)) for k in per_series]
        raise self._data_error(
            f"query {query!r} returned {len(names)} series where one was expected "
            f"({', '.join(sorted(names)[:3])}{', ...' if len(names) > 3 else ''}); "
            f"aggregate in PromQL (sum(...), sum by (...)) or pass aggregate='sum'"
        )
