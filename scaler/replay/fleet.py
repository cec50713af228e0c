"""Fleet replays: one scenario cut into independent parts and the parts' results put back
together (pure), so a replay can run on many processes or machines and still give exactly
what one process gives.

Why the parts are independent: every workload's decisions depend only on its own demand, its
region's carbon and the scaler's settings. The scaler loop keeps no state across workloads
(interactive workloads share one loop only to share each region's carbon forecast), the
carbon forecasts are a function of (region, instant) (noise seeded by seed, region and
instant; refits anchored to multiples of `refit_every`), and each elastic job runs its own
loop. So a part is the same scenario with a subset of its workloads, and each part's
outcomes equal the whole run's for those workloads.

- `partition` keeps each region's workloads together where it can (parts in region order, so
  a region's carbon forecast is computed in as few parts as possible), balances parts by
  work (interactive intervals and elastic job intervals), and keeps the whole scenario's
  horizon in every part (`ReplayScenario.horizon_until`).
- `merge` puts the outcomes back in the order the single-process replay produces them and
  counts the ticks one process would have run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from scaler.replay.model import (
    PolicyName,
    ReplayResult,
    ReplayScenario,
    ReplayWorkload,
    WorkloadOutcome,
)

__all__ = ["merge", "partition", "work_units"]


def work_units(scenario: ReplayScenario, w: ReplayWorkload) -> int:
    """A workload's share of a replay's work: its intervals (interactive) or its jobs'
    intervals to their deadlines (elastic)."""
    if w.interactive:
        return scenario.intervals
    return sum(max(1, -(-(j.deadline - j.submitted_at) // scenario.step)) for j in w.jobs)


def partition(scenario: ReplayScenario, parts: int) -> tuple[ReplayScenario, ...]:
    """At most `parts` scenarios over disjoint workloads covering all of `scenario`'s.

    Workloads are taken in region order (stable within a region) and cut into runs of about
    equal work; a run never holds less than one workload. Each part keeps the scenario's
    period, policies, parameters, seed and horizon, and only the carbon of its regions."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    ordered = sorted(scenario.workloads, key=lambda w: w.workload.region)
    parts = min(parts, len(ordered))
    if parts == 1:
        return (scenario,)
    weights = [work_units(scenario, w) for w in ordered]
    total = sum(weights)
    runs: list[list[ReplayWorkload]] = [[]]
    done = 0
    for i, (w, weight) in enumerate(zip(ordered, weights, strict=True)):
        # close the run once it holds its share, or when every run still to open needs
        # one of the workloads left
        to_open = parts - len(runs)
        if (
            runs[-1]
            and to_open > 0
            and (done >= total * len(runs) / parts or len(ordered) - i <= to_open)
        ):
            runs.append([])
        runs[-1].append(w)
        done += weight
    horizon = scenario.horizon_end
    out = []
    for run in runs:
        regions = {w.workload.region for w in run}
        out.append(
            replace(
                scenario,
                workloads=tuple(run),
                carbon={r: s for r, s in scenario.carbon.items() if r in regions},
                horizon_until=horizon,
            )
        )
    return tuple(out)


def merge(
    scenario: ReplayScenario, results: Sequence[ReplayResult], *, seconds: float
) -> ReplayResult:
    """One `ReplayResult` for `scenario` from its parts' results (any order), as the
    single-process replay reports it: outcomes in its order (interactive workloads in
    scenario order, then elastic ones), the interactive loop's ticks counted once."""
    if not results:
        raise ValueError("no part results to merge")
    labels = {r.carbon_forecast for r in results}
    if len(labels) != 1:
        raise ValueError(f"parts forecast carbon differently: {sorted(labels)}")
    by_policy: dict[PolicyName, dict[str, WorkloadOutcome]] = {p: {} for p in scenario.policies}
    for r in results:
        for policy, per_workload in r.outcomes.items():
            by_policy[policy].update(per_workload)
    order = [w.name for w in scenario.workloads if w.interactive] + [
        w.name for w in scenario.workloads if not w.interactive
    ]
    missing = [n for n in order if any(n not in by_policy[p] for p in scenario.policies)]
    if missing:
        raise ValueError(f"no outcome for {missing[:5]} in the parts' results")
    merged = {p: {n: by_policy[p][n] for n in order} for p in scenario.policies}
    gridshift = bool(
        set(scenario.policies) & {PolicyName.GRIDSHIFT, PolicyName.GRIDSHIFT_PERFORMANCE}
    )
    interactive_parts = sum(1 for r in results if any(w.interactive for w in r.scenario.workloads))
    shared = scenario.intervals * max(0, interactive_parts - 1) if gridshift else 0
    return ReplayResult(
        scenario,
        merged,
        labels.pop(),
        seconds,
        sum(r.ticks for r in results) - shared,
    )
