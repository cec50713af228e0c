"""One contract for every `LoadSource` (the real adapter here; add each `FakeLoadSource`).

Aspects: the aligned half-open grid (start floored to the step, last instant before `end`);
values are what the backend holds at each instant; determinism; an unknown query is a
`SourceError`; a naive datetime is a programmer error; the gap rule's NaN marks.

A source under contract is built by a factory from a load profile `f(epoch_s) -> float`
(NaN = no sample) and answers it for the query `LOAD_QUERY`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest

from forecasts.load import LoadSource
from forecasts.sources.errors import SourceError
from forecasts.sources.http import HttpSource, RetryPolicy
from forecasts.sources.prometheus import PrometheusLoadSource
from forecasts.time import FrozenClock

LOAD_QUERY = 'sum(rate(http_requests_total{job="api"}[75s]))'
T0 = datetime(2024, 3, 1, tzinfo=UTC)
Profile = Callable[[float], float]


def _prometheus(profile: Profile) -> LoadSource:
    """The real adapter over a MockTransport that evaluates `profile` like query_range."""

    def handler(request: httpx.Request) -> httpx.Response:
        p = request.url.params
        if p["query"] != LOAD_QUERY:
            body = {"status": "success", "data": {"resultType": "matrix", "result": []}}
            return httpx.Response(200, json=body)
        start, end, step = float(p["start"]), float(p["end"]), float(p["step"])
        times = [start + k * step for k in range(round((end - start) / step) + 1)]
        values = [[t, repr(profile(t))] for t in times if not np.isnan(profile(t))]
        result = [{"metric": {}, "values": values}] if values else []
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, json=body)

    http = HttpSource(
        name="prometheus",
        client=httpx.Client(base_url="http://prom.test", transport=httpx.MockTransport(handler)),
        clock=FrozenClock(T0),
        retry=RetryPolicy(attempts=1),
    )
    return PrometheusLoadSource(http=http, max_points_per_request=7, short_gap_steps=0)


FACTORIES: list[Callable[[Profile], LoadSource]] = [_prometheus]


@pytest.fixture(params=FACTORIES, ids=lambda f: f.__name__.strip("_"))
def make(request: pytest.FixtureRequest) -> Callable[[Profile], LoadSource]:
    factory: Callable[[Profile], LoadSource] = request.param
    return factory


def _ramp(t: float) -> float:
    return (t - T0.timestamp()) / 60.0


@pytest.mark.parametrize(
    ("start", "end", "first", "count"),
    [
        pytest.param(T0, T0 + timedelta(minutes=30), T0, 30, id="aligned"),
        pytest.param(
            T0 + timedelta(seconds=20),
            T0 + timedelta(minutes=30, seconds=5),
            T0,
            31,
            id="unaligned",
        ),
        pytest.param(T0, T0 + timedelta(seconds=1), T0, 1, id="one step"),
    ],
)
def test_grid_is_aligned_and_half_open(
    make: Callable[[Profile], LoadSource],
    start: datetime,
    end: datetime,
    first: datetime,
    count: int,
) -> None:
    step = timedelta(minutes=1)
    series = make(_ramp).history(LOAD_QUERY, start=start, end=end, step=step)
    assert series.step == step
    assert series.start == first
    assert len(series) == count
    assert series.time_at(len(series) - 1) < end <= series.end
    np.testing.assert_allclose(series.values, [_ramp(t) for t in series.epoch_s()])


def test_deterministic(make: Callable[[Profile], LoadSource]) -> None:
    source = make(_ramp)
    window = {"start": T0, "end": T0 + timedelta(hours=1), "step": timedelta(minutes=5)}
    a = source.history(LOAD_QUERY, **window)  # type: ignore[arg-type]
    b = source.history(LOAD_QUERY, **window)  # type: ignore[arg-type]
    np.testing.assert_array_equal(a.values, b.values)
    assert isinstance(source.name, str)
    assert source.name


def test_missing_samples_are_nan(make: Callable[[Profile], LoadSource]) -> None:
    hole = (T0 + timedelta(minutes=10)).timestamp(), (T0 + timedelta(minutes=20)).timestamp()

    def holed(t: float) -> float:
        return np.nan if hole[0] <= t < hole[1] else _ramp(t)

    series = make(holed).history(
        LOAD_QUERY, start=T0, end=T0 + timedelta(minutes=30), step=timedelta(minutes=1)
    )
    assert np.isnan(series.values[10:20]).all()
    assert np.isfinite(series.values[:10]).all()
    assert np.isfinite(series.values[20:]).all()


def test_unknown_query_is_a_source_error(make: Callable[[Profile], LoadSource]) -> None:
    with pytest.raises(SourceError):
        make(_ramp).history(
            "no_such_metric", start=T0, end=T0 + timedelta(hours=1), step=timedelta(minutes=1)
        )


def test_naive_datetimes_are_refused(make: Callable[[Profile], LoadSource]) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make(_ramp).history(
            LOAD_QUERY,
            start=datetime(2024, 3, 1),  # noqa: DTZ001
            end=T0 + timedelta(hours=1),
            step=timedelta(minutes=1),
        )
