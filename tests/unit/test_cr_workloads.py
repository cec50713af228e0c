"""scaler.kube.workloads: a CarbonAwareScaler alone defines a workload (CRD-first).

Aspects: the shipped example translates field by field (target, class, load, capacity,
region resolved through the region model, power, budget, CI schedules, mode overrides); an
elastic CR (work, deadline, throughput); a CR over a config-file workload of the same
namespace/name overrides it field by field and inherits the rest; every CR that cannot be
acted on gets a problem with a reason and a message naming the field (table); the composed
set keeps config workloads, adds CRs, and refuses a second workload of the same name;
`ClusterWorkloads` exposes the problems of its last composition.
"""

from __future__ import annotations

import copy
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from config.settings import Settings
from config.wiring import build_workload_region
from forecasts.regions import REGION_LABEL, NodeRule, Region, RegionMap, RegionResolver
from scaler.core.workload import (
    LoadSourceKind,
    LoadSpec,
    PowerModel,
    TargetKind,
    TargetRef,
    Workload,
    WorkloadClass,
)
from scaler.kube.resources import parse_scaler_resource
from scaler.kube.workloads import ClusterWorkloads, compose_workloads, workload_from_resource
from scaler.schedules import WorkloadSchedules

EXAMPLE = (
    Path(__file__).resolve().parents[2] / "deploy" / "scaler" / "example-carbonawarescaler.yaml"
)
RESOLVER = RegionResolver(
    regions=RegionMap.of(
        [
            Region("IE", {"electricitymaps": "IE"}, rules=(NodeRule({REGION_LABEL: "eu-west-1"}),)),
            Region("GB", {"uk": "national"}, rules=(NodeRule({REGION_LABEL: "eu-west-2"}),)),
        ]
    )
)


def example() -> Any:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"].update(uid="u-1", generation=2, resourceVersion="7")
    return doc


def cr(**spec: Any) -> Any:
    doc = example()
    for key, value in spec.items():
        if value is None:
            doc["spec"].pop(key, None)
        else:
            doc["spec"][key] = value
    return doc


def translate(doc: dict[str, Any], base: Workload | None = None) -> Workload:
    return workload_from_resource(
        parse_scaler_resource(doc), base=base, resolve_region=RESOLVER.configured_region
    )


CONFIGURED = Workload(
    name="web",
    namespace="shop",
    target=TargetRef(TargetKind.DEPLOYMENT, "web"),
    load=LoadSpec(LoadSourceKind.PROMQL, "sum(rate(file_query[5m]))", "requests/s"),
    capacity_per_replica=7.0,
    min_replicas=2,
    max_replicas=9,
    power=PowerModel(5.0, 50.0),
    region="GB",
    headroom=0.3,
)


def test_the_shipped_example_defines_a_whole_workload() -> None:
    w = translate(example())
    assert (w.name, w.namespace) == ("web", "shop")
    assert (str(w.target.kind), w.target.name) == ("Deployment", "web")
    assert w.workload_class is WorkloadClass.INTERACTIVE
    assert w.load == LoadSpec(
        LoadSourceKind.PROMQL,
        'sum(rate(http_requests_total{namespace="shop", service="web"}[5m]))',
        "requests/s",
    )
    assert w.capacity_per_replica == 50
    assert w.region == "IE", "eu-west-1 is placed by the IE region's match rule"
    assert (w.min_replicas, w.max_replicas) == (1, 20)
    assert w.power == PowerModel(10.0, 30.0)
    assert w.budget_reduction_percent == 10
    (ci,) = w.ci_schedules
    assert (ci.cron, ci.timezone, ci.duration, ci.extra_load) == (
        "0 9 * * 1-5",
        "Europe/Dublin",
        timedelta(minutes=30),
        100,
    )
    (override,) = w.overrides
    assert (override.mode, override.cron, override.duration) == (
        "performance",
        "0 12 * * 5",
        timedelta(hours=2),
    )
    assert override.reason == "Friday release window"


def test_an_elastic_cr_plans_its_work_by_its_deadline() -> None:
    w = translate(
        cr(
            workloadClass="elastic",
            load=None,
            capacityPerReplica=None,
            budget=None,
            elastic={
                "totalWork": 3600,
                "deadline": "2026-03-02T06:00:00Z",
                "throughputPerReplica": [2, 1.5],
            },
        )
    )
    assert w.workload_class is WorkloadClass.ELASTIC
    assert w.elastic is not None
    assert w.elastic.total_work == 3600
    assert w.elastic.deadline == datetime(2026, 3, 2, 6, tzinfo=UTC)
    assert w.elastic.throughput_per_replica == (2.0, 1.5)


def test_a_cr_over_a_config_workload_overrides_field_by_field() -> None:
    w = translate(
        cr(load=None, capacityPerReplica=None, power={"busyWatts": 60}, region="eu-west-2"),
        base=CONFIGURED,
    )
    assert w.load == CONFIGURED.load, "the file's load query"
    assert w.capacity_per_replica == 7.0
    assert w.power == PowerModel(5.0, 60.0), "idle from the file, busy from the CR"
    assert w.headroom == 0.3
    assert (w.min_replicas, w.max_replicas, w.region) == (1, 20, "GB"), "the CR's own"


@pytest.mark.parametrize(
    ("spec", "reason", "fragment"),
    [
        pytest.param({"load": None}, "MissingLoad", "spec.load.promql", id="no load"),
        pytest.param(
            {"capacityPerReplica": None}, "MissingLoad", "capacityPerReplica", id="no capacity"
        ),
        pytest.param({"region": "atlantis"}, "UnknownRegion", "'atlantis'", id="unknown region"),
        pytest.param({"region": None}, "InvalidSpec", "spec.region: required", id="no region"),
        pytest.param(
            {"workloadClass": "batch"}, "InvalidSpec", "spec.workloadClass", id="unknown class"
        ),
        pytest.param(
            {"workloadClass": "elastic", "load": None, "capacityPerReplica": None, "budget": None},
            "InvalidSpec",
            "spec.elastic",
            id="elastic without work",
        ),
        pytest.param(
            {
                "workloadClass": "elastic",
                "capacityPerReplica": None,
                "budget": None,
                "elastic": {"totalWork": 1, "deadline": "2026-03-02T06:00:00Z"},
            },
            "InvalidSpec",
            "spec.load",
            id="load on elastic",
        ),
        pytest.param(
            {"elastic": {"totalWork": 1, "deadline": "2026-03-02T06:00:00Z"}},
            "InvalidSpec",
            "spec.elastic",
            id="elastic on interactive",
        ),
        pytest.param(
            {"capacityPerReplica": 0},
            "InvalidSpec",
            "capacityPerReplica: must be > 0",
            id="zero capacity",
        ),
        pytest.param(
            {"power": {"idleWatts": 50, "busyWatts": 10}},
            "InvalidSpec",
            "spec.power",
            id="idle above busy",
        ),
        pytest.param(
            {"ciSchedules": [{"cron": "0 9 * * *"}]},
            "InvalidSpec",
            "spec.ciSchedules[0].extraLoad",
            id="schedule without load",
        ),
        pytest.param(
            {"ciSchedules": [{"cron": "every tuesday", "extraLoad": 5}]},
            "InvalidSpec",
            "spec.ciSchedules[0]: invalid cron 'every tuesday'",
            id="schedule cron unreadable",
        ),
        pytest.param(
            {"ciSchedules": [{"cron": "0 9 * * *", "timezone": "Mars/Olympus", "extraLoad": 5}]},
            "InvalidSpec",
            "spec.ciSchedules[0]: invalid cron '0 9 * * *' in zone 'Mars/Olympus'",
            id="schedule zone unknown",
        ),
        pytest.param(
            {"modeOverrides": [{"mode": "eco", "cron": "61 25 * * *", "durationSeconds": 60}]},
            "InvalidSpec",
            "spec.modeOverrides[0]: invalid cron '61 25 * * *'",
            id="override cron out of range",
        ),
        pytest.param(
            {"modeOverrides": [{"mode": "eco"}]},
            "InvalidSpec",
            "spec.modeOverrides[0]",
            id="override without until or cron",
        ),
        pytest.param(
            {"modeOverrides": [{"mode": "eco", "until": "tomorrow"}]},
            "InvalidSpec",
            "until",
            id="unreadable until",
        ),
        pytest.param(
            {"load": {"promql": "sum by (workload) (x)", "match": {"workload": 3}}},
            "InvalidSpec",
            "spec.load.match",
            id="match label not a string",
        ),
        pytest.param(
            {"budget": {"reductionPercent": "ten"}},
            "InvalidSpec",
            "spec.budget.reductionPercent",
            id="budget not a number",
        ),
    ],
)
def test_a_cr_that_cannot_be_acted_on_says_why(spec, reason, fragment) -> None:
    workloads, problems = compose_workloads(
        (),
        {("shop", "web"): parse_scaler_resource(cr(**spec))},
        resolve_region=RESOLVER.configured_region,
    )
    assert workloads == ()
    problem = problems[("shop", "web")]
    assert problem.reason == reason
    assert fragment in problem.message


def test_a_cr_with_a_bad_cron_does_not_stop_the_others_reaching_the_loop() -> None:
    """The CRD cannot check a cron expression or a zone name: gridshift's parser must, or the
    CR reaches the loop, whose schedule parsing then refuses the whole workload set each
    tick (no CR added, changed or removed any more)."""
    bad = cr(modeOverrides=[{"mode": "eco", "cron": "0 9 * * mon-xyz", "durationSeconds": 60}])
    bad["metadata"]["name"] = "bad"
    good = parse_scaler_resource(cr())
    workloads, problems = compose_workloads(
        (),
        {("shop", "bad"): parse_scaler_resource(bad), ("shop", "web"): good},
        resolve_region=RESOLVER.configured_region,
    )
    assert [w.name for w in workloads] == ["web"]
    assert problems[("shop", "bad")].reason == "InvalidSpec"
    loop_schedules = WorkloadSchedules.parse(
        "web", workloads[0].ci_schedules, workloads[0].overrides
    )
    assert len(loop_schedules.ci) == len(workloads[0].ci_schedules)


def test_a_cr_picks_its_series_of_a_grouped_query_with_load_match() -> None:
    query = "sum by (namespace, workload) (rate(http_requests_total[2m]))"
    doc = cr(load={"promql": query, "match": {"workload": "web", "namespace": "shop"}})
    load = translate(doc).load
    assert (load.query, load.match) == (query, (("namespace", "shop"), ("workload", "web")))
    assert translate(cr()).load.match == ()


def test_cluster_workloads_sharded_returns_only_the_owned_ones() -> None:
    other = copy.deepcopy(example())
    other["metadata"].update(name="api")
    clash = copy.deepcopy(example())
    clash["metadata"].update(namespace="staging")  # another `web`: a conflict across shards
    resources = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): parse_scaler_resource(d)
        for d in (example(), other, clash)
    }
    source = ClusterWorkloads(
        (),
        resources=lambda: resources,
        resolve_region=RESOLVER.configured_region,
        owns=lambda namespace, name: name == "api" or namespace == "staging",
    )
    assert [(w.namespace, w.name) for w in source.current()] == [("shop", "api")]
    assert source.problems()[("staging", "web")].reason == "NameConflict"


def test_composition_keeps_config_workloads_adds_crs_and_refuses_duplicate_names() -> None:
    other = copy.deepcopy(example())
    other["metadata"].update(name="api", namespace="shop")
    clash = copy.deepcopy(example())
    clash["metadata"].update(namespace="staging")  # another `web`
    lone = dataclasses.replace(CONFIGURED, name="batch")
    resources = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): parse_scaler_resource(d)
        for d in (example(), other, clash)
    }
    workloads, problems = compose_workloads(
        (CONFIGURED, lone), resources, resolve_region=RESOLVER.configured_region
    )
    names = [(w.namespace, w.name) for w in workloads]
    assert names == [("shop", "web"), ("shop", "batch"), ("shop", "api")]
    assert workloads[0].capacity_per_replica == 50, "the CR replaced the file's web"
    assert problems[("staging", "web")].reason == "NameConflict"
    assert "namespace 'shop'" in problems[("staging", "web")].message


def test_cluster_workloads_exposes_the_last_problems() -> None:
    resources = {("shop", "web"): parse_scaler_resource(cr(region="atlantis"))}
    source = ClusterWorkloads((CONFIGURED,), resources=lambda: resources, resolve_region=str)
    source_strict = ClusterWorkloads(
        (), resources=lambda: resources, resolve_region=RESOLVER.configured_region
    )
    assert source.problems() == {}
    assert [w.region for w in source.current()] == ["atlantis"]
    assert source_strict.current() == ()
    assert source_strict.problems()[("shop", "web")].reason == "UnknownRegion"


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        pytest.param(None, "sample-solar", id="inherited from a SAMPLE DATA config workload"),
        pytest.param("sample-wind", "sample-wind", id="a SAMPLE DATA region named"),
        pytest.param("eu-west-2", "GB", id="a cloud region the match rules place"),
        pytest.param("gb", "GB", id="a configured region, any case"),
    ],
)
def test_run_accepts_the_regions_config_check_accepts(region, expected) -> None:
    """`gridshift run` names CR regions as `config check` does for config-file workloads:
    a configured carbon region (aliases, match rules) or a SAMPLE DATA region."""
    base = dataclasses.replace(CONFIGURED, region="sample-solar")
    workloads, problems = compose_workloads(
        (base,),
        {("shop", "web"): parse_scaler_resource(cr(region=region))},
        resolve_region=build_workload_region(Settings()),
    )
    assert problems == {}
    assert [w.region for w in workloads] == [expected]


def test_run_refuses_a_cr_region_nothing_serves() -> None:
    workloads, problems = compose_workloads(
        (),
        {("shop", "web"): parse_scaler_resource(cr(region="atlantis"))},
        resolve_region=build_workload_region(Settings()),
    )
    assert workloads == ()
    assert problems[("shop", "web")].reason == "UnknownRegion"
