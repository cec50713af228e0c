"""One contract for every `LoadSource`: the Prometheus adapter, `FakeLoadSource` and the
SAMPLE DATA `SampleLoadSource`.

Aspects: the half-open grid (instants before `end`, `series.end` the first step after) on
aligned windows for all; start floored to the step for the Prometheus adapter (the fakes
take `start` as given: the loop always passes aligned windows); values are what the backend
holds at each instant; determinism; a trailing outage is NaN; an unknown query is a
`SourceError` where the source has a catalogue; a naive datetime is a programmer error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from forecasts.load import LoadSource
from forecasts.platform.errors import SourceError
from forecasts.platform.http import HttpSource, RetryPolicy
from forecasts.sources.prometheus import PrometheusLoadSource
from forecasts.sources.sample import SampleLoadSource, sample_load
from forecasts.time import FrozenClock
from tests.fakes import FakeLoadSource

T0 = datetime(2024, 3, 1, tzinfo=UTC)
M = timedelta(minutes=1)
OUTAGE = T0 + 20 * M  # nothing from here on, when a subject is built with an outage
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Subject:
    source: LoadSource
    query: str
    expected: Callable[[FloatArray], FloatArray]  # values at epoch seconds
    floors_start: bool = False
    has_catalogue: bool = True


def _prometheus(*, outage: bool = False) -> Subject:
    """The real adapter over a MockTransport that answers query_range from a ramp."""
    query = 'sum(rate(http_requests_total{job="api"}[75s]))'

    def ramp(t: FloatArray) -> FloatArray:
        values = (t - T0.timestamp()) / 60.0
        return np.where(outage & (t >= OUTAGE.timestamp()), np.nan, values)

    def handler(request: httpx.Request) -> httpx.Response:
        p = request.url.params
        result = []
        if p["query"] == query:
            start, end, step = float(p["start"]), float(p["end"]), float(p["step"])
            times = start + step * np.arange(round((end - start) / step) + 1, dtype=float)
            pairs = [
                [float(t), repr(float(v))]
                for t, v in zip(times, ramp(times), strict=True)
                if not np.isnan(v)
            ]
            result = [{"metric": {}, "values": pairs}] if pairs else []
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, json=body)

    http = HttpSource(
        name="prometheus",
        client=httpx.Client(base_url="http://prom.test", transport=httpx.MockTransport(handler)),
        clock=FrozenClock(T0),
        retry=RetryPolicy(attempts=1),
    )
    source = PrometheusLoadSource(http=http, max_points_per_request=7, short_gap_steps=0)
    return Subject(source, query, ramp, floors_start=True)


def _fake(*, outage: bool = False) -> Subject:
    source = FakeLoadSource(levels={"load": 42.0}, missing_after=OUTAGE if outage else None)

    def expected(t: FloatArray) -> FloatArray:
        return np.where(outage & (t >= OUTAGE.timestamp()), np.nan, 42.0)

    return Subject(source, "load", expected)


def _sample(*, outage: bool = False) -> Subject:
    if outage:
        pytest.skip("SAMPLE DATA has no outages")
    return Subject(
        SampleLoadSource(seed=3),
        "sample:web",
        lambda t: sample_load("web", t, seed=3),
        has_catalogue=False,
    )


@pytest.fixture(params=[_prometheus, _fake, _sample], ids=["prometheus", "fake", "sample"])
def make(request: pytest.FixtureRequest) -> Callable[..., Subject]:
    factory: Callable[..., Subject] = request.param
    return factory


@pytest.mark.parametrize(
    ("start", "end", "count"),
    [
        pytest.param(T0, T0 + 30 * M, 30, id="aligned"),
        pytest.param(T0, T0 + 30 * M + timedelta(seconds=5), 31, id="unaligned end"),
        pytest.param(T0, T0 + timedelta(seconds=1), 1, id="one step"),
    ],
)
def test_grid_is_half_open(
    make: Callable[..., Subject], start: datetime, end: datetime, count: int
) -> None:
    s = make()
    series = s.source.history(s.query, start=start, end=end, step=M)
    assert series.step == M
    assert series.start == start
    assert len(series) == count
    assert series.time_at(len(series) - 1) < end <= series.end
    np.testing.assert_allclose(series.values, s.expected(series.epoch_s()))


def test_start_is_floored_to_the_step(make: Callable[..., Subject]) -> None:
    s = make()
    if not s.floors_start:
        pytest.skip("this source takes start as given (callers pass aligned windows)")
    series = s.source.history(s.query, start=T0 + timedelta(seconds=20), end=T0 + 30 * M, step=M)
    assert series.start == T0
    assert len(series) == 30


def test_deterministic(make: Callable[..., Subject]) -> None:
    s = make()
    a = s.source.history(s.query, start=T0, end=T0 + 60 * M, step=5 * M)
    b = s.source.history(s.query, start=T0, end=T0 + 60 * M, step=5 * M)
    np.testing.assert_array_equal(a.values, b.values)
    assert s.source.name


def test_an_outage_is_nan(make: Callable[..., Subject]) -> None:
    s = make(outage=True)
    series = s.source.history(s.query, start=T0, end=T0 + 30 * M, step=M)
    assert np.isnan(series.values[20:]).all()
    assert np.isfinite(series.values[:20]).all()


def test_unknown_query_is_a_source_error(make: Callable[..., Subject]) -> None:
    s = make()
    if not s.has_catalogue:
        pytest.skip("every name is a valid SAMPLE DATA profile")
    with pytest.raises(SourceError):
        s.source.history("no_such_metric", start=T0, end=T0 + 60 * M, step=M)


def test_naive_datetimes_are_refused(make: Callable[..., Subject]) -> None:
    s = make()
    with pytest.raises(ValueError, match="timezone-aware"):
        s.source.history(
            s.query,
            start=datetime(2024, 3, 1),  # noqa: DTZ001
            end=T0 + 60 * M,
            step=M,
        )
