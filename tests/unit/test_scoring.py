"""extender.core.scoring: pod annotations, region intensity (now / over the expected run time),
scores (range, best gets 10, weights, GPU energy, neutral on missing/stale/opt-out), filter
(caps, never rejecting for lack of data, every node once), region policy (cluster-wide
threshold and prefer/avoid lists, each overridden per pod by annotation; avoid fails open,
prefer is a score bonus, also without carbon data), region ranking (where and when),
and the hypothesis invariants (ints in 0..10 incl. NaN and empty, order independence,
monotonic in intensity, filter partitions its input)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from extender.core.energy import GpuEnergy
from extender.core.scoring import (
    DataStatus,
    NeutralReason,
    NodeFacts,
    PodPreferences,
    RegionIntensity,
    ScoringPolicy,
    filter_nodes,
    pod_preferences,
    rank_regions,
    region_intensities,
    region_intensity,
    score_nodes,
)
from forecasts.series import CarbonUnit
from tests.fakes import hourly_series

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = ScoringPolicy()


def fresh(region: str, value: float, unit: CarbonUnit = CarbonUnit.G_PER_KWH) -> RegionIntensity:
    return RegionIntensity(region, value, unit, DataStatus.FRESH, age_seconds=60.0)


def facts(*pairs: tuple[str, str | None]) -> dict[str, NodeFacts]:
    return {n: NodeFacts(name=n, region=r) for n, r in pairs}


# ---------------------------------------------------------------------------- pod
@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        pytest.param({}, PodPreferences(), id="no annotations"),
        pytest.param({"gridshift.io/opt-out": "true"}, PodPreferences(opt_out=True), id="opt-out"),
        pytest.param({"gridshift.io/opt-out": "False"}, PodPreferences(), id="opt-out false"),
        pytest.param(
            {"gridshift.io/max-gco2-per-kwh": " 250 "},
            PodPreferences(max_intensity_g_per_kwh=250.0),
            id="cap",
        ),
        pytest.param(
            {"gridshift.io/expected-duration": "1h30m"},
            PodPreferences(expected_duration=timedelta(minutes=90)),
            id="duration",
        ),
    ],
)
def test_pod_preferences_read_annotations(annotations, expected) -> None:
    assert pod_preferences(annotations) == expected


@pytest.mark.parametrize(
    ("annotations", "fragment"),
    [
        pytest.param({"gridshift.io/opt-out": "maybe"}, "use true or false", id="opt-out typo"),
        pytest.param({"gridshift.io/max-gco2-per-kwh": "low"}, "positive number", id="cap text"),
        pytest.param({"gridshift.io/max-gco2-per-kwh": "-5"}, "positive number", id="cap < 0"),
        pytest.param({"gridshift.io/max-gco2-per-kwh": "nan"}, "positive number", id="cap nan"),
        pytest.param({"gridshift.io/expected-duration": "soon"}, "invalid duration", id="dur"),
        pytest.param({"gridshift.io/expected-duration": "90d"}, "between 0 and 30d", id="long"),
    ],
)
def test_bad_annotations_are_ignored_and_named(annotations, fragment) -> None:
    prefs = pod_preferences(annotations)
    assert (prefs.opt_out, prefs.max_intensity_g_per_kwh, prefs.expected_duration) == (
        False,
        None,
        None,
    )
    (problem,) = prefs.problems
    assert next(iter(annotations)) in problem
    assert fragment in problem


def test_gpu_request_is_summed_over_containers_taking_the_larger_of_limit_and_request() -> None:
    containers: list[dict[str, object]] = [
        {"resources": {"limits": {"nvidia.com/gpu": "2"}}},
        {"resources": {"requests": {"nvidia.com/gpu": 1}, "limits": {"nvidia.com/gpu": "1"}}},
        {"resources": {"requests": {"cpu": "1"}}},
        {"resources": None},
        {},
    ]
    assert pod_preferences({}, containers=containers).gpus_requested == 3


# ---------------------------------------------------------------------------- intensity
def test_region_intensity_now_and_over_the_expected_duration() -> None:
    series = hourly_series("FR", NOW - timedelta(hours=1), [100, 80, 40, 40, 200], forecast_from=2)
    now_value = region_intensity(series, region="FR", now=NOW, stale_after_seconds=7200)
    assert (now_value.value, now_value.status) == (80, DataStatus.FRESH)
    avg = region_intensity(
        series, region="FR", now=NOW, stale_after_seconds=7200, duration=timedelta(hours=3)
    )
    assert avg.value == pytest.approx((80 + 40 + 40) / 3)
    assert avg.averaged_over_seconds == 3 * 3600


def test_expected_duration_beyond_the_forecast_falls_back_to_now_when_mostly_uncovered() -> None:
    series = hourly_series("FR", NOW, [100])
    ri = region_intensity(
        series, region="FR", now=NOW, stale_after_seconds=7200, duration=timedelta(hours=10)
    )
    assert (ri.value, ri.averaged_over_seconds) == (100, None)


@pytest.mark.parametrize(
    ("series_age", "stale_flag", "expected"),
    [
        pytest.param(timedelta(minutes=30), False, DataStatus.FRESH, id="recent"),
        pytest.param(timedelta(hours=3), False, DataStatus.STALE, id="too old"),
        pytest.param(timedelta(minutes=30), True, DataStatus.STALE, id="fallback series"),
    ],
)
def test_staleness(series_age, stale_flag, expected) -> None:
    series = hourly_series("DE", NOW - series_age, [300])
    if stale_flag:
        series = series.as_stale("provider down, last known value")
    ri = region_intensity(series, region="DE", now=NOW, stale_after_seconds=7200)
    assert ri.status is expected
    assert (ri.usable is None) == (expected is not DataStatus.FRESH)


def test_missing_region_and_future_only_series_are_missing() -> None:
    assert region_intensity(None, region="X", now=NOW, stale_after_seconds=1).status is (
        DataStatus.MISSING
    )
    future = hourly_series("X", NOW + timedelta(hours=1), [1, 2])
    assert region_intensity(future, region="X", now=NOW, stale_after_seconds=1).status is (
        DataStatus.MISSING
    )


# ---------------------------------------------------------------------------- scores
def test_cleanest_region_gets_10_dirtiest_0_linear_between() -> None:
    result = score_nodes(
        ["a", "b", "c", "d"],
        facts=facts(("a", "FR"), ("b", "DE"), ("c", "PL"), ("d", "FR")),
        intensities={"FR": fresh("FR", 50), "DE": fresh("DE", 300), "PL": fresh("PL", 550)},
        pod=PodPreferences(),
        policy=POLICY,
        now=NOW,
    )
    assert result.scores == {"a": 10, "b": 5, "c": 0, "d": 10}
    assert not result.neutral
    assert result.components == ("carbon",)


def test_node_without_region_gets_the_neutral_goodness_not_a_penalty() -> None:
    result = score_nodes(
        ["a", "b", "x", "ghost"],
        facts=facts(("a", "FR"), ("b", "PL"), ("x", None)),
        intensities={"FR": fresh("FR", 50), "PL": fresh("PL", 550)},
        pod=PodPreferences(),
        policy=POLICY,
        now=NOW,
    )
    assert result.scores == {"a": 10, "b": 0, "x": 5, "ghost": 5}


@pytest.mark.parametrize(
    ("intensities", "pod", "reason"),
    [
        pytest.param({}, PodPreferences(), "no fresh carbon", id="no data"),
        pytest.param(
            {"FR": RegionIntensity("FR", 50, CarbonUnit.G_PER_KWH, DataStatus.STALE)},
            PodPreferences(),
            "no fresh carbon",
            id="stale",
        ),
        pytest.param(
            {"FR": fresh("FR", math.nan)}, PodPreferences(), "no fresh carbon", id="nan value"
        ),
        pytest.param({"FR": fresh("FR", 50)}, PodPreferences(opt_out=True), "opted out", id="opt"),
    ],
)
def test_neutral_cases_give_every_node_the_same_score(intensities, pod, reason) -> None:
    result = score_nodes(
        ["a", "b"],
        facts=facts(("a", "FR"), ("b", "PL")),
        intensities=intensities,
        pod=pod,
        policy=ScoringPolicy(neutral_score=3),
        now=NOW,
    )
    assert result.scores == {"a": 3, "b": 3}
    assert reason in result.note


def test_mixed_units_compare_only_g_per_kwh() -> None:
    result = score_nodes(
        ["a", "b", "c"],
        facts=facts(("a", "FR"), ("b", "PL"), ("c", "CAISO")),
        intensities={
            "FR": fresh("FR", 50),
            "PL": fresh("PL", 550),
            "CAISO": fresh("CAISO", 3, CarbonUnit.PERCENTILE),
        },
        pod=PodPreferences(),
        policy=POLICY,
        now=NOW,
    )
    assert result.scores == {"a": 10, "b": 0, "c": 5}


def gpu(watts: float, *, per_work: float | None = None, at: datetime = NOW) -> GpuEnergy:
    return GpuEnergy(
        power_watts=watts,
        idle_power_watts=60.0,
        joules_per_work=per_work,
        gpu_count=4,
        measured_at=at,
        window_seconds=300,
    )


def test_gpu_energy_counts_only_for_gpu_pods_and_is_weighted() -> None:
    nodes = {
        "h100": NodeFacts("h100", region="DE", gpu_capacity=4, gpu=gpu(300, per_work=400)),
        "a100": NodeFacts("a100", region="DE", gpu_capacity=4, gpu=gpu(250, per_work=800)),
    }
    inten = {"DE": fresh("DE", 300)}
    cpu_pod = score_nodes(
        nodes, facts=nodes, intensities=inten, pod=PodPreferences(), policy=POLICY, now=NOW
    )
    assert cpu_pod.scores == {"h100": 5, "a100": 5}
    assert cpu_pod.neutral_reason is NeutralReason.ALL_EQUAL
    gpu_pod = score_nodes(
        nodes,
        facts=nodes,
        intensities=inten,
        pod=PodPreferences(gpus_requested=1),
        policy=POLICY,
        now=NOW,
    )
    # carbon is equal, so only energy per work (400 vs 800 J) tells them apart
    assert gpu_pod.scores == {"h100": 10, "a100": 0}
    assert gpu_pod.components == ("gpu_energy",)


def test_gpu_only_weights_and_stale_gpu_facts() -> None:
    nodes = {
        "new": NodeFacts("new", gpu=gpu(200)),
        "old": NodeFacts("old", gpu=gpu(100, at=NOW - timedelta(hours=1))),
        "hot": NodeFacts("hot", gpu=gpu(400)),
    }
    result = score_nodes(
        nodes,
        facts=nodes,
        intensities={},
        pod=PodPreferences(gpus_requested=2),
        policy=ScoringPolicy(carbon_weight=0, gpu_energy_weight=1, gpu_stale_after_seconds=600),
        now=NOW,
    )
    assert result.scores == {"new": 10, "old": 5, "hot": 0}


def test_carbon_and_energy_disagree_best_combined_still_gets_10() -> None:
    nodes = {
        "clean-hungry": NodeFacts("clean-hungry", region="FR", gpu=gpu(600)),
        "dirty-frugal": NodeFacts("dirty-frugal", region="PL", gpu=gpu(200)),
    }
    result = score_nodes(
        nodes,
        facts=nodes,
        intensities={"FR": fresh("FR", 50), "PL": fresh("PL", 550)},
        pod=PodPreferences(gpus_requested=1),
        policy=ScoringPolicy(carbon_weight=1, gpu_energy_weight=0.5),
        now=NOW,
    )
    assert result.scores == {"clean-hungry": 10, "dirty-frugal": 5}


def test_components_that_do_not_tell_nodes_apart_are_dropped() -> None:
    nodes = {
        "a": NodeFacts("a", region="DE", gpu=gpu(300)),
        "b": NodeFacts("b", region="FR", gpu=gpu(300)),
    }
    inten = {"DE": fresh("DE", 400), "FR": fresh("FR", 100)}
    pod = PodPreferences(gpus_requested=1)
    result = score_nodes(nodes, facts=nodes, intensities=inten, pod=pod, policy=POLICY, now=NOW)
    assert result.scores == {"a": 0, "b": 10}
    assert result.components == ("carbon",)
    same = {"DE": fresh("DE", 400), "FR": fresh("FR", 400)}
    result = score_nodes(nodes, facts=nodes, intensities=same, pod=pod, policy=POLICY, now=NOW)
    assert result.scores == {"a": 5, "b": 5}
    assert result.neutral_reason is NeutralReason.ALL_EQUAL


def test_duplicates_collapse_and_empty_input_is_empty() -> None:
    f = facts(("a", "FR"))
    empty = score_nodes([], facts=f, intensities={}, pod=PodPreferences(), policy=POLICY, now=NOW)
    assert empty.scores == {}
    dup = score_nodes(
        ["a", "a"], facts=f, intensities={}, pod=PodPreferences(), policy=POLICY, now=NOW
    )
    assert list(dup.scores) == ["a"]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"carbon_weight": -1}, id="negative weight"),
        pytest.param({"carbon_weight": 0, "gpu_energy_weight": 0}, id="all zero"),
        pytest.param({"gpu_energy_weight": math.inf}, id="inf"),
        pytest.param({"neutral_score": 11}, id="neutral > 10"),
        pytest.param({"stale_after_seconds": 0}, id="stale 0"),
    ],
)
def test_policy_validation(kwargs) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs)).split("_")[0]):
        ScoringPolicy(**kwargs)


# ---------------------------------------------------------------------------- filter
def test_filter_rejects_only_fresh_values_above_the_cap() -> None:
    nodes = facts(("clean", "FR"), ("dirty", "PL"), ("stale", "DE"), ("unknown", None))
    inten = {
        "FR": fresh("FR", 50),
        "PL": fresh("PL", 612),
        "DE": RegionIntensity("DE", 900, CarbonUnit.G_PER_KWH, DataStatus.STALE),
    }
    result = filter_nodes(
        [*nodes, "not-in-inventory"],
        facts=nodes,
        intensities=inten,
        pod=PodPreferences(max_intensity_g_per_kwh=400),
    )
    assert result.passed == ("clean", "stale", "unknown", "not-in-inventory")
    assert result.rejected == {
        "dirty": "carbon intensity 612 g/kWh in region PL above cap 400 "
        "(gridshift.io/max-gco2-per-kwh)"
    }


def test_filter_without_cap_or_with_opt_out_passes_everything() -> None:
    nodes = facts(("dirty", "PL"))
    inten = {"PL": fresh("PL", 900)}
    for pod in (PodPreferences(), PodPreferences(opt_out=True, max_intensity_g_per_kwh=1)):
        assert filter_nodes(["dirty"], facts=nodes, intensities=inten, pod=pod).passed == ("dirty",)


# ---------------------------------------------------------------------------- region policy
CLUSTER = ScoringPolicy(
    max_intensity_g_per_kwh=500,
    prefer_regions=frozenset({"FR"}),
    avoid_regions=frozenset({"PL"}),
)


@pytest.mark.parametrize(
    ("annotations", "cap", "prefer", "avoid"),
    [
        pytest.param({}, 500, {"FR"}, {"PL"}, id="cluster-wide defaults"),
        pytest.param(
            {
                "gridshift.io/max-gco2-per-kwh": "300",
                "gridshift.io/prefer-regions": "eu-central-1, IE",
                "gridshift.io/avoid-regions": "",
            },
            300,
            {"DE", "IE"},
            set(),
            id="the pod overrides each (names resolved, empty clears)",
        ),
    ],
)
def test_region_policy_defaults_and_pod_overrides(annotations, cap, prefer, avoid) -> None:
    resolve = {"eu-central-1": "DE"}.get
    pod = pod_preferences(annotations, policy=CLUSTER, resolve_region=lambda n: resolve(n) or n)
    assert pod.max_intensity_g_per_kwh == cap
    assert pod.prefer_regions == prefer
    assert pod.avoid_regions == avoid


def test_avoid_filters_unless_nothing_else_fits() -> None:
    nodes = facts(("fr", "FR"), ("pl-1", "PL"), ("pl-2", "PL"))
    inten = {"FR": fresh("FR", 50), "PL": fresh("PL", 300)}
    pod = PodPreferences(avoid_regions=frozenset({"PL"}))
    result = filter_nodes(list(nodes), facts=nodes, intensities=inten, pod=pod)
    assert result.passed == ("fr",)
    assert set(result.rejected) == {"pl-1", "pl-2"}
    assert "region PL is avoided (gridshift.io/avoid-regions)" in result.rejected["pl-1"]
    only_avoided = filter_nodes(["pl-1", "pl-2"], facts=nodes, intensities=inten, pod=pod)
    assert only_avoided.passed == ("pl-1", "pl-2"), "fails open"
    assert only_avoided.rejected == {}


def test_the_threshold_stays_hard_and_runs_before_avoid() -> None:
    nodes = facts(("fr", "FR"), ("pl", "PL"))
    inten = {"FR": fresh("FR", 600), "PL": fresh("PL", 300)}
    pod = PodPreferences(max_intensity_g_per_kwh=500, avoid_regions=frozenset({"PL"}))
    result = filter_nodes(list(nodes), facts=nodes, intensities=inten, pod=pod)
    assert result.passed == ("pl",), "the only node under the cap, avoided but kept"
    assert "above cap 500" in result.rejected["fr"]


def test_prefer_is_a_score_bonus() -> None:
    nodes = facts(("fr", "FR"), ("de", "DE"), ("pl", "PL"))
    inten = {"FR": fresh("FR", 150), "DE": fresh("DE", 100), "PL": fresh("PL", 600)}
    plain = score_nodes(
        list(nodes), facts=nodes, intensities=inten, pod=PodPreferences(), policy=POLICY, now=NOW
    )
    assert plain.scores["de"] > plain.scores["fr"]
    preferred = score_nodes(
        list(nodes),
        facts=nodes,
        intensities=inten,
        pod=PodPreferences(prefer_regions=frozenset({"FR"})),
        policy=POLICY,
        now=NOW,
    )
    assert preferred.scores["fr"] == 10
    assert preferred.scores["fr"] > preferred.scores["de"] > preferred.scores["pl"]
    assert "prefer" in preferred.components


def test_prefer_lifts_preferred_nodes_even_without_carbon_data() -> None:
    nodes = facts(("fr", "FR"), ("de", "DE"))
    result = score_nodes(
        list(nodes),
        facts=nodes,
        intensities={},
        pod=PodPreferences(prefer_regions=frozenset({"FR"})),
        policy=POLICY,
        now=NOW,
    )
    assert result.scores["fr"] == 10
    assert result.scores["de"] < 10
    assert result.neutral_reason is None


def test_filter_uses_the_window_average_and_says_so() -> None:
    series = hourly_series("PL", NOW, [700, 100, 100, 100])
    inten = region_intensities(
        {"PL": series}, ["PL"], now=NOW, policy=POLICY, duration=timedelta(hours=4)
    )
    result = filter_nodes(
        ["n"],
        facts=facts(("n", "PL")),
        intensities=inten,
        pod=PodPreferences(max_intensity_g_per_kwh=200),
    )
    assert result.rejected["n"].startswith("carbon intensity 250 g/kWh averaged over 14400s")


# ---------------------------------------------------------------------------- ranking
def test_rank_regions_where_and_when() -> None:
    carbon = {
        "FR": hourly_series("FR", NOW, [60, 60, 60, 60]),
        "PL": hourly_series("PL", NOW, [700, 650, 600, 600]),
        "GB": hourly_series(
            "GB", NOW - timedelta(hours=1), [300, 250, 50, 40, 200], forecast_from=2
        ),
        "OLD": hourly_series("OLD", NOW - timedelta(days=1), [10]),
    }
    ranks = rank_regions(carbon, now=NOW, start=NOW, duration=timedelta(hours=2), policy=POLICY)
    assert [r.region for r in ranks] == ["FR", "GB", "PL", "OLD"]
    gb = ranks[1]
    assert gb.intensity.value == pytest.approx((250 + 50) / 2)
    assert gb.best_start == NOW + timedelta(hours=1)
    assert gb.best_intensity == pytest.approx(45)
    assert ranks[-1].intensity.status is DataStatus.STALE


def test_rank_for_a_later_start_uses_that_window() -> None:
    carbon = {"GB": hourly_series("GB", NOW, [300, 250, 50, 40])}
    (gb,) = rank_regions(
        carbon,
        now=NOW,
        start=NOW + timedelta(hours=2),
        duration=timedelta(hours=2),
        policy=POLICY,
    )
    assert gb.intensity.value == pytest.approx(45)
    (no_duration,) = rank_regions(
        carbon, now=NOW, start=NOW + timedelta(hours=9), duration=None, policy=POLICY
    )
    assert no_duration.intensity.value == 40
    assert "past the forecast" in no_duration.intensity.note


# ---------------------------------------------------------------------------- properties
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=2000),
    st.none(),
)
REGIONS = ["r0", "r1", "r2", "r3"]


@st.composite
def scenarios(draw):
    n = draw(st.integers(min_value=0, max_value=12))
    names = [f"node-{i}" for i in range(n)]
    node_facts = {}
    for name in names:
        region = draw(st.sampled_from([*REGIONS, None]))
        watts = draw(values)
        g = None
        if watts is not None:
            g = GpuEnergy(
                power_watts=watts,
                idle_power_watts=draw(values),
                joules_per_work=draw(values),
                gpu_count=1,
                measured_at=NOW,
                window_seconds=60,
            )
        node_facts[name] = NodeFacts(name, region=region, gpu=g)
    inten = {}
    for r in REGIONS:
        v = draw(values)
        status = draw(st.sampled_from(list(DataStatus)))
        inten[r] = RegionIntensity(r, v, CarbonUnit.G_PER_KWH, status)
    pod = PodPreferences(
        opt_out=draw(st.booleans()),
        gpus_requested=draw(st.integers(0, 2)),
        max_intensity_g_per_kwh=draw(st.one_of(st.none(), st.floats(1, 1000))),
    )
    policy = ScoringPolicy(
        carbon_weight=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
        gpu_energy_weight=draw(st.sampled_from([0.25, 1.0])),
        neutral_score=draw(st.integers(0, 10)),
    )
    return names, node_facts, inten, pod, policy


@given(scenarios())
def test_property_scores_are_ints_in_range_for_every_node(scenario) -> None:
    names, node_facts, inten, pod, policy = scenario
    result = score_nodes(
        names, facts=node_facts, intensities=inten, pod=pod, policy=policy, now=NOW
    )
    assert set(result.scores) == set(names)
    for s in result.scores.values():
        assert type(s) is int
        assert 0 <= s <= 10
    if names and not result.neutral:
        assert max(result.scores.values()) == 10


@given(scenarios(), st.randoms())
def test_property_scores_do_not_depend_on_node_order(scenario, rnd) -> None:
    names, node_facts, inten, pod, policy = scenario
    shuffled = list(names)
    rnd.shuffle(shuffled)
    a = score_nodes(names, facts=node_facts, intensities=inten, pod=pod, policy=policy, now=NOW)
    b = score_nodes(shuffled, facts=node_facts, intensities=inten, pod=pod, policy=policy, now=NOW)
    assert dict(a.scores) == dict(b.scores)


@given(scenarios(), st.sampled_from(REGIONS), st.floats(min_value=0, max_value=1))
def test_property_lower_intensity_never_lowers_a_score(scenario, region, factor) -> None:
    names, node_facts, inten, pod, policy = scenario
    before_ri = inten[region]
    if before_ri.usable is None:
        before_ri = RegionIntensity(region, 500.0, CarbonUnit.G_PER_KWH, DataStatus.FRESH)
    lowered = dict(inten)
    lowered[region] = RegionIntensity(
        region, (before_ri.value or 0.0) * factor, CarbonUnit.G_PER_KWH, DataStatus.FRESH
    )
    inten = {**inten, region: before_ri}
    before = score_nodes(
        names, facts=node_facts, intensities=inten, pod=pod, policy=policy, now=NOW
    )
    after = score_nodes(
        names, facts=node_facts, intensities=lowered, pod=pod, policy=policy, now=NOW
    )
    for n in names:
        if node_facts[n].region == region:
            assert after.scores[n] >= before.scores[n]


@given(scenarios(), st.lists(st.sampled_from(["node-0", "node-1", "extra"]), max_size=5))
def test_property_filter_accounts_for_every_node_exactly_once(scenario, extra) -> None:
    names, node_facts, inten, pod, _ = scenario
    given_names = names + extra
    result = filter_nodes(given_names, facts=node_facts, intensities=inten, pod=pod)
    out = list(result.passed) + list(result.rejected)
    assert sorted(out) == sorted(set(given_names))
    assert len(out) == len(set(out))
    # never rejects for lack of data
    for n in result.rejected:
        f = node_facts[n]
        assert f.region is not None
        assert inten[f.region].usable is not None


def test_gpu_quantities_that_are_not_whole_numbers_count_as_zero() -> None:
    containers: list[dict[str, object]] = [
        {"resources": {"limits": {"nvidia.com/gpu": "1.5"}}},
        {"resources": {"limits": {"nvidia.com/gpu": True}}},
        {"resources": {"limits": None, "requests": {"nvidia.com/gpu": -2}}},
    ]
    assert pod_preferences({}, containers=containers).gpus_requested == 0


def test_a_weight_too_small_to_scale_gives_neutral_scores() -> None:
    result = score_nodes(
        ["a", "b"],
        facts=facts(("a", "FR"), ("b", "PL")),
        intensities={"FR": fresh("FR", 50), "PL": fresh("PL", 550)},
        pod=PodPreferences(),
        policy=ScoringPolicy(carbon_weight=5e-324),
        now=NOW,
    )
    assert result.scores == {"a": 5, "b": 5}
    assert result.neutral_reason is NeutralReason.ALL_EQUAL


def test_rank_now_without_duration_and_starts_around_the_series() -> None:
    carbon = {"GB": hourly_series("GB", NOW, [300, 250, 50, 40])}
    (now_rank,) = rank_regions(carbon, now=NOW, start=NOW, duration=None, policy=POLICY)
    assert (now_rank.intensity.value, now_rank.best_start) == (300, None)
    later = NOW + timedelta(hours=1)
    (inside,) = rank_regions(
        carbon, now=later, start=later + timedelta(minutes=30), duration=None, policy=POLICY
    )
    assert (inside.intensity.value, inside.intensity.note) == (250, "")
    (before,) = rank_regions(
        carbon, now=later, start=NOW - timedelta(hours=5), duration=None, policy=POLICY
    )
    assert before.intensity.status is DataStatus.MISSING
    assert before.intensity.note == "no value before start"


def test_best_start_can_be_the_last_hour_of_the_forecast() -> None:
    carbon = {"GB": hourly_series("GB", NOW, [300, 250, 50, 40])}
    (gb,) = rank_regions(carbon, now=NOW, start=NOW, duration=timedelta(hours=1), policy=POLICY)
    assert (gb.best_start, gb.best_intensity) == (NOW + timedelta(hours=3), 40)
