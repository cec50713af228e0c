"""The settings root: one pydantic-settings `Settings`, groups as frozen models.

Layers, lowest first: defaults < YAML file (`--config FILE` or `GRIDSHIFT_CONFIG`) <
environment (`GRIDSHIFT_*`, nested with `__`) < command-line flags, each a pydantic-settings
source (`config.sources`) listed in `Settings.settings_customise_sources`; `config.loading`
runs one load and reports problems and provenance. This module declares the shape, bounds
and defaults.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from config.sources import layer_sources

if TYPE_CHECKING:
    from forecasts.sources.prometheus import PrometheusConnection

__all__ = [
    "CARBON_PROVIDERS",
    "CarbonAwareSdkSettings",
    "CarbonHttpSettings",
    "CarbonRegionSettings",
    "CarbonSettings",
    "CarbonTraceSettings",
    "CiScheduleSettings",
    "ElasticSettings",
    "ElectricityMapsSettings",
    "ExtenderSettings",
    "ForecastSettings",
    "KedaSettings",
    "KubeSettings",
    "LoadSourceSettings",
    "MetricsApiSettings",
    "ModeOverrideSettings",
    "PowerSettings",
    "PrometheusSettings",
    "ScalerSettings",
    "ServerSettings",
    "Settings",
    "TargetSettings",
    "UkCarbonIntensitySettings",
    "WattTimeSettings",
    "WorkloadSettings",
]


class _Group(BaseModel):
    # hide_input_in_errors: a raw ValidationError printed anywhere never shows a (secret) value;
    # config.errors renders the values itself, masked.
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class PrometheusSettings(_Group):
    url: str = Field(
        "http://127.0.0.1:9090",
        description="Prometheus base URL; a proxy or test server can stand in.",
    )
    timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Per-request timeout; range queries are bounded by it."
    )
    bearer_token: SecretStr | None = Field(
        None, description="Sent as `Authorization: Bearer`; none for an open in-cluster server."
    )
    basic_auth_username: str | None = Field(
        None, description="HTTP basic auth user (reverse proxies); unset means no basic auth."
    )
    basic_auth_password: SecretStr | None = Field(
        None, description="HTTP basic auth password; only with basic_auth_username."
    )
    ca_file: Path | None = Field(
        None, description="PEM bundle to verify a private CA; unset uses the system store."
    )
    insecure_skip_verify: bool = Field(
        False, description="Off: TLS is verified unless someone opts out knowingly (dev only)."
    )
    max_points_per_request: int = Field(
        11000,
        ge=2,
        le=11001,
        description="Prometheus refuses more than 11,001 points per series; longer ranges "
        "are split into several requests.",
    )
    short_gap_steps: int = Field(
        3,
        ge=0,
        le=1000,
        description="Gaps up to 3 steps (a few missed scrapes) are interpolated; longer "
        "ones stay NaN (marked). 0 disables interpolation.",
    )
    batch_size: int = Field(
        1,
        ge=1,
        le=10_000,
        description="Workload queries per tagged batch (`label_replace(q) or ...`). 1 (off): "
        "Prometheus 2.42 took 10x longer for batches of 500 than for the same queries one by "
        "one on loopback; raise it only where each request's round trip dominates. Grouped "
        "loads (`load.match`) are the fast way to one query per tick.",
    )
    scrape_interval_seconds: float = Field(
        15.0,
        gt=0,
        description="The scrape interval of the load metrics (Prometheus' own default is "
        "60 s, most Kubernetes setups use 15-30 s); rate() windows span 4 of them.",
    )

    def connection(self) -> PrometheusConnection:
        """The adapter's plain connection value (the wiring passes it to
        `PrometheusLoadSource.connect`)."""
        from forecasts.sources.prometheus import PrometheusConnection

        basic = None
        if self.basic_auth_username is not None:
            password = self.basic_auth_password
            basic = (self.basic_auth_username, password.get_secret_value() if password else "")
        token = self.bearer_token
        return PrometheusConnection(
            url=self.url,
            timeout_seconds=self.timeout_seconds,
            bearer_token=token.get_secret_value() if token is not None else None,
            basic_auth=basic,
            ca_file=self.ca_file,
            insecure_skip_verify=self.insecure_skip_verify,
        )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {url!r}")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _auth_and_tls_consistent(self) -> PrometheusSettings:
        if self.bearer_token is not None and self.basic_auth_username is not None:
            raise ValueError("set either bearer_token or basic_auth_username, not both")
        if self.basic_auth_password is not None and self.basic_auth_username is None:
            raise ValueError("basic_auth_password needs basic_auth_username")
        if self.ca_file is not None and self.insecure_skip_verify:
            raise ValueError("ca_file has no effect with insecure_skip_verify: set only one")
        return self


CARBON_PROVIDERS = ("electricitymaps", "watttime", "uk", "carbon_aware_sdk", "trace")


def _check_http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")) or len(url) < len("http://x"):
        raise ValueError(f"must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/")


class CarbonHttpSettings(_Group):
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


class ElectricityMapsSettings(_Group):
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

    _url = field_validator("base_url")(_check_http_url)


class WattTimeSettings(_Group):
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

    _url = field_validator("base_url")(_check_http_url)

    @model_validator(mode="after")
    def _both_or_neither(self) -> WattTimeSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("set both username and password, or neither")
        return self


class UkCarbonIntensitySettings(_Group):
    base_url: str = Field(
        "https://api.carbonintensity.org.uk",
        description="Public NESO API, no key; a proxy or test server can stand in.",
    )
    enabled: bool = Field(True, description="Free and keyless, so on unless you opt out.")
    timeout_seconds: float = Field(
        10.0, gt=0, le=120, description="Answers take well under a second; 10 s rides out spikes."
    )

    _url = field_validator("base_url")(_check_http_url)


class CarbonAwareSdkSettings(_Group):
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
        return None if url is None else _check_http_url(url)


class CarbonTraceSettings(_Group):
    path: Path | None = Field(
        None, description="CSV in the shared/data layout; unset = no trace provider."
    )
    emission_factor: Literal["lifecycle", "direct"] = Field(
        "lifecycle", description="Column pick when a file has both; matches Electricity Maps."
    )
    zeros_as_missing: bool = Field(
        True, description="Traces use 0 as a placeholder; a grid average is never exactly 0."
    )


class CarbonRegionSettings(_Group):
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


class CarbonSettings(_Group):
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


#: The names `forecasts.models.catalog.LOAD_MODEL_CHOICES` accepts (kept equal by a test; a
#: Literal here keeps settings validation free of the models' heavy imports).
LoadModelName = Literal[
    "auto",
    "seasonal_naive_day",
    "seasonal_naive_week",
    "seasonal_regression",
    "ets",
    "sarimax",
    "prophet",
]


class WeatherPointSettings(_Group):
    latitude: float = Field(ge=-90, le=90, description="Degrees north.")
    longitude: float = Field(ge=-180, le=180, description="Degrees east.")
    weight: float = Field(
        1.0, gt=0, description="Share of the region (e.g. its wind/solar capacity there)."
    )


class OpenMeteoSettings(_Group):
    base_url: str = Field(
        "https://api.open-meteo.com",
        description="The free, non-commercial endpoint; customer-api.open-meteo.com with a key.",
    )
    api_key: SecretStr | None = Field(None, description="Only for the commercial endpoint.")
    timeout_seconds: float = Field(10.0, gt=0, description="One forecast call is small.")
    past_days: int = Field(
        92, ge=0, le=92, description="The most it serves: the carbon model trains on it."
    )
    forecast_days: int = Field(3, ge=1, le=16, description="Covers a 48 h carbon horizon.")
    points: dict[str, list[WeatherPointSettings]] = Field(
        default_factory=dict,
        description="Per carbon region, a few weighted locations; none = no weather inputs.",
    )


class ForecastSettings(_Group):
    carbon_refit_interval_seconds: float = Field(
        86400.0,
        gt=0,
        description="A day: the carbon plan backtests six weeks of history; daily is current.",
    )
    open_meteo: OpenMeteoSettings = OpenMeteoSettings()
    refit_interval_seconds: float = Field(
        3600.0, gt=0, description="Hourly refits keep models current without taxing the CPU."
    )
    load_model: LoadModelName = Field(
        "auto",
        description="auto: each workload's model is chosen by a backtest at every refit and"
        " never one that loses to seasonal naive; or name one model for all workloads.",
    )
    selection_origins: int = Field(
        4, ge=1, le=48, description="Four backtest origins: a stable choice, cheap at refit."
    )


class TargetSettings(_Group):
    kind: Literal["Deployment", "StatefulSet", "ScaledObject"] = Field(
        "Deployment", description="Deployments are the common case; KEDA users name a ScaledObject."
    )
    name: str = Field(min_length=1, description="Object name in the workload's namespace.")


class LoadSourceSettings(_Group):
    promql: str | None = Field(
        None, min_length=1, description="Demand as a PromQL expression (requests/s, queue depth)."
    )
    trace: str | None = Field(
        None, min_length=1, description="Name of a recorded trace or `sample:<profile>`."
    )
    unit: str = Field("requests/s", description="What the load counts; shown with forecasts.")
    match: dict[str, str] | None = Field(
        None,
        min_length=1,
        description="Labels picking this workload's one series out of a grouped `promql` "
        "(e.g. sum by (namespace, workload) (...)); workloads with the same `promql` share one "
        "range query per tick. Unset: `promql` is this workload's own series.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> LoadSourceSettings:
        if (self.promql is None) == (self.trace is None):
            raise ValueError("load needs exactly one of `promql` or `trace`")
        if self.match is not None and self.promql is None:
            raise ValueError("`match` picks a series of a grouped `promql`; it needs `promql`")
        return self


class PowerSettings(_Group):
    idle_watts: float = Field(
        10.0, ge=0, le=100_000, description="A small container idles near 10 W of its share."
    )
    busy_watts: float = Field(
        30.0, ge=0, le=100_000, description="About three times idle at full utilisation."
    )
    measured_promql: str | None = Field(
        None,
        min_length=1,
        description="Total watts of the workload (Kepler/NVML series); overrides the linear model.",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PowerSettings:
        if self.idle_watts > self.busy_watts:
            raise ValueError(
                f"idle_watts ({self.idle_watts}) must not exceed busy_watts ({self.busy_watts})"
            )
        return self


class CiScheduleSettings(_Group):
    cron: str = Field(min_length=1, description="Five-field crontab of the CI run's start.")
    timezone: str = Field("UTC", description="IANA zone the cron is read in.")
    duration_seconds: float = Field(
        1200.0, gt=0, le=7 * 86400, description="Twenty minutes: a typical CI pipeline's run."
    )
    extra_load: float = Field(ge=0, description="Load the run adds, in the workload's load unit.")


class ModeOverrideSettings(_Group):
    mode: Literal["eco", "performance"]
    until: datetime | None = Field(None, description="Force the mode until this instant.")
    cron: str | None = Field(None, min_length=1, description="Or: recurring windows starting here.")
    timezone: str = Field("UTC", description="IANA zone the cron is read in.")
    duration_seconds: float | None = Field(
        None, gt=0, description="Length of each recurring window."
    )
    reason: str = Field("", description="Shown in the decision's reasons.")

    @model_validator(mode="after")
    def _one_kind(self) -> ModeOverrideSettings:
        if (self.until is None) == (self.cron is None):
            raise ValueError("an override needs exactly one of `until` or `cron`")
        if self.cron is not None and self.duration_seconds is None:
            raise ValueError("a cron override needs `duration_seconds`")
        if self.until is not None and self.until.tzinfo is None:
            raise ValueError("`until` needs a timezone (e.g. 2026-01-01T00:00:00Z)")
        return self


class ElasticSettings(_Group):
    total_work: float = Field(ge=0, description="Work units left to do (e.g. CPU-seconds, jobs).")
    deadline: datetime = Field(description="When the work must be finished (with a timezone).")
    throughput_per_replica: tuple[float, ...] = Field(
        (1.0,),
        min_length=1,
        description="Work/s the n-th replica adds (non-increasing); the last value repeats.",
    )

    @model_validator(mode="after")
    def _checks(self) -> ElasticSettings:
        if self.deadline.tzinfo is None:
            raise ValueError("`deadline` needs a timezone (e.g. 2026-01-01T06:00:00Z)")
        prof = self.throughput_per_replica
        if any(t <= 0 for t in prof) or any(b > a for a, b in itertools.pairwise(prof)):
            raise ValueError("throughput_per_replica must be positive and non-increasing")
        return self


class WorkloadSettings(_Group):
    name: str = Field(min_length=1, description="Unique workload name (used in metrics labels).")
    namespace: str = Field("default", min_length=1, description="Kubernetes namespace.")
    target: TargetSettings
    load: LoadSourceSettings
    capacity_per_replica: float = Field(
        gt=0, description="Load one replica serves at its target utilisation."
    )
    min_replicas: int = Field(1, ge=0, le=10_000, description="One keeps a service reachable.")
    max_replicas: int = Field(10, ge=1, le=10_000, description="A safe cap until tuned.")
    headroom: float | None = Field(
        None, ge=0, le=10, description="Performance headroom override (fraction, 0.2 = 20 %)."
    )
    power: PowerSettings = PowerSettings()
    region: str = Field(min_length=1, description="Grid region the workload runs in.")
    ci_schedules: tuple[CiScheduleSettings, ...] = ()
    overrides: tuple[ModeOverrideSettings, ...] = ()
    workload_class: Literal["interactive", "elastic"] = Field(
        "interactive", alias="class", description="Interactive follows demand; elastic plans work."
    )
    elastic: ElasticSettings | None = None
    budget_reduction_percent: float | None = Field(
        None, gt=0, lt=100, description="Emit this % less than performance-only, over the window."
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _checks(self) -> WorkloadSettings:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) must not exceed max_replicas "
                f"({self.max_replicas})"
            )
        if (self.workload_class == "elastic") != (self.elastic is not None):
            raise ValueError("`class: elastic` and an `elastic:` section go together")
        return self


class ScalerSettings(_Group):
    tick_interval_seconds: float = Field(
        60.0, gt=0, description="One decision a minute, the HPA's own sync period is 15 s."
    )
    load_step_seconds: float = Field(
        300.0, gt=0, le=86400, description="Five-minute load steps smooth scrape jitter."
    )
    load_history_seconds: float = Field(
        7 * 86400.0,
        gt=0,
        description="A week: daily models get several seasons to backtest and refit on.",
    )
    tick_history_seconds: float = Field(
        25 * 3600.0,
        gt=0,
        description="Each tick reads a day and an hour: a daily model conditions on the last day.",
    )
    load_stale_after_seconds: float = Field(
        900.0, gt=0, description="Three missed five-minute steps make the load input stale."
    )
    performance_quantile: float = Field(
        0.95, gt=0, lt=1, description="Plan for the 95th percentile of demand: SLOs first."
    )
    eco_quantile: float = Field(
        0.75, gt=0, lt=1, description="Eco plans for the 75th percentile of demand."
    )
    performance_headroom: float = Field(
        0.2, ge=0, le=10, description="20 % spare capacity is a common HPA target (80 %)."
    )
    eco_headroom: float = Field(0.1, ge=0, le=10, description="Eco keeps half the headroom.")
    eco_min_headroom: float = Field(
        0.05, ge=0, le=10, description="Eco never under the median forecast plus 5 %."
    )
    scale_up_lead_seconds: float = Field(
        120.0, ge=0, description="Two minutes: typical pod start plus readiness."
    )
    scale_down_stabilisation_seconds: float = Field(
        300.0, ge=0, description="The HPA's default scale-down stabilisation window."
    )
    max_step_replicas: int = Field(
        4, ge=1, le=10_000, description="The HPA's default scale-up step is 4 pods."
    )
    eco_enter_percentile: float = Field(
        70.0, ge=0, le=100, description="Eco in the dirtiest 30 % of the region's own forecast."
    )
    eco_exit_percentile: float = Field(
        50.0, ge=0, le=100, description="Leave eco below the median: hysteresis against flapping."
    )
    budget_eco_enter_percentile: float = Field(
        40.0, ge=0, le=100, description="When a budget is behind, eco from the 40th percentile."
    )
    absolute_cap_g_per_kwh: float | None = Field(
        None, gt=0, description="Optional: always eco above this intensity. Off by default."
    )
    carbon_window_seconds: float = Field(
        3600.0, gt=0, description="Modes look one hour ahead: providers publish hourly."
    )
    carbon_horizon_seconds: float = Field(
        86400.0, gt=0, description="A day of forecast is the region's own distribution."
    )
    min_dwell_seconds: float = Field(
        900.0, ge=0, description="Fifteen minutes in a mode before switching again."
    )
    elastic_slot_seconds: float = Field(
        900.0, gt=0, description="Elastic plans in 15-minute slots (provider resolution or finer)."
    )
    budget_window_seconds: float = Field(
        86400.0, gt=0, description="Relative budgets are checked over the last day."
    )
    refit_workers: int = Field(
        1,
        ge=1,
        le=64,
        description="Refit in-process by default; more spreads heavy models over processes.",
    )
    workloads: tuple[WorkloadSettings, ...] = Field(
        (), description="The workloads to scale; none means the sample scenario in `run`."
    )
    state_file: Path | None = Field(
        None,
        description="Off by default (stateless, like the HPA); set a path so decisions and "
        "savings counters survive restarts (atomic writes, at most one tick lost).",
    )
    state_store: Literal["none", "file", "configmap"] = Field(
        "none",
        description="Where decisions and savings counters persist: none (stateless, like "
        "the HPA), file (state_file; implied when only state_file is set) or configmap (in "
        "the cluster, so a rescheduled pod keeps them).",
    )
    state_configmap_name: str = Field(
        "gridshift-scaler-state",
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="The name deploy/scaler/rbac.yaml grants access to (resourceNames).",
    )
    state_configmap_namespace: str = Field(
        "carbon-system",
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="The scaler's own namespace in deploy/ (its Role lives there).",
    )

    @model_validator(mode="before")
    @classmethod
    def _file_store_implied(cls, data: object) -> object:
        # `state_file` alone keeps its meaning from before `state_store` existed
        if isinstance(data, dict) and data.get("state_file") and "state_store" not in data:
            return {**data, "state_store": "file"}
        return data

    @model_validator(mode="after")
    def _checks(self) -> ScalerSettings:
        if self.state_store == "file" and self.state_file is None:
            raise ValueError("state_store 'file' needs state_file (the checkpoint's path)")
        if self.state_store != "file" and self.state_file is not None:
            raise ValueError(
                f"state_file is only used with state_store 'file', not {self.state_store!r}: "
                "unset one of them"
            )
        if self.eco_exit_percentile > self.eco_enter_percentile:
            raise ValueError("eco_exit_percentile must not exceed eco_enter_percentile")
        if self.eco_quantile > self.performance_quantile:
            raise ValueError("eco_quantile must not exceed performance_quantile")
        if not self.eco_min_headroom <= self.eco_headroom <= self.performance_headroom:
            raise ValueError("need eco_min_headroom <= eco_headroom <= performance_headroom")
        if self.tick_history_seconds > self.load_history_seconds:
            raise ValueError("tick_history_seconds must not exceed load_history_seconds")
        if self.carbon_horizon_seconds < self.carbon_window_seconds:
            raise ValueError("carbon_horizon_seconds must be at least carbon_window_seconds")
        names = [w.name for w in self.workloads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"workload names must be unique, repeated: {dupes}")
        return self


class ExtenderSettings(_Group):
    #: Removed keys and where their meaning went (shown instead of "unknown key").
    moved_fields: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "region_aliases": "region aliases moved to the one region model: list each cloud "
            "region/zone under carbon.regions.<REGION>.aliases (e.g. carbon.regions.IE.aliases"
            ": [eu-west-1]); nodes are also placed by the regions' `match` rules",
        }
    )

    listen: str = Field(
        "127.0.0.1:8888", description="Loopback by default; set 0.0.0.0:8888 in-cluster."
    )
    tls_cert_file: str | None = Field(
        None, description="PEM certificate; unset serves plain HTTP (fine behind a mesh)."
    )
    tls_key_file: str | None = Field(None, description="PEM key for tls_cert_file.")
    tls_reload_check_interval_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Rotated cert/key files are served within 10 s; cert-manager renews days "
        "ahead, so checking more often only costs stat calls.",
    )
    carbon_weight: float = Field(
        1.0, ge=0, le=100, description="Carbon is the point of the extender: full weight."
    )
    gpu_energy_weight: float = Field(
        0.5,
        ge=0,
        le=100,
        description="Half of carbon: GPU efficiency matters but grid mix differs more.",
    )
    neutral_score: int = Field(
        5, ge=0, le=10, description="Mid-scale, so missing data neither helps nor hurts a node."
    )
    stale_after_seconds: float = Field(
        7200.0,
        gt=0,
        description="Two hours: providers publish hourly, so one missed update is fine.",
    )
    gpu_stale_after_seconds: float = Field(
        900.0, gt=0, description="Three agent rewrites (every 300 s at most) may be missed."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        le=1024 * 1024 * 1024,
        description="16 MiB fits a 5,000-node NodeList with images; more is abuse.",
    )
    region_labels: tuple[str, ...] = Field(
        (
            "gridshift.io/region",
            "topology.kubernetes.io/region",
            "failure-domain.beta.kubernetes.io/region",
        ),
        min_length=1,
        description="Our own label first, then the well-known ones clouds set.",
    )
    zone_labels: tuple[str, ...] = Field(
        ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"),
        description="Well-known zone labels; zones may be aliased to carbon regions.",
    )
    nodes_file: str | None = Field(
        None,
        description="A NodeList (YAML/JSON) to serve instead of watching the cluster; without"
        " it and without credentials the extender serves the SAMPLE DATA nodes (offline).",
    )
    default_region: str | None = Field(
        None,
        description="Configured carbon region of nodes no label or match rule places; unset "
        "leaves them neutral.",
    )
    max_intensity_g_per_kwh: float | None = Field(
        None,
        gt=0,
        le=10_000,
        description="Cluster-wide carbon threshold: filter out nodes whose region is fresher "
        "and dirtier than this; off by default; a pod's gridshift.io/max-gco2-per-kwh wins.",
    )
    prefer_regions: tuple[str, ...] = Field(
        (),
        description="Regions whose nodes get a score bonus; none by default; a pod's "
        "gridshift.io/prefer-regions annotation replaces the list.",
    )
    avoid_regions: tuple[str, ...] = Field(
        (),
        description="Regions filtered out unless no other node fits (fails open); none by "
        "default; a pod's gridshift.io/avoid-regions annotation replaces the list.",
    )
    prefer_bonus: float = Field(
        0.2,
        ge=0,
        le=1,
        description="A fifth of the best node's goodness: breaks near-ties toward preferred "
        "regions without overriding a clearly cleaner grid.",
    )
    regions: tuple[str, ...] = Field(
        (),
        description="Configured carbon regions to rank for /regions/rank even without nodes.",
    )
    refresh_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="Node changes reach scores within ten seconds."
    )
    carbon_refresh_interval_seconds: float = Field(
        300.0, gt=0, description="Five minutes: providers update at most every 5-60 minutes."
    )
    freeze_gc: bool = Field(
        True,
        description="Freeze each published snapshot out of the cyclic GC: full collections"
        " walking 5,000 nodes caused 90 ms request tails (see extender/refresh.py).",
    )
    forecast_horizon_seconds: float = Field(
        86400.0, gt=0, description="A day covers the expected durations of most batch jobs."
    )
    gpu_source: Literal["agent", "dcgm", "kepler", "none"] = Field(
        "agent", description="The gridshift agent's node annotations, unless you run DCGM."
    )
    node_label_selector: str | None = Field(
        None, description="Watch all nodes by default; narrow in very large clusters."
    )
    watch_timeout_seconds: int = Field(
        300, gt=0, le=3600, description="client-go's reflector uses 5-10 minute watches."
    )
    inventory_request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="One node LIST page (500 nodes) answers in well under 1 s; 10 s spares a "
        "loaded API server yet counts a hung one within seconds, re-send included.",
    )
    agent_listen: str = Field(
        "127.0.0.1:9402", description="Agent /metrics on loopback; 0.0.0.0:9402 in the pod."
    )
    agent_sample_interval_seconds: float = Field(
        5.0, gt=0, le=600, description="NVML power is a 1 s average: 5 s sampling is plenty."
    )
    agent_window_seconds: float = Field(
        300.0, gt=0, description="A five-minute rolling average smooths batch step noise."
    )
    agent_annotation_interval_seconds: float = Field(
        60.0, gt=0, description="At most one node PATCH a minute per node keeps API load low."
    )
    agent_annotation_max_age_seconds: float = Field(
        300.0,
        gt=0,
        description="Rewrite unchanged values every 5 min so readers see them as fresh.",
    )
    agent_min_change_fraction: float = Field(
        0.05, ge=0, le=1, description="Skip rewrites for changes under 5 %."
    )

    @model_validator(mode="after")
    def _agent_rewrites_before_stale(self) -> ExtenderSettings:
        if self.agent_annotation_max_age_seconds >= self.gpu_stale_after_seconds:
            raise ValueError(
                "agent_annotation_max_age_seconds must be below gpu_stale_after_seconds, "
                "or idle nodes' GPU facts would look stale"
            )
        if self.agent_annotation_interval_seconds > self.agent_annotation_max_age_seconds:
            raise ValueError(
                "agent_annotation_interval_seconds must not exceed agent_annotation_max_age_seconds"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self


class ServerSettings(_Group):
    listen: str = Field("127.0.0.1:8080", description="Metrics/status on loopback by default.")
    history_points: int = Field(
        720,
        ge=1,
        le=100_000,
        description="Snapshots kept for the dashboard's charts: 3 h at the 15 s tick, ~100 kB.",
    )
    extender_metrics_url: str | None = Field(
        None,
        description="An extender's /metrics for the dashboard's extender panel; off by default "
        "(the scaler does not need an extender).",
    )
    extender_poll_seconds: float = Field(
        15.0, gt=0, le=3600, description="Matches a typical Prometheus scrape interval."
    )


class MetricsApiSettings(_Group):
    """The External Metrics API (external.metrics.k8s.io) served by `gridshift run`."""

    enabled: bool = Field(True, description="On by default: it is how plain HPAs consume us.")
    listen: str = Field(
        "127.0.0.1:6443",
        description="Loopback by default; set 0.0.0.0:6443 in-cluster behind the APIService.",
    )
    tls_cert_file: Path | None = Field(
        None, description="Serving cert (PEM); re-read when it changes. None = plain HTTP."
    )
    tls_key_file: Path | None = Field(None, description="Private key for tls_cert_file.")
    tls_reload_check_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="cert-manager renews days ahead; 10 s is plenty."
    )
    authentication_from_cluster: bool = Field(
        False,
        description="Read kube-system/extension-apiserver-authentication (front-proxy CA, "
        "allowed names, client CA) like k8s.io/apiserver does; off outside a cluster.",
    )
    authentication_refresh_interval_seconds: float = Field(
        60.0, gt=0, le=86400, description="Pick up front-proxy CA rotations within a minute."
    )
    requestheader_client_ca_file: Path | None = Field(
        None, description="Front-proxy CA when not read from the cluster ConfigMap."
    )
    requestheader_allowed_names: tuple[str, ...] = Field(
        ("front-proxy-client",),
        description="kubeadm's front-proxy client CN; empty = any cert from that CA.",
    )
    client_ca_file: Path | None = Field(
        None, description="CA for user client certificates when not read from the cluster."
    )
    delegated_authentication: bool = Field(
        False, description="Bearer tokens via TokenReview; needs system:auth-delegator."
    )
    delegated_authorization: bool = Field(
        False, description="SubjectAccessReview per request; off = any authenticated user."
    )
    review_cache_ttl_seconds: float = Field(
        10.0, gt=0, le=600, description="k8s.io/apiserver caches reviews for 10 s too."
    )
    allow_anonymous: bool = Field(
        False, description="Only for local development on loopback without TLS."
    )
    max_snapshot_age_seconds: float = Field(
        600.0,
        gt=0,
        description="Ten default ticks: older decisions answer 500 so the HPA holds its count.",
    )

    @model_validator(mode="after")
    def _cert_and_key_together(self) -> MetricsApiSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self


class KedaSettings(_Group):
    """The KEDA external scaler (gRPC externalscaler.ExternalScaler)."""

    enabled: bool = Field(True, description="Cheap to serve; KEDA users need no second server.")
    listen: str = Field(
        "127.0.0.1:6000",
        description="Loopback by default (6000, as in KEDA's external-scaler samples; 9090 is"
        " Prometheus'); 0.0.0.0:6000 in-cluster.",
    )
    stream_poll_interval_seconds: float = Field(
        1.0, gt=0, le=60, description="How fast StreamIsActive notices a new decision."
    )
    max_streams: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Open StreamIsActive streams at most (KEDA opens one per external-push"
        " ScaledObject; each holds a thread); past it RESOURCE_EXHAUSTED.",
    )
    tls_cert_file: Path | None = Field(
        None,
        description="Serving cert (PEM) for the gRPC listener; None = plaintext (KEDA's "
        "default; set it with enableTLS/caCert on the trigger). Re-read when it changes.",
    )
    tls_key_file: Path | None = Field(None, description="Private key for tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        None,
        description="CA that KEDA's client certificate (tlsClientCert) must chain to; set = "
        "mutual TLS, callers without such a certificate are refused. None = any TLS client.",
    )
    tls_reload_check_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="cert-manager renews days ahead; 10 s is plenty."
    )

    @model_validator(mode="after")
    def _tls_files_consistent(self) -> KedaSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("keda.tls_cert_file and keda.tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError(
                "keda.tls_client_ca_file needs keda.tls_cert_file/tls_key_file: "
                "client certificates are only checked over TLS"
            )
        return self


class KubeSettings(_Group):
    """Kubernetes I/O: CarbonAwareScaler watch, status, actuation and leader election."""

    enabled: bool = Field(False, description="Off outside a cluster; the Deployment turns it on.")
    kubeconfig: Path | None = Field(
        None, description="None = in-cluster service account, else ~/.kube/config."
    )
    watch_namespace: str | None = Field(
        None, description="None watches CarbonAwareScalers in all namespaces."
    )
    identity: str = Field(
        "", description="Leader-election identity; empty = host name (the pod name in-cluster)."
    )
    lease_name: str = Field("gridshift-scaler", min_length=1, description="One Lease per install.")
    lease_namespace: str = Field(
        "carbon-system", min_length=1, description="The namespace the scaler runs in."
    )
    lease_duration_seconds: int = Field(
        15, ge=2, le=600, description="client-go's default; a dead leader is replaced in 15 s."
    )
    renew_deadline_seconds: float = Field(
        10.0, gt=0, description="client-go's default; must stay below lease_duration_seconds."
    )
    retry_period_seconds: float = Field(
        2.0, gt=0, le=60, description="client-go's default renew/acquire cadence."
    )
    watch_timeout_seconds: int = Field(
        300, ge=1, le=3600, description="Re-issue watches every 5 min, as informers do."
    )
    request_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Per API call, so a hung API server never stalls a sync or shutdown; "
        "Lease calls use at most a quarter of renew_deadline_seconds.",
    )

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> KubeSettings:
        if not self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                f"renew_deadline_seconds ({self.renew_deadline_seconds}) must be < "
                f"lease_duration_seconds ({self.lease_duration_seconds})"
            )
        if not self.retry_period_seconds < self.renew_deadline_seconds:
            raise ValueError(
                f"retry_period_seconds ({self.retry_period_seconds}) must be < "
                f"renew_deadline_seconds ({self.renew_deadline_seconds})"
            )
        return self


class Settings(BaseSettings):
    """The whole configuration. Read once, in `config.wiring` (`load_settings`).

    Its settings sources (`settings_customise_sources`) are the layers of `config.sources`:
    `config.loading.load_config` activates them for one load and reports every layer's
    problems and the provenance of every value; `Settings()` alone is the declared defaults.
    """

    model_config = SettingsConfigDict(
        env_prefix="GRIDSHIFT_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        hide_input_in_errors=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Highest precedence first: keyword arguments, --set and command flags, GRIDSHIFT_*
        # environment, the YAML file (secret files are read in each of those layers), then
        # the declared defaults. pydantic-settings' own env source would silently skip unknown
        # GRIDSHIFT_* names and record no provenance, so config.sources writes each layer.
        return (init_settings, *layer_sources(settings_cls))

    prometheus: PrometheusSettings = PrometheusSettings()
    carbon: CarbonSettings = CarbonSettings()
    forecast: ForecastSettings = ForecastSettings()
    scaler: ScalerSettings = ScalerSettings()
    extender: ExtenderSettings = ExtenderSettings()
    server: ServerSettings = ServerSettings()
    metrics_api: MetricsApiSettings = MetricsApiSettings()
    keda: KedaSettings = KedaSettings()
    kube: KubeSettings = KubeSettings()
