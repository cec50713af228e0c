"""Regions: gridshift's names for places, each naming its zone at every carbon provider, and
the rules that match a Kubernetes node to a region from its labels.

Pure mapping, no I/O: the composition root builds a `RegionMap` from settings.

Example: region `gb-south` has zones `{"uk": "12", "electricitymaps": "GB"}` and the rule
`{"topology.kubernetes.io/region": "europe-west2"}`; a node labelled
`topology.kubernetes.io/region=europe-west2` lands in `gb-south`, and the UK adapter asks for
region id 12 while Electricity Maps asks for zone `GB`.

Region names are matched case-insensitively (`GB` and `gb` are the same region); the
canonical spelling is the one configured.

`RegionResolver` is the one region model the scaler and the extender share: a node's labels,
or a name a user wrote (a workload's or a CarbonAwareScaler's `region`, which may be a cloud
region such as `eu-west-2`), become a configured region through, in order, the aliases (an
override: cloud region/zone -> region), a configured region's own name, the regions' `match`
rules, then the default.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = [
    "DEFAULT_REGION_LABELS",
    "DEFAULT_ZONE_LABELS",
    "OWN_REGION_LABEL",
    "REGION_LABEL",
    "ZONE_LABEL",
    "NodeRule",
    "Region",
    "RegionMap",
    "RegionResolver",
    "UnknownRegion",
]

REGION_LABEL = "topology.kubernetes.io/region"
#: gridshift's own node label: an explicit region, taken as written (aliases still apply).
OWN_REGION_LABEL = "gridshift.io/region"
ZONE_LABEL = "topology.kubernetes.io/zone"
DEFAULT_REGION_LABELS = (
    OWN_REGION_LABEL,
    REGION_LABEL,
    "failure-domain.beta.kubernetes.io/region",
)
DEFAULT_ZONE_LABELS = (ZONE_LABEL, "failure-domain.beta.kubernetes.io/zone")


class UnknownRegion(ValueError):
    """A region name that is not configured, or has no zone at the asked provider."""


@dataclass(frozen=True, slots=True)
class NodeRule:
    """Matches a node when every listed label is present and matches its glob pattern
    (`fnmatch` syntax, case-sensitive: `eu-west-2*`, `europe-west?`)."""

    labels: Mapping[str, str]

    def __post_init__(self) -> None:
        if not self.labels:
            raise ValueError("a node rule needs at least one label pattern")
        for key, pattern in self.labels.items():
            if not key or not pattern:
                raise ValueError(f"node rule label and pattern must be non-empty: {key!r}")
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def matches(self, node_labels: Mapping[str, str]) -> bool:
        for key, pattern in self.labels.items():
            value = node_labels.get(key)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True

    @property
    def specificity(self) -> tuple[int, int]:
        """More labels, then fewer wildcards, win when several rules match."""
        wildcards = sum(sum(p.count(c) for c in "*?[") for p in self.labels.values())
        return (len(self.labels), -wildcards)


@dataclass(frozen=True, slots=True)
class Region:
    """One gridshift region: its zone at each provider and its node-matching rules."""

    name: str
    zones: Mapping[str, str]
    rules: tuple[NodeRule, ...] = ()
    fallback_order: tuple[str, ...] = ()
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.strip():
            raise ValueError(f"region name must be non-empty without spaces: {self.name!r}")
        for provider, zone in self.zones.items():
            if not zone:
                raise ValueError(f"region {self.name}: empty zone for provider {provider}")
        object.__setattr__(self, "zones", MappingProxyType(dict(self.zones)))
        object.__setattr__(self, "rules", tuple(self.rules))
        object.__setattr__(self, "fallback_order", tuple(self.fallback_order))

    def zone(self, provider: str) -> str | None:
        return self.zones.get(provider)


@dataclass(frozen=True, slots=True)
class RegionMap:
    """All configured regions. Lookups are case-insensitive."""

    regions: tuple[Region, ...]
    _by_key: Mapping[str, Region] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_key: dict[str, Region] = {}
        for region in self.regions:
            key = region.name.casefold()
            if key in by_key:
                raise ValueError(f"region {region.name!r} is configured twice")
            by_key[key] = region
        object.__setattr__(self, "regions", tuple(self.regions))
        object.__setattr__(self, "_by_key", MappingProxyType(by_key))

    @classmethod
    def of(cls, regions: Iterable[Region]) -> RegionMap:
        return cls(regions=tuple(regions))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)

    def find(self, name: str) -> Region | None:
        """The region called `name` (any case), or None."""
        return self._by_key.get(name.strip().casefold())

    def get(self, name: str) -> Region:
        region = self._by_key.get(name.strip().casefold())
        if region is None:
            known = ", ".join(self.names) or "(none configured)"
            raise UnknownRegion(f"unknown region {name!r}; configured regions: {known}")
        return region

    def zone(self, name: str, *, provider: str) -> str:
        """The region's zone at `provider`; `UnknownRegion` when it has none."""
        region = self.get(name)
        zone = region.zone(provider)
        if zone is None:
            have = ", ".join(sorted(region.zones)) or "none"
            raise UnknownRegion(
                f"region {region.name!r} has no zone configured for provider {provider!r} "
                f"(it has zones for: {have})"
            )
        return zone

    def match_node(self, labels: Mapping[str, str]) -> Region | None:
        """The region whose most specific rule matches the node's labels.

        Ties between rules of equal specificity go to the region configured first.
        Returns None when no rule matches (the caller decides what an unmatched node means).
        """
        best: tuple[tuple[int, int], int, Region] | None = None
        for index, region in enumerate(self.regions):
            for rule in region.rules:
                if not rule.matches(labels):
                    continue
                cand = (rule.specificity, -index, region)
                if best is None or cand[:2] > best[:2]:
                    best = cand
        return best[2] if best is not None else None


@dataclass(frozen=True, slots=True)
class RegionResolver:
    """Node labels or a written region name -> a region name (see the module docstring).

    `aliases` (cloud region or zone name -> region) override the `match` rules. A label value
    or name that nothing resolves is returned as written, so the carbon source's "unknown
    region" error names it where operators look, rather than the node silently scoring
    neutral."""

    regions: RegionMap = field(default_factory=lambda: RegionMap.of(()))
    region_labels: tuple[str, ...] = DEFAULT_REGION_LABELS
    zone_labels: tuple[str, ...] = DEFAULT_ZONE_LABELS
    aliases: Mapping[str, str] = field(default_factory=dict)
    default_region: str | None = None

    def _known(self, name: str) -> str | None:
        alias = self.aliases.get(name)
        if alias is not None:
            return self._canonical(alias)
        region = self.regions.find(name)
        return region.name if region is not None else None

    def _canonical(self, name: str) -> str:
        region = self.regions.find(name)
        return region.name if region is not None else name

    def zone_for(self, labels: Mapping[str, str]) -> str | None:
        for key in self.zone_labels:
            value = labels.get(key)
            if value:
                return value
        return None

    def region_for(self, labels: Mapping[str, str]) -> str | None:
        """A node's region: a zone alias, gridshift's own label as written, then the first
        region label that is an alias or a configured region, then the `match` rules, then
        the default, then the first region label's raw value (None for an unlabelled node
        without a default)."""
        zone = self.zone_for(labels)
        if zone is not None and zone in self.aliases:
            return self._canonical(self.aliases[zone])
        own = labels.get(OWN_REGION_LABEL) if OWN_REGION_LABEL in self.region_labels else None
        if own:
            return self._known(own) or own
        first: str | None = None
        for key in self.region_labels:
            value = labels.get(key)
            if not value:
                continue
            first = first or value
            known = self._known(value)
            if known is not None:
                return known
        matched = self.regions.match_node(labels)
        if matched is not None:
            return matched.name
        if self.default_region is not None:
            return self._canonical(self.default_region)
        return first

    def resolve(self, name: str) -> str:
        """A region name someone wrote (`GB`, `gb`, `eu-west-2`, an alias) -> the configured
        region: an alias, a region's own name, or the region whose `match` rules claim it as
        a cloud region or zone; else `name` unchanged."""
        known = self._known(name.strip())
        if known is not None:
            return known
        for label in (REGION_LABEL, ZONE_LABEL):
            matched = self.regions.match_node({label: name.strip()})
            if matched is not None:
                return matched.name
        return name

    def is_configured(self, name: str) -> bool:
        return self.regions.find(name) is not None

    def configured_region(self, name: str) -> str | None:
        """`resolve(name)` when that is a configured region, else None."""
        resolved = self.resolve(name)
        return resolved if self.is_configured(resolved) else None
