"""Carbon Aware SDK WebAPI adapter against hand-made fixtures on a local server.

Aspects: emissions/bylocation (normal, gaps, out of order, duplicates, nulls, empty list,
204), TimeSpan durations as resolution, latest from a one-hour look-back, forecasts/current
with trimming and an empty answer, the configured signal, refusals (unit field, bad TimeSpan,
two forecasts for one location), RFC 7807 problem details (400, 501); TimeSpan parsing.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.series import CarbonSeries, Quality, Signal
from forecasts.sources.carbon.carbon_aware_sdk import CarbonAwareSdkSource, parse_timespan
from tests.unit.carbon.conftest import REGIONS, T0, Harness, Reply, fixture_bytes

M, F = Quality.MEASURED, Quality.FORECAST
FIVE = timedelta(minutes=5)


def sdk(h: Harness, signal: Signal = Signal.MARGINAL) -> CarbonAwareSdkSource:
    return CarbonAwareSdkSource(
        h.http("carbon_aware_sdk", attempts=2), regions=REGIONS, signal=signal
    )


def points(series: CarbonSeries) -> list[tuple[int, float, Quality]]:
    return [(int((p.at - T0) / FIVE), p.value, p.quality) for p in series.points]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(
            "bylocation",
            [(-3, 470.2, M), (-2, 466.0, M), (-1, 461.9, M), (0, 455.1, M)],
            id="normal",
        ),
        pytest.param("bylocation_gaps", [(-3, 470.2, M), (0, 455.1, M)], id="gaps"),
        pytest.param(
            "bylocation_out_of_order",
            [(-3, 470.2, M), (-2, 466.0, M), (-1, 461.9, M), (0, 455.1, M)],
            id="out of order",
        ),
        pytest.param(
            "bylocation_duplicates", [(-1, 462.5, M), (0, 455.1, M)], id="duplicate timestamps"
        ),
        pytest.param("bylocation_nulls", [(-1, 461.9, M), (0, 455.1, M)], id="nulls"),
        pytest.param("bylocation_empty", [], id="empty list"),
    ],
)
def test_history(harness: Harness, case: str, expected: list[object]) -> None:
    harness.server.route("/emissions/bylocation", Reply.fixture("carbon_aware_sdk", case))
    series = sdk(harness).history("eastus", start=T0 - 3 * FIVE, end=T0 + FIVE)
    assert points(series) == expected
    assert series.signal is Signal.MARGINAL
    if expected:
        assert series.resolution == FIVE
    (hit,) = harness.server.hits("/emissions/bylocation")
    assert hit.query == {
        "location": ["eastus"],
        "time": ["2025-01-20T11:45:00Z"],
        "toTime": ["2025-01-20T12:05:00Z"],
    }


def test_204_means_no_data(harness: Harness) -> None:
    harness.server.route("/emissions/bylocation", Reply(204))
    assert len(sdk(harness).history("eastus", start=T0 - FIVE, end=T0)) == 0


def test_hourly_timespans_set_the_resolution(harness: Harness) -> None:
    harness.server.route(
        "/emissions/bylocation", Reply.fixture("carbon_aware_sdk", "bylocation_hourly_days")
    )
    series = sdk(harness, Signal.AVERAGE).history("eastus", start=T0, end=T0 + timedelta(hours=2))
    assert series.resolution == timedelta(hours=1)
    assert series.signal is Signal.AVERAGE
    assert series.values.tolist() == [412.5, 388.0]


def test_latest_looks_back_one_hour(harness: Harness) -> None:
    harness.server.route("/emissions/bylocation", Reply.fixture("carbon_aware_sdk", "bylocation"))
    series = sdk(harness).latest("eastus", at=T0 + timedelta(minutes=2))
    assert points(series) == [(0, 455.1, M)]
    (hit,) = harness.server.hits("/emissions/bylocation")
    assert hit.query["time"] == ["2025-01-20T11:02:00Z"]
    assert hit.query["toTime"] == ["2025-01-20T12:02:00Z"]


def test_forecast(harness: Harness) -> None:
    harness.server.route(
        "/emissions/forecasts/current", Reply.fixture("carbon_aware_sdk", "forecast_current")
    )
    series = sdk(harness).forecast(
        "eastus", at=T0 + timedelta(minutes=7), horizon=timedelta(minutes=20)
    )
    # 12:05 (covers 12:07) .. 12:25 (starts before 12:27)
    assert [(i, round(v, 6), q) for i, v, q in points(series)] == [
        (i, round(455.1 - 1.5 * i, 6), F) for i in range(1, 6)
    ]
    assert series.resolution == FIVE
    (hit,) = harness.server.hits("/emissions/forecasts/current")
    assert hit.query == {
        "location": ["eastus"],
        "dataStartAt": ["2025-01-20T12:07:00Z"],
        "dataEndAt": ["2025-01-20T12:27:00Z"],
    }


def test_empty_forecast(harness: Harness) -> None:
    harness.server.route(
        "/emissions/forecasts/current", Reply.fixture("carbon_aware_sdk", "forecast_empty")
    )
    assert len(sdk(harness).forecast("eastus", at=T0, horizon=timedelta(hours=1))) == 0


def test_two_forecasts_for_one_location_are_refused(harness: Harness) -> None:
    one = fixture_bytes("carbon_aware_sdk", "forecast_current").strip()
    two = b"[" + one[1:-1] + b"," + one[1:-1] + b"]"
    harness.server.route("/emissions/forecasts/current", Reply(200, two))
    with pytest.raises(SourceDataError, match="got 2 forecasts"):
        sdk(harness).forecast("eastus", at=T0, horizon=timedelta(hours=1))


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        pytest.param(
            Reply.fixture("carbon_aware_sdk", "bylocation_unit_field"),
            SourceDataError,
            "expected gCO2eq/kWh but got 'lbs/MWh'",
            id="unit field",
        ),
        pytest.param(
            Reply.fixture("carbon_aware_sdk", "bylocation_bad_duration"),
            SourceDataError,
            "emissions[0].duration: not a TimeSpan",
            id="bad TimeSpan",
        ),
        pytest.param(
            Reply(200, b'{"rating": 1}'),
            SourceDataError,
            "emissions: expected a JSON array",
            id="object instead of array",
        ),
        pytest.param(
            Reply.fixture("carbon_aware_sdk", "problem_400", status=400),
            SourceRequestError,
            "ArgumentException; location 'nowhere' not found",
            id="RFC 7807 400",
        ),
        pytest.param(
            Reply.fixture("carbon_aware_sdk", "problem_501", status=501),
            SourceRequestError,
            "does not support historical forecasts",
            id="RFC 7807 501",
        ),
    ],
)
def test_refusals(harness: Harness, reply: Reply, error: type[Exception], message: str) -> None:
    harness.server.route("/emissions/bylocation", reply)
    with pytest.raises(error) as info:
        sdk(harness).history("eastus", start=T0 - FIVE, end=T0)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("00:05:00", timedelta(minutes=5), id="minutes"),
        pytest.param("08:00:00", timedelta(hours=8), id="hours"),
        pytest.param("1.02:03:04.5", timedelta(days=1, hours=2, minutes=3, seconds=4.5), id="days"),
        pytest.param("00:00:00.0000001", timedelta(microseconds=0.1), id="ticks"),
    ],
)
def test_parse_timespan(text: str, expected: timedelta) -> None:
    assert parse_timespan(text) == expected


@pytest.mark.parametrize("text", ["5m", "00:60:00", "-00:05:00", "", "PT5M"])
def test_parse_timespan_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="TimeSpan"):
        parse_timespan(text)
