"""ScalerSettings and the wiring's translation to the pure workload model.

Aspects: defaults build valid PolicyParams/LoopSettings; YAML-shaped dicts (`class:` alias)
become `Workload` values with CI schedules, overrides and elastic specs; bad input names the
field; cross-field rules (min <= max, elastic pairing, unique names, percentile order).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.registry import CollectorRegistry
from pydantic import ValidationError

from config.scenario import sample_settings
from config.settings import ScalerSettings, Settings, WorkloadSettings
from config.wiring import build_scaler, loop_settings_from, policy_params_from, workload_from
from forecasts.sources.sample import SampleCarbonSource, SampleLoadSource
from forecasts.time import FrozenClock
from scaler.core.workload import LoadSourceKind, TargetKind, WorkloadClass

T = datetime(2026, 3, 2, tzinfo=UTC)

WEB = {
    "name": "web",
    "target": {"kind": "StatefulSet", "name": "web"},
    "load": {"promql": "sum(rate(http_requests_total[5m]))"},
    "capacity_per_replica": 50,
    "region": "DE",
    "ci_schedules": [{"cron": "0 * * * *", "extra_load": 10}],
    "overrides": [{"mode": "eco", "until": "2026-03-03T00:00:00Z", "reason": "test"}],
}


def test_defaults_translate() -> None:
    settings = Settings()
    params = policy_params_from(settings, speed=10)
    assert params.decision_step == timedelta(seconds=600)
    assert params.performance_quantile == 0.95
    assert loop_settings_from(settings).carbon_stale_after == timedelta(hours=2)


def test_workload_translation() -> None:
    w = workload_from(WorkloadSettings.model_validate(WEB))
    assert w.target.kind is TargetKind.STATEFUL_SET
    assert w.load.kind is LoadSourceKind.PROMQL
    assert w.ci_schedules[0].duration == timedelta(minutes=20)
    assert w.overrides[0].until == datetime(2026, 3, 3, tzinfo=UTC)
    job = workload_from(
        WorkloadSettings.model_validate(
            {
                **WEB,
                "name": "job",
                "class": "elastic",
                "load": {"trace": "sample:x"},
                "elastic": {"total_work": 100, "deadline": "2026-03-03T00:00:00Z"},
                "overrides": [
                    {"mode": "performance", "cron": "0 9 * * 1", "duration_seconds": 3600}
                ],
            }
        )
    )
    assert job.workload_class is WorkloadClass.ELASTIC
    assert job.elastic is not None
    assert job.elastic.throughput_per_replica == (1.0,)
    assert job.overrides[0].duration == timedelta(hours=1)


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        pytest.param({"min_replicas": 5, "max_replicas": 2}, "min_replicas", id="min above max"),
        pytest.param({"capacity_per_replica": 0}, "capacity_per_replica", id="zero capacity"),
        pytest.param({"load": {}}, "exactly one of `promql` or `trace`", id="no load"),
        pytest.param({"class": "elastic"}, "elastic", id="elastic without spec"),
        pytest.param({"power": {"idle_watts": 50, "busy_watts": 10}}, "idle_watts", id="power"),
        pytest.param(
            {"overrides": [{"mode": "eco"}]}, "exactly one of `until` or `cron`", id="override"
        ),
        pytest.param(
            {"overrides": [{"mode": "eco", "cron": "* * * * *"}]}, "duration_seconds", id="cron dur"
        ),
        pytest.param(
            {"overrides": [{"mode": "eco", "until": "2026-01-01T00:00:00"}]},
            "timezone",
            id="naive until",
        ),
        pytest.param(
            {
                "class": "elastic",
                "elastic": {
                    "total_work": 1,
                    "deadline": "2026-01-01T00:00:00Z",
                    "throughput_per_replica": [1, 2],
                },
            },
            "non-increasing",
            id="rising profile",
        ),
        pytest.param(
            {"class": "elastic", "elastic": {"total_work": 1, "deadline": "2026-01-01T00:00:00"}},
            "timezone",
            id="naive deadline",
        ),
        pytest.param({"surprise": 1}, "surprise", id="unknown field"),
    ],
)
def test_workload_validation(patch, field) -> None:
    with pytest.raises(ValidationError, match=field):
        WorkloadSettings.model_validate({**WEB, **patch})


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        pytest.param({"workloads": [WEB, WEB]}, "unique", id="duplicate names"),
        pytest.param({"eco_exit_percentile": 90}, "eco_exit_percentile", id="percentiles"),
        pytest.param({"eco_quantile": 0.99}, "eco_quantile", id="quantiles"),
        pytest.param({"eco_headroom": 0.5}, "eco_headroom", id="headroom"),
        pytest.param({"tick_history_seconds": 10 * 86400}, "tick_history_seconds", id="history"),
        pytest.param({"carbon_window_seconds": 90000}, "carbon_horizon_seconds", id="window"),
    ],
)
def test_scaler_settings_cross_field(patch, message) -> None:
    with pytest.raises(ValidationError, match=message):
        ScalerSettings.model_validate(patch)


def test_sample_scenario_builds_and_ticks() -> None:
    settings = sample_settings(T)
    assert {w.name for w in settings.scaler.workloads} >= {"web-frontend", "nightly-training"}
    built = build_scaler(
        settings,
        clock=FrozenClock(T),
        registry=CollectorRegistry(),
        carbon=SampleCarbonSource(),
        load=SampleLoadSource(),
        data_note="SAMPLE DATA: test",
    )
    built.loop.refit()
    snap = built.loop.tick()
    assert len(snap.workloads) == 5
    assert all(ws.reasons[0] == "SAMPLE DATA: test" for ws in snap.workloads.values())
    assert (
        built.registry.get_sample_value(
            "gridshift_scaler_data_info", {"data": "sample", "note": "SAMPLE DATA: test"}
        )
        == 1.0
    )
