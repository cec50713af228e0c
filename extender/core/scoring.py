"""Filter and score nodes by grid carbon intensity and GPU energy (pure).

Rules, each named and tested:

* **Carbon**: a node's value is its region's intensity now, or the mean over the pod's
  expected run time (`gridshift.io/expected-duration`) where the series (forecast) covers it.
* **GPU energy** (pods that request `nvidia.com/gpu` only): the node's energy per unit of work,
  else its measured average watts per GPU, else its idle watts.
* Each component maps to a goodness in [0, 1] (lowest value 1, highest 0, linear between);
  a node without a value gets the neutral goodness. Components are combined by the
  configured weights and scaled so that **the best node gets 10**.
* **Neutral**: opted-out pods, or no fresh value for any node in any component, give every
  node `neutral_score` and say why in `ScoreResult.neutral_reason`.
* **Filter** rejects a node only when the pod sets `gridshift.io/max-gco2-per-kwh` and the
  node's region has a *fresh* g/kWh value above it. Missing or stale data never rejects.
* Every input node is accounted for exactly once (duplicates in the input collapse).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from itertools import repeat

import numpy as np
import numpy.typing as npt

from extender.core.energy import GpuEnergy
from forecasts.series import CarbonSeries, CarbonUnit
from forecasts.time import parse_duration, to_epoch_s

__all__ = [
    "ANNOTATION_EXPECTED_DURATION",
    "ANNOTATION_MAX_INTENSITY",
    "ANNOTATION_OPT_OUT",
    "GPU_RESOURCE",
    "MAX_SCORE",
    "MIN_SCORE",
    "DataStatus",
    "FilterResult",
    "NeutralReason",
    "NodeFacts",
    "NodeTable",
    "PodPreferences",
    "RegionIntensity",
    "RegionRank",
    "ScoreResult",
    "ScoringPolicy",
    "filter_nodes",
    "gpu_quantity",
    "pod_preferences",
    "rank_regions",
    "region_intensities",
    "region_intensity",
    "score_nodes",
    "score_table",
]

FloatArray = npt.NDArray[np.float64]

MIN_SCORE = 0
MAX_SCORE = 10
GPU_RESOURCE = "nvidia.com/gpu"
ANNOTATION_OPT_OUT = "gridshift.io/opt-out"
ANNOTATION_MAX_INTENSITY = "gridshift.io/max-gco2-per-kwh"
ANNOTATION_EXPECTED_DURATION = "gridshift.io/expected-duration"
ANNOTATION_PREFER_REGIONS = "gridshift.io/prefer-regions"
ANNOTATION_AVOID_REGIONS = "gridshift.io/avoid-regions"
_MAX_EXPECTED_DURATION = timedelta(days=30)
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


# ---------------------------------------------------------------------------- inputs
@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What the extender knows about a node (from the inventory or the request's NodeList)."""

    name: str
    region: str | None = None
    zone: str | None = None
    gpu_capacity: int = 0
    gpu: GpuEnergy | None = None


@dataclass(frozen=True, slots=True)
class PodPreferences:
    """The pod's wishes, read from its annotations and GPU requests.

    `problems` lists annotations that were ignored because they did not parse; the pod is
    then scheduled as if they were absent (never failed for a typo)."""

    opt_out: bool = False
    max_intensity_g_per_kwh: float | None = None
    expected_duration: timedelta | None = None
    gpus_requested: int = 0
    problems: tuple[str, ...] = ()
    #: Regions whose nodes get a score bonus / are filtered out unless nothing else fits
    #: (the pod's annotations, else the cluster-wide `ScoringPolicy` lists).
    prefer_regions: frozenset[str] = frozenset()
    avoid_regions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ScoringPolicy:
    """Weights and degradation rules (derived from `ExtenderSettings` by the wiring)."""

    carbon_weight: float = 1.0
    gpu_energy_weight: float = 0.5
    neutral_score: int = 5
    stale_after_seconds: float = 7200.0
    gpu_stale_after_seconds: float = 900.0
    #: Region policy, cluster-wide; each is overridden per pod by its annotation.
    max_intensity_g_per_kwh: float | None = None
    prefer_regions: frozenset[str] = frozenset()
    avoid_regions: frozenset[str] = frozenset()
    #: Score bonus of a preferred region, as a fraction of the best node's goodness.
    prefer_bonus: float = 0.2

    def __post_init__(self) -> None:
        for name in ("carbon_weight", "gpu_energy_weight"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.carbon_weight + self.gpu_energy_weight <= 0:
            raise ValueError("carbon_weight + gpu_energy_weight must be > 0")
        if not MIN_SCORE <= self.neutral_score <= MAX_SCORE:
            raise ValueError(f"neutral_score must be in 0..10, got {self.neutral_score}")
        for name in ("stale_after_seconds", "gpu_stale_after_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


class DataStatus(StrEnum):
    FRESH = "fresh"
    STALE = "stale"
    MISSING = "missing"


@dataclass(frozen=True, slots=True)
class RegionIntensity:
    """A region's carbon value as seen at one instant (averaged over a window if asked)."""

    region: str
    value: float | None
    unit: CarbonUnit
    status: DataStatus
    age_seconds: float | None = None
    averaged_over_seconds: float | None = None
    provider: str = ""
    note: str = ""

    @property
    def usable(self) -> float | None:
        """The value if fresh and finite and not negative, else None."""
        v = self.value
        if self.status is not DataStatus.FRESH or v is None or not math.isfinite(v) or v < 0:
            return None
        return v


# ---------------------------------------------------------------------------- pod
_MAX_GPU_DIGITS = 9  # a billion GPUs: past any real node or pod


def gpu_quantity(value: object) -> int:
    """An extended-resource quantity ("2", 2) as a whole number; 0 for a non-number (or a
    negative one), as the scheduler treats an absent request. `ValueError` for a value that
    looks like a number but is not one we can use: non-ASCII digits ("²"), or more than
    `_MAX_GPU_DIGITS` digits (a 5,000-digit string would otherwise reach `int()`)."""
    if isinstance(value, bool):
        return 0
    if isinstance(value, int):
        if value >= 10**_MAX_GPU_DIGITS:
            raise ValueError(f"{GPU_RESOURCE}: {value} is not a plausible GPU count")
        return max(value, 0)
    if not isinstance(value, str):
        return 0
    text = value.strip()
    if not text.isascii():
        raise ValueError(f"{GPU_RESOURCE}: {value[:20]!r} is not a Kubernetes quantity")
    if not text.isdigit():
        return 0
    if len(text) > _MAX_GPU_DIGITS:
        raise ValueError(f"{GPU_RESOURCE}: a quantity of {len(text)} digits is not plausible")
    return int(text)


def _gpus_requested(containers: Iterable[Mapping[str, object]]) -> int:
    total = 0
    for c in containers:
        resources = c.get("resources")
        if not isinstance(resources, Mapping):
            continue
        counts = []
        for key in ("limits", "requests"):
            block = resources.get(key)
            if isinstance(block, Mapping):
                counts.append(gpu_quantity(block.get(GPU_RESOURCE)))
        total += max(counts, default=0)
    return total


def _region_list(
    annotations: Mapping[str, str],
    key: str,
    default: frozenset[str],
    resolve_region: Callable[[str], str],
) -> frozenset[str]:
    """A comma-separated region list annotation (each name resolved through the region model,
    so `eu-west-1` means its region); absent -> the cluster-wide `default`; "" -> none."""
    raw = annotations.get(key)
    if raw is None:
        return default
    return frozenset(resolve_region(p.strip()) for p in str(raw).split(",") if p.strip())


def pod_preferences(
    annotations: Mapping[str, str],
    *,
    containers: Sequence[Mapping[str, object]] = (),
    policy: ScoringPolicy | None = None,
    resolve_region: Callable[[str], str] = str,
) -> PodPreferences:
    """Read the pod's opt-out, cap, region list and expected duration annotations and its GPU
    request; the cap and the region lists default to the cluster-wide `policy`."""
    policy = policy or ScoringPolicy()
    problems: list[str] = []
    opt_out = False
    raw = annotations.get(ANNOTATION_OPT_OUT)
    if raw is not None:
        text = str(raw).strip().lower()
        if text in _TRUE:
            opt_out = True
        elif text not in _FALSE:
            problems.append(f"{ANNOTATION_OPT_OUT}={raw!r} ignored: use true or false")
    cap: float | None = None
    raw = annotations.get(ANNOTATION_MAX_INTENSITY)
    if raw is not None:
        try:
            cap = float(str(raw).strip())
        except ValueError:
            cap = None
        if cap is None or not math.isfinite(cap) or cap <= 0:
            problems.append(
                f"{ANNOTATION_MAX_INTENSITY}={raw!r} ignored: expected a positive number of g/kWh"
            )
            cap = None
    duration: timedelta | None = None
    raw = annotations.get(ANNOTATION_EXPECTED_DURATION)
    if raw is not None:
        try:
            duration = parse_duration(str(raw))
        except ValueError as exc:
            problems.append(f"{ANNOTATION_EXPECTED_DURATION}={raw!r} ignored: {exc}")
        else:
            if not timedelta(0) < duration <= _MAX_EXPECTED_DURATION:
                problems.append(
                    f"{ANNOTATION_EXPECTED_DURATION}={raw!r} ignored: must be between 0 and 30d"
                )
                duration = None
    return PodPreferences(
        opt_out=opt_out,
        max_intensity_g_per_kwh=cap if cap is not None else policy.max_intensity_g_per_kwh,
        expected_duration=duration,
        gpus_requested=_gpus_requested(containers),
        problems=tuple(problems),
        prefer_regions=_region_list(
            annotations, ANNOTATION_PREFER_REGIONS, policy.prefer_regions, resolve_region
        ),
        avoid_regions=_region_list(
            annotations, ANNOTATION_AVOID_REGIONS, policy.avoid_regions, resolve_region
        ),
    )


# ---------------------------------------------------------------------------- carbon
def _window_mean(series: CarbonSeries, start: datetime, end: datetime) -> tuple[float, float]:
    """Time-weighted mean over [start, end) and the fraction of the window covered."""
    mean = series.mean_over(start, end)
    if mean is None:
        return math.nan, 0.0
    s = to_epoch_s(start)
    e = to_epoch_s(end)
    res = series.resolution.total_seconds()
    covered = 0.0
    for t in series.epoch_s:
        overlap = min(float(t) + res, e) - max(float(t), s)
        if overlap > 0:
            covered += overlap
    return float(mean), covered / (e - s)


def region_intensity(
    series: CarbonSeries | None,
    *,
    region: str,
    now: datetime,
    stale_after_seconds: float,
    duration: timedelta | None = None,
) -> RegionIntensity:
    """The region's intensity at `now`; with `duration`, the mean over [now, now+duration)
    when the series covers at least half of that window (else the current value)."""
    if series is None or not series.points:
        return RegionIntensity(region, None, CarbonUnit.G_PER_KWH, DataStatus.MISSING)
    point = series.latest(at=now)
    if point is None:
        return RegionIntensity(
            region,
            None,
            series.unit,
            DataStatus.MISSING,
            provider=series.provider,
            note="no value at or before now",
        )
    # Knowledge is as old as the value or the fetch, whichever is older: a forecast point
    # that has become "now" is only as good as the fetch that brought it.
    age = max((now - point.at).total_seconds(), (now - series.fetched_at).total_seconds())
    stale = series.stale or age > stale_after_seconds
    value = point.value
    averaged: float | None = None
    if duration is not None and duration > timedelta(0):
        mean, coverage = _window_mean(series, now, now + duration)
        if coverage >= 0.5:
            value = mean
            averaged = duration.total_seconds()
    note = series.note if series.stale else (f"value is {age:.0f}s old" if stale else "")
    return RegionIntensity(
        region=region,
        value=value,
        unit=series.unit,
        status=DataStatus.STALE if stale else DataStatus.FRESH,
        age_seconds=age,
        averaged_over_seconds=averaged,
        provider=series.provider,
        note=note,
    )


def region_intensities(
    carbon: Mapping[str, CarbonSeries],
    regions: Iterable[str],
    *,
    now: datetime,
    policy: ScoringPolicy,
    duration: timedelta | None = None,
) -> dict[str, RegionIntensity]:
    """`region_intensity` for each distinct region (once per region, not per node)."""
    return {
        r: region_intensity(
            carbon.get(r),
            region=r,
            now=now,
            stale_after_seconds=policy.stale_after_seconds,
            duration=duration,
        )
        for r in set(regions)
    }


# ---------------------------------------------------------------------------- scoring
class NeutralReason(StrEnum):
    """Why every node got the same neutral score (a metric label)."""

    OPT_OUT = "opt_out"
    NO_DATA = "no_data"
    ALL_EQUAL = "all_equal"


_NEUTRAL_NOTES = {
    NeutralReason.OPT_OUT: "pod opted out",
    NeutralReason.NO_DATA: "no fresh carbon or GPU energy data for these nodes",
    NeutralReason.ALL_EQUAL: "every node has the same carbon and GPU energy values",
}


@dataclass(frozen=True, slots=True)
class ScoreResult:
    scores: Mapping[str, int]
    neutral_reason: NeutralReason | None = None
    components: tuple[str, ...] = ()

    @property
    def neutral(self) -> bool:
        return self.neutral_reason is not None

    @property
    def note(self) -> str:
        return _NEUTRAL_NOTES[self.neutral_reason] if self.neutral_reason else ""


@dataclass(frozen=True, slots=True)
class FilterResult:
    passed: tuple[str, ...]
    rejected: Mapping[str, str] = field(default_factory=dict)


def _unique(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _region_values(
    regions: Iterable[str], intensities: Mapping[str, RegionIntensity]
) -> dict[str, float | None]:
    """Usable intensity per region; when units differ only g/kWh values are kept."""
    found = {r: intensities.get(r) for r in regions}
    units = {ri.unit for ri in found.values() if ri is not None and ri.usable is not None}
    keep = units.pop() if len(units) == 1 else CarbonUnit.G_PER_KWH
    return {
        r: (ri.usable if ri is not None and ri.unit is keep else None) for r, ri in found.items()
    }


def _gpu_value(gpu: GpuEnergy | None) -> float:
    """Energy per unit of work, else average watts, else idle watts; NaN if none usable."""
    if gpu is None:
        return math.nan
    for v in (gpu.joules_per_work, gpu.power_watts, gpu.idle_power_watts):
        if v is not None and math.isfinite(v) and v > 0:
            return v
    return math.nan


def _goodness(values: Mapping[str, float | None], neutral: float) -> dict[str, float] | None:
    """Lowest value 1, highest 0, unknown `neutral`; None when no node differs."""
    known = [v for v in values.values() if v is not None]
    if not known:
        return None
    lo, hi = min(known), max(known)
    span = hi - lo
    if span == 0 and len(known) == len(values):
        return None
    out: dict[str, float] = {}
    for n, v in values.items():
        if v is None:
            out[n] = neutral
        elif span > 0:
            out[n] = (hi - v) / span
        else:
            out[n] = 1.0
    return out


def _goodness_array(values: FloatArray, neutral: float) -> FloatArray | None:
    """`_goodness` for an array with NaN as unknown."""
    known = ~np.isnan(values)
    if not known.any():
        return None
    lo = float(values[known].min())
    hi = float(values[known].max())
    span = hi - lo
    if span == 0 and known.all():
        return None
    good = (hi - values) / span if span > 0 else np.ones_like(values)
    return np.where(known, good, neutral)


@dataclass(frozen=True, slots=True)
class NodeTable:
    """Node facts as arrays, built once per snapshot so that scoring thousands of nodes per
    request is a few array operations instead of a Python loop over nodes."""

    index: Mapping[str, int]
    regions: tuple[str, ...]
    region_index: npt.NDArray[np.intp]  # per row; -1 = no region (the lookup's last slot)
    gpu_value: FloatArray  # per row; NaN = none
    gpu_measured_epoch_s: FloatArray  # per row; -inf = none

    @classmethod
    def build(cls, facts: Mapping[str, NodeFacts]) -> NodeTable:
        """Rows in `facts` order plus one last sentinel row (no region, no GPU data) that
        index -1, used for names without facts, lands on."""
        names = list(facts)
        regions = sorted({f.region for f in facts.values() if f.region})
        ridx = {r: i for i, r in enumerate(regions)}
        n = len(names) + 1
        region_index = np.fromiter(
            (*(ridx.get(facts[k].region or "", -1) for k in names), -1), dtype=np.intp, count=n
        )
        gpu_value = np.fromiter(
            (*(_gpu_value(facts[k].gpu) for k in names), math.nan), float, count=n
        )
        measured = np.fromiter(
            (
                *(
                    to_epoch_s(g.measured_at) if (g := facts[k].gpu) is not None else -math.inf
                    for k in names
                ),
                -math.inf,
            ),
            float,
            count=n,
        )
        return cls(
            index={k: i for i, k in enumerate(names)},
            regions=tuple(regions),
            region_index=region_index,
            gpu_value=gpu_value,
            gpu_measured_epoch_s=measured,
        )


def score_nodes(
    names: Iterable[str],
    *,
    facts: Mapping[str, NodeFacts],
    intensities: Mapping[str, RegionIntensity],
    pod: PodPreferences,
    policy: ScoringPolicy,
    now: datetime,
) -> ScoreResult:
    """Integer scores 0..10 for each distinct node name; the best node gets 10."""
    return score_table(
        names,
        table=NodeTable.build(facts),
        intensities=intensities,
        pod=pod,
        policy=policy,
        now=now,
    )


def score_table(
    names: Iterable[str],
    *,
    table: NodeTable,
    intensities: Mapping[str, RegionIntensity],
    pod: PodPreferences,
    policy: ScoringPolicy,
    now: datetime,
) -> ScoreResult:
    """`score_nodes` over a prebuilt `NodeTable` (names not in it have no facts)."""
    nodes = _unique(names)
    if not nodes:
        return ScoreResult(scores={})
    if pod.opt_out:
        return _neutral(nodes, policy, NeutralReason.OPT_OUT)
    neutral = policy.neutral_score / MAX_SCORE
    rows = np.fromiter(map(table.index.get, nodes, repeat(-1)), dtype=np.intp, count=len(nodes))
    region_of = table.region_index[rows]  # row -1 is the sentinel: no region
    seen_data = False
    carbon: FloatArray | None = None
    if policy.carbon_weight > 0:
        present = np.unique(region_of)
        placed = [int(i) for i in present if i >= 0]
        values = _region_values([table.regions[i] for i in placed], intensities)
        seen_data = any(v is not None for v in values.values())
        if present[0] < 0:
            values[""] = None  # nodes without a region take part with the neutral goodness
        by_region = _goodness(values, neutral)
        if by_region is not None:
            lookup = np.full(len(table.regions) + 1, neutral)  # last slot: no region
            for i in placed:
                lookup[i] = by_region[table.regions[i]]
            carbon = lookup[region_of]
    gpu: FloatArray | None = None
    if policy.gpu_energy_weight > 0 and pod.gpus_requested > 0:
        fresh_after = to_epoch_s(now) - policy.gpu_stale_after_seconds
        fresh = table.gpu_measured_epoch_s[rows] >= fresh_after
        watts = np.where(fresh, table.gpu_value[rows], np.nan)
        seen_data = seen_data or bool((~np.isnan(watts)).any())
        gpu = _goodness_array(watts, neutral)
    preferred = _preferred(table, region_of, pod.prefer_regions)
    if carbon is None and gpu is None and preferred is None:
        reason = NeutralReason.ALL_EQUAL if seen_data else NeutralReason.NO_DATA
        return _neutral(nodes, policy, reason)
    combined = np.zeros(len(nodes))
    used: list[str] = []
    weight = 0.0
    if carbon is not None:
        combined += policy.carbon_weight * carbon
        weight += policy.carbon_weight
        used.append("carbon")
    if gpu is not None:
        combined += policy.gpu_energy_weight * gpu
        weight += policy.gpu_energy_weight
        used.append("gpu_energy")
    if preferred is not None:
        if not used:  # no data: preferred nodes above the neutral score
            combined += neutral
            weight = 1.0
        combined += policy.prefer_bonus * weight * preferred
        used.append("prefer")
    best = float(combined.max())
    if not (best > 0 and math.isfinite(MAX_SCORE / best)):
        return _neutral(nodes, policy, NeutralReason.ALL_EQUAL)
    # 0 <= c <= best, so floor(x + 0.5) rounds half up into 0..10 without clamping.
    scores = np.floor(combined * (MAX_SCORE / best) + 0.5).astype(np.int64)
    return ScoreResult(
        scores=dict(zip(nodes, scores.tolist(), strict=True)), components=tuple(used)
    )


def _preferred(
    table: NodeTable, region_of: npt.NDArray[np.intp], prefer: frozenset[str]
) -> FloatArray | None:
    """1.0 for nodes in a preferred region, else 0.0; None when no node is in one."""
    if not prefer:
        return None
    hit = np.array([r in prefer for r in table.regions] + [False])  # last: no region
    mask = hit[region_of].astype(float)
    return mask if mask.any() else None


def _neutral(nodes: Sequence[str], policy: ScoringPolicy, reason: NeutralReason) -> ScoreResult:
    return ScoreResult(scores=dict.fromkeys(nodes, policy.neutral_score), neutral_reason=reason)


def filter_nodes(
    names: Iterable[str],
    *,
    facts: Mapping[str, NodeFacts],
    intensities: Mapping[str, RegionIntensity],
    pod: PodPreferences,
) -> FilterResult:
    """Reject nodes whose region's fresh g/kWh exceeds the pod's cap (its annotation or the
    cluster-wide threshold), then nodes in avoided regions unless that would leave none (avoid
    fails open: a pod is better placed in an avoided region than not at all)."""
    nodes = _unique(names)
    cap = pod.max_intensity_g_per_kwh
    if pod.opt_out or (cap is None and not pod.avoid_regions):
        return FilterResult(passed=tuple(nodes))
    passed: list[str] = []
    rejected: dict[str, str] = {}
    for n in nodes:
        f = facts.get(n)
        ri = intensities.get(f.region) if f is not None and f.region else None
        value = ri.usable if ri is not None and ri.unit is CarbonUnit.G_PER_KWH else None
        if cap is not None and value is not None and value > cap:
            window = (
                f" averaged over {ri.averaged_over_seconds:.0f}s"
                if ri is not None and ri.averaged_over_seconds
                else ""
            )
            rejected[n] = (
                f"carbon intensity {value:.0f} g/kWh{window} in region {ri.region if ri else '?'} "
                f"above cap {cap:g} ({ANNOTATION_MAX_INTENSITY})"
            )
        else:
            passed.append(n)
    if pod.avoid_regions:
        avoided = {}
        for n in passed:
            f = facts.get(n)
            if f is not None and f.region in pod.avoid_regions:
                avoided[n] = f"region {f.region} is avoided ({ANNOTATION_AVOID_REGIONS})"
        if len(avoided) < len(passed):  # else: fail open, every remaining node passes
            passed = [n for n in passed if n not in avoided]
            rejected.update(avoided)
    return FilterResult(passed=tuple(passed), rejected=rejected)


# ---------------------------------------------------------------------------- ranking
@dataclass(frozen=True, slots=True)
class RegionRank:
    """One region in a where/when ranking (lower intensity ranks first)."""

    region: str
    intensity: RegionIntensity
    best_start: datetime | None = None
    best_intensity: float | None = None


def rank_regions(
    carbon: Mapping[str, CarbonSeries],
    *,
    now: datetime,
    start: datetime,
    duration: timedelta | None,
    policy: ScoringPolicy,
) -> list[RegionRank]:
    """Rank regions by intensity for a job starting at `start` and running `duration`.

    Also finds, within each region's forecast, the start (on a data point, at or after
    `start`) whose window has the lowest mean: where *and* when to run. Fresh values rank
    before stale ones, which rank before missing ones.
    """
    ranks: list[RegionRank] = []
    for region, series in carbon.items():
        fresh = region_intensity(
            series, region=region, now=now, stale_after_seconds=policy.stale_after_seconds
        )
        ri = fresh
        if fresh.status is not DataStatus.MISSING and (start != now or duration is not None):
            ri = _intensity_at(series, fresh, start=start, duration=duration)
        best_start, best_value = _best_start(series, start=start, duration=duration)
        ranks.append(RegionRank(region, ri, best_start, best_value))

    def key(r: RegionRank) -> tuple[int, float, str]:
        order = {DataStatus.FRESH: 0, DataStatus.STALE: 1, DataStatus.MISSING: 2}
        v = r.intensity.value
        return (order[r.intensity.status], v if v is not None else math.inf, r.region)

    return sorted(ranks, key=key)


def _intensity_at(
    series: CarbonSeries, fresh: RegionIntensity, *, start: datetime, duration: timedelta | None
) -> RegionIntensity:
    """`fresh` (freshness judged now) with its value for a job at `start` over `duration`."""
    if duration is not None:
        mean, coverage = _window_mean(series, start, start + duration)
        if coverage >= 0.5:
            return replace(fresh, value=mean, averaged_over_seconds=duration.total_seconds())
    point = series.latest(at=start)
    if point is None:
        return replace(fresh, value=None, status=DataStatus.MISSING, note="no value before start")
    note = fresh.note
    if series.end is not None and start >= series.end:
        note = "start is past the forecast: last known value"
    return replace(fresh, value=point.value, averaged_over_seconds=None, note=note)


def _best_start(
    series: CarbonSeries, *, start: datetime, duration: timedelta | None
) -> tuple[datetime | None, float | None]:
    if duration is None or not series.points:
        return None, None
    best: tuple[datetime | None, float | None] = (None, None)
    candidates = [start] + [p.at for p in series.points if p.at > start]
    end = series.end
    for s in candidates:
        if end is None or s + duration > end:
            break
        mean, coverage = _window_mean(series, s, s + duration)
        if coverage >= 0.999 and (best[1] is None or mean < best[1]):
            best = (s, mean)
    return best
