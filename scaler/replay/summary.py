"""Totals, savings against each baseline and the gap to the oracle, as plain data (pure).

Definitions (gCO2 totals over the period, all workloads or one):
- `saving_vs[b]` = 100 x (1 - policy / b) for every other non-oracle policy `b`;
- `oracle_gap_percent` = 100 x (policy - oracle) / oracle (how far above the limit);
- `oracle_share_percent` = 100 x (static - policy) / (static - oracle): the share of the
  oracle's saving over the static/carbon-agnostic baseline that the policy captures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scaler.replay.model import PolicyName, ReplayResult, WorkloadOutcome

__all__ = ["summarise"]


def _totals(outcomes: list[WorkloadOutcome]) -> dict[str, Any]:
    inter = [o for o in outcomes if o.interactive]
    jobs = [j for o in outcomes for j in o.jobs]
    done = [j for j in jobs if j.completed_at is not None]
    slo_intervals = sum(o.intervals for o in inter)
    violations = sum(o.slo_violations for o in inter)
    eco = [o.eco_fraction for o in inter if o.eco_fraction is not None]
    return {
        "emitted_g": sum(o.emitted_g for o in outcomes),
        "energy_kwh": sum(o.energy_kwh for o in outcomes),
        "replica_hours": sum(o.replica_hours for o in outcomes),
        "slo_violations": violations,
        "slo_intervals": slo_intervals,
        "slo_violation_percent": 100.0 * violations / slo_intervals if slo_intervals else None,
        "jobs": len(jobs),
        "deadline_misses": sum(j.missed for j in jobs),
        "mean_completion_hours": (
            sum((j.completed_at - j.submitted_at).total_seconds() for j in done if j.completed_at)
            / 3600.0
            / len(done)
            if done
            else None
        ),
        "eco_fraction": sum(eco) / len(eco) if eco else None,
    }


def _compare(rows: dict[str, dict[str, Any]]) -> None:
    base_names = [p for p in rows if p != PolicyName.ORACLE]
    oracle = rows.get(PolicyName.ORACLE)
    static = rows.get(PolicyName.STATIC)
    for name, row in rows.items():
        g = row["emitted_g"]
        row["saving_vs"] = {
            b: (100.0 * (1.0 - g / rows[b]["emitted_g"]) if rows[b]["emitted_g"] > 0 else None)
            for b in base_names
            if b != name
        }
        og = oracle["emitted_g"] if oracle else None
        row["oracle_gap_percent"] = 100.0 * (g - og) / og if og else None
        if static and oracle and static["emitted_g"] - oracle["emitted_g"] > 0:
            row["oracle_share_percent"] = (
                100.0 * (static["emitted_g"] - g) / (static["emitted_g"] - oracle["emitted_g"])
            )
        else:
            row["oracle_share_percent"] = None


def summarise(result: ReplayResult) -> dict[str, Any]:
    """The replay as JSON-ready data (see the module docstring)."""
    sc = result.scenario
    outcomes: Mapping[PolicyName, Mapping[str, WorkloadOutcome]] = result.outcomes
    policies: dict[str, dict[str, Any]] = {
        str(p): _totals(list(outcomes[p].values())) for p in sc.policies
    }
    _compare(policies)
    workloads: dict[str, dict[str, Any]] = {}
    for w in sc.workloads:
        rows = {
            str(p): _totals([outcomes[p][w.name]]) for p in sc.policies if w.name in outcomes[p]
        }
        _compare(rows)
        workloads[w.name] = {
            "class": str(w.workload.workload_class),
            "region": w.workload.region,
            "policies": rows,
        }
    return {
        "scenario": sc.name,
        "from": sc.start.isoformat(),
        "to": sc.end.isoformat(),
        "step_seconds": sc.step.total_seconds(),
        "intervals": sc.intervals,
        "carbon_forecast": result.carbon_forecast,
        "forecast_noise_percent": sc.forecast_noise_percent,
        "seed": sc.seed,
        "seconds": result.seconds,
        "ticks": result.ticks,
        "notes": list(sc.notes),
        "policies": policies,
        "workloads": workloads,
    }
