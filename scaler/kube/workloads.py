"""CarbonAwareScaler spec -> `Workload` (pure translation), and the workload set the scaler loop
decides for: config-file workloads plus every CarbonAwareScaler.

A CarbonAwareScaler alone defines a workload (CRD-first): target, class (interactive with its load
query, `load.match` labels when the query is a grouped one, and per-replica capacity, or elastic
with its work and deadline), region (any name the region model resolves: `GB`, `eu-west-2`, an
alias), min/max, power, headroom, mode overrides, carbon budget, CI schedules and actuation. When a
config-file workload has the same namespace/name, the CR's fields override it field by field and the
rest comes from the file (so a CR may add actuation to a file workload without repeating its load
query).

What cannot be acted on is never silent: `compose_workloads` returns a `WorkloadProblem` (condition
reason + message naming the field) for each such CR; the controller writes it as the `Ready=False`
condition and a Warning Event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from forecasts.time import ensure_utc
from scaler.core.workload import (
    CiSchedule,
    ElasticSpec,
    LoadSourceKind,
    LoadSpec,
    ModeOverride,
    PowerModel,
    TargetRef,
    Workload,
    WorkloadClass,
)
from scaler.kube.resources import ScalerResource
from scaler.schedules import cron_schedule

__all__ = [
    "ClusterWorkloads",
    "SpecProblem",
    "WorkloadProblem",
    "compose_workloads",
    "workload_from_resource",
]

_DEFAULT_POWER = PowerModel(10.0, 30.0)
_ELASTIC_LOAD_UNIT = "work units/s"


@dataclass(frozen=True, slots=True)
class WorkloadProblem:
    """Why a CarbonAwareScaler is not acted on: `reason` is a condition/Event reason
    (CamelCase), `message` names the field and the problem."""

    reason: str
    message: str


class SpecProblem(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.problem = WorkloadProblem(reason, message)


def _invalid(message: str) -> SpecProblem:
    return SpecProblem("InvalidSpec", message)


def _number(
    spec: Mapping[str, Any],
    key: str,
    path: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{path}.{key}: expected a number, got {value!r}")
    if gt is not None and not value > gt:
        raise _invalid(f"{path}.{key}: must be > {gt:g}, got {value!r}")
    if ge is not None and not value >= ge:
        raise _invalid(f"{path}.{key}: must be >= {ge:g}, got {value!r}")
    return float(value)


def _text(spec: Mapping[str, Any], key: str, path: str) -> str | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _invalid(f"{path}.{key}: expected a non-empty string, got {value!r}")
    return value


def _object(spec: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _invalid(f"{path}.{key}: expected an object, got {value!r}")
    return value


def _list(spec: Mapping[str, Any], key: str, path: str) -> list[Mapping[str, Any]] | None:
    value = spec.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise _invalid(f"{path}.{key}: expected a list of objects, got {value!r}")
    return value


def _instant(spec: Mapping[str, Any], key: str, path: str) -> datetime | None:
    text = _text(spec, key, path)
    if text is None:
        return None
    try:
        return ensure_utc(datetime.fromisoformat(text.replace("Z", "+00:00")), name=key)
    except ValueError:
        raise _invalid(
            f"{path}.{key}: {text!r} is not an RFC 3339 time with a zone (2026-01-01T06:00:00Z)"
        ) from None


def _ci_schedules(items: list[Mapping[str, Any]]) -> tuple[CiSchedule, ...]:
    out = []
    for i, item in enumerate(items):
        path = f"spec.ciSchedules[{i}]"
        cron = _text(item, "cron", path)
        if cron is None:
            raise _invalid(f"{path}.cron: required")
        extra = _number(item, "extraLoad", path, ge=0)
        if extra is None:
            raise _invalid(f"{path}.extraLoad: required (load the run adds, in the load unit)")
        schedule = CiSchedule(
            cron=cron,
            timezone=_text(item, "timezone", path) or "UTC",
            duration=timedelta(seconds=_number(item, "durationSeconds", path, gt=0) or 1200),
            extra_load=extra,
        )
        _check_cron(schedule.cron, schedule.timezone, schedule.duration, path)
        out.append(schedule)
    return tuple(out)


def _check_cron(cron: str, timezone: str, duration: timedelta, path: str) -> None:
    """The CRD's schema cannot check a cron expression or a zone name: here, as the loop
    will parse them (a CR that reached the loop unparseable would stop the loop taking any
    new workload set)."""
    try:
        cron_schedule(cron, timezone, duration, where=path)
    except ValueError as exc:
        raise _invalid(str(exc)) from None


def _overrides(items: list[Mapping[str, Any]]) -> tuple[ModeOverride, ...]:
    out = []
    for i, item in enumerate(items):
        path = f"spec.modeOverrides[{i}]"
        duration = _number(item, "durationSeconds", path, gt=0)
        try:
            override = ModeOverride(
                mode=str(item.get("mode", "")),
                until=_instant(item, "until", path),
                cron=_text(item, "cron", path),
                timezone=_text(item, "timezone", path) or "UTC",
                duration=None if duration is None else timedelta(seconds=duration),
                reason=str(item.get("reason", "")),
            )
        except ValueError as exc:
            raise _invalid(f"{path}: {exc}") from None
        if override.cron is not None and override.duration is not None:
            _check_cron(override.cron, override.timezone, override.duration, path)
        out.append(override)
    return tuple(out)


def _elastic(spec: Mapping[str, Any] | None) -> ElasticSpec | None:
    if spec is None:
        return None
    path = "spec.elastic"
    work = _number(spec, "totalWork", path, ge=0)
    deadline = _instant(spec, "deadline", path)
    if work is None or deadline is None:
        raise _invalid(f"{path}: totalWork and deadline are required")
    profile = spec.get("throughputPerReplica", [1.0])
    if not isinstance(profile, list) or not all(
        isinstance(t, int | float) and not isinstance(t, bool) for t in profile
    ):
        raise _invalid(f"{path}.throughputPerReplica: expected a list of numbers, got {profile!r}")
    try:
        return ElasticSpec(work, deadline, tuple(float(t) for t in profile))
    except ValueError as exc:
        raise _invalid(f"{path}: {exc}") from None


def _match(load: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """`spec.load.match`: the labels of this workload's series in a grouped query."""
    match = _object(load, "match", "spec.load")
    if match is None:
        return ()
    if not match or not all(isinstance(k, str) and isinstance(v, str) for k, v in match.items()):
        raise _invalid(f"spec.load.match: expected label names to strings, got {dict(match)!r}")
    return tuple(sorted(match.items()))


def _class(spec: Mapping[str, Any], base: Workload | None) -> WorkloadClass:
    raw = spec.get("workloadClass")
    if raw is None:
        return base.workload_class if base is not None else WorkloadClass.INTERACTIVE
    try:
        return WorkloadClass(raw)
    except ValueError:
        raise _invalid(
            f"spec.workloadClass: {raw!r} is not one of {[c.value for c in WorkloadClass]}"
        ) from None


def _load(
    spec: Mapping[str, Any], base: Workload | None, klass: WorkloadClass, name: str
) -> tuple[LoadSpec, float]:
    """(load, capacity per replica) of an interactive workload; elastic ones have none."""
    load = _object(spec, "load", "spec")
    capacity = _number(spec, "capacityPerReplica", "spec", gt=0)
    if klass is WorkloadClass.ELASTIC:
        for key, value in (("load", load), ("capacityPerReplica", capacity)):
            if value is not None:
                raise _invalid(
                    f"spec.{key}: an elastic workload is planned from its work and the carbon "
                    "forecast, not from load; remove it"
                )
        # never queried: the loop skips the load of elastic workloads
        return LoadSpec(LoadSourceKind.TRACE, name, _ELASTIC_LOAD_UNIT), 1.0
    if load is not None:
        query = _text(load, "promql", "spec.load")
        if query is None:
            raise SpecProblem("MissingLoad", "spec.load.promql: required (demand as PromQL)")
        unit = _text(load, "unit", "spec.load") or "requests/s"
        load_spec = LoadSpec(LoadSourceKind.PROMQL, query, unit, _match(load))
    elif base is not None:
        load_spec = base.load
    else:
        raise SpecProblem(
            "MissingLoad",
            "spec.load.promql: an interactive workload needs its demand as PromQL (or a "
            "config-file workload of the same namespace/name that has one)",
        )
    if capacity is None:
        if base is None:
            raise SpecProblem(
                "MissingLoad", "spec.capacityPerReplica: required (load one replica serves)"
            )
        capacity = base.capacity_per_replica
    return load_spec, capacity


def _power(spec: Mapping[str, Any], base: Workload | None) -> PowerModel:
    default = base.power if base is not None else _DEFAULT_POWER
    power = _object(spec, "power", "spec")
    if power is None:
        return default
    idle = _number(power, "idleWatts", "spec.power", ge=0)
    busy = _number(power, "busyWatts", "spec.power", ge=0)
    try:
        return PowerModel(
            default.idle_watts if idle is None else idle,
            default.busy_watts if busy is None else busy,
            _text(power, "measuredPromql", "spec.power") or default.measured_query,
        )
    except ValueError as exc:
        raise _invalid(f"spec.power: {exc}") from None


def workload_from_resource(
    resource: ScalerResource,
    *,
    base: Workload | None = None,
    resolve_region: Callable[[str], str | None],
) -> Workload:
    """The `Workload` a CarbonAwareScaler defines (over `base`, a config-file workload of the
    same namespace/name). `resolve_region(name)` gives the configured region or None.
    Raises `SpecProblem` naming the field."""
    spec = resource.spec
    klass = _class(spec, base)
    load, capacity = _load(spec, base, klass, resource.name)
    written = _text(spec, "region", "spec") or (base.region if base is not None else None)
    if written is None:
        raise _invalid("spec.region: required (a configured region or a cloud region name)")
    region = resolve_region(written)
    if region is None:
        raise SpecProblem(
            "UnknownRegion",
            f"spec.region: {written!r} is neither a configured carbon region nor a cloud "
            "region/zone their match rules or aliases place (carbon.regions)",
        )
    budget = _object(spec, "budget", "spec")
    if budget is not None and klass is WorkloadClass.ELASTIC:
        raise _invalid(
            "spec.budget: a budget is for interactive workloads (elastic ones run at "
            "the cleanest hours already)"
        )
    ci = _list(spec, "ciSchedules", "spec")
    overrides = _list(spec, "modeOverrides", "spec")
    elastic = _elastic(_object(spec, "elastic", "spec"))
    if (klass is WorkloadClass.ELASTIC) != (elastic is not None):
        raise _invalid("spec.elastic: required exactly when spec.workloadClass is elastic")
    headroom = _number(spec, "headroom", "spec", ge=0)
    schedules = _ci_schedules(ci) if ci is not None else (base.ci_schedules if base else ())
    try:
        return Workload(
            name=resource.name,
            namespace=resource.namespace,
            target=TargetRef(resource.target.kind, resource.target.name),
            load=load,
            capacity_per_replica=capacity,
            min_replicas=resource.min_replicas,
            max_replicas=resource.max_replicas,
            power=_power(spec, base),
            region=region,
            workload_class=klass,
            headroom=headroom if headroom is not None else (base.headroom if base else None),
            ci_schedules=schedules,
            overrides=_overrides(overrides)
            if overrides is not None
            else (base.overrides if base else ()),
            elastic=elastic,
            budget_reduction_percent=(
                _number(budget, "reductionPercent", "spec.budget", gt=0)
                if budget is not None
                else (base.budget_reduction_percent if base else None)
            ),
        )
    except ValueError as exc:  # the Workload's own cross-field checks
        raise _invalid(f"spec: {exc}".replace(f"{resource.name}: ", "")) from None


def compose_workloads(
    configured: Sequence[Workload],
    resources: Mapping[tuple[str, str], ScalerResource],
    *,
    resolve_region: Callable[[str], str | None],
) -> tuple[tuple[Workload, ...], dict[tuple[str, str], WorkloadProblem]]:
    """The workloads to decide for: config-file ones, each replaced by a CarbonAwareScaler of
    the same namespace/name, plus every other CarbonAwareScaler; and the problem of each CR
    that cannot be acted on (invalid, unknown region, no load, or a name another namespace's
    workload already uses: decisions and metrics are keyed by workload name)."""
    by_key = {(w.namespace, w.name): w for w in configured}
    problems: dict[tuple[str, str], WorkloadProblem] = {}
    from_crs: dict[tuple[str, str], Workload] = {}
    for key, resource in sorted(resources.items()):
        try:
            from_crs[key] = workload_from_resource(
                resource, base=by_key.get(key), resolve_region=resolve_region
            )
        except SpecProblem as exc:
            problems[key] = exc.problem
    # config-file workloads first (a CR of the same key replaces one in place), then the CRs
    candidates = [(key, from_crs.pop(key, w)) for key, w in by_key.items()]
    candidates += sorted(from_crs.items())
    out: list[Workload] = []
    owner: dict[str, tuple[str, str]] = {}
    for key, w in candidates:
        holder = owner.get(w.name)
        if holder is not None:
            problems[key] = WorkloadProblem(
                "NameConflict",
                f"metadata.name: a workload named {w.name!r} already exists in namespace "
                f"{holder[0]!r}; workload names are unique across namespaces (metrics and "
                "decisions are keyed by name)",
            )
            continue
        owner[w.name] = key
        out.append(w)
    return tuple(out), problems


class ClusterWorkloads:
    """The scaler loop's workload source on a cluster: `current()` composes the config-file
    workloads with the watched CarbonAwareScalers (called before each tick) and keeps the
    problems of the CRs it could not use for the controller (`problems()`).

    Sharded (`owns`), the composition still sees every CR (a name conflict is one across the
    install), and `current()` returns the workloads of this replica's shards only."""

    def __init__(
        self,
        configured: Sequence[Workload],
        *,
        resources: Callable[[], Mapping[tuple[str, str], ScalerResource]],
        resolve_region: Callable[[str], str | None],
        owns: Callable[[str, str], bool] | None = None,
    ) -> None:
        self._configured = tuple(configured)
        self._resources = resources
        self._resolve = resolve_region
        self._owns = owns
        self._problems: Mapping[tuple[str, str], WorkloadProblem] = {}

    def current(self) -> tuple[Workload, ...]:
        workloads, problems = compose_workloads(
            self._configured, self._resources(), resolve_region=self._resolve
        )
        self._problems = problems  # one reference swap; the controller reads it
        owns = self._owns
        if owns is None:
            return workloads
        return tuple(w for w in workloads if owns(w.namespace, w.name))

    def problems(self) -> Mapping[tuple[str, str], WorkloadProblem]:
        return self._problems
