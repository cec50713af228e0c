"""Carbon intensity: the configured providers (with fallback, last-known store and region routing)
as one `CarbonSource` per region.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import httpx

from config.settings import (
    CarbonSettings,
    Settings,
)
from config.version import __version__
from forecasts.platform.http import CircuitBreaker, HttpSource, RetryPolicy
from forecasts.regions import NodeRule, Region, RegionMap, RegionResolver
from forecasts.series import Signal
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.carbon.carbon_aware_sdk import CarbonAwareSdkSource
from forecasts.sources.carbon.electricitymaps import ElectricityMapsSource
from forecasts.sources.carbon.fallback import (
    FallbackSource,
    FileLastKnown,
    LastKnownStore,
)
from forecasts.sources.carbon.forecasting import CarbonForecasting
from forecasts.sources.carbon.uk import UkCarbonIntensitySource
from forecasts.sources.carbon.watttime import WattTimeSource
from forecasts.sources.open_meteo import OpenMeteoWeatherSource, WeightedPoint
from forecasts.sources.sample import SAMPLE_REGIONS
from forecasts.sources.trace import TraceCarbonSource
from forecasts.time import Clock

log = logging.getLogger(__name__)


class HttpClientFactory(Protocol):
    def __call__(self, base_url: str, *, timeout_seconds: float) -> httpx.Client: ...


def default_http_client(base_url: str, *, timeout_seconds: float) -> httpx.Client:
    """The production client: one per provider, explicit timeouts, no redirects followed
    (a redirect from an API is a misconfiguration we want to see)."""
    return httpx.Client(
        base_url=base_url,
        timeout=httpx.Timeout(timeout_seconds),
        headers={"User-Agent": f"gridshift/{__version__}"},
        follow_redirects=False,
    )


def default_last_known_path() -> Path:
    return Path.home() / ".cache" / "gridshift" / "carbon.json"


def build_region_map(carbon: CarbonSettings) -> RegionMap:
    """The pure region model derived from the settings."""
    return RegionMap.of(
        Region(
            name=name,
            zones=dict(region.zones),
            rules=tuple(NodeRule(labels=dict(rule)) for rule in region.match),
            fallback_order=tuple(region.fallback_order or ()),
            description=region.description,
        )
        for name, region in carbon.regions.items()
    )


def build_region_resolver(settings: Settings) -> RegionResolver:
    """The one region model the scaler and the extender share: the carbon regions (zones,
    `match` rules), their aliases, and the extender's label names and default region."""
    carbon, ext = settings.carbon, settings.extender
    return RegionResolver(
        regions=build_region_map(carbon),
        region_labels=ext.region_labels,
        zone_labels=ext.zone_labels,
        aliases={alias: name for name, r in carbon.regions.items() for alias in r.aliases},
        default_region=ext.default_region,
    )


def build_workload_region(settings: Settings) -> Callable[[str], str | None]:
    """How a CarbonAwareScaler's region is named: a configured carbon region (through the
    region model's aliases and `match` rules) or a SAMPLE DATA region, the same set that
    `config check` accepts for config-file workloads and `gridshift run` routes; else None."""
    resolver = build_region_resolver(settings)

    def workload_region(name: str) -> str | None:
        found = resolver.configured_region(name)
        if found is None and name in SAMPLE_REGIONS:
            return name
        return found

    return workload_region


def http_source(
    settings: Settings,
    name: str,
    base_url: str,
    timeout_seconds: float,
    *,
    clock: Clock,
    http_client_factory: HttpClientFactory = default_http_client,
    sleep: Callable[[float], None] = time.sleep,
) -> HttpSource:
    """The project's HTTP client for one outbound API (retries, breaker, cache, limits)."""
    h = settings.carbon.http
    return HttpSource(
        name=name,
        client=http_client_factory(base_url, timeout_seconds=timeout_seconds),
        clock=clock,
        retry=RetryPolicy(
            attempts=h.retry_attempts,
            base_delay_seconds=h.retry_base_delay_seconds,
            max_delay_seconds=h.retry_max_delay_seconds,
            max_retry_after_seconds=h.max_retry_after_seconds,
        ),
        breaker=CircuitBreaker(
            failure_threshold=h.breaker_failure_threshold,
            reset_timeout_seconds=h.breaker_reset_seconds,
        ),
        cache_ttl_seconds=h.cache_ttl_seconds,
        sleep=sleep,
    )


def build_carbon_forecasting(
    settings: Settings,
    carbon: CarbonSource,
    *,
    clock: Clock,
    closing: contextlib.ExitStack,
    http_client_factory: HttpClientFactory = default_http_client,
    sleep: Callable[[float], None] = time.sleep,
) -> CarbonForecasting:
    """gridshift's one carbon forecast over `carbon`, with Open-Meteo weather inputs for the
    regions that name weather points (`forecast.open_meteo.points`; its client is closed
    with `closing`, the owning component's stack)."""
    om = settings.forecast.open_meteo
    weather = None
    if om.points:
        weather = OpenMeteoWeatherSource(
            http_source(
                settings,
                "open_meteo",
                om.base_url,
                om.timeout_seconds,
                clock=clock,
                http_client_factory=http_client_factory,
                sleep=sleep,
            ),
            points={
                region: [WeightedPoint(p.latitude, p.longitude, p.weight) for p in pts]
                for region, pts in om.points.items()
            },
            past_days=om.past_days,
            forecast_days=om.forecast_days,
            api_key=om.api_key,
        )
        closing.callback(weather.close)
    return CarbonForecasting(
        carbon,
        exog=weather,
        refit_every=timedelta(seconds=settings.forecast.carbon_refit_interval_seconds),
    )


def carbon_provider_status(settings: Settings) -> tuple[tuple[str, ...], dict[str, str]]:
    """(the carbon providers the settings configure, the others with the setting each one
    needs); builds no client, so a command can say what is missing before building any."""
    carbon = settings.carbon
    missing: dict[str, str] = {}
    if carbon.electricitymaps.token is None:
        missing["electricitymaps"] = "needs carbon.electricitymaps.token"
    if carbon.watttime.username is None or carbon.watttime.password is None:
        missing["watttime"] = "needs carbon.watttime.username and .password"
    if not carbon.uk.enabled:
        missing["uk"] = "disabled by carbon.uk.enabled=false"
    if carbon.carbon_aware_sdk.base_url is None:
        missing["carbon_aware_sdk"] = "needs carbon.carbon_aware_sdk.base_url"
    if carbon.trace.path is None:
        missing["trace"] = "needs carbon.trace.path"
    every = ("electricitymaps", "watttime", "uk", "carbon_aware_sdk", "trace")
    return tuple(name for name in every if name not in missing), missing


def build_carbon_sources(
    settings: Settings,
    *,
    clock: Clock,
    regions: RegionMap | None = None,
    http_client_factory: HttpClientFactory = default_http_client,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, CarbonSource], dict[str, str]]:
    """Every configured provider adapter by name, and why each missing one is missing."""
    carbon = settings.carbon
    regions = regions if regions is not None else build_region_map(carbon)

    def http(name: str, base_url: str, timeout_seconds: float) -> HttpSource:
        return http_source(
            settings,
            name,
            base_url,
            timeout_seconds,
            clock=clock,
            http_client_factory=http_client_factory,
            sleep=sleep,
        )

    _, missing = carbon_provider_status(settings)
    sources: dict[str, CarbonSource] = {}
    em = carbon.electricitymaps
    if em.token is not None:
        sources["electricitymaps"] = ElectricityMapsSource(
            http("electricitymaps", em.base_url, em.timeout_seconds),
            regions=regions,
            token=em.token,
            emission_factor=em.emission_factor,
            disable_estimations=em.disable_estimations,
        )
    wt = carbon.watttime
    if wt.username is not None and wt.password is not None:
        sources["watttime"] = WattTimeSource(
            http("watttime", wt.base_url, wt.timeout_seconds),
            regions=regions,
            username=wt.username,
            password=wt.password,
            signal_type=wt.signal_type,
            token_renew_after=timedelta(seconds=wt.token_renew_after_seconds),
        )
    if carbon.uk.enabled:
        sources["uk"] = UkCarbonIntensitySource(
            http("uk", carbon.uk.base_url, carbon.uk.timeout_seconds), regions=regions
        )
    sdk = carbon.carbon_aware_sdk
    if sdk.base_url is not None:
        sources["carbon_aware_sdk"] = CarbonAwareSdkSource(
            http("carbon_aware_sdk", sdk.base_url, sdk.timeout_seconds),
            regions=regions,
            signal=Signal(sdk.signal),
        )
    if carbon.trace.path is not None:
        sources["trace"] = TraceCarbonSource.from_csv(
            carbon.trace.path,
            regions=regions,
            clock=clock,
            emission_factor=carbon.trace.emission_factor,
            zeros_as_missing=carbon.trace.zeros_as_missing,
        )
    return sources, missing


def build_carbon_source(
    settings: Settings,
    *,
    clock: Clock,
    prefer: str | None = None,
    http_client_factory: HttpClientFactory = default_http_client,
    sleep: Callable[[float], None] = time.sleep,
    last_known: LastKnownStore | None = None,
) -> FallbackSource:
    """The carbon source the rest of gridshift uses: per region, the configured providers
    that have a zone for it, in fallback order (`prefer` first), then the last known value.

    Raises `ValueError` when `prefer` names a provider that is not configured.
    """
    carbon = settings.carbon
    regions = build_region_map(carbon)
    sources, missing = build_carbon_sources(
        settings,
        clock=clock,
        regions=regions,
        http_client_factory=http_client_factory,
        sleep=sleep,
    )
    if prefer is not None and prefer not in sources:
        reason = missing.get(prefer, "unknown provider")
        known = ", ".join(sorted({*sources, *missing}))
        raise ValueError(f"carbon source {prefer!r} is not available: {reason} (known: {known})")
    chains: dict[str, list[CarbonSource]] = {}
    for region in regions.regions:
        order = list(region.fallback_order or carbon.fallback_order)
        if prefer is not None:
            order = [prefer, *(name for name in order if name != prefer)]
        chains[region.name] = [
            sources[name] for name in order if name in sources and region.zone(name) is not None
        ]
    store = last_known
    if store is None:
        store = FileLastKnown(carbon.last_known_path or default_last_known_path())
    return FallbackSource(
        chains,
        regions=regions,
        clock=clock,
        last_known=store,
        last_known_max_age=timedelta(seconds=carbon.last_known_max_age_seconds),
    )
