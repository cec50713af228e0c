"""The Prometheus adapter over `httpx.MockTransport` (no sockets).

Aspects: aligned grid and parameters; splitting past the 11,000-point limit with an exact
merge (table and hypothesis); gap rule applied after merging; NaN/Inf samples; several
series (error or sum);
resultType checks; errorType replies mapped to typed errors; 503 timeout; non-JSON answers;
POST form for long queries; auth headers and secret scrubbing; instant queries; rate_query,
rate_window and format_duration; connection and settings validation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from config.settings import PrometheusSettings
from forecasts.platform.errors import SourceDataError, SourceRequestError, SourceUnavailable
from forecasts.platform.http import HttpSource, RetryPolicy
from forecasts.sources.prometheus import (
    PrometheusConnection,
    PrometheusLoadSource,
    build_client,
    format_duration,
    rate_query,
    rate_window,
)
from forecasts.time import FrozenClock, to_epoch_s

T0 = datetime(2024, 1, 15, tzinfo=UTC)
STEP = timedelta(minutes=1)


def _value(ts: float) -> float:
    return 100.0 + (ts - to_epoch_s(T0)) / 60.0


class FakePrometheus:
    """A tiny query_range/query server: one series `_value(t)` except at `missing` instants,
    enforcing Prometheus' 11,000-steps rule. Records every request."""

    def __init__(
        self,
        *,
        missing: set[float] | None = None,
        series: int = 1,
        raw: Callable[[dict[str, str]], dict[str, Any]] | None = None,
    ) -> None:
        self.missing = missing or set()
        self.series = series
        self.raw = raw
        self.requests: list[httpx.Request] = []

    def params(self, request: httpx.Request) -> dict[str, str]:
        if request.method == "POST":
            assert request.headers["content-type"] == "application/x-www-form-urlencoded"
            return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        return dict(request.url.params)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        p = self.params(request)
        if self.raw is not None:
            return httpx.Response(200, json=self.raw(p))
        start, end, step = float(p["start"]), float(p["end"]), float(p["step"])
        if (end - start) / step > 11000:
            return httpx.Response(
                400,
                json={
                    "status": "error",
                    "errorType": "bad_data",
                    "error": "exceeded maximum resolution of 11,000 points per timeseries.",
                },
            )
        n = round((end - start) / step) + 1
        result = []
        for s in range(self.series):
            values = [
                [start + k * step, repr(_value(start + k * step) + s)]
                for k in range(n)
                if start + k * step not in self.missing
            ]
            if values:
                result.append({"metric": {"job": "api", "instance": str(s)}, "values": values})
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "matrix", "result": result}}
        )


def _source(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any):
    client = httpx.Client(base_url="http://prom.test", transport=httpx.MockTransport(handler))
    http = HttpSource(
        name="prometheus",
        client=client,
        clock=FrozenClock(T0),
        retry=RetryPolicy(attempts=2),
        sleep=lambda _s: None,
    )
    return PrometheusLoadSource(http=http, **kwargs)


def test_aligned_end_is_exclusive() -> None:
    fake = FakePrometheus()
    got = _source(fake).fetch("load", start=T0, end=T0 + 10 * STEP, step=STEP)
    assert len(got.series) == 10
    assert got.series.end == T0 + 10 * STEP
    assert fake.requests[0].url.params["end"] == str(int(to_epoch_s(T0 + 9 * STEP)))


def test_grid_is_aligned_and_ends_at_the_last_step_before_end() -> None:
    fake = FakePrometheus()
    source = _source(fake)
    got = source.fetch(
        "load",
        start=T0 + timedelta(seconds=30),
        end=T0 + timedelta(minutes=10, seconds=59),
        step=STEP,
    )
    assert got.series.start == T0  # floored
    assert len(got.series) == 11  # 00:00 .. 00:10 inclusive
    params = dict(fake.requests[0].url.params)
    assert (params["start"], params["end"], params["step"]) == (
        str(int(to_epoch_s(T0))),
        str(int(to_epoch_s(T0 + 10 * STEP))),
        "60",
    )
    np.testing.assert_allclose(got.series.values, [_value(t) for t in got.series.epoch_s()])
    assert got.requests == 1
    assert got.marked == ()
    assert got.interpolated == ()


@pytest.mark.parametrize(
    ("points", "max_points", "requests"),
    [
        pytest.param(11_001, 11_001, 1, id="11001 points fit one request"),
        pytest.param(12_001, 11_000, 2, id="12001 points need two"),
        pytest.param(2_500, 1_000, 3, id="three chunks"),
        pytest.param(10, 3, 4, id="small chunks"),
        pytest.param(6, 2, 3, id="exact multiple"),
    ],
)
def test_long_ranges_are_split_and_merged_exactly(
    points: int, max_points: int, requests: int
) -> None:
    fake = FakePrometheus()
    source = _source(fake, max_points_per_request=max_points)
    got = source.fetch("load", start=T0, end=T0 + STEP * points, step=STEP)
    assert got.requests == requests == len(fake.requests)
    assert len(got.series) == points
    np.testing.assert_array_equal(got.series.values, [_value(t) for t in got.series.epoch_s()])
    # Chunks continue each other: next start is previous end + one step.
    bounds = [(float(r.url.params["start"]), float(r.url.params["end"])) for r in fake.requests]
    for (_, prev_end), (next_start, _) in itertools.pairwise(bounds):
        assert next_start == prev_end + 60
    assert all((e - s) / 60 <= 11000 for s, e in bounds)


def test_gap_rule_runs_after_merging_across_chunk_boundaries() -> None:
    base = to_epoch_s(T0)
    # A 2-step gap straddling the chunk boundary at index 5 and a 6-step gap later.
    missing = {base + 60 * k for k in (4, 5)} | {base + 60 * k for k in range(10, 16)}
    source = _source(FakePrometheus(missing=missing), max_points_per_request=5, short_gap_steps=3)
    got = source.fetch("load", start=T0, end=T0 + STEP * 20, step=STEP)
    assert [(g.start, g.steps) for g in got.interpolated] == [(T0 + 4 * STEP, 2)]
    assert [(g.start, g.steps) for g in got.marked] == [(T0 + 10 * STEP, 6)]
    np.testing.assert_allclose(got.series.values[4:6], [_value(base + 240), _value(base + 300)])
    assert np.isnan(got.series.values[10:16]).all()
    assert got.interpolated_mask[4:6].all()
    assert not got.interpolated_mask[6]


def _matrix(*series: tuple[dict[str, str], list[list[Any]]]) -> dict[str, Any]:
    result = [{"metric": m, "values": v} for m, v in series]
    return {"status": "success", "data": {"resultType": "matrix", "result": result}}


def test_nan_and_inf_samples_count_as_missing() -> None:
    b = to_epoch_s(T0)
    body = _matrix(
        ({}, [[b, "1"], [b + 60, "NaN"], [b + 120, "+Inf"], [b + 180, "-Inf"], [b + 240, "5"]])
    )
    source = _source(FakePrometheus(raw=lambda _p: body), short_gap_steps=3)
    got = source.fetch("load", start=T0, end=T0 + 5 * STEP, step=STEP)
    assert got.non_finite_samples == 3
    np.testing.assert_allclose(got.series.values, [1, 2, 3, 4, 5])
    assert [g.steps for g in got.interpolated] == [3]


@pytest.mark.parametrize(
    ("sample", "match"),
    [
        pytest.param(["x", "1"], "does not hold a number", id="bad timestamp"),
        pytest.param([0, "abc"], "does not hold a number", id="bad value"),
        pytest.param([0], "is not \\[time, value\\]", id="short pair"),
        pytest.param("1", "is not \\[time, value\\]", id="not a list"),
    ],
)
def test_broken_samples_raise_data_errors(sample: Any, match: str) -> None:
    body = _matrix(({}, [sample]))
    source = _source(FakePrometheus(raw=lambda _p: body))
    with pytest.raises(SourceDataError, match=match):
        source.fetch("load", start=T0, end=T0 + STEP, step=STEP)


def test_samples_off_the_grid_are_refused() -> None:
    b = to_epoch_s(T0)
    body = _matrix(({}, [[b + 30, "1"]]))
    with pytest.raises(SourceDataError, match="off the requested grid"):
        _source(FakePrometheus(raw=lambda _p: body)).fetch(
            "load", start=T0, end=T0 + STEP, step=STEP
        )


def test_conflicting_duplicates_are_refused() -> None:
    b = to_epoch_s(T0)
    body = _matrix(({}, [[b, "1"], [b, "2"]]))
    with pytest.raises(SourceDataError, match="two different values"):
        _source(FakePrometheus(raw=lambda _p: body)).fetch(
            "load", start=T0, end=T0 + STEP, step=STEP
        )


def test_several_series_are_an_error_naming_them() -> None:
    source = _source(FakePrometheus(series=2))
    with pytest.raises(SourceDataError, match=r'2 series.*instance="0".*sum') as info:
        source.fetch("load", start=T0, end=T0 + STEP * 3, step=STEP)
    assert info.value.source == "prometheus"


def test_several_series_can_be_summed_per_step() -> None:
    b = to_epoch_s(T0)
    body = _matrix(
        ({"i": "a"}, [[b, "1"], [b + 60, "2"]]),
        ({"i": "b"}, [[b + 60, "10"], [b + 120, "20"]]),
    )
    source = _source(FakePrometheus(raw=lambda _p: body), short_gap_steps=0)
    got = source.fetch("load", start=T0, end=T0 + 4 * STEP, step=STEP, aggregate="sum")
    np.testing.assert_array_equal(got.series.values, [1, 12, 20, np.nan])


def test_no_series_at_all_is_a_data_error() -> None:
    with pytest.raises(SourceDataError, match="no series"):
        _source(FakePrometheus(raw=lambda _p: _matrix())).fetch(
            "absent_metric", start=T0, end=T0 + STEP, step=STEP
        )


@pytest.mark.parametrize(
    ("body", "match"),
    [
        pytest.param(
            {"status": "success", "data": {"resultType": "vector", "result": []}},
            "expected resultType matrix",
            id="vector from query_range",
        ),
        pytest.param(
            {"status": "success", "data": {"resultType": "string", "result": [0, "x"]}},
            "expected resultType matrix",
            id="string",
        ),
        pytest.param({"status": "success"}, "no data object", id="no data"),
        pytest.param(
            {"status": "error", "errorType": "internal", "error": "boom"},
            "status 'error': internal: boom",
            id="error status with 200",
        ),
        pytest.param([1, 2], "expected a JSON object", id="array body"),
        pytest.param(
            {"status": "success", "data": {"resultType": "matrix", "result": [{"values": []}]}},
            "without a metric object",
            id="no metric",
        ),
        pytest.param(
            {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {}}]}},
            "without a values list",
            id="no values",
        ),
    ],
)
def test_unusable_answers_raise_data_errors(body: Any, match: str) -> None:
    with pytest.raises(SourceDataError, match=match):
        _source(FakePrometheus(raw=lambda _p: body)).fetch(
            "load", start=T0, end=T0 + STEP, step=STEP
        )


def _error(status: int, error_type: str, message: str) -> Callable[[httpx.Request], Any]:
    def handler(_request: httpx.Request) -> httpx.Response:
        body = {"status": "error", "errorType": error_type, "error": message}
        return httpx.Response(status, json=body)

    return handler


@pytest.mark.parametrize(
    ("status", "error_type", "message", "kind"),
    [
        pytest.param(
            400,
            "bad_data",
            "1:5: parse error: unclosed left parenthesis",
            SourceRequestError,
            id="bad PromQL",
        ),
        pytest.param(
            422,
            "execution",
            "many-to-many matching not allowed",
            SourceRequestError,
            id="execution",
        ),
        pytest.param(
            503,
            "timeout",
            "query timed out in expression evaluation",
            SourceUnavailable,
            id="server timeout",
        ),
        pytest.param(500, "internal", "storage error", SourceUnavailable, id="internal"),
    ],
)
def test_error_replies_are_typed_with_errortype_and_text(
    status: int, error_type: str, message: str, kind: type[Exception]
) -> None:
    source = _source(_error(status, error_type, message))
    with pytest.raises(kind) as info:
        source.fetch("rate(x[5m]", start=T0, end=T0 + STEP, step=STEP)
    err = info.value
    assert isinstance(err, SourceRequestError | SourceUnavailable)
    assert err.error_type == error_type
    assert err.status == status
    assert message in str(err)
    assert "rate(x[5m]" in str(err)  # the query is named


def test_timeouts_are_unavailable() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(SourceUnavailable, match="timed out"):
        _source(handler).fetch("load", start=T0, end=T0 + STEP, step=STEP)


def test_html_from_a_proxy_is_a_data_error() -> None:
    def handler(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"})

    with pytest.raises(SourceDataError, match="HTML page"):
        _source(handler).fetch("load", start=T0, end=T0 + STEP, step=STEP)


def test_long_queries_go_by_post_form_short_ones_by_get() -> None:
    fake = FakePrometheus()
    source = _source(fake, post_above_bytes=200)
    source.fetch("load", start=T0, end=T0 + STEP, step=STEP)
    long_query = "load + " + " + ".join(f'0 * metric_{i}{{a="b"}}' for i in range(20))
    source.fetch(long_query, start=T0, end=T0 + STEP, step=STEP)
    assert [r.method for r in fake.requests] == ["GET", "POST"]
    assert fake.params(fake.requests[1])["query"] == long_query
    assert fake.requests[1].url.params.get("query") is None


def test_query_timeout_is_sent_to_prometheus() -> None:
    fake = FakePrometheus()
    _source(fake, query_timeout_seconds=2.5).fetch("load", start=T0, end=T0 + STEP, step=STEP)
    assert fake.requests[0].url.params["timeout"] == "2.5"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"start": T0, "end": T0 - STEP, "step": STEP}, "holds no", id="reversed"),
        pytest.param({"start": T0, "end": T0, "step": STEP}, "holds no", id="empty"),
        pytest.param(
            {"start": T0, "end": T0, "step": timedelta(microseconds=10)},
            "at least 1ms",
            id="tiny step",
        ),
        pytest.param(
            {"start": datetime(2024, 1, 1), "end": T0, "step": STEP},  # noqa: DTZ001
            "timezone-aware",
            id="naive start",
        ),
    ],
)
def test_bad_windows_are_programmer_errors(kwargs: dict[str, Any], match: str) -> None:
    source = _source(FakePrometheus())
    with pytest.raises(ValueError, match=match):
        source.fetch("load", **kwargs)
    with pytest.raises(ValueError, match="query is empty"):
        source.fetch(" ", start=T0, end=T0, step=STEP)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"max_points_per_request": 11_002}, "max_points_per_request", id="too many"),
        pytest.param({"max_points_per_request": 1}, "max_points_per_request", id="too few"),
        pytest.param({"short_gap_steps": -1}, "short_gap_steps", id="negative gap"),
        pytest.param({"query_timeout_seconds": 0}, "query_timeout_seconds", id="zero timeout"),
    ],
)
def test_adapter_options_are_validated(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _source(FakePrometheus(), **kwargs)


def test_history_is_the_series_of_fetch() -> None:
    source = _source(FakePrometheus())
    series = source.history("load", start=T0, end=T0 + 3 * STEP, step=STEP)
    assert len(series) == 3
    assert series.start == T0
    assert source.name == "prometheus"


# ----------------------------------------------------------------------------- instant
def _vector(*items: tuple[dict[str, str], str]) -> Callable[[dict[str, str]], dict[str, Any]]:
    def body(p: dict[str, str]) -> dict[str, Any]:
        result = [{"metric": m, "value": [float(p["time"]), v]} for m, v in items]
        return {"status": "success", "data": {"resultType": "vector", "result": result}}

    return body


def test_instant_queries_return_labelled_samples_at_the_time_asked() -> None:
    fake = FakePrometheus(raw=_vector(({"__name__": "up", "job": "a"}, "1"), ({"job": "b"}, "0")))
    samples = _source(fake).instant("up", at=T0)
    assert fake.requests[0].url.path == "/api/v1/query"
    assert fake.requests[0].url.params["time"] == str(int(to_epoch_s(T0)))
    assert [(dict(s.labels), s.value, s.at) for s in samples] == [
        ({"__name__": "up", "job": "a"}, 1.0, T0),
        ({"job": "b"}, 0.0, T0),
    ]


def test_instant_value_wants_at_most_one_series() -> None:
    one = _source(FakePrometheus(raw=_vector(({}, "+Inf"))))
    assert one.instant_value("x", at=T0) == math.inf
    none = _source(FakePrometheus(raw=_vector()))
    assert none.instant_value("x", at=T0) is None
    two = _source(FakePrometheus(raw=_vector(({"a": "1"}, "1"), ({"a": "2"}, "2"))))
    with pytest.raises(SourceDataError, match="2 series where one"):
        two.instant_value("x", at=T0)


def test_scalar_results_are_one_unlabelled_sample() -> None:
    body = {"status": "success", "data": {"resultType": "scalar", "result": [1705276800, "42"]}}
    samples = _source(FakePrometheus(raw=lambda _p: body)).instant("42", at=T0)
    assert [(dict(s.labels), s.value, s.at) for s in samples] == [({}, 42.0, T0)]


def test_instant_rejects_matrix_results_and_empty_queries() -> None:
    source = _source(FakePrometheus(raw=lambda _p: _matrix()))
    with pytest.raises(SourceDataError, match="expected resultType vector or scalar"):
        source.instant("x[5m]", at=T0)
    with pytest.raises(ValueError, match="query is empty"):
        source.instant("", at=T0)


# ----------------------------------------------------------------------------- PromQL
@pytest.mark.parametrize(
    ("duration", "text"),
    [
        pytest.param(timedelta(minutes=4), "4m", id="minutes"),
        pytest.param(timedelta(seconds=90), "90s", id="seconds"),
        pytest.param(timedelta(hours=2), "2h", id="hours"),
        pytest.param(timedelta(days=1), "1d", id="day"),
        pytest.param(timedelta(weeks=2), "2w", id="weeks"),
        pytest.param(timedelta(milliseconds=1500), "1500ms", id="milliseconds"),
    ],
)
def test_format_duration(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


def test_format_duration_rejects_sub_millisecond() -> None:
    with pytest.raises(ValueError, match="at least 1ms"):
        format_duration(timedelta(microseconds=10))


@pytest.mark.parametrize(
    ("scrape", "step", "window"),
    [
        pytest.param(15, 60, 75, id="step dominates: step + one scrape"),
        pytest.param(15, 30, 60, id="four scrapes dominate"),
        pytest.param(30, 300, 330, id="coarse step"),
        pytest.param(60, 60, 240, id="slow scrape"),
    ],
)
def test_rate_window_rule(scrape: int, step: int, window: int) -> None:
    got = rate_window(scrape_interval=timedelta(seconds=scrape), step=timedelta(seconds=step))
    assert got == timedelta(seconds=window)
    assert got >= 4 * timedelta(seconds=scrape)


def test_rate_query_forms() -> None:
    scrape, step = timedelta(seconds=15), timedelta(minutes=1)
    counter = 'http_requests_total{job="api"}'
    assert rate_query(counter, scrape_interval=scrape, step=step) == (
        'sum(rate(http_requests_total{job="api"}[75s]))'
    )
    assert rate_query(counter, scrape_interval=scrape, step=step, sum_by=["pod", "zone"]) == (
        'sum by (pod, zone) (rate(http_requests_total{job="api"}[75s]))'
    )
    assert rate_query("x_total", scrape_interval=scrape, step=step, sum_by=None) == (
        "rate(x_total[75s])"
    )


@pytest.mark.parametrize(
    "counter",
    [
        pytest.param("", id="empty"),
        pytest.param("x_total[5m]", id="has range"),
        pytest.param("rate(x_total[5m])", id="already a function"),
    ],
)
def test_rate_query_rejects_non_selectors(counter: str) -> None:
    with pytest.raises(ValueError, match="counter"):
        rate_query(counter, scrape_interval=timedelta(seconds=15), step=STEP)


def test_rate_window_rejects_non_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        rate_window(scrape_interval=timedelta(0), step=STEP)


# ----------------------------------------------------------------------------- connection
def test_bearer_token_is_sent_and_scrubbed_from_errors() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            400,
            json={
                "status": "error",
                "errorType": "bad_data",
                "error": "token s3cr3t-token rejected",
            },
        )

    conn = PrometheusConnection(url="http://prom.test", bearer_token="s3cr3t-token")
    source = PrometheusLoadSource.connect(
        conn, clock=FrozenClock(T0), transport=httpx.MockTransport(handler)
    )
    with pytest.raises(SourceRequestError) as info:
        source.fetch("up", start=T0, end=T0 + STEP, step=STEP)
    assert seen[0].headers["authorization"] == "Bearer s3cr3t-token"
    assert "s3cr3t-token" not in str(info.value)
    assert "s3cr3t-token" not in repr(conn)
    assert source.query_timeout_seconds == pytest.approx(0.9 * conn.timeout_seconds)
    source.close()


def test_basic_auth_is_sent() -> None:
    conn = PrometheusConnection(url="http://prom.test", basic_auth=("user", "pw"))
    client = build_client(conn)
    request = client.build_request("GET", "/api/v1/query")
    flow = client._auth.sync_auth_flow(request)  # type: ignore[union-attr]
    assert next(flow).headers["authorization"].startswith("Basic ")
    assert conn.secrets == ("pw",)
    client.close()


def test_tls_options(tmp_path: Path) -> None:
    insecure = build_client(PrometheusConnection(url="https://p", insecure_skip_verify=True))
    insecure.close()
    with pytest.raises(ValueError, match=r"ca_file .* does not exist"):
        build_client(PrometheusConnection(url="https://p", ca_file=tmp_path / "missing.pem"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"url": "prom:9090"}, "http:// or https://", id="no scheme"),
        pytest.param({"url": "http://p", "timeout_seconds": 0}, "timeout", id="zero timeout"),
        pytest.param(
            {"url": "http://p", "bearer_token": "t", "basic_auth": ("u", "p")},
            "either",
            id="two auths",
        ),
        pytest.param(
            {"url": "http://p", "ca_file": Path("/x"), "insecure_skip_verify": True},
            "only one",
            id="ca and insecure",
        ),
    ],
)
def test_connection_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PrometheusConnection(**kwargs)


def test_settings_translate_to_a_connection() -> None:
    settings = PrometheusSettings(
        url="https://prom.example:9090",
        basic_auth_username="me",
        basic_auth_password="pw",
        timeout_seconds=3,
    )
    conn = settings.connection()
    assert conn.basic_auth == ("me", "pw")
    assert conn.timeout_seconds == 3
    assert conn.bearer_token is None
    token = PrometheusSettings(bearer_token="tok").connection()
    assert token.bearer_token == "tok"
    assert token.basic_auth is None
    assert "s3cr3t" not in repr(PrometheusSettings(bearer_token="s3cr3t"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"bearer_token": "t", "basic_auth_username": "u"}, "either", id="two auths"),
        pytest.param({"basic_auth_password": "p"}, "needs basic_auth_username", id="no user"),
        pytest.param(
            {"ca_file": "/x.pem", "insecure_skip_verify": True}, "only one", id="ca and insecure"
        ),
        pytest.param({"max_points_per_request": 20_000}, "less than or equal", id="too many"),
        pytest.param({"short_gap_steps": -1}, "greater than or equal", id="negative gap"),
        pytest.param({"url": "prometheus:9090"}, "must start with http", id="url scheme"),
    ],
)
def test_settings_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        PrometheusSettings(**kwargs)


def test_ca_file_builds_a_verifying_client(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    pem = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(pem))
    client = build_client(PrometheusConnection(url="https://prom.test", ca_file=pem))
    assert str(client.base_url) == "https://prom.test"
    client.close()


def test_prometheus_warnings_are_kept_once() -> None:
    b = to_epoch_s(T0)

    def body(_p: dict[str, str]) -> dict[str, Any]:
        answer = _matrix(({}, [[b, "1"]]))
        answer["warnings"] = ["PromQL info: metric might not be a counter"]
        return answer

    got = _source(FakePrometheus(raw=body), max_points_per_request=2).fetch(
        "rate(x[1m])", start=T0, end=T0 + 3 * STEP, step=STEP
    )
    assert got.requests == 2
    assert got.warnings == ("PromQL info: metric might not be a counter",)


@settings(max_examples=15)
@given(points=st.integers(1, 200), max_points=st.integers(8, 60), offset_s=st.integers(0, 59))
def test_split_merge_property(points: int, max_points: int, offset_s: int) -> None:
    fake = FakePrometheus()
    source = _source(fake, max_points_per_request=max_points)
    start = T0 + timedelta(seconds=offset_s)
    got = source.fetch("load", start=start, end=T0 + STEP * points, step=STEP)
    assert len(got.series) == points
    assert got.requests == len(fake.requests) == -(-points // max_points)
    np.testing.assert_array_equal(got.series.values, [_value(t) for t in got.series.epoch_s()])
