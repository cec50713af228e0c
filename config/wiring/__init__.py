"""THE composition root: the one place that reads settings and builds collaborators.

Every `build_*` function takes the (validated) settings plus keyword-only collaborators whose
production defaults are made here and nowhere else (STYLE §6): no module-level clients, no
global registries. Commands in `config/cmd_*.py` call `load_settings` once, then the builders
(imported from this package).

One module per component:

- `load`: settings, read once (file, env, secret files, --set).
- `scaler`: the scaler's loop, service, snapshot holder, collector and status app.
- `carbon`: carbon intensity providers, fallback and region routing.
- `prometheus`: the Prometheus load source.
- `run`: `gridshift run`'s sources (configured, or the bundled SAMPLE DATA).
- `kube`: the scaler on Kubernetes (API client, External Metrics API, KEDA scaler, CRD/lease
  runtime, `start_scaler_services`).
- `extender`: the scheduler extender and the GPU agent.
"""

from __future__ import annotations

from config.wiring.carbon import (
    HttpClientFactory,
    build_carbon_source,
    build_carbon_sources,
    build_region_map,
    build_region_resolver,
    build_workload_region,
    carbon_provider_status,
    default_http_client,
    default_last_known_path,
)
from config.wiring.extender import (
    ExtenderRuntime,
    build_agent,
    build_extender,
    kube_core_api,
    region_rules,
    scoring_policy,
)
from config.wiring.kube import (
    ScalerServices,
    build_keda_server,
    build_kube_api_client,
    build_kube_runtime,
    build_metrics_api_server,
    kube_api_client,
    start_scaler_services,
)
from config.wiring.load import load_settings, load_settings_with_sources
from config.wiring.prometheus import build_prometheus_source
from config.wiring.run import RunSources, build_run_sources
from config.wiring.scaler import (
    ScalerApp,
    build_scaler,
    build_state_store,
    load_forecaster_from,
    loop_settings_from,
    policy_params_from,
    workload_from,
)

__all__ = [
    "ExtenderRuntime",
    "HttpClientFactory",
    "RunSources",
    "ScalerApp",
    "ScalerServices",
    "build_agent",
    "build_carbon_source",
    "build_carbon_sources",
    "build_extender",
    "build_keda_server",
    "build_kube_api_client",
    "build_kube_runtime",
    "build_metrics_api_server",
    "build_prometheus_source",
    "build_region_map",
    "build_region_resolver",
    "build_run_sources",
    "build_scaler",
    "build_state_store",
    "build_workload_region",
    "carbon_provider_status",
    "default_http_client",
    "default_last_known_path",
    "kube_api_client",
    "kube_core_api",
    "load_forecaster_from",
    "load_settings",
    "load_settings_with_sources",
    "loop_settings_from",
    "policy_params_from",
    "region_rules",
    "scoring_policy",
    "start_scaler_services",
    "workload_from",
]
