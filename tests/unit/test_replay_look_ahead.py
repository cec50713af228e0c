"""No decision peeks at an input before it is known: the replay's decisions made up to an
instant are the same when every input value that became known after that instant becomes
known an hour later.

Aspects: the whole replay (`run_replay`: the scaler loop of `gridshift run` on the recorded
traces, `CarbonForecasting` with a recorded provider forecast known from 04:00 of its day and
two day-ahead inputs, one known from 04:00 and one published at 17:00 the day before) with an
interactive workload (eco/performance from the carbon forecast) and an elastic one (its jobs
planned on the forecast); every gridshift decision at or before the cut is identical when
the values known after the cut arrive an hour later; moving values known before the cut
to after it changes decisions made between their arrival and the cut, and only those (so
the comparison can fail).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.carbon_forecast import CarbonForecastSettings, KnownSeries
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.series import RegularSeries
from scaler.core.policy import PolicyParams
from scaler.core.workload import ElasticSpec, WorkloadClass
from scaler.loop import LoopSettings
from scaler.replay.engine import CarbonForecastSetup, run_replay
from scaler.replay.model import Job, PolicyName, ReplayResult, ReplayScenario, ReplayWorkload
from tests.workloads import trace_workload

H = timedelta(hours=1)
HISTORY_DAYS = 21
START = datetime(2026, 3, 23, tzinfo=UTC)
HOURS = 42
CUT = START + 40 * H + timedelta(minutes=30)  # between two ticks: 40 ticks at or before it
PARAMS = PolicyParams(
    decision_step=H, scale_up_lead=timedelta(0), elastic_slot=H, max_step_replicas=100
)
SETTINGS = CarbonForecastSettings(
    horizon_steps=48, backtest_origins=6, origin_stride_steps=25, train_steps=24 * 14
)


def _traces() -> tuple[RegularSeries, KnownSeries, KnownSeries, RegularSeries]:
    """Carbon with a wind-driven part, its provider forecast and two day-ahead inputs."""
    first = START - timedelta(days=HISTORY_DAYS)
    n = 24 * (HISTORY_DAYS + 6)
    rng = np.random.default_rng(11)
    wind = np.zeros(n)
    for i in range(1, n):
        wind[i] = 0.95 * wind[i - 1] + rng.normal(0, 0.4)
    hours = np.arange(n)
    carbon = 320 + 15 * np.sin(2 * np.pi * hours / 24) - 60 * wind + rng.normal(0, 8, n)
    t = first.timestamp() + hours * 3600.0
    day = np.floor(t / 86400) * 86400
    truth = RegularSeries(start=first, step=H, values=carbon, unit="g/kWh")
    provider = KnownSeries(
        start=first,
        step=H,
        values=(carbon + rng.normal(0, 15, n))[:, None],
        known_s=(day + 4 * 3600)[:, None],  # its day's values from 04:00
    )
    exog = KnownSeries(
        start=first,
        step=H,
        values=np.column_stack([wind + rng.normal(0, 0.3, n), wind + rng.normal(0, 0.2, n)]),
        known_s=np.column_stack([day + 4 * 3600, day - 7 * 3600]),  # 04:00; 17:00 the day before
        columns=("wind_speed", "wind_da"),
    )
    load = RegularSeries(
        start=first, step=H, values=40 + 30 * np.sin(2 * np.pi * hours / 24), unit="req/s"
    )
    return truth, provider, exog, load


def _later(ks: KnownSeries, *, after: datetime, by: timedelta = H) -> KnownSeries:
    """Every value that became known after `after` becomes known `by` later."""
    at, late = after.timestamp(), by.total_seconds()
    return replace(ks, known_s=np.where(ks.known_s > at, ks.known_s + late, ks.known_s))


def _replay(provider: KnownSeries, exog: KnownSeries) -> ReplayResult:
    truth, _, _, load = _traces()
    web = ReplayWorkload(trace_workload("web", "X", max_replicas=20), load)
    batch = ReplayWorkload(
        trace_workload(
            "batch",
            "X",
            min_replicas=0,
            max_replicas=8,
            workload_class=WorkloadClass.ELASTIC,
            elastic=ElasticSpec(1.0, START + 30 * H, (1.0, 1.0)),
        ),
        jobs=tuple(Job(START + h * H, START + (h + 30) * H, 20 * 3600.0) for h in range(0, 40, 8)),
        base_replicas=1,
    )
    scenario = ReplayScenario(
        name="look-ahead",
        start=START,
        end=START + HOURS * H,
        step=H,
        workloads=(web, batch),
        carbon={"X": truth},
        forecast_noise_percent=0.0,
        seed=1,
    )
    return run_replay(
        scenario,
        params=PARAMS,
        loop_settings=LoopSettings(
            load_step=H, load_history=timedelta(days=2), tick_history=timedelta(days=2)
        ),
        carbon_forecast=CarbonForecastSetup(
            provider_forecasts={"X": provider},
            exog={"X": exog},
            settings=SETTINGS,
            refit_every=timedelta(days=1),
        ),
        load_forecaster=SeasonalNaive(24),
        refit_every=timedelta(hours=6),
    )


def _decisions(result: ReplayResult, *, ticks: int) -> dict[str, list[float]]:
    """gridshift's replicas per workload for the first `ticks` intervals."""
    return {
        name: [float(r) for r in outcome.replicas[:ticks]]
        for name, outcome in result.outcomes[PolicyName.GRIDSHIFT].items()
    }


@pytest.mark.timeout(10)  # three short replays: about 1.5 s alone, over 2 s under load
def test_an_input_known_an_hour_later_never_changes_an_earlier_decision() -> None:
    _, provider, exog, _ = _traces()
    before_cut = (CUT - START) // H + 1  # the ticks at START .. START + 40 h
    base = _replay(provider, exog)
    late = _replay(_later(provider, after=CUT), _later(exog, after=CUT))
    assert _decisions(base, ticks=before_cut) == _decisions(late, ticks=before_cut)
    # the comparison can fail: when the day's values that arrived at 04:00, before the cut,
    # arrive only after it, decisions between 04:00 and the cut change
    day_ahead = START + 28 * H  # 04:00 of the second day
    peeked = _replay(
        _later(provider, after=day_ahead - H, by=13 * H),
        _later(exog, after=day_ahead - H, by=13 * H),
    )
    changed = {
        name: [i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b]
        for (name, ours), theirs in zip(
            _decisions(base, ticks=before_cut).items(),
            _decisions(peeked, ticks=before_cut).values(),
            strict=True,
        )
    }
    assert any(changed.values()), changed
    assert all(i >= 28 for ticks in changed.values() for i in ticks), changed
