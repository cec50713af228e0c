"""The embedded default scenario of `gridshift run` (no config file): SAMPLE DATA.

Five workloads over the three synthetic regions of `forecasts.sources.sample`: three
interactive services (one with the sample CI burst schedule and a 10 % carbon budget, one with
a nightly eco override) and two elastic jobs due some hours after start. Nothing here is real:
the status API, the metrics and the logs say SAMPLE DATA.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from config.settings import (
    CiScheduleSettings,
    ElasticSettings,
    LoadSourceSettings,
    ModeOverrideSettings,
    PowerSettings,
    ScalerSettings,
    Settings,
    TargetSettings,
    WorkloadSettings,
)
from forecasts.sources.sample import (
    SAMPLE_CI_CRON,
    SAMPLE_CI_DURATION,
    sample_ci_extra_load,
)

__all__ = ["sample_settings"]


def _interactive(
    name: str, region: str, capacity: float, max_replicas: int, **extra: object
) -> WorkloadSettings:
    return WorkloadSettings.model_validate(
        {
            "name": name,
            "namespace": "sample",
            "target": TargetSettings(name=name),
            "load": LoadSourceSettings(trace=f"sample:{name}", unit="requests/s (SAMPLE DATA)"),
            "capacity_per_replica": capacity,
            "min_replicas": 2,
            "max_replicas": max_replicas,
            "power": PowerSettings(idle_watts=12.0, busy_watts=35.0),
            "region": region,
            **extra,
        }
    )


def sample_settings(now: datetime, *, base: Settings | None = None, seed: int = 0) -> Settings:
    """`base` (default: defaults) with the sample workloads; elastic deadlines count from `now`."""
    base = base or Settings()
    workloads = (
        _interactive("web-frontend", "sample-solar", 20.0, 20),
        _interactive(
            "checkout-api",
            "sample-wind",
            15.0,
            30,
            ci_schedules=(
                CiScheduleSettings(
                    cron=SAMPLE_CI_CRON,
                    duration_seconds=SAMPLE_CI_DURATION.total_seconds(),
                    extra_load=sample_ci_extra_load("checkout-api", seed=seed),
                ),
            ),
            budget_reduction_percent=10.0,
        ),
        _interactive(
            "search",
            "sample-hydro",
            25.0,
            15,
            overrides=(
                ModeOverrideSettings(
                    mode="eco",
                    cron="0 22 * * *",
                    duration_seconds=6 * 3600.0,
                    reason="nightly eco window (sample)",
                ),
            ),
        ),
        WorkloadSettings.model_validate(
            {
                "name": "nightly-training",
                "namespace": "sample",
                "target": TargetSettings(kind="StatefulSet", name="trainer"),
                "load": LoadSourceSettings(trace="sample:nightly-training"),
                "capacity_per_replica": 1.0,
                "min_replicas": 0,
                "max_replicas": 8,
                "power": PowerSettings(idle_watts=80.0, busy_watts=300.0),
                "region": "sample-wind",
                "class": "elastic",
                "elastic": ElasticSettings(
                    total_work=4 * 6 * 3600.0,
                    deadline=now + timedelta(hours=12),
                    throughput_per_replica=(1.0, 1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7),
                ),
            }
        ),
        WorkloadSettings.model_validate(
            {
                "name": "report-batch",
                "namespace": "sample",
                "target": TargetSettings(kind="ScaledObject", name="report-batch"),
                "load": LoadSourceSettings(trace="sample:report-batch"),
                "capacity_per_replica": 1.0,
                "min_replicas": 0,
                "max_replicas": 6,
                "power": PowerSettings(idle_watts=20.0, busy_watts=60.0),
                "region": "sample-solar",
                "class": "elastic",
                "elastic": ElasticSettings(
                    total_work=2 * 3 * 3600.0,
                    deadline=now + timedelta(hours=8),
                    throughput_per_replica=(1.0,),
                ),
            }
        ),
    )
    scaler = ScalerSettings.model_validate(
        {**base.scaler.model_dump(exclude={"workloads"}), "workloads": workloads}
    )
    return base.model_copy(update={"scaler": scaler})
