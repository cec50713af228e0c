"""Each package's `__all__` names only things that exist."""

from __future__ import annotations

import importlib

import pytest

MODULES = [
    "forecasts",
    "forecasts.time",
    "forecasts.series",
    "forecasts.forecast",
    "forecasts.models",
    "forecasts.sources",
    "forecasts.sources.errors",
    "forecasts.sources.http",
    "scaler",
    "forecasts.sources.routing",
    "scaler.snapshot",
    "scaler.quantity",
    "scaler.selectors",
    "scaler.apiauth",
    "scaler.metrics_api",
    "scaler.keda",
    "scaler.kube",
    "forecasts.sources.carbon.base",
    "forecasts.sources.clock",
    "forecasts.models.seasonal_naive",
    "forecasts.load",
    "forecasts.ci",
    "forecasts.sources.prometheus",
    "extender",
    "extender.scoring",
    "extender.energy",
    "extender.nodes",
    "extender.snapshot",
    "extender.refresh",
    "extender.server",
    "extender.inventory",
    "extender.nvml",
    "extender.agent",
    "extender.gpu_prometheus",
    "config.wiring",
    "config.cmd_extender",
    "config",
    "config.settings",
    "config.cli",
    "config.errors",
    "config.schema",
    "config.loading",
    "config.wiring",
    "config.options",
    "config.cmd_config",
    "config.cmd_run",
    "config.scenario",
    "forecasts.sources.load",
    "forecasts.sources.sample",
    "scaler.workload",
    "scaler.policy",
    "scaler.accounting",
    "scaler.schedules",
    "scaler.loop",
    "scaler.state",
    "scaler.metrics",
    "scaler.status_api",
    "forecasts.regions",
    "forecasts.sources.carbon.electricitymaps",
    "forecasts.sources.carbon.watttime",
    "forecasts.sources.carbon.uk",
    "forecasts.sources.carbon.carbon_aware_sdk",
    "forecasts.sources.carbon.trace",
    "forecasts.sources.carbon.fallback",
    "config.cmd_carbon",
    "config.cmd_load",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ lists missing {attr}"
