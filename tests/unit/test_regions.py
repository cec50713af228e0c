"""forecasts.regions: the pure region model.

Aspects: case-insensitive lookup with the configured spelling kept; zone per provider and the
errors for unknown regions and missing zones; node matching from topology labels (globs, all
labels of a rule, most specific rule wins, ties to the first region, no match); validation of
names, zones, rules and duplicates; immutability; the shared resolver (node labels and written
names such as `eu-west-1` -> configured regions: aliases override, own label as written,
configured names, match rules, default; unknown names kept).
"""

from __future__ import annotations

import pytest

from forecasts.regions import (
    REGION_LABEL,
    ZONE_LABEL,
    NodeRule,
    Region,
    RegionMap,
    RegionResolver,
    UnknownRegion,
)

GB = Region(
    "GB",
    {"uk": "national", "electricitymaps": "GB"},
    rules=(NodeRule({REGION_LABEL: "europe-west2"}), NodeRule({REGION_LABEL: "eu-west-2"})),
)
LONDON_A = Region(
    "gb-london-a",
    {"uk": "13"},
    rules=(NodeRule({REGION_LABEL: "europe-west2", ZONE_LABEL: "europe-west2-a"}),),
)
DE = Region("DE", {"electricitymaps": "DE"}, rules=(NodeRule({REGION_LABEL: "europe-west3*"}),))
ANY_EU = Region("eu", {"electricitymaps": "DE"}, rules=(NodeRule({REGION_LABEL: "europe-*"}),))
MAP = RegionMap.of([GB, LONDON_A, DE, ANY_EU])


def test_lookup_is_case_insensitive_and_keeps_the_configured_name() -> None:
    assert MAP.get("gb") is GB
    assert MAP.get(" GB-London-A ").name == "gb-london-a"
    assert MAP.names == ("GB", "gb-london-a", "DE", "eu")


def test_zone_per_provider() -> None:
    assert MAP.zone("gb", provider="uk") == "national"
    assert MAP.zone("gb-london-a", provider="uk") == "13"
    assert GB.zone("watttime") is None


@pytest.mark.parametrize(
    ("region", "provider", "message"),
    [
        pytest.param(
            "Atlantis", "uk", "unknown region 'Atlantis'; configured regions: GB", id="unknown"
        ),
        pytest.param(
            "DE",
            "uk",
            "region 'DE' has no zone configured for provider 'uk' "
            "(it has zones for: electricitymaps)",
            id="no zone",
        ),
    ],
)
def test_lookup_errors_name_the_problem(region: str, provider: str, message: str) -> None:
    with pytest.raises(UnknownRegion) as info:
        MAP.zone(region, provider=provider)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_empty_map_says_so() -> None:
    with pytest.raises(UnknownRegion, match=r"\(none configured\)"):
        RegionMap.of([]).get("GB")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({REGION_LABEL: "eu-west-2"}, "GB", id="exact"),
        pytest.param(
            {REGION_LABEL: "europe-west2", ZONE_LABEL: "europe-west2-b"}, "GB", id="zone b"
        ),
        pytest.param(
            {REGION_LABEL: "europe-west2", ZONE_LABEL: "europe-west2-a"},
            "gb-london-a",
            id="two labels beat one",
        ),
        pytest.param({REGION_LABEL: "europe-west3"}, "DE", id="fewer wildcards win"),
        pytest.param({REGION_LABEL: "europe-north1"}, "eu", id="glob"),
        pytest.param({REGION_LABEL: "us-east1"}, None, id="no rule matches"),
        pytest.param({}, None, id="unlabelled node"),
        pytest.param({ZONE_LABEL: "europe-west2-a"}, None, id="zone alone is not enough"),
    ],
)
def test_match_node(labels: dict[str, str], expected: str | None) -> None:
    region = MAP.match_node(labels)
    assert (region.name if region else None) == expected


def test_ties_go_to_the_region_configured_first() -> None:
    a = Region("a", {}, rules=(NodeRule({REGION_LABEL: "x*"}),))
    b = Region("b", {}, rules=(NodeRule({REGION_LABEL: "x*"}),))
    assert RegionMap.of([a, b]).match_node({REGION_LABEL: "x1"}) is a
    assert RegionMap.of([b, a]).match_node({REGION_LABEL: "x1"}) is b


def test_matching_is_case_sensitive() -> None:
    assert MAP.match_node({REGION_LABEL: "EU-WEST-2"}) is None


@pytest.mark.parametrize(
    ("build", "message"),
    [
        pytest.param(lambda: Region("", {}), "non-empty", id="empty name"),
        pytest.param(lambda: Region(" GB", {}), "non-empty", id="padded name"),
        pytest.param(
            lambda: Region("GB", {"uk": ""}), "empty zone for provider uk", id="empty zone"
        ),
        pytest.param(lambda: NodeRule({}), "at least one label", id="empty rule"),
        pytest.param(lambda: NodeRule({REGION_LABEL: ""}), "non-empty", id="empty pattern"),
        pytest.param(
            lambda: RegionMap.of([GB, Region("gb", {})]), "configured twice", id="duplicate"
        ),
    ],
)
def test_invalid_definitions(build, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_values_are_immutable() -> None:
    zones = {"uk": "13"}
    region = Region("x", zones)
    zones["uk"] = "1"
    assert region.zone("uk") == "13"
    with pytest.raises(TypeError):
        region.zones["uk"] = "2"  # type: ignore[index]
    with pytest.raises(AttributeError):
        region.name = "y"  # type: ignore[misc]


# ---------------------------------------------------------------- RegionResolver (one model)
RESOLVER = RegionResolver(
    regions=RegionMap.of(
        [
            Region("GB", {"uk": "national"}, rules=(NodeRule({REGION_LABEL: "eu-west-2"}),)),
            Region("IE", {"electricitymaps": "IE"}, rules=(NodeRule({REGION_LABEL: "eu-west-1"}),)),
            Region(
                "NL", {"electricitymaps": "NL"}, rules=(NodeRule({ZONE_LABEL: "europe-west4-*"}),)
            ),
        ]
    ),
    aliases={"europe-west2": "gb", "eu-west-1c": "NL"},
)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        pytest.param({REGION_LABEL: "eu-west-2"}, "GB", id="match rule (was neutral)"),
        pytest.param({REGION_LABEL: "europe-west2"}, "GB", id="alias, configured spelling"),
        pytest.param(
            {REGION_LABEL: "eu-west-1", ZONE_LABEL: "eu-west-1c"},
            "NL",
            id="zone alias overrides the match rule",
        ),
        pytest.param({REGION_LABEL: "ie"}, "IE", id="a configured name in a region label"),
        pytest.param(
            {"gridshift.io/region": "mars", REGION_LABEL: "eu-west-1"},
            "mars",
            id="own label as written",
        ),
        pytest.param({ZONE_LABEL: "europe-west4-b"}, "NL", id="zone match rule"),
        pytest.param({REGION_LABEL: "ap-south-9"}, "ap-south-9", id="unknown kept as written"),
        pytest.param({}, None, id="unlabelled, no default"),
    ],
)
def test_resolver_places_nodes(labels: dict[str, str], expected: str | None) -> None:
    assert RESOLVER.region_for(labels) == expected
    assert RESOLVER.zone_for(labels) == labels.get(ZONE_LABEL)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("gb", "GB", id="configured, any case"),
        pytest.param("eu-west-1", "IE", id="cloud region by match rule"),
        pytest.param("europe-west4-a", "NL", id="cloud zone by match rule"),
        pytest.param("europe-west2", "GB", id="alias"),
        pytest.param("atlantis", "atlantis", id="unknown unchanged"),
    ],
)
def test_resolver_resolves_written_names(name: str, expected: str) -> None:
    """What a workload or CarbonAwareScaler writes as `region` means the same region as a
    node with that cloud label."""
    assert RESOLVER.resolve(name) == expected
    assert RESOLVER.is_configured(expected) == (expected != "atlantis")
    assert RESOLVER.configured_region(name) == (None if expected == "atlantis" else expected)


def test_resolver_default_region_is_canonical_and_own_label_can_be_off() -> None:
    resolver = RegionResolver(regions=RESOLVER.regions, default_region="gb")
    assert resolver.region_for({REGION_LABEL: "nowhere"}) == "GB"
    assert resolver.region_for({}) == "GB"
    no_own = RegionResolver(regions=RESOLVER.regions, region_labels=(REGION_LABEL,))
    assert no_own.region_for({"gridshift.io/region": "IE", REGION_LABEL: "eu-west-2"}) == "GB"
