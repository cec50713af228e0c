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
    "scaler.snapshot",
    "forecasts.sources.carbon.base",
    "forecasts.sources.clock",
    "forecasts.models.seasonal_naive",
    "extender",
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
    "scaler.metrics",
    "scaler.status_api",
    "scaler.replay",
    "scaler.replay.model",
    "scaler.replay.policies",
    "scaler.replay.engine",
    "scaler.replay.summary",
    "forecasts.sources.trace",
    "forecasts.models.profile_persistence",
    "config.replay_scenario",
    "config.replay_report",
    "config.cmd_replay",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"{name} has no __all__"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ lists missing {attr}"
