"""Open-Meteo weather forecasts (`forecasts.sources.open_meteo`) against the local replay
server (real sockets on 127.0.0.1, the project's HTTP client), with hand-made answers in the
documented `/v1/forecast` format (`tests/fixtures/carbon/open_meteo/`).

Aspects: the request (variables, m/s, GMT, past/forecast days, the key only when given);
units converted to the GFS trace's columns (K, m/s, W/m2, mm); a region's weighted points
averaged; every row known from the fetch hour; every provider fault case of the carbon
sources (401/403/404, 429 with Retry-After, 5xx, stall, truncated JSON, HTML) ends in data
or a typed `SourceError`; the API's own 400 body, wrong units, ragged arrays, bad times,
non-GMT answers and unknown regions are clear errors; the API key never appears in one.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.sources.open_meteo import OpenMeteoWeatherSource, WeightedPoint
from tests.unit.carbon.conftest import FIXTURES, T0, Harness, Reply
from tests.unit.carbon.test_faults import FAULTS, Fault

Doc = dict[str, Any]
ROUTE = "/v1/forecast"
KEY = "om-secret-key-4713"
BERLIN = WeightedPoint(52.52, 13.41, weight=3.0)
HAMBURG = WeightedPoint(53.55, 9.99, weight=1.0)


def source(h: Harness, *, points=(BERLIN,), key: SecretStr | None = None):
    return OpenMeteoWeatherSource(
        h.http("open_meteo"),
        points={"DE": points},
        past_days=1,
        forecast_days=1,
        api_key=key,
    )


def fetch(h: Harness, **kw):
    return source(h, **kw).exog("DE", start=T0 - timedelta(days=1), end=T0, at=T0)


def doc(case: str = "forecast") -> Doc:
    out: Doc = json.loads((FIXTURES / "open_meteo" / f"{case}.json").read_text())
    return out


def body(d: Doc) -> bytes:
    return json.dumps(d).encode()


def test_reads_converts_and_asks_for_what_it_needs(harness: Harness) -> None:
    harness.server.route(ROUTE, Reply.fixture("open_meteo", "forecast"))
    ks = fetch(harness)
    assert ks.columns == (
        "wind_speed_ms",
        "temperature_k",
        "dewpoint_k",
        "dswrf_wm2",
        "precip_kgm2",
    )
    assert ks.start.isoformat() == "2025-01-19T00:00:00+00:00"
    assert len(ks) == 48
    d = doc()
    np.testing.assert_allclose(ks.values[:, 0], d["hourly"]["wind_speed_10m"])
    np.testing.assert_allclose(ks.values[:, 1], np.array(d["hourly"]["temperature_2m"]) + 273.15)
    assert (ks.known_s == T0.timestamp()).all()  # known from the fetch, not before
    (seen,) = harness.server.hits(ROUTE)
    q = seen.query
    assert q["hourly"] == [
        "wind_speed_10m,temperature_2m,dew_point_2m,shortwave_radiation,precipitation"
    ]
    assert (q["wind_speed_unit"], q["timezone"]) == (["ms"], ["GMT"])
    assert (q["past_days"], q["forecast_days"]) == (["1"], ["1"])
    assert "apikey" not in q


def test_weighted_points_are_averaged(harness: Harness) -> None:
    harness.server.route(
        ROUTE, Reply.fixture("open_meteo", "forecast"), Reply.fixture("open_meteo", "forecast_b")
    )
    ks = fetch(harness, points=(BERLIN, HAMBURG))
    a, b = doc()["hourly"], doc("forecast_b")["hourly"]
    np.testing.assert_allclose(
        ks.values[:, 0], 0.75 * np.array(a["wind_speed_10m"]) + 0.25 * np.array(b["wind_speed_10m"])
    )
    assert len(harness.server.hits(ROUTE)) == 2


@pytest.mark.parametrize("fault", FAULTS)
def test_every_provider_fault_ends_in_data_or_a_typed_error(harness: Harness, fault: Fault) -> None:
    harness.server.route(ROUTE, *fault.replies(Reply.fixture("open_meteo", "forecast")))
    key = SecretStr(KEY)
    if fault.error is None:
        assert len(fetch(harness, key=key)) == 48
    else:
        with pytest.raises(fault.error) as info:
            fetch(harness, key=key)
        err = info.value
        assert err.source == "open_meteo"
        assert fault.message in str(err)
        if fault.status is not None:
            assert err.status == fault.status
        assert KEY not in str(err)
    if fault.hits is not None:
        assert len(harness.server.hits(ROUTE)) == fault.hits
    if fault.sleeps is not None:
        assert harness.sleeps == fault.sleeps


def _bad_unit() -> Doc:
    d = doc()
    d["hourly_units"]["temperature_2m"] = "°F"
    return d


def _ragged() -> Doc:
    d = doc()
    d["hourly"]["precipitation"] = d["hourly"]["precipitation"][:-1]
    return d


def _bad_time() -> Doc:
    d = doc()
    d["hourly"]["time"][3] = "yesterday"
    return d


def _gap() -> Doc:
    d = doc()
    del d["hourly"]["time"][5]
    for k in d["hourly"]:
        if k != "time":
            del d["hourly"][k][5]
    return d


def _local_time() -> Doc:
    d = doc()
    d["utc_offset_seconds"] = 3600
    return d


def _string_value() -> Doc:
    d = doc()
    d["hourly"]["wind_speed_10m"][0] = "calm"
    return d


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        pytest.param(_bad_unit, "unit '°F', expected '°C'", id="wrong unit"),
        pytest.param(_ragged, "'precipitation': 47 values for 48 times", id="ragged arrays"),
        pytest.param(_bad_time, "bad time 'yesterday'", id="bad time"),
        pytest.param(_gap, "not consecutive hours", id="missing hour"),
        pytest.param(_local_time, "not in GMT", id="local time"),
        pytest.param(_string_value, "not a number", id="string value"),
        pytest.param(lambda: {"hourly": {}}, "hourly_units", id="no units"),
        pytest.param(list, "expected a JSON object", id="a list"),
    ],
)
def test_bad_answers_are_data_errors(harness: Harness, answer, message: str) -> None:
    harness.server.route(ROUTE, Reply(200, body(answer())))
    with pytest.raises(SourceDataError, match=message):
        fetch(harness)


def test_nulls_are_missing_values(harness: Harness) -> None:
    d = doc()
    d["hourly"]["shortwave_radiation"][2] = None
    harness.server.route(ROUTE, Reply(200, body(d)))
    assert np.isnan(fetch(harness).values[2, 3])


def test_api_error_body_and_key_handling(harness: Harness) -> None:
    harness.server.route(ROUTE, Reply.fixture("open_meteo", "error_400", status=400))
    with pytest.raises(SourceRequestError, match="Cannot initialize WeatherVariable") as info:
        fetch(harness, key=SecretStr(KEY))
    assert info.value.status == 400
    assert KEY not in str(info.value)
    (seen,) = harness.server.hits(ROUTE)
    assert seen.query["apikey"] == [KEY]
    with pytest.raises(SourceRequestError, match="no weather points for region 'FR'"):
        source(harness).exog("FR", start=T0, end=T0, at=T0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"past_days": 93}, "past_days", id="past days"),
        pytest.param({"forecast_days": 0}, "forecast_days", id="forecast days"),
        pytest.param({"points": {"DE": []}}, "no weather points", id="no points"),
    ],
)
def test_settings_are_checked(harness: Harness, kwargs, message: str) -> None:
    args = {"points": {"DE": [BERLIN]}} | kwargs
    with pytest.raises(ValueError, match=message):
        OpenMeteoWeatherSource(harness.http("open_meteo"), **args)
    with pytest.raises(ValueError, match="not on the globe"):
        WeightedPoint(91.0, 0.0)
    with pytest.raises(ValueError, match="weight must be positive"):
        WeightedPoint(0.0, 0.0, weight=0.0)
