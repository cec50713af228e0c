"""`carbon`: the carbon-intensity providers, their shared HTTP behaviour, and the regions."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from config.groups.base import Group, check_http_url

__all__ = [
    "CARBON_PROVIDERS",
    "CarbonAwareSdkSettings",
    "CarbonHttpSettings",
    "CarbonRegionSettings",
    "CarbonSettings",
    "CarbonTraceSettings",
    "ElectricityMapsSettings",
    "UkCarbonIntensitySettings",
    "WattTimeSettings",
]


CARBON_PROVIDERS = ("electricitymaps", "watttime", "uk", "carbon_aware_sdk", "trace")


class CarbonHttpSettings(Group):
    """Retries, circuit breaker and cache shared by every carbon HTTP provider."""

    retry_attempts: int = Field(
        4, ge=1, le=10, description="First try plus three retries: rides out a brief outage."
    )
    retry_base_delay_seconds: float = Field(
        0.5, gt=0, le=60, description="Backoff starts small; full jitter spreads clients apart."
    )
    retry_max_delay_seconds: float = Field(
        30.0, gt=0, le=600, description="Caps one backoff so a tick is never stuck for long."
    )
    max_retry_after_seconds: float = Field(
        120.0,
        ge=0,
        le=3600,
        description="A longer Retry-After fails fast to the fallback instead of blocking a tick.",
    )
    breaker_failure_threshold: int = Field(
        5, ge=1, le=100, description="Five failed calls in a row: the source is down, stop asking."
    )
    breaker_reset_seconds: float = Field(
        60.0, gt=0, le=3600, description="Probe a broken source again after a minute."
    )
    cache_ttl_seconds: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Five minutes: data changes every 5-60 min; saves free-tier quota.",
    )


class ElectricityMapsSettings(Group):
    base_url: str = Field(
        "https://api.electricitymaps.com/v3",
        description="The current v3 host; a proxy or test server can stand in.",
    )
    token: SecretStr | None = Field(
        None, description="`auth-token` header; without one the provider is left out of chains."
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Answers take well under a second; 10 s rides out spikes."
    )
    emission_factor: Literal["lifecycle", "direct"] = Field(
        "lifecycle", description="The API's default (life-cycle factors); keep one everywhere."
    )
    disable_estimations: bool = Field(
        False, description="Estimates fill gaps in measured data; keep them (marked estimated)."
    )

    _url = field_validator("base_url")(check_http_url)


class WattTimeSettings(Group):
    base_url: str = Field(
        "https://api.watttime.org",
        description="Account routes live at the root, data routes under /v3.",
    )
    username: str | None = Field(None, description="Account name; needed with `password`.")
    password: SecretStr | None = Field(
        None, description="Account password; without it the provider is left out of chains."
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Answers take well under a second; 10 s rides out spikes."
    )
    signal_type: Literal["co2_moer", "co2_aoer"] = Field(
        "co2_moer", description="Marginal rate: the only signal WattTime forecasts."
    )
    token_renew_after_seconds: float = Field(
        1500.0,
        gt=0,
        lt=1800,
        description="Tokens live 30 min; renewing at 25 min never sends an expired one.",
    )

    _url = field_validator("base_url")(check_http_url)

    @model_validator(mode="after")
    def _both_or_neither(self) -> WattTimeSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        return self


class UkCarbonIntensitySettings(Group):
    base_url: str = Field(
        "https://api.carbonintensity.org.uk",
        description="Public NESO API, no key; a proxy or test server can stand in.",
    )
    enabled: bool = Field(True, description="Free and keyless, so on unless you opt out.")
    timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Answers take well under a second; 10 s rides out spikes."
    )

    _url = field_validator("base_url")(check_http_url)


class CarbonAwareSdkSettings(Group):
    base_url: str | None = Field(
        None, description="Your Carbon Aware SDK WebAPI (e.g. http://carbon-aware:8080); unset=off."
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="The SDK calls upstream APIs itself; allow it 10 s."
    )
    signal: Literal["average", "marginal"] = Field(
        "marginal", description="The SDK's answers do not say; its default backend is WattTime."
    )

    @field_validator("base_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        return None if url is None else check_http_url(url)


class CarbonTraceSettings(Group):
    path: Path | None = Field(
        None, description="CSV in the shared/data layout; unset = no trace provider."
    )
    emission_factor: Literal["lifecycle", "direct"] = Field(
        "lifecycle", description="Column pick when a file has both; matches Electricity Maps."
    )
    zeros_as_missing: bool = Field(
        True, description="Traces use 0 as a placeholder; a grid average is never exactly 0."
    )


class CarbonRegionSettings(Group):
    """A gridshift region: its zone at each provider and the node labels that select it."""

    zones: dict[str, str] = Field(
        description="Provider name -> that provider's zone (uk: `national` or a region id 1..17)."
    )
    match: list[dict[str, str]] = Field(
        default_factory=list,
        description="Node-label rules (label -> glob); a node matching any rule is in the region.",
    )
    aliases: list[str] = Field(
        default_factory=list,
        description="Cloud region/zone names that mean this region whatever `match` says "
        "(an override); none by default.",
    )
    fallback_order: list[str] | None = Field(
        None, description="This region's own provider order; unset = `carbon.fallback_order`."
    )
    description: str = Field("", description="Free text for people reading the config.")

    @model_validator(mode="after")
    def _known_providers(self) -> CarbonRegionSettings:
        for name in [*self.zones, *(self.fallback_order or [])]:
            if name not in CARBON_PROVIDERS:
                raise ValueError(
                    f"unknown carbon provider {name!r}; known: {', '.join(CARBON_PROVIDERS)}"
                )
        for rule in self.match:
            if not rule:
                raise ValueError("a match rule needs at least one label")
        return self


def _default_regions() -> dict[str, CarbonRegionSettings]:
    r = "topology.kubernetes.io/region"
    return {
        "GB": CarbonRegionSettings(
            zones={
                "uk": "national",
                "electricitymaps": "GB",
                "carbon_aware_sdk": "uksouth",
                "trace": "GB",
            },
            match=[{r: "europe-west2"}, {r: "eu-west-2"}, {r: "uksouth"}, {r: "ukwest"}],
            description="Great Britain (national); cloud regions in London and Cardiff.",
        ),
        "gb-london": CarbonRegionSettings(
            zones={"uk": "13", "electricitymaps": "GB"},
            description="London (UK API region 13); Electricity Maps has one GB zone.",
        ),
        "gb-south": CarbonRegionSettings(
            zones={"uk": "12", "electricitymaps": "GB"},
            description="South England (UK API region 12).",
        ),
        "IE": CarbonRegionSettings(
            zones={"electricitymaps": "IE", "carbon_aware_sdk": "northeurope"},
            match=[{r: "eu-west-1"}, {r: "northeurope"}],
            description="Ireland; AWS eu-west-1 and Azure North Europe (Dublin).",
        ),
        "DE": CarbonRegionSettings(
            zones={
                "electricitymaps": "DE",
                "carbon_aware_sdk": "germanywestcentral",
                "trace": "DE",
            },
            match=[{r: "europe-west3"}, {r: "eu-central-1"}, {r: "germanywestcentral"}],
            description="Germany; cloud regions in Frankfurt.",
        ),
        "FR": CarbonRegionSettings(
            zones={"electricitymaps": "FR", "carbon_aware_sdk": "francecentral", "trace": "FR"},
            match=[{r: "europe-west9"}, {r: "eu-west-3"}, {r: "francecentral"}],
            description="France; cloud regions in Paris.",
        ),
        "us-cal": CarbonRegionSettings(
            zones={
                "watttime": "CAISO_NORTH",
                "electricitymaps": "US-CAL-CISO",
                "carbon_aware_sdk": "westus",
                "trace": "CISO",
            },
            match=[{r: "us-west-1"}, {r: "us-west2"}, {r: "westus"}],
            description="California ISO; AWS N. California, GCP Los Angeles, Azure West US.",
        ),
    }


class CarbonSettings(Group):
    stale_after_seconds: float = Field(
        7200.0,
        gt=0,
        description="Two hours: providers publish hourly, so one missed update is fine.",
    )
    fallback_order: list[str] = Field(
        default_factory=lambda: list(CARBON_PROVIDERS),
        description="Paid APIs first, then free/self-hosted ones; unconfigured ones are skipped.",
    )
    last_known_path: Path | None = Field(
        None,
        description="File remembering last good answers; unset = ~/.cache/gridshift/carbon.json.",
    )
    last_known_max_age_seconds: float = Field(
        86400.0,
        gt=0,
        description="A day: older values mislead more than they help; then fail loudly.",
    )
    http: CarbonHttpSettings = CarbonHttpSettings()
    electricitymaps: ElectricityMapsSettings = ElectricityMapsSettings()
    watttime: WattTimeSettings = WattTimeSettings()
    uk: UkCarbonIntensitySettings = UkCarbonIntensitySettings()
    carbon_aware_sdk: CarbonAwareSdkSettings = CarbonAwareSdkSettings()
    trace: CarbonTraceSettings = CarbonTraceSettings()
    regions: dict[str, CarbonRegionSettings] = Field(
        default_factory=_default_regions,
        description="Sample regions for GB, IE, DE, FR and California; replace with your own.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> CarbonSettings:
        for name in self.fallback_order:
            if name not in CARBON_PROVIDERS:
                raise ValueError(
                    f"fallback_order: unknown carbon provider {name!r}; "
                    f"known: {', '.join(CARBON_PROVIDERS)}"
                )
        seen: dict[str, str] = {}
        for name in self.regions:
            key = name.casefold()
            if not name.strip() or name != name.strip():
                raise ValueError(f"regions: region name {name!r} must be non-empty, no spaces")
            if key in seen:
                raise ValueError(f"regions: {seen[key]!r} and {name!r} differ only in case")
            seen[key] = name
        owner: dict[str, str] = {}
        for name, region in self.regions.items():
            for alias in region.aliases:
                if alias in owner and owner[alias] != name:
                    raise ValueError(
                        f"regions: alias {alias!r} is listed by both {owner[alias]!r} and {name!r}"
                    )
                owner[alias] = name
        return self
