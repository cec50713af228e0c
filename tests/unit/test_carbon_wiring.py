"""Carbon settings (`CarbonSettings`) and their wiring (`config.wiring.build_carbon_source`).

Aspects: defaults build only the keyless UK provider and say why the others are missing;
credentials add providers; chains per region follow the global or the region's own order,
skip providers without a zone, and put `prefer` first; an unconfigured `prefer` is refused;
every base URL and timeout reaches the injected client factory; the region map and node
matching from settings; validation (unknown providers, half credentials, bad URLs, region
names differing only in case, bounds); secrets masked in reprs; env vars reach nested fields;
closing the chain closes every provider's HTTP client; the scaler's and the extender's
Open-Meteo client (the carbon forecast's weather inputs) closes when they stop.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

import config.wiring.extender
import config.wiring.scaler
from config.scenario import sample_settings
from config.settings import CarbonSettings, Settings
from config.wiring import (
    build_carbon_source,
    build_carbon_sources,
    build_extender,
    build_region_map,
    build_scaler,
    carbon_provider_status,
    load_settings,
)
from config.wiring.carbon import build_carbon_forecasting
from forecasts.sources.carbon.fallback import MemoryLastKnown
from forecasts.sources.sample import SampleCarbonSource, SampleLoadSource
from forecasts.time import FrozenClock
from tests.fakes import FakeNodeInventory
from tests.unit.carbon.conftest import RecordingClients

CLOCK = FrozenClock(datetime(2025, 1, 20, 12, tzinfo=UTC))


class Factory:
    def __init__(self) -> None:
        self.made: list[tuple[str, float]] = []

    def __call__(self, base_url: str, *, timeout_seconds: float) -> httpx.Client:
        self.made.append((base_url, timeout_seconds))
        return httpx.Client(base_url=base_url, timeout=timeout_seconds)


def settings(**carbon: object) -> Settings:
    return Settings(carbon=CarbonSettings.model_validate(carbon))


def chains(s: Settings, prefer: str | None = None) -> dict[str, list[str]]:
    source = build_carbon_source(
        s, clock=CLOCK, prefer=prefer, http_client_factory=Factory(), last_known=MemoryLastKnown()
    )
    return {r: [x.name for x in source.chain(r)] for r in s.carbon.regions}


def test_defaults_build_only_the_keyless_uk_api() -> None:
    sources, missing = build_carbon_sources(Settings(), clock=CLOCK, http_client_factory=Factory())
    assert list(sources) == ["uk"]
    assert missing == {
        "electricitymaps": "needs carbon.electricitymaps.token",
        "watttime": "needs carbon.watttime.username and .password",
        "carbon_aware_sdk": "needs carbon.carbon_aware_sdk.base_url",
        "trace": "needs carbon.trace.path",
    }
    assert chains(Settings())["GB"] == ["uk"]
    assert chains(Settings())["DE"] == []


def test_credentials_add_providers_in_fallback_order() -> None:
    s = settings(
        electricitymaps={"token": "t"},
        watttime={"username": "u", "password": "p"},
        carbon_aware_sdk={"base_url": "http://sdk:8080"},
    )
    got = chains(s)
    assert got["GB"] == ["electricitymaps", "uk", "carbon_aware_sdk"]
    assert got["us-cal"] == ["electricitymaps", "watttime", "carbon_aware_sdk"]
    assert chains(s, prefer="uk")["GB"] == ["uk", "electricitymaps", "carbon_aware_sdk"]


def test_region_order_overrides_the_global_one() -> None:
    s = settings(
        electricitymaps={"token": "t"},
        regions={
            "GB": {
                "zones": {"uk": "national", "electricitymaps": "GB"},
                "fallback_order": ["uk", "electricitymaps"],
            }
        },
    )
    assert chains(s) == {"GB": ["uk", "electricitymaps"]}


def test_unconfigured_preferred_source_is_refused() -> None:
    with pytest.raises(ValueError, match=r"'watttime' is not available: needs carbon\.watttime"):
        chains(Settings(), prefer="watttime")


def test_every_base_url_and_timeout_reaches_the_client_factory() -> None:
    s = settings(
        electricitymaps={
            "token": "t",
            "base_url": "http://127.0.0.1:1/v3/",
            "timeout_seconds": 1.5,
        },
        watttime={"username": "u", "password": "p", "base_url": "http://127.0.0.1:2"},
        uk={"base_url": "http://127.0.0.1:3", "timeout_seconds": 2.5},
        carbon_aware_sdk={"base_url": "http://127.0.0.1:4"},
    )
    factory = Factory()
    build_carbon_sources(s, clock=CLOCK, http_client_factory=factory)
    assert factory.made == [
        ("http://127.0.0.1:1/v3", 1.5),
        ("http://127.0.0.1:2", 10.0),
        ("http://127.0.0.1:3", 2.5),
        ("http://127.0.0.1:4", 10.0),
    ]


@pytest.mark.parametrize(
    "carbon",
    [
        pytest.param({}, id="defaults"),
        pytest.param(
            {"electricitymaps": {"token": "t"}, "uk": {"enabled": False}},
            id="token, uk off",
        ),
        pytest.param(
            {"watttime": {"username": "u", "password": "p"}, "trace": {"path": "t.csv"}},
            id="watttime and trace",
        ),
    ],
)
def test_provider_status_says_what_building_builds(carbon: dict[str, object]) -> None:
    s = settings(**carbon)
    factory = Factory()
    configured, missing = carbon_provider_status(s)
    assert factory.made == []  # says it without building a client
    sources, built_missing = build_carbon_sources(s, clock=CLOCK, http_client_factory=factory)
    assert (configured, missing) == (tuple(sources), built_missing)


def test_uk_can_be_disabled() -> None:
    assert chains(settings(uk={"enabled": False}))["GB"] == []


def test_region_map_and_node_matching_from_settings() -> None:
    regions = build_region_map(Settings().carbon)
    assert regions.zone("gb-south", provider="uk") == "12"
    assert regions.zone("gb", provider="electricitymaps") == "GB"
    node = {
        "topology.kubernetes.io/region": "europe-west3",
        "topology.kubernetes.io/zone": "europe-west3-b",
    }
    assert regions.match_node(node).name == "DE"  # type: ignore[union-attr]
    custom = settings(
        regions={
            "lab": {
                "zones": {"uk": "13"},
                "match": [{"topology.kubernetes.io/zone": "rack-*", "example.com/site": "lab"}],
            }
        }
    )
    regions = build_region_map(custom.carbon)
    lab = regions.match_node({"topology.kubernetes.io/zone": "rack-7", "example.com/site": "lab"})
    assert lab is not None
    assert lab.name == "lab"
    assert regions.match_node({"topology.kubernetes.io/zone": "rack-7"}) is None


@pytest.mark.parametrize(
    ("carbon", "message"),
    [
        pytest.param(
            {"fallback_order": ["electricitymaps", "bing"]},
            "unknown carbon provider 'bing'",
            id="order",
        ),
        pytest.param(
            {"regions": {"X": {"zones": {"google": "x"}}}},
            "unknown carbon provider 'google'",
            id="zone provider",
        ),
        pytest.param(
            {"regions": {"X": {"zones": {}, "match": [{}]}}}, "at least one label", id="empty rule"
        ),
        pytest.param(
            {"regions": {"gb": {"zones": {}}, "GB": {"zones": {}}}},
            "differ only in case",
            id="case",
        ),
        pytest.param(
            {"watttime": {"username": "u"}}, "both username and password", id="half credentials"
        ),
        pytest.param({"uk": {"base_url": "ftp://x"}}, "http:// or https://", id="url scheme"),
        pytest.param({"http": {"retry_attempts": 0}}, "greater than or equal to 1", id="bounds"),
        pytest.param(
            {"uk": {"base_urll": "http://x"}}, "Extra inputs are not permitted", id="typo"
        ),
        pytest.param(
            {"electricitymaps": {"emission_factor": "marginal"}},
            "'lifecycle' or 'direct'",
            id="literal",
        ),
    ],
)
def test_invalid_carbon_settings(carbon: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CarbonSettings.model_validate(carbon)


def test_secrets_are_masked() -> None:
    s = settings(
        electricitymaps={"token": "em-very-secret"},
        watttime={"username": "u", "password": "wt-very-secret"},
    )
    text = repr(s) + str(s) + s.model_dump_json()
    assert "em-very-secret" not in text
    assert "wt-very-secret" not in text
    source = build_carbon_source(
        s, clock=CLOCK, http_client_factory=Factory(), last_known=MemoryLastKnown()
    )
    assert "secret" not in repr(source)


def test_environment_reaches_nested_carbon_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_CARBON__UK__BASE_URL", "http://127.0.0.1:9999/")
    monkeypatch.setenv("GRIDSHIFT_CARBON__ELECTRICITYMAPS__TOKEN", "tok")
    monkeypatch.setenv("GRIDSHIFT_CARBON__HTTP__CACHE_TTL_SECONDS", "60")
    s = load_settings()
    assert s.carbon.uk.base_url == "http://127.0.0.1:9999"
    assert s.carbon.electricitymaps.token is not None
    assert s.carbon.electricitymaps.token.get_secret_value() == "tok"
    assert s.carbon.http.cache_ttl_seconds == 60


def test_closing_the_chain_closes_every_providers_client() -> None:
    s = settings(
        electricitymaps={"token": "t"},
        watttime={"username": "u", "password": "p"},
        carbon_aware_sdk={"base_url": "http://sdk:8080"},
    )
    clients = RecordingClients()
    source = build_carbon_source(
        s, clock=CLOCK, http_client_factory=clients, last_known=MemoryLastKnown()
    )
    assert len(clients.made) == 4  # one per provider, shared by every region's chain
    assert {x.name for r in s.carbon.regions for x in source.chain(r)} == {
        "electricitymaps",
        "watttime",
        "uk",
        "carbon_aware_sdk",
    }
    assert clients.closed == [False] * 4
    source.close()
    assert clients.closed == [True] * 4


@pytest.mark.parametrize("component", ["scaler", "extender"])
def test_the_weather_inputs_client_closes_when_the_component_stops(
    component: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients = RecordingClients()
    recording = functools.partial(build_carbon_forecasting, http_client_factory=clients)
    monkeypatch.setattr(config.wiring.scaler, "build_carbon_forecasting", recording)
    monkeypatch.setattr(config.wiring.extender, "build_carbon_forecasting", recording)
    base = sample_settings(CLOCK.now())
    points = {"GB": [{"latitude": 51.5, "longitude": -0.1}]}
    s = base.model_copy(
        update={"forecast": base.forecast.model_validate({"open_meteo": {"points": points}})}
    )
    registry, carbon = CollectorRegistry(), SampleCarbonSource()
    if component == "scaler":
        built = build_scaler(
            s, clock=CLOCK, registry=registry, carbon=carbon, load=SampleLoadSource()
        )
        assert clients.closed == [False]
        built.close()
    else:
        runtime = build_extender(
            s,
            clock=CLOCK,
            registry=registry,
            carbon=carbon,
            kube_api=None,
            nodes=FakeNodeInventory(),
        )
        assert clients.closed == [False]
        runtime.stop()
    assert clients.closed == [True]
