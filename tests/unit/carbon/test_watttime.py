"""WattTime v3 adapter against hand-made fixtures on a local server.

Aspects: login with HTTP Basic, bearer header, proactive renewal before 30 minutes, login
failures (HTML 403 page, no token); forecast in lbs/MWh converted to g/kWh, marginal signal,
trimming; latest from horizon_hours=0; historical with the imputed marker, gaps, out of
order, duplicates, nulls, 32-day chunks; co2_aoer as an average signal without forecasts;
signal-index kept as a percentile; refusals: percentile or unknown units where an intensity
is expected, another signal type, plan errors (403 scope, 400 with `msg`).
"""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest
from pydantic import SecretStr

from forecasts.platform.errors import SourceDataError, SourceError, SourceRequestError
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon.watttime import LBS_PER_MWH_TO_G_PER_KWH, WattTimeSource
from tests.unit.carbon.conftest import HTML_ERROR_PAGE, REGIONS, T0, Harness, Reply

M, E, F = Quality.MEASURED, Quality.ESTIMATED, Quality.FORECAST
FIVE = timedelta(minutes=5)
PASSWORD = "hunter2-wt"
TOKEN = "eyJhbGciOi.fake-token-0001"
K = LBS_PER_MWH_TO_G_PER_KWH


def wt(h: Harness, **kw: object) -> WattTimeSource:
    h.server.route("/login", Reply.fixture("watttime", "login"))
    return WattTimeSource(
        h.http("watttime", attempts=2),
        regions=REGIONS,
        username="alice",
        password=SecretStr(PASSWORD),
        **kw,  # type: ignore[arg-type]
    )


def points(series: CarbonSeries) -> list[tuple[int, float, Quality]]:
    return [(int((p.at - T0) / FIVE), round(p.value, 6), p.quality) for p in series.points]


def g(lbs: float) -> float:
    return round(lbs * K, 6)


def test_forecast_is_converted_to_g_per_kwh(harness: Harness) -> None:
    harness.server.route("/v3/forecast", Reply.fixture("watttime", "forecast"))
    series = wt(harness).forecast("caiso", at=T0, horizon=timedelta(minutes=30))
    assert points(series) == [(i, g(812.4 - 2.5 * i), F) for i in range(6)]
    assert series.unit is CarbonUnit.G_PER_KWH
    assert series.signal is Signal.MARGINAL
    assert series.resolution == FIVE
    (login,) = harness.server.hits("/login")
    assert (
        login.headers["authorization"]
        == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    )
    (hit,) = harness.server.hits("/v3/forecast")
    assert hit.headers["authorization"] == f"Bearer {TOKEN}"
    assert hit.query == {
        "region": ["CAISO_NORTH"],
        "signal_type": ["co2_moer"],
        "horizon_hours": ["1"],
    }


def test_conversion_factor_is_pounds_to_grams() -> None:
    assert pytest.approx(453.59237 / 1000) == K


def test_latest_is_the_current_interval(harness: Harness) -> None:
    harness.server.route("/v3/forecast", Reply.fixture("watttime", "forecast_now"))
    series = wt(harness).latest("caiso", at=T0)
    assert points(series) == [(0, g(812.4), E)]
    (hit,) = harness.server.hits("/v3/forecast")
    assert hit.query["horizon_hours"] == ["0"]


def test_empty_forecast(harness: Harness) -> None:
    harness.server.route("/v3/forecast", Reply.fixture("watttime", "forecast_empty"))
    assert len(wt(harness).forecast("caiso", at=T0, horizon=timedelta(hours=1))) == 0


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param(
            "historical",
            [(-4, g(900), M), (-3, g(880), M), (-2, g(860), E), (-1, g(850), M)],
            id="normal with imputed marker",
        ),
        pytest.param("historical_gaps", [(-4, g(900), M), (-1, g(850), M)], id="gaps"),
        pytest.param(
            "historical_out_of_order",
            [(-4, g(900), M), (-3, g(880), M), (-2, g(860), M), (-1, g(850), M)],
            id="out of order",
        ),
        pytest.param(
            "historical_duplicates", [(-2, g(861), M), (-1, g(851), M)], id="duplicate timestamps"
        ),
        pytest.param("historical_nulls", [(-3, g(880), M), (-1, g(850), M)], id="nulls"),
    ],
)
def test_history(harness: Harness, case: str, expected: list[object]) -> None:
    harness.server.route("/v3/historical", Reply.fixture("watttime", case))
    series = wt(harness).history("caiso", start=T0 - 4 * FIVE, end=T0)
    assert points(series) == expected
    (hit,) = harness.server.hits("/v3/historical")
    assert hit.query["start"] == ["2025-01-20T11:40:00Z"]
    assert hit.query["end"] == ["2025-01-20T11:59:59Z"]
    assert hit.query["include_imputed_marker"] == ["true"]


def test_history_is_chunked_in_32_days(harness: Harness) -> None:
    harness.server.route("/v3/historical", Reply.fixture("watttime", "historical"))
    wt(harness).history("caiso", start=T0 - timedelta(days=70), end=T0)
    starts = [h.query["start"][0] for h in harness.server.hits("/v3/historical")]
    assert starts == ["2024-11-11T12:00:00Z", "2024-12-13T12:00:00Z", "2025-01-14T12:00:00Z"]
    assert len(harness.server.hits("/login")) == 1  # one token serves every chunk


def test_aoer_is_an_average_signal_without_forecasts(harness: Harness) -> None:
    harness.server.route("/v3/historical", Reply.fixture("watttime", "historical_aoer"))
    source = wt(harness, signal_type="co2_aoer")
    series = source.history("caiso", start=T0 - 2 * FIVE, end=T0)
    assert series.signal is Signal.AVERAGE
    assert points(series) == [(-2, g(700), M), (-1, g(690), M)]
    with pytest.raises(SourceRequestError, match="co2_moer only"):
        source.forecast("caiso", at=T0, horizon=timedelta(hours=1))


def test_signal_index_stays_a_percentile(harness: Harness) -> None:
    harness.server.route("/v3/signal-index", Reply.fixture("watttime", "signal_index"))
    series = wt(harness).signal_index("caiso", at=T0)
    assert series.unit is CarbonUnit.PERCENTILE
    assert series.values.tolist() == [96.0]


@pytest.mark.parametrize(
    ("route", "case", "error", "message"),
    [
        pytest.param(
            "/v3/forecast",
            "forecast_percentile_units",
            SourceDataError,
            "a percentile is not an intensity",
            id="percentile where g/kWh expected",
        ),
        pytest.param(
            "/v3/forecast",
            "forecast_unknown_units",
            SourceDataError,
            "expected 'lbs_co2_per_mwh' but got 'kg_co2_per_mwh'",
            id="unknown units",
        ),
        pytest.param(
            "/v3/forecast",
            "historical_aoer",
            SourceDataError,
            "asked for 'co2_moer' but got 'co2_aoer'",
            id="another signal type",
        ),
        pytest.param(
            "/v3/forecast",
            "error_403_scope",
            SourceRequestError,
            "Invalid scope",
            id="403 plan",
        ),
        pytest.param(
            "/v3/forecast",
            "error_400",
            SourceRequestError,
            "INVALID_PARAMS",
            id="400 with msg",
        ),
    ],
)
def test_refusals(
    harness: Harness, route: str, case: str, error: type[SourceError], message: str
) -> None:
    status = {"error_403_scope": 403, "error_400": 400}.get(case, 200)
    harness.server.route(route, Reply.fixture("watttime", case, status=status))
    with pytest.raises(error) as info:
        wt(harness).forecast("caiso", at=T0, horizon=timedelta(hours=1))
    assert message in str(info.value)
    assert PASSWORD not in str(info.value)
    assert TOKEN not in str(info.value)


def test_signal_index_in_lbs_is_refused(harness: Harness) -> None:
    harness.server.route("/v3/signal-index", Reply.fixture("watttime", "signal_index_wrong_units"))
    with pytest.raises(SourceDataError, match="expected 'percentile'"):
        wt(harness).signal_index("caiso", at=T0)


def test_token_is_renewed_before_it_expires(harness: Harness) -> None:
    harness.server.route("/v3/forecast", Reply.fixture("watttime", "forecast_now"))
    source = wt(harness)
    source.latest("caiso", at=T0)
    harness.clock.advance(timedelta(minutes=24))
    source.latest("caiso", at=T0)
    assert len(harness.server.hits("/login")) == 1
    harness.clock.advance(timedelta(minutes=2))  # 26 minutes after login
    source.latest("caiso", at=T0)
    assert len(harness.server.hits("/login")) == 2


def test_renewal_after_30_minutes_is_refused() -> None:
    with pytest.raises(ValueError, match="30 minutes"):
        WattTimeSource(
            None,  # type: ignore[arg-type]
            regions=REGIONS,
            username="a",
            password=SecretStr("b"),
            token_renew_after=timedelta(minutes=30),
        )


@pytest.mark.parametrize(
    ("reply", "error", "message"),
    [
        pytest.param(
            Reply(403, HTML_ERROR_PAGE, content_type="text/html"),
            SourceRequestError,
            "login failed (check username and password)",
            id="nginx 403 page",
        ),
        pytest.param(
            Reply(200, HTML_ERROR_PAGE, content_type="text/html"),
            SourceRequestError,
            "login failed: the answer was not JSON",
            id="HTML with 200",
        ),
        pytest.param(Reply(200, b'{"status": "ok"}'), SourceDataError, "no 'token'", id="no token"),
    ],
)
def test_login_failures(
    harness: Harness, reply: Reply, error: type[SourceError], message: str
) -> None:
    source = wt(harness)
    harness.server.route("/login", reply)
    with pytest.raises(error) as info:
        source.forecast("caiso", at=T0, horizon=timedelta(hours=1))
    assert message in str(info.value)
    assert PASSWORD not in str(info.value)
    assert harness.server.hits("/v3/forecast") == []
