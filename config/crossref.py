"""Cross-references between settings that field validation cannot see: every name that
points at another setting must exist.

- `scaler.workloads[i].region` is a region in `carbon.regions` (or a SAMPLE DATA region);
- `extender.default_region`, `extender.regions`, `extender.prefer_regions` and
  `extender.avoid_regions` are regions in `carbon.regions` (aliases
  live in `carbon.regions.<REGION>.aliases`, so they name a region by construction);
- no two workloads scale the same target (namespace, kind, name): they would fight;
- the sharded scaler (`kube.shards` > 0) keeps no ConfigMap checkpoint: one ConfigMap holds one
  process's counters, and the replicas of a sharded install would overwrite each other's.

Each broken reference is one `Problem` naming the field (in the loader's path format,
`scaler.workloads[0].region`), the value, the layer it came from (a file's line and column too,
as the loader's own problems say it) and a "did you mean" where a known name is close.
`config check`, `run` and the extender all load settings through
`config.wiring.load_settings_with_sources`, which raises them as one `ConfigError` (exit 2), so
a typo such as `GBB` stops the start instead of warning every tick.
"""

from __future__ import annotations

from config.errors import Loc, Problem, SourceOf, format_path
from config.settings import Settings
from forecasts.sources.sample import SAMPLE_REGIONS

__all__ = ["cross_reference_problems"]


def _no_source(loc: Loc) -> str | None:
    return None


def _unknown_region(
    loc: Loc,
    name: str,
    known: list[str],
    source_of: SourceOf,
    *,
    what: str = "region",
) -> Problem:
    from config.schema import suggest  # the same "did you mean" as unknown keys

    near = suggest(name, known)
    hint = f" (did you mean {near!r}?)" if near else ""
    return Problem(
        path=format_path(loc),
        message=f"unknown {what} {name!r}{hint}; known: {', '.join(known)}",
        value=repr(name),
        source=source_of(loc),
    )


def cross_reference_problems(
    settings: Settings, *, source_of: SourceOf = _no_source
) -> list[Problem]:
    """Every broken reference in `settings` (empty when all resolve); `source_of` says which
    layer set a value (`LoadedConfig.source_of`)."""
    regions = list(settings.carbon.regions)
    with_sample = [*regions, *SAMPLE_REGIONS]
    problems: list[Problem] = []
    targets: dict[tuple[str, str, str], str] = {}
    for i, w in enumerate(settings.scaler.workloads):
        if w.region not in with_sample:
            problems.append(
                _unknown_region(
                    ("scaler", "workloads", i, "region"), w.region, with_sample, source_of
                )
            )
        key = (w.namespace, w.target.kind, w.target.name)
        other = targets.setdefault(key, w.name)
        if other != w.name:
            problems.append(
                Problem(
                    path=format_path(("scaler", "workloads", i, "target")),
                    message=f"workloads {other!r} and {w.name!r} both scale {w.target.kind} "
                    f"{w.namespace}/{w.target.name}; each target needs one workload",
                    source=source_of(("scaler", "workloads", i, "target")),
                )
            )
    if settings.kube.shards > 0 and settings.scaler.state_store == "configmap":
        problems.append(
            Problem(
                path="scaler.state_store",
                message="'configmap' keeps one replica's counters; with kube.shards > 0 every "
                "replica decides a different share and would overwrite it: use 'none' "
                "(a workload taken over starts from what its target runs now)",
                value=repr("configmap"),
                source=source_of(("scaler", "state_store")),
            )
        )
    ext = settings.extender
    if ext.default_region is not None and ext.default_region not in regions:
        problems.append(
            _unknown_region(("extender", "default_region"), ext.default_region, regions, source_of)
        )
    for field_name in ("regions", "prefer_regions", "avoid_regions"):
        for i, region in enumerate(getattr(ext, field_name)):
            if region not in regions:
                loc = ("extender", field_name, i)
                problems.append(_unknown_region(loc, region, regions, source_of))
    return problems
