"""Faults and bad input, for every HTTP carbon provider, over real sockets on 127.0.0.1.

Aspects: 401/403/404 (no retry; WattTime re-logs in once on 401), 429 with Retry-After in
seconds, as an HTTP date, and too long to wait; 500 then success; 500/503 to exhaustion;
a server that stalls past the client timeout; truncated JSON; an HTML page with 200 and with
502; an empty body; secrets absent from every error. Each case ends in clean data or a typed
`SourceError`, never a crash.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest
from pydantic import SecretStr

from forecasts.platform.errors import (
    SourceDataError,
    SourceError,
    SourceRequestError,
    SourceUnavailable,
)
from forecasts.platform.http import HttpSource
from forecasts.series import CarbonSeries, Signal
from forecasts.sources.carbon.carbon_aware_sdk import CarbonAwareSdkSource
from forecasts.sources.carbon.electricitymaps import ElectricityMapsSource
from forecasts.sources.carbon.uk import UkCarbonIntensitySource
from forecasts.sources.carbon.watttime import WattTimeSource
from tests.unit.carbon.conftest import (
    HTML_ERROR_PAGE,
    REGIONS,
    T0,
    Harness,
    ReplayServer,
    Reply,
)

EM_TOKEN = "em-secret-token-4711"
WT_PASSWORD = "wt-secret-password-4712"
WT_TOKEN = "eyJhbGciOi.fake-token-0001"
SECRETS = (EM_TOKEN, WT_PASSWORD, WT_TOKEN)


def _no_setup(server: ReplayServer) -> None:
    return None


def _watttime_login(server: ReplayServer) -> None:
    server.route("/login", Reply.fixture("watttime", "login"))


@dataclass(frozen=True)
class Target:
    provider: str
    route: str
    normal: Reply
    call: Callable[[Harness], CarbonSeries]
    setup: Callable[[ReplayServer], None] = field(default=_no_setup)


def _uk(h: Harness) -> CarbonSeries:
    src = UkCarbonIntensitySource(h.http("uk"), regions=REGIONS)
    return src.forecast("GB", at=T0, horizon=timedelta(hours=3))


def _em(h: Harness) -> CarbonSeries:
    src = ElectricityMapsSource(
        h.http("electricitymaps", prefix="/v3"), regions=REGIONS, token=SecretStr(EM_TOKEN)
    )
    return src.latest("DE", at=T0 + timedelta(minutes=20))


def _wt(h: Harness) -> CarbonSeries:
    src = WattTimeSource(
        h.http("watttime"), regions=REGIONS, username="alice", password=SecretStr(WT_PASSWORD)
    )
    return src.forecast("caiso", at=T0, horizon=timedelta(hours=1))


def _sdk(h: Harness) -> CarbonSeries:
    src = CarbonAwareSdkSource(h.http("carbon_aware_sdk"), regions=REGIONS, signal=Signal.MARGINAL)
    return src.history("eastus", start=T0 - timedelta(minutes=15), end=T0 + timedelta(minutes=5))


TARGETS = {
    "uk": Target("uk", "/intensity/", Reply.fixture("uk", "national_fw48h"), _uk),
    "electricitymaps": Target(
        "electricitymaps",
        "/v3/carbon-intensity/latest",
        Reply.fixture("electricitymaps", "latest"),
        _em,
    ),
    "watttime": Target(
        "watttime", "/v3/forecast", Reply.fixture("watttime", "forecast"), _wt, _watttime_login
    ),
    "carbon_aware_sdk": Target(
        "carbon_aware_sdk",
        "/emissions/bylocation",
        Reply.fixture("carbon_aware_sdk", "bylocation"),
        _sdk,
    ),
}

JSON_401 = b'{"error": "Invalid auth-token", "message": "Please provide a valid token"}'
JSON_403 = b'{"error": "Invalid query parameters", "message": "Invalid scope."}'
JSON_404 = b'{"error": "Not Found", "message": "no such zone"}'
JSON_500 = b'{"error": {"code": "500 Internal Server Error", "message": "Something went wrong"}}'
HTTP_DATE_30S = format_datetime(T0 + timedelta(seconds=30), usegmt=True)


@dataclass(frozen=True)
class Fault:
    """`replies(normal)` are served in turn; the expectation is either `error` (type,
    status, message part, route hits, sleeps) or clean data (`hits`, `sleeps`)."""

    replies: Callable[[Reply], list[Reply]]
    error: type[SourceError] | None = None
    status: int | None = None
    message: str = ""
    hits: int | None = None
    sleeps: list[float] | None = None


FAULTS = [
    pytest.param(
        Fault(lambda n: [Reply(401, JSON_401)], SourceRequestError, 401, "Invalid auth", hits=1),
        id="401",
    ),
    pytest.param(
        Fault(lambda n: [Reply(403, JSON_403)], SourceRequestError, 403, "Invalid scope", hits=1),
        id="403 no retry",
    ),
    pytest.param(
        Fault(lambda n: [Reply(404, JSON_404)], SourceRequestError, 404, "no such zone", hits=1),
        id="404 no retry",
    ),
    pytest.param(
        Fault(
            lambda n: [Reply(429, b"{}", headers=(("Retry-After", "7"),)), n],
            hits=2,
            sleeps=[7.0],
        ),
        id="429 Retry-After seconds then ok",
    ),
    pytest.param(
        Fault(
            lambda n: [Reply(429, b"", headers=(("Retry-After", HTTP_DATE_30S),)), n],
            hits=2,
            sleeps=[30.0],
        ),
        id="429 Retry-After HTTP-date then ok",
    ),
    pytest.param(
        Fault(
            lambda n: [Reply(429, b"slow down", headers=(("Retry-After", "3600"),))],
            SourceUnavailable,
            429,
            "slow down",
            hits=1,
            sleeps=[],
        ),
        id="429 Retry-After too long fails fast",
    ),
    pytest.param(Fault(lambda n: [Reply(500, JSON_500), n], hits=2), id="500 then ok"),
    pytest.param(
        Fault(lambda n: [Reply(500, JSON_500)], SourceUnavailable, 500, "went wrong", hits=3),
        id="500 exhausts retries",
    ),
    pytest.param(
        Fault(lambda n: [Reply(503, b"")], SourceUnavailable, 503, "empty body", hits=3),
        id="503 exhausts retries",
    ),
    pytest.param(
        Fault(
            lambda n: [Reply(stall_seconds=0.6, body=n.body)],
            SourceUnavailable,
            None,
            "timed out",
            hits=3,
        ),
        id="timeout",
    ),
    pytest.param(
        Fault(lambda n: [n.truncated()], SourceDataError, 200, "invalid JSON", hits=1),
        id="truncated JSON",
    ),
    pytest.param(
        Fault(
            lambda n: [Reply(200, HTML_ERROR_PAGE, content_type="text/html")],
            SourceDataError,
            200,
            "HTML page",
            hits=1,
        ),
        id="HTML page with 200",
    ),
    pytest.param(
        Fault(
            lambda n: [Reply(502, HTML_ERROR_PAGE, content_type="text/html")],
            SourceUnavailable,
            502,
            "502 Bad Gateway",
            hits=3,
        ),
        id="HTML error page 502",
    ),
]


@pytest.mark.parametrize("provider", list(TARGETS))
@pytest.mark.parametrize("fault", FAULTS)
def test_fault_ends_in_clean_data_or_typed_error(
    harness: Harness, provider: str, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    target = TARGETS[provider]
    target.setup(harness.server)
    harness.server.route(target.route, *fault.replies(target.normal))
    if fault.error is None:
        series = target.call(harness)
        assert len(series) > 0
        assert series.provider == provider
    else:
        with pytest.raises(fault.error) as info:
            target.call(harness)
        err = info.value
        assert err.source == provider
        assert fault.message in str(err)
        if fault.status is not None:
            assert err.status == fault.status
        for secret in SECRETS:
            assert secret not in str(err)
            assert secret not in repr(err)
    hits = len(harness.server.hits(target.route))
    if fault.hits is not None:
        expected = fault.hits
        if provider == "watttime" and fault.status == 401:
            expected = 2  # one fresh login and one more try
        assert hits == expected
    if fault.sleeps is not None:
        assert harness.sleeps == fault.sleeps
    for secret in SECRETS:  # every logger, httpx's included: secrets travel in headers only
        assert secret not in caplog.text


def test_watttime_401_logs_in_again_once(harness: Harness) -> None:
    _watttime_login(harness.server)
    harness.server.route("/v3/forecast", Reply(401, JSON_401), TARGETS["watttime"].normal)
    series = _wt(harness)
    assert len(series) == 12
    assert len(harness.server.hits("/login")) == 2
    bearer = [s.headers["authorization"] for s in harness.server.hits("/v3/forecast")]
    assert bearer == [f"Bearer {WT_TOKEN}"] * 2


@pytest.mark.parametrize("provider", list(TARGETS))
def test_empty_body_is_a_data_error_or_no_data(harness: Harness, provider: str) -> None:
    target = TARGETS[provider]
    target.setup(harness.server)
    harness.server.route(target.route, Reply(200, b""))
    if provider == "carbon_aware_sdk":
        assert len(target.call(harness)) == 0  # an empty 2xx from the SDK means "no data"
    else:
        with pytest.raises(SourceDataError, match="empty body"):
            target.call(harness)


def test_sdk_204_is_an_empty_series(harness: Harness) -> None:
    harness.server.route("/emissions/bylocation", Reply(204))
    series = _sdk(harness)
    assert len(series) == 0
    assert series.provider == "carbon_aware_sdk"


def test_connection_refused_is_unavailable(harness: Harness) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = HttpSource(
        name="uk",
        client=httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=0.2),
        clock=harness.clock,
        sleep=harness.sleeps.append,
    )
    with pytest.raises(SourceUnavailable, match="connection failed") as info:
        UkCarbonIntensitySource(http, regions=REGIONS).latest("GB", at=T0)
    assert info.value.status is None
    assert len(harness.sleeps) == 3  # four attempts, three backoffs
