"""Electricity Maps v3 adapter against hand-made fixtures on a local server.

Aspects: latest (estimated/measured/null), auth-token header and the exact query (zone,
emissionFactorType, shouldUseFallbackCallerLookup=false, disableEstimations); past-range with
gaps, out of order, duplicates, nulls, empty, and paging in <= 10-day windows; forecast with
horizonHours rounding and trimming; refusals: other factors than asked, another zone, a unit
field, a string value; error bodies (401 invalid token, token not valid for the zone).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import SecretStr

from forecasts.platform.errors import SourceDataError, SourceError, SourceRequestError
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon.electricitymaps import ElectricityMapsSource
from tests.unit.carbon.conftest import REGIONS, T0, Harness, Reply

M, E, F = Quality.MEASURED, Quality.ESTIMATED, Quality.FORECAST
H = timedelta(hours=1)
TOKEN = "em-token-xyz"


def em(h: Harness, **kw: object) -> ElectricityMapsSource:
    return ElectricityMapsSource(
        h.http("electricitymaps", prefix="/v3", attempts=2),
        regions=REGIONS,
        token=SecretStr(TOKEN),
        **kw,  # type: ignore[arg-type]
    )


def points(series: CarbonSeries) -> list[tuple[int, float, Quality]]:
    return [(int((p.at - T0) / H), p.value, p.quality) for p in series.points]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param("latest", [(0, 287, E)], id="estimated"),
        pytest.param("latest_measured", [(0, 301, M)], id="measured"),
        pytest.param("latest_null", [], id="null value"),
    ],
)
def test_latest(harness: Harness, case: str, expected: list[object]) -> None:
    harness.server.route("/v3/carbon-intensity/latest", Reply.fixture("electricitymaps", case))
    series = em(harness).latest("DE", at=T0 + timedelta(minutes=30))
    assert points(series) == expected
    assert series.unit is CarbonUnit.G_PER_KWH
    assert series.signal is Signal.AVERAGE
    assert series.emission_factor == "lifecycle"
    assert series.resolution == H
    (hit,) = harness.server.hits("/v3/carbon-intensity/latest")
    assert hit.headers["auth-token"] == TOKEN
    assert hit.query == {
        "zone": ["DE"],
        "emissionFactorType": ["lifecycle"],
        "shouldUseFallbackCallerLookup": ["false"],
    }


def test_direct_factors_and_disabled_estimations_are_asked_for(harness: Harness) -> None:
    harness.server.route(
        "/v3/carbon-intensity/latest", Reply.fixture("electricitymaps", "latest_direct")
    )
    series = em(harness, emission_factor="direct", disable_estimations=True).latest("DE", at=T0)
    assert series.emission_factor == "direct"
    assert series.values.tolist() == [241.0]
    (hit,) = harness.server.hits("/v3/carbon-intensity/latest")
    assert hit.query["emissionFactorType"] == ["direct"]
    assert hit.query["disableEstimations"] == ["true"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(
            "past_range", [(-3, 310, M), (-2, 305, E), (-1, 298, M), (0, 287, E)], id="normal"
        ),
        pytest.param("past_range_gaps", [(-3, 310, M), (0, 287, M)], id="gaps"),
        pytest.param(
            "past_range_out_of_order",
            [(-3, 310, M), (-2, 305, M), (-1, 298, M), (0, 287, M)],
            id="out of order",
        ),
        pytest.param(
            "past_range_duplicates", [(-2, 305, M), (-1, 299, M)], id="duplicate timestamps"
        ),
        pytest.param("past_range_nulls", [(-2, 305, M), (0, 287, M)], id="nulls"),
        pytest.param("past_range_empty", [], id="empty"),
    ],
)
def test_history(harness: Harness, case: str, expected: list[object]) -> None:
    harness.server.route("/v3/carbon-intensity/past-range", Reply.fixture("electricitymaps", case))
    series = em(harness).history("DE", start=T0 - 3 * H, end=T0 + H)
    assert points(series) == expected
    (hit,) = harness.server.hits("/v3/carbon-intensity/past-range")
    assert hit.query["start"] == ["2025-01-20T09:00:00Z"]
    assert hit.query["end"] == ["2025-01-20T13:00:00Z"]


def test_history_pages_in_10_day_windows(harness: Harness) -> None:
    harness.server.route(
        "/v3/carbon-intensity/past-range", Reply.fixture("electricitymaps", "past_range_empty")
    )
    em(harness).history("DE", start=T0 - timedelta(days=25), end=T0)
    windows = [
        (h.query["start"][0], h.query["end"][0])
        for h in harness.server.hits("/v3/carbon-intensity/past-range")
    ]
    assert windows == [
        ("2024-12-26T12:00:00Z", "2025-01-05T12:00:00Z"),
        ("2025-01-05T12:00:00Z", "2025-01-15T12:00:00Z"),
        ("2025-01-15T12:00:00Z", "2025-01-20T12:00:00Z"),
    ]


@pytest.mark.parametrize(
    ("horizon", "asked", "n"),
    [
        pytest.param(timedelta(hours=3), "6", 4, id="3h asks 6"),
        pytest.param(timedelta(hours=30), "48", 8, id="30h asks 48"),
        pytest.param(timedelta(hours=100), "72", 8, id="100h capped at 72"),
    ],
)
def test_forecast(harness: Harness, horizon: timedelta, asked: str, n: int) -> None:
    harness.server.route(
        "/v3/carbon-intensity/forecast", Reply.fixture("electricitymaps", "forecast")
    )
    series = em(harness).forecast("DE", at=T0 + timedelta(minutes=10), horizon=horizon)
    assert len(series) == n
    assert series.points[0].at == T0
    assert series.points[0].value == 280
    assert {p.quality for p in series.points} == {F}
    (hit,) = harness.server.hits("/v3/carbon-intensity/forecast")
    assert hit.query["horizonHours"] == [asked]


def test_empty_forecast(harness: Harness) -> None:
    harness.server.route(
        "/v3/carbon-intensity/forecast", Reply.fixture("electricitymaps", "forecast_empty")
    )
    assert len(em(harness).forecast("DE", at=T0, horizon=H)) == 0


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        pytest.param(
            Reply.fixture("electricitymaps", "latest_direct"),
            SourceDataError,
            "asked for 'lifecycle' factors but got 'direct'",
            id="other emission factors",
        ),
        pytest.param(
            Reply.fixture("electricitymaps", "latest_wrong_zone"),
            SourceDataError,
            "asked for zone 'DE' but the answer is for 'FR'",
            id="another zone",
        ),
        pytest.param(
            Reply.fixture("electricitymaps", "latest_unit_field"),
            SourceDataError,
            "expected gCO2eq/kWh but got 'kgCO2eq/kWh'",
            id="unexpected unit",
        ),
        pytest.param(
            Reply.fixture("electricitymaps", "latest_string_value"),
            SourceDataError,
            "latest.carbonIntensity: expected a number or null, got str '287'",
            id="string value",
        ),
        pytest.param(
            Reply(200, b"[1, 2]"), SourceDataError, "latest: expected a JSON object", id="array"
        ),
        pytest.param(
            Reply.fixture("electricitymaps", "error_401", status=401),
            SourceRequestError,
            "Invalid auth-token",
            id="401 invalid token",
        ),
        pytest.param(
            Reply.fixture("electricitymaps", "error_zone_unauthorized", status=401),
            SourceRequestError,
            "Token unauthorized for zoneKey=DE",
            id="401 zone not in plan",
        ),
    ],
)
def test_refusals(harness: Harness, reply: Reply, error: type[SourceError], message: str) -> None:
    harness.server.route("/v3/carbon-intensity/latest", reply)
    with pytest.raises(error) as info:
        em(harness).latest("DE", at=T0)
    assert message in str(info.value)
    assert TOKEN not in str(info.value)


def test_region_without_zone_is_a_request_error(harness: Harness) -> None:
    with pytest.raises(SourceRequestError, match="no zone configured"):
        em(harness).latest("caiso", at=T0)


def test_token_not_in_repr(harness: Harness) -> None:
    source = em(harness)
    assert TOKEN not in repr(source)
    assert TOKEN not in repr(source._http)
