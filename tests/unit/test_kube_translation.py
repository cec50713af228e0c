"""scaler.kube translation without a server: CarbonAwareScaler parsing (each invalid field
named), the replica bounds handed to HPAs/ScaledObjects (eco caps, performance floors, always
within [min, max]), the actuation plan per mode, and the status document."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecasts.time import FrozenClock
from scaler.kube import Actuator, parse_scaler_resource, replica_bounds, status_for
from scaler.snapshot import Mode, WorkloadStatus

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


def cr(**spec):
    base = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
        "minReplicas": 1,
        "maxReplicas": 10,
    }
    return {
        "metadata": {"name": "web", "namespace": "shop", "generation": 2, "resourceVersion": "7"},
        "spec": base | spec,
    }


def decision(replicas, mode=Mode.ECO):
    return WorkloadStatus(
        name="web",
        namespace="shop",
        region="r",
        desired_replicas=replicas,
        mode=mode,
        reasons=(),
        decided_at=T0,
    )


def test_parse_defaults():
    resource = parse_scaler_resource(cr())
    assert (resource.actuation.mode, resource.actuation.name, resource.actuation.dry_run) == (
        "none",
        "web",
        False,
    )
    assert (resource.generation, resource.resource_version) == (2, "7")


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        pytest.param({"maxReplicas": None}, "spec.maxReplicas: required", id="max missing"),
        pytest.param({"maxReplicas": "10"}, "spec.maxReplicas: expected int", id="max string"),
        pytest.param({"maxReplicas": True}, "spec.maxReplicas: expected int", id="max bool"),
        pytest.param({"minReplicas": -1}, "spec.minReplicas", id="min negative"),
        pytest.param({"minReplicas": 5, "maxReplicas": 4}, "spec.maxReplicas: 4", id="min>max"),
        pytest.param(
            {"scaleTargetRef": {"kind": "Deployment", "name": "x"}},
            "spec.scaleTargetRef.apiVersion",
            id="target apiVersion",
        ),
        pytest.param({"actuation": {"mode": "yolo"}}, "spec.actuation.mode", id="bad mode"),
        pytest.param({"actuation": {"dryRun": "yes"}}, "spec.actuation.dryRun", id="dryRun str"),
        pytest.param({"actuation": ["hpa"]}, "spec.actuation", id="actuation list"),
    ],
)
def test_parse_names_the_bad_field(spec, field):
    with pytest.raises(ValueError, match=field):
        parse_scaler_resource(cr(**spec))


def test_missing_spec():
    with pytest.raises(ValueError, match="spec: required"):
        parse_scaler_resource({"metadata": {"name": "x"}})


@pytest.mark.parametrize(
    ("desired", "mode", "expected"),
    [
        pytest.param(3, Mode.ECO, (1, 3), id="eco caps ceiling at the decision"),
        pytest.param(3, Mode.PERFORMANCE, (3, 10), id="performance raises the floor"),
        pytest.param(0, Mode.ECO, (1, 1), id="eco zero keeps the floor"),
        pytest.param(50, Mode.PERFORMANCE, (10, 10), id="clamped to max"),
    ],
)
def test_replica_bounds(desired, mode, expected):
    assert replica_bounds(desired, mode=mode, min_replicas=1, max_replicas=10) == expected


@given(
    desired=st.integers(0, 1000),
    mode=st.sampled_from(list(Mode)),
    lo=st.integers(0, 50),
    span=st.integers(0, 50),
)
def test_bounds_are_ordered_and_within_limits(desired, mode, lo, span):
    hi = max(lo + span, 1)
    floor, ceiling = replica_bounds(desired, mode=mode, min_replicas=lo, max_replicas=hi)
    assert lo <= floor <= ceiling <= hi


def test_plan_per_mode():
    actuator = Actuator.__new__(Actuator)  # plan() is pure; no client needed
    perf = decision(4, Mode.PERFORMANCE)
    assert Actuator.plan(actuator, parse_scaler_resource(cr(actuation={"mode": "hpa"})), perf) == {
        "spec": {"minReplicas": 4, "maxReplicas": 10}
    }
    assert Actuator.plan(
        actuator,
        parse_scaler_resource(cr(minReplicas=0, actuation={"mode": "scaledObject"})),
        decision(0),
    ) == {"spec": {"minReplicaCount": 0, "maxReplicaCount": 1}}
    assert Actuator.plan(
        actuator, parse_scaler_resource(cr(actuation={"mode": "scale"})), decision(12)
    ) == {"spec": {"replicas": 10}}
    assert Actuator.plan(actuator, parse_scaler_resource(cr()), perf) is None


def test_hpa_floor_is_at_least_one_even_with_min_zero():
    actuator = Actuator.__new__(Actuator)
    plan = Actuator.plan(
        actuator, parse_scaler_resource(cr(minReplicas=0, actuation={"mode": "hpa"})), decision(0)
    )
    assert plan == {"spec": {"minReplicas": 1, "maxReplicas": 1}}


def test_status_document():
    resource = parse_scaler_resource(cr())
    workload = WorkloadStatus(
        name="web",
        namespace="shop",
        region="r",
        desired_replicas=2,
        mode=Mode.ECO,
        reasons=("a", "b"),
        decided_at=T0,
        stale_inputs=("carbon",),
        saved_g=1.23456,
        emitted_g=2.0,
    )
    status = status_for(workload, resource=resource, now=T0)
    assert status["reasons"] == ["a", "b"]
    assert status["savedGrams"] == 1.235
    stale = next(c for c in status["conditions"] if c["type"] == "InputsStale")
    assert (stale["status"], stale["message"]) == ("True", "carbon")
    assert "lastActuation" not in status
    assert status_for(workload, resource=resource, now=FrozenClock(T0).now()) == status
