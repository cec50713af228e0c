"""The `CarbonSource` contract, one suite for every implementation: the five provider adapters
(against the local server or a trace file), `FallbackSource` and `FakeCarbonSource`.

Aspects: `name` equals each series' provider; the series names the canonical region (asked in
another case); history stays within [start, end) and is never forecast quality; forecast
points are forecast quality and overlap [at, at + horizon); latest has at most one point, at or
before `at`; an unknown region is a `SourceRequestError` without any request.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from pydantic import SecretStr

from forecasts.platform.errors import SourceRequestError
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.carbon.carbon_aware_sdk import CarbonAwareSdkSource
from forecasts.sources.carbon.electricitymaps import ElectricityMapsSource
from forecasts.sources.carbon.fallback import FallbackSource, MemoryLastKnown
from forecasts.sources.carbon.uk import UkCarbonIntensitySource
from forecasts.sources.carbon.watttime import WattTimeSource
from forecasts.sources.trace import TraceCarbonSource
from tests.fakes import FakeCarbonSource
from tests.unit.carbon.conftest import FIXTURES, REGIONS, T0, Harness, ReplayServer, Reply

H = timedelta(hours=1)


@dataclass(frozen=True)
class Subject:
    region: str  # asked in lower case: the series must carry the canonical spelling
    canonical: str
    make: Callable[[Harness], CarbonSource]
    routes: Callable[[ReplayServer, str], None]  # (server, query kind)


def _uk_routes(server: ReplayServer, query: str) -> None:
    case = "national_fw48h" if query == "forecast" else "national_range"
    server.route("/intensity/", Reply.fixture("uk", case))


def _em_routes(server: ReplayServer, query: str) -> None:
    server.route("/v3/carbon-intensity/latest", Reply.fixture("electricitymaps", "latest"))
    server.route("/v3/carbon-intensity/past-range", Reply.fixture("electricitymaps", "past_range"))
    server.route("/v3/carbon-intensity/forecast", Reply.fixture("electricitymaps", "forecast"))


def _wt_routes(server: ReplayServer, query: str) -> None:
    server.route("/login", Reply.fixture("watttime", "login"))
    server.route("/v3/historical", Reply.fixture("watttime", "historical"))
    case = "forecast_now" if query == "latest" else "forecast"
    server.route("/v3/forecast", Reply.fixture("watttime", case))


def _sdk_routes(server: ReplayServer, query: str) -> None:
    server.route("/emissions/bylocation", Reply.fixture("carbon_aware_sdk", "bylocation"))
    server.route(
        "/emissions/forecasts/current", Reply.fixture("carbon_aware_sdk", "forecast_current")
    )


def _no_routes(server: ReplayServer, query: str) -> None:
    return None


def _fake(h: Harness) -> FakeCarbonSource:
    pts = [(T0 + i * H, 100.0 + i, Quality.MEASURED) for i in range(-3, 1)]
    pts += [(T0 + i * H, 90.0 + i, Quality.FORECAST) for i in range(1, 4)]
    series = CarbonSeries.build(
        region="GB",
        points=pts,
        unit=CarbonUnit.G_PER_KWH,
        signal=Signal.AVERAGE,
        provider="uk",
        fetched_at=T0,
        resolution=H,
    )
    return FakeCarbonSource("uk", regions=REGIONS, data={"GB": series})


SUBJECTS = {
    "uk": Subject(
        "gb", "GB", lambda h: UkCarbonIntensitySource(h.http("uk"), regions=REGIONS), _uk_routes
    ),
    "electricitymaps": Subject(
        "de",
        "DE",
        lambda h: ElectricityMapsSource(
            h.http("electricitymaps", prefix="/v3"), regions=REGIONS, token=SecretStr("t")
        ),
        _em_routes,
    ),
    "watttime": Subject(
        "CAISO",
        "caiso",
        lambda h: WattTimeSource(
            h.http("watttime"), regions=REGIONS, username="u", password=SecretStr("p")
        ),
        _wt_routes,
    ),
    "carbon_aware_sdk": Subject(
        "EastUS",
        "eastus",
        lambda h: CarbonAwareSdkSource(
            h.http("carbon_aware_sdk"), regions=REGIONS, signal=Signal.MARGINAL
        ),
        _sdk_routes,
    ),
    "trace": Subject(
        "gb",
        "GB",
        lambda h: TraceCarbonSource.from_csv(
            FIXTURES / "trace" / "mixed.csv", regions=REGIONS, clock=h.clock
        ),
        _no_routes,
    ),
    "fallback": Subject(
        "gb",
        "GB",
        lambda h: FallbackSource(
            {"GB": [UkCarbonIntensitySource(h.http("uk"), regions=REGIONS)]},
            regions=REGIONS,
            clock=h.clock,
            last_known=MemoryLastKnown(),
        ),
        _uk_routes,
    ),
    "fake": Subject("gb", "GB", _fake, _no_routes),
}


def check(series: CarbonSeries, source: CarbonSource, subject: Subject) -> None:
    assert isinstance(series, CarbonSeries)
    assert series.region == subject.canonical
    if not isinstance(source, FallbackSource):
        assert series.provider == source.name


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_history_contract(harness: Harness, name: str) -> None:
    subject = SUBJECTS[name]
    subject.routes(harness.server, "history")
    source = subject.make(harness)
    start, end = T0 - 2 * H, T0 + 10 * timedelta(minutes=1)
    series = source.history(subject.region, start=start, end=end)
    check(series, source, subject)
    assert len(series) > 0
    assert all(start <= p.at < end for p in series.points)


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_forecast_contract(harness: Harness, name: str) -> None:
    subject = SUBJECTS[name]
    subject.routes(harness.server, "forecast")
    source = subject.make(harness)
    at = T0 + timedelta(minutes=10)
    series = source.forecast(subject.region, at=at, horizon=H)
    check(series, source, subject)
    assert len(series) > 0
    assert {p.quality for p in series.points} == {Quality.FORECAST}
    assert all(p.at + series.resolution > at and p.at < at + H for p in series.points)


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_latest_contract(harness: Harness, name: str) -> None:
    subject = SUBJECTS[name]
    subject.routes(harness.server, "latest")
    source = subject.make(harness)
    at = T0 + timedelta(minutes=3)
    series = source.latest(subject.region, at=at)
    check(series, source, subject)
    assert len(series) == 1
    assert series.points[0].at <= at


@pytest.mark.parametrize("name", list(SUBJECTS))
def test_unknown_region_contract(harness: Harness, name: str) -> None:
    subject = SUBJECTS[name]
    source = subject.make(harness)
    with pytest.raises(SourceRequestError, match="unknown region 'Atlantis'"):
        source.latest("Atlantis", at=T0)
    assert harness.server.seen == []
