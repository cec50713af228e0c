"""The `Workload` builder tests share: a Deployment of the workload's own name, 10 units of
demand per replica, at least 1 replica; the replay suites' trace workload by default, the
Prometheus suites' PromQL one through `promql_workload`. Every field can be overridden, the
name too (the target keeps the first name)."""

from __future__ import annotations

from typing import Any

from scaler.core.workload import (
    LoadSourceKind,
    LoadSpec,
    PowerModel,
    TargetKind,
    TargetRef,
    Workload,
)

__all__ = ["promql_workload", "trace_workload"]


def _deployment(name: str, defaults: dict[str, Any], fields: dict[str, Any]) -> Workload:
    base: dict[str, Any] = {
        "name": name,
        "target": TargetRef(TargetKind.DEPLOYMENT, name),
        "capacity_per_replica": 10.0,
        "min_replicas": 1,
    }
    return Workload(**(base | defaults | fields))


def trace_workload(name: str, region: str, /, **fields: Any) -> Workload:
    """Namespace `t`, load from the trace named `name`, 1..10 replicas of 50..100 W."""
    defaults = {
        "namespace": "t",
        "load": LoadSpec(LoadSourceKind.TRACE, name),
        "max_replicas": 10,
        "power": PowerModel(50.0, 100.0),
        "region": region,
    }
    return _deployment(name, defaults, fields)


def promql_workload(
    name: str,
    query: str,
    /,
    *,
    watts: str | None = None,
    region: str = "r1",
    match: tuple[tuple[str, str], ...] = (),
    **fields: Any,
) -> Workload:
    """Namespace `default`, load from PromQL `query` (its series with labels `match`), 1..40
    replicas of 10..30 W or, with `watts`, the measured watts of that query."""
    defaults = {
        "namespace": "default",
        "load": LoadSpec(LoadSourceKind.PROMQL, query, match=match),
        "max_replicas": 40,
        "power": PowerModel(10.0, 30.0, measured_query=watts),
        "region": region,
    }
    return _deployment(name, defaults, fields)
