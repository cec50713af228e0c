"""Carbon accounting (pure): energy, emissions and gCO2 saved against a counterfactual.

- energy = replicas x watts per replica x time (joules);
- emissions = energy x intensity, integrated over the carbon series' step function, with the
  signal (average or marginal) and provider stated on every figure;
- the counterfactual is what the same policy in permanent performance mode would have run for
  the same demand (the loop runs that shadow policy beside the real one), so
  saved = counterfactual emissions - emissions.

`Ledger` sums intervals per workload, per region and in total and keeps their provenance;
`budget_status` checks a relative budget ("emit X % less than carbon-unaware") over a window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from forecasts.series import CarbonSeries
from forecasts.time import to_epoch_s

__all__ = [
    "BudgetStatus",
    "IntervalAccount",
    "Ledger",
    "Totals",
    "account_interval",
    "budget_status",
    "carbon_integral",
]

_J_PER_KWH = 3.6e6


@dataclass(frozen=True, slots=True)
class IntervalAccount:
    """One workload over [start, end): actual and counterfactual energy and emissions.

    `carbon_covered_seconds` is the part of the interval that had an intensity; emissions
    cover only that part (never a made-up value)."""

    workload: str
    region: str
    start: datetime
    end: datetime
    energy_joules: float
    counterfactual_energy_joules: float
    emitted_g: float
    counterfactual_g: float
    carbon_covered_seconds: float
    signal: str
    provider: str
    carbon_stale: bool

    @property
    def saved_g(self) -> float:
        return self.counterfactual_g - self.emitted_g

    @property
    def intensity_g_per_kwh(self) -> float | None:
        """Effective (energy-weighted) intensity over the covered part."""
        if self.seconds <= 0:
            return None
        covered = self.energy_joules * self.carbon_covered_seconds / self.seconds
        return self.emitted_g / (covered / _J_PER_KWH) if covered > 0 else None

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def _integrate(carbon: CarbonSeries, start: float, end: float) -> tuple[float, float]:
    """(integral of intensity over time in g/kWh*s, covered seconds) over [start, end), the
    series read as a step function: each point holds until the next one and the newest holds
    on ('last known value'); time before the first point is not covered."""
    ts = carbon.epoch_s
    nxt = np.append(ts[1:], np.inf)
    spans = np.clip(np.minimum(nxt, end) - np.maximum(ts, start), 0.0, None)
    return float(carbon.values @ spans), float(spans.sum())


def carbon_integral(
    carbon: CarbonSeries | None, *, start: datetime, end: datetime
) -> tuple[float, float]:
    """(integral of intensity over [start, end) in g/kWh*s, covered seconds); nothing
    covered without carbon or in an empty interval."""
    if carbon is None or len(carbon) == 0 or end == start:
        return 0.0, 0.0
    return _integrate(carbon, to_epoch_s(start), to_epoch_s(end))


def account_interval(
    *,
    workload: str,
    region: str,
    start: datetime,
    end: datetime,
    replicas: int,
    replica_watts: float,
    counterfactual_replicas: int,
    counterfactual_replica_watts: float,
    carbon: CarbonSeries | None,
    carbon_over: tuple[float, float] | None = None,
) -> IntervalAccount:
    """Account one interval at constant replicas and power; `carbon_over` is
    `carbon_integral(carbon, start=start, end=end)` where the caller has it already (every
    workload of a region accounts the same interval on the same carbon)."""
    if end < start:
        raise ValueError(f"interval end {end.isoformat()} is before start {start.isoformat()}")
    if replicas < 0 or counterfactual_replicas < 0:
        raise ValueError("replica counts must be >= 0")
    if replica_watts < 0 or counterfactual_replica_watts < 0:
        raise ValueError("watts must be >= 0")
    seconds = (end - start).total_seconds()
    watts = replicas * replica_watts
    cf_watts = counterfactual_replicas * counterfactual_replica_watts
    integral, covered = (
        carbon_integral(carbon, start=start, end=end) if carbon_over is None else carbon_over
    )
    # g = W * s / J_PER_KWH * g/kWh
    return IntervalAccount(
        workload=workload,
        region=region,
        start=start,
        end=end,
        energy_joules=watts * seconds,
        counterfactual_energy_joules=cf_watts * seconds,
        emitted_g=watts * integral / _J_PER_KWH,
        counterfactual_g=cf_watts * integral / _J_PER_KWH,
        carbon_covered_seconds=covered,
        signal=str(carbon.signal) if carbon is not None else "unknown",
        provider=carbon.provider if carbon is not None else "none",
        carbon_stale=carbon.stale if carbon is not None else True,
    )


@dataclass(frozen=True, slots=True)
class Totals:
    energy_joules: float = 0.0
    counterfactual_energy_joules: float = 0.0
    emitted_g: float = 0.0
    counterfactual_g: float = 0.0

    @property
    def saved_g(self) -> float:
        return self.counterfactual_g - self.emitted_g

    def plus(self, a: IntervalAccount) -> Totals:
        return Totals(
            self.energy_joules + a.energy_joules,
            self.counterfactual_energy_joules + a.counterfactual_energy_joules,
            self.emitted_g + a.emitted_g,
            self.counterfactual_g + a.counterfactual_g,
        )


@dataclass(frozen=True, slots=True)
class Ledger:
    """Running totals per workload, per region and overall, with each region's provenance
    (`provider/signal` strings seen)."""

    by_workload: Mapping[str, Totals] = field(default_factory=dict)
    by_region: Mapping[str, Totals] = field(default_factory=dict)
    total: Totals = Totals()
    provenance: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def add(self, accounts: Sequence[IntervalAccount]) -> Ledger:
        """A new ledger with `accounts` added (this one is unchanged)."""
        by_w = dict(self.by_workload)
        by_r = dict(self.by_region)
        prov = dict(self.provenance)
        total = self.total
        for a in accounts:
            by_w[a.workload] = by_w.get(a.workload, Totals()).plus(a)
            by_r[a.region] = by_r.get(a.region, Totals()).plus(a)
            total = total.plus(a)
            tag = f"{a.provider}/{a.signal}"
            seen = prov.get(a.region, frozenset())
            if tag not in seen:
                prov[a.region] = seen | {tag}
        return Ledger(by_w, by_r, total, prov)


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    target_reduction_percent: float
    achieved_percent: float | None
    behind: bool
    reason: str


def budget_status(
    accounts: Sequence[IntervalAccount], *, target_reduction_percent: float
) -> BudgetStatus:
    """Has the workload emitted `target_reduction_percent` % less than its counterfactual
    over the intervals given (the caller passes those inside its budget window)?"""
    emitted = sum(a.emitted_g for a in accounts)
    counterfactual = sum(a.counterfactual_g for a in accounts)
    if counterfactual <= 0:
        return BudgetStatus(
            target_reduction_percent,
            None,
            False,
            f"budget {target_reduction_percent:g}%: no counterfactual emissions in window yet",
        )
    achieved = 100.0 * (1 - emitted / counterfactual)
    behind = achieved < target_reduction_percent
    return BudgetStatus(
        target_reduction_percent,
        achieved,
        behind,
        f"budget {target_reduction_percent:g}% less than performance-only: "
        f"{achieved:.1f}% over window, {'behind' if behind else 'on track'}",
    )
