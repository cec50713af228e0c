"""scaler.core.workload: every invalid workload is refused with the field named.

Aspects: power model order and interpolation; CI schedule and override shapes; elastic
profile (positive, non-increasing) and throughput sums; workload bounds and class/spec pairing.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scaler.core.workload import (
    CiSchedule,
    ElasticSpec,
    LoadSourceKind,
    LoadSpec,
    ModeOverride,
    PowerModel,
    TargetKind,
    TargetRef,
    Workload,
    WorkloadClass,
)

T = datetime(2026, 1, 1, tzinfo=UTC)


def test_power_model_interpolates_and_clamps() -> None:
    p = PowerModel(10.0, 30.0)
    assert p.replica_watts(0.5) == 20.0
    assert p.replica_watts(2.0) == 30.0
    assert p.replica_watts(-1.0) == 10.0


def test_elastic_throughput() -> None:
    spec = ElasticSpec(10.0, T, (2.0, 1.0))
    assert spec.throughput(0) == 0.0
    assert spec.throughput(3) == 4.0
    assert spec.marginal_throughput(5) == 1.0


def make(**kw) -> Workload:
    base: dict[str, Any] = {
        "name": "web",
        "namespace": "ns",
        "target": TargetRef(TargetKind.DEPLOYMENT, "web"),
        "load": LoadSpec(LoadSourceKind.TRACE, "sample:web"),
        "capacity_per_replica": 1.0,
        "min_replicas": 1,
        "max_replicas": 3,
        "power": PowerModel(1.0, 2.0),
        "region": "r",
    }
    base.update(kw)
    return Workload(**base)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: PowerModel(5.0, 1.0), "idle_watts <= busy_watts", id="power order"),
        pytest.param(lambda: LoadSpec(LoadSourceKind.PROMQL, " "), "empty", id="empty query"),
        pytest.param(
            lambda: CiSchedule("* * * * *", "UTC", timedelta(0), 1.0), "duration", id="ci duration"
        ),
        pytest.param(
            lambda: CiSchedule("* * * * *", "UTC", timedelta(1), -1.0), "extra_load", id="ci load"
        ),
        pytest.param(lambda: ModeOverride("turbo", until=T), "'eco' or 'performance'", id="mode"),
        pytest.param(lambda: ModeOverride("eco"), "exactly one", id="override neither"),
        pytest.param(lambda: ModeOverride("eco", cron="* * * * *"), "duration", id="cron dur"),
        pytest.param(lambda: ElasticSpec(-1.0, T, (1.0,)), "total_work", id="negative work"),
        pytest.param(lambda: ElasticSpec(1.0, T, ()), "at least one", id="empty profile"),
        pytest.param(lambda: ElasticSpec(1.0, T, (0.0,)), "must be > 0", id="zero throughput"),
        pytest.param(lambda: ElasticSpec(1.0, T, (1.0, 2.0)), "must not increase", id="rising"),
        pytest.param(
            lambda: ElasticSpec(1.0, T.replace(tzinfo=None), (1.0,)), "naive", id="naive deadline"
        ),
        pytest.param(lambda: make(name=""), "name", id="empty name"),
        pytest.param(lambda: make(capacity_per_replica=0.0), "capacity_per_replica", id="cap"),
        pytest.param(lambda: make(min_replicas=-1), "min_replicas", id="negative min"),
        pytest.param(lambda: make(min_replicas=5), "max_replicas", id="min above max"),
        pytest.param(lambda: make(max_replicas=0, min_replicas=0), "max_replicas", id="max 0"),
        pytest.param(lambda: make(headroom=11.0), "headroom", id="headroom"),
        pytest.param(lambda: make(workload_class=WorkloadClass.ELASTIC), "elastic", id="no spec"),
        pytest.param(
            lambda: make(elastic=ElasticSpec(1.0, T, (1.0,))), "elastic", id="spec on interactive"
        ),
        pytest.param(
            lambda: make(budget_reduction_percent=100.0), "budget_reduction_percent", id="budget"
        ),
    ],
)
def test_invalid(build, message) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_override_until_is_normalised_to_utc() -> None:
    from zoneinfo import ZoneInfo

    o = ModeOverride("eco", until=datetime(2026, 1, 1, 1, tzinfo=ZoneInfo("Europe/Berlin")))
    assert o.until == T
