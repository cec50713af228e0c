"""scaler.core.accounting: energy, emissions, counterfactual savings, ledger, budgets.

Aspects: energy = replicas x watts x time; emissions integrate the carbon step function
(signal and provider stated); uncovered time emits nothing; saved = counterfactual - emitted;
the ledger per workload/region/total with provenance; budget status; argument validation.
Property: splitting an interval anywhere conserves energy and emissions.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from scaler.core.accounting import (
    Ledger,
    account_interval,
    budget_status,
    carbon_integral,
)
from scaler.core.policy import PolicyParams
from scaler.core.tick import RegionView, region_view

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)


def carbon(values: list[float], *, start: datetime = T0, signal=Signal.AVERAGE) -> CarbonSeries:
    return CarbonSeries.build(
        region="r1",
        points=[(start + timedelta(hours=i), v, Quality.MEASURED) for i, v in enumerate(values)],
        unit=CarbonUnit.G_PER_KWH,
        signal=signal,
        provider="fake",
        fetched_at=start,
        resolution=timedelta(hours=1),
    )


def acct(start: datetime, end: datetime, series: CarbonSeries | None, **kw):
    args: dict[str, Any] = {
        "workload": "web",
        "region": "r1",
        "replicas": 4,
        "replica_watts": 25.0,
        "counterfactual_replicas": 6,
        "counterfactual_replica_watts": 20.0,
    }
    args.update(kw)
    return account_interval(start=start, end=end, carbon=series, **args)


def test_energy_emissions_and_savings() -> None:
    a = acct(T0, T0 + timedelta(hours=2), carbon([100.0, 300.0]))
    assert a.energy_joules == pytest.approx(4 * 25 * 7200)
    # 100 W for 1 h at 100 g/kWh + 1 h at 300 g/kWh = 0.1 kWh * 400 g/kWh
    assert a.emitted_g == pytest.approx(40.0)
    assert a.counterfactual_g == pytest.approx(48.0)  # 120 W
    assert a.saved_g == pytest.approx(8.0)
    assert a.intensity_g_per_kwh == pytest.approx(200.0)
    assert (a.signal, a.provider, a.carbon_stale) == ("average", "fake", False)


def test_newest_value_holds_and_time_before_first_point_is_uncovered() -> None:
    series = carbon([200.0], start=T0 + timedelta(hours=1))
    a = acct(T0, T0 + timedelta(hours=3), series)
    assert a.carbon_covered_seconds == pytest.approx(7200.0)
    assert a.emitted_g == pytest.approx(0.1 * 2 * 200.0)
    assert a.energy_joules == pytest.approx(100 * 3 * 3600)


def test_missing_carbon_counts_energy_only() -> None:
    a = acct(T0, T0 + timedelta(hours=1), None)
    assert a.energy_joules > 0
    assert (a.emitted_g, a.saved_g, a.carbon_covered_seconds) == (0.0, 0.0, 0.0)
    assert (a.signal, a.provider, a.carbon_stale) == ("unknown", "none", True)
    assert a.intensity_g_per_kwh is None
    assert acct(T0, T0, carbon([1.0])).intensity_g_per_kwh is None


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        pytest.param({"replicas": -1}, "replica counts", id="negative replicas"),
        pytest.param({"replica_watts": -1.0}, "watts", id="negative watts"),
    ],
)
def test_validation(kw, message) -> None:
    with pytest.raises(ValueError, match=message):
        acct(T0, T0 + timedelta(hours=1), None, **kw)
    with pytest.raises(ValueError, match="before start"):
        acct(T0 + timedelta(hours=1), T0, None)


@given(
    values=st.lists(st.floats(0, 2000), min_size=1, max_size=8),
    cut=st.floats(0.0, 1.0),
    length_s=st.integers(1, 10 * 3600),
    offset_s=st.integers(-3600, 3600),
    replicas=st.integers(0, 100),
    watts=st.floats(0, 500),
)
def test_property_splitting_conserves_energy_and_emissions(
    values, cut, length_s, offset_s, replicas, watts
) -> None:
    series = carbon(values)
    start = T0 + timedelta(seconds=offset_s)
    end = start + timedelta(seconds=length_s)
    mid = start + timedelta(seconds=round(length_s * cut))
    kw = {"replicas": replicas, "replica_watts": watts}
    whole = acct(start, end, series, **kw)
    a, b = acct(start, mid, series, **kw), acct(mid, end, series, **kw)
    assert a.energy_joules + b.energy_joules == pytest.approx(
        whole.energy_joules, rel=1e-9, abs=1e-6
    )
    assert a.emitted_g + b.emitted_g == pytest.approx(whole.emitted_g, rel=1e-9, abs=1e-6)
    assert a.saved_g + b.saved_g == pytest.approx(whole.saved_g, rel=1e-9, abs=1e-6)


def test_ledger_totals_and_provenance() -> None:
    day = [100.0] * 24
    a1 = acct(T0, T0 + timedelta(hours=1), carbon(day))
    a2 = acct(T0, T0 + timedelta(hours=1), carbon(day, signal=Signal.MARGINAL), workload="api")
    a3 = acct(T0, T0 + timedelta(hours=1), carbon(day), region="r2")
    empty = Ledger()
    ledger = empty.add([a1, a2]).add([a3])
    assert empty.total.emitted_g == 0.0  # add() does not mutate
    assert ledger.total.emitted_g == pytest.approx(a1.emitted_g + a2.emitted_g + a3.emitted_g)
    assert ledger.by_workload["web"].emitted_g == pytest.approx(a1.emitted_g + a3.emitted_g)
    assert ledger.by_region["r1"].saved_g == pytest.approx(a1.saved_g + a2.saved_g)
    assert ledger.total.counterfactual_energy_joules == pytest.approx(3 * 120 * 3600)
    assert ledger.provenance == {
        "r1": frozenset({"fake/average", "fake/marginal"}),
        "r2": frozenset({"fake/average"}),
    }


def test_budget_status() -> None:
    a = acct(T0, T0 + timedelta(hours=1), carbon([100.0]))  # emits 10, counterfactual 12
    on_track = budget_status([a], target_reduction_percent=10.0)
    assert not on_track.behind
    assert on_track.achieved_percent == pytest.approx(100 / 6)
    behind = budget_status([a], target_reduction_percent=20.0)
    assert behind.behind
    assert "behind" in behind.reason
    nothing = budget_status([], target_reduction_percent=20.0)
    assert (nothing.behind, nothing.achieved_percent) == (False, None)


@pytest.mark.parametrize(
    ("series", "hours", "want"),
    [
        pytest.param(carbon([100.0, 300.0, 50.0]), 2.5, (1_530_000.0, 9000.0), id="covered"),
        pytest.param(
            carbon([100.0], start=T0 + timedelta(hours=1)), 2.0, (360_000.0, 3600.0), id="half"
        ),
        pytest.param(None, 1.0, (0.0, 0.0), id="no carbon"),
        pytest.param(carbon([100.0]), 0.0, (0.0, 0.0), id="empty interval"),
    ],
)
def test_a_carbon_integral_given_accounts_as_the_one_computed(series, hours, want) -> None:
    """Every workload of a region accounts one interval on one carbon series: the tick
    integrates it once (`carbon_integral`, memoised per interval by the region's view) and
    hands it to `account_interval`, which then accounts exactly as it would alone."""
    end = T0 + timedelta(hours=hours)
    over = carbon_integral(series, start=T0, end=end)
    assert over == want
    assert acct(T0, end, series, carbon_over=over) == acct(T0, end, series)
    status = region_view(
        "r1", latest=None, forecast=None, now=T0, params=PolicyParams(), stale_after=HOUR2
    ).status
    view = RegionView(series, None, None, status)
    assert view.carbon_over(T0, end) == over
    assert view.carbon_over(T0, end) is view.carbon_over(T0, end)  # once per interval


HOUR2 = timedelta(hours=2)
