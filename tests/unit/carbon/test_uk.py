"""UK Carbon Intensity adapter against hand-made fixtures on a local server.

Aspects: national history (actual -> measured, null actual -> forecast), gaps, out of order,
duplicates, nulls, empty, unexpected units / 30-minute resolution, wrong value types, the
error body shape (400, 500); regional windows in both `data` shapes (list, object), a region
mismatch, an invalid region id; forecast windows fw24h/fw48h and horizon trimming; latest;
14-day paging of long national ranges; exact request paths.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from forecasts.platform.errors import (
    SourceDataError,
    SourceError,
    SourceRequestError,
    SourceUnavailable,
)
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon.uk import UkCarbonIntensitySource
from tests.unit.carbon.conftest import REGIONS, T0, Harness, Reply

M, F = Quality.MEASURED, Quality.FORECAST
HH = timedelta(minutes=30)


def uk(h: Harness) -> UkCarbonIntensitySource:
    return UkCarbonIntensitySource(h.http("uk", attempts=2), regions=REGIONS)


def history(h: Harness) -> CarbonSeries:
    return uk(h).history("GB", start=T0 - 2 * HH, end=T0 + 2 * HH)


def points(series: CarbonSeries) -> list[tuple[int, float, Quality]]:
    """(minutes from T0, value, quality) for compact expectations."""
    return [(int((p.at - T0) / timedelta(minutes=1)), p.value, p.quality) for p in series.points]


HISTORY_CASES = [
    pytest.param(
        "national_range", [(-60, 204, M), (-30, 188, M), (0, 176, M), (30, 175, F)], id="normal"
    ),
    pytest.param("national_gaps", [(-60, 204, M), (0, 176, M), (30, 175, F)], id="gaps"),
    pytest.param(
        "national_out_of_order",
        [(-60, 204, M), (-30, 188, M), (0, 176, M), (30, 175, F)],
        id="out of order",
    ),
    pytest.param("national_duplicates", [(-30, 188, M), (0, 176, M)], id="duplicate timestamps"),
    pytest.param("national_nulls", [(-30, 190, F), (0, 176, M)], id="nulls"),
    pytest.param("empty", [], id="empty"),
]


@pytest.mark.parametrize(("case", "expected"), HISTORY_CASES)
def test_national_history(harness: Harness, case: str, expected: list[object]) -> None:
    harness.server.route("/intensity/", Reply.fixture("uk", case))
    series = history(harness)
    assert points(series) == expected
    assert series.unit is CarbonUnit.G_PER_KWH
    assert series.signal is Signal.AVERAGE
    assert series.resolution == HH
    assert series.region == "GB"
    assert series.provider == "uk"
    assert series.fetched_at == T0
    (hit,) = harness.server.hits("/intensity/")
    assert hit.path == "/intensity/2025-01-20T11:00Z/2025-01-20T13:00Z"
    assert hit.headers["accept"] == "application/json"


BAD_CASES = [
    pytest.param(
        Reply.fixture("uk", "national_unit_field"), SourceDataError, "kgCO2/kWh", id="unit field"
    ),
    pytest.param(
        Reply.fixture("uk", "national_wrong_period"),
        SourceDataError,
        "not 30 minutes",
        id="60-minute periods",
    ),
    pytest.param(
        Reply.fixture("uk", "national_string_values"),
        SourceDataError,
        "intensity.forecast: expected a number",
        id="values as strings",
    ),
    pytest.param(
        Reply(200, b'{"data": {"from": "x"}}'),
        SourceDataError,
        "data: expected a JSON array",
        id="data not a list",
    ),
    pytest.param(
        Reply(200, b'{"data": [{"from": "2025-01-20T12:00", "to": "2025-01-20T12:30Z"}]}'),
        SourceDataError,
        "data[0].from: timestamp '2025-01-20T12:00' has no time zone",
        id="naive timestamp",
    ),
    pytest.param(
        Reply.fixture("uk", "error_400", status=400),
        SourceRequestError,
        "Please enter a valid ISO 8601 datetime",
        id="400 error body",
    ),
    pytest.param(
        Reply.fixture("uk", "error_500", status=500),
        SourceUnavailable,
        "Something went wrong",
        id="500 error body",
    ),
]


@pytest.mark.parametrize(("reply", "error", "message"), BAD_CASES)
def test_bad_answers_are_typed_errors(
    harness: Harness, reply: Reply, error: type[SourceError], message: str
) -> None:
    harness.server.route("/intensity/", reply)
    with pytest.raises(error) as info:
        history(harness)
    assert message in str(info.value)


@pytest.mark.parametrize("shape", ["regional_list", "regional_object"])
def test_regional_forecast_accepts_both_data_shapes(harness: Harness, shape: str) -> None:
    harness.server.route("/regional/", Reply.fixture("uk", shape))
    series = uk(harness).forecast(
        "london", at=T0 + timedelta(minutes=5), horizon=timedelta(hours=3)
    )
    assert points(series) == [(0, 161, F), (30, 158, F), (60, 150, F)]
    assert series.region == "london"
    (hit,) = harness.server.hits("/regional/")
    assert hit.path == "/regional/intensity/2025-01-20T12:00Z/fw24h/regionid/13"


def test_regional_history_is_forecast_quality(harness: Harness) -> None:
    harness.server.route("/regional/", Reply.fixture("uk", "regional_object"))
    series = uk(harness).history("london", start=T0, end=T0 + timedelta(hours=1))
    assert points(series) == [(0, 161, F), (30, 158, F)]
    (hit,) = harness.server.hits("/regional/")
    assert hit.path == "/regional/intensity/2025-01-20T12:00Z/2025-01-20T13:00Z/regionid/13"


def test_regional_answer_for_another_region_is_refused(harness: Harness) -> None:
    harness.server.route("/regional/", Reply.fixture("uk", "regional_wrong_region"))
    with pytest.raises(SourceDataError, match="asked for region 13"):
        uk(harness).forecast("london", at=T0, horizon=timedelta(hours=1))


def test_invalid_region_id_is_refused_before_any_request(harness: Harness) -> None:
    with pytest.raises(SourceRequestError, match=r"region id 1\.\.17"):
        uk(harness).latest("nowhere", at=T0)
    with pytest.raises(SourceRequestError, match="no zone configured for provider 'uk'"):
        uk(harness).latest("DE", at=T0)
    with pytest.raises(SourceRequestError, match="unknown region 'Atlantis'"):
        uk(harness).latest("Atlantis", at=T0)
    assert harness.server.seen == []


@pytest.mark.parametrize(
    ("horizon", "window", "expected"),
    [
        pytest.param(
            timedelta(hours=1), "fw24h", [(0, 182, F), (30, 175, F), (60, 168, F)], id="1h"
        ),
        pytest.param(
            timedelta(hours=30),
            "fw48h",
            [(0, 182, F), (30, 175, F), (60, 168, F), (90, 160, F), (120, 171, F), (150, 190, F)],
            id="30h",
        ),
    ],
)
def test_national_forecast_uses_forecast_values(
    harness: Harness, horizon: timedelta, window: str, expected: list[object]
) -> None:
    harness.server.route("/intensity/", Reply.fixture("uk", "national_fw48h"))
    series = uk(harness).forecast("gb", at=T0 + timedelta(minutes=10), horizon=horizon)
    assert points(series) == expected  # the first period's actual (176) is not a forecast
    (hit,) = harness.server.hits("/intensity/")
    assert hit.path == f"/intensity/2025-01-20T12:00Z/{window}"


def test_latest_is_the_period_containing_at(harness: Harness) -> None:
    harness.server.route("/intensity/", Reply.fixture("uk", "national_range"))
    series = uk(harness).latest("GB", at=T0 + timedelta(minutes=29))
    assert points(series) == [(0, 176, M)]
    (hit,) = harness.server.hits("/intensity/")
    assert hit.path == "/intensity/2025-01-20T11:30Z/2025-01-20T12:30Z"


def test_long_national_ranges_are_paged_in_14_day_windows(harness: Harness) -> None:
    harness.server.route("/intensity/", Reply.fixture("uk", "empty"))
    uk(harness).history("GB", start=T0 - timedelta(days=30), end=T0)
    paths = [h.path for h in harness.server.hits("/intensity/")]
    assert paths == [
        "/intensity/2024-12-21T12:00Z/2025-01-04T12:00Z",
        "/intensity/2025-01-04T12:00Z/2025-01-18T12:00Z",
        "/intensity/2025-01-18T12:00Z/2025-01-20T12:00Z",
    ]


def test_history_keeps_only_the_asked_range(harness: Harness) -> None:
    harness.server.route("/intensity/", Reply.fixture("uk", "national_range"))
    series = uk(harness).history("GB", start=T0 - HH, end=T0 + HH)
    assert points(series) == [(-30, 188, M), (0, 176, M)]
