"""Run every policy of a scenario side by side on the same demand and carbon.

gridshift's own policies are not re-implemented here: they are `ScalerLoop.tick()` (the tick
of `gridshift run`) looped over the period with a `SteppingClock`, reading the recorded
traces through `TraceLoadSource`/`TraceCarbonSource`, forecasting carbon with the same
`CarbonForecasting` as `gridshift run`. The loop never sees the future: load history ends
where the current interval starts, carbon forecasts use history before the decision instant
and recorded forecasts and day-ahead inputs only from when they became known, optionally
degraded by seeded noise.

- Interactive workloads share one loop; its `desired_replicas` is `gridshift` (eco modes)
  and its `counterfactual_replicas` (the same policy in permanent performance mode, which the
  loop runs beside the real one) is `gridshift-performance`.
- Each elastic job gets its own loop from its submission: `desired_replicas` is `gridshift`
  (the elastic plan, re-planned every tick on the forecast), the shadow (carbon-unaware, as
  fast as possible) is `gridshift-performance`.
- Peers and the oracle come from `scaler.replay.policies`; everything is scored there too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import numpy as np

from forecasts.carbon_forecast import CarbonForecastSettings, KnownSeries
from forecasts.forecast import Forecaster
from forecasts.series import RegularSeries
from forecasts.sources.carbon.forecasting import CarbonForecasting, ForecastMode
from forecasts.sources.trace import CarbonTrace, TraceCarbonSource, TraceLoadSource
from forecasts.time import SteppingClock, humanize_duration
from scaler.core.policy import PolicyParams
from scaler.core.workload import ElasticSpec, Workload
from scaler.loop import LoopSettings, ScalerLoop
from scaler.replay.fleet import merge, partition, work_units
from scaler.replay.model import (
    FloatArray,
    Job,
    JobOutcome,
    PolicyName,
    ReplayResult,
    ReplayScenario,
    ReplayWorkload,
    WorkloadOutcome,
)
from scaler.replay.policies import (
    hpa_replicas,
    keda_ceilings,
    keda_thresholds,
    oracle_job,
    oracle_replicas,
    run_job,
    score_interactive,
    static_replicas,
)
from scaler.snapshot import Mode, Snapshot, SnapshotHolder

__all__ = [
    "CarbonForecastSetup",
    "ReplayResult",
    "carbon_sources",
    "progress_total",
    "run_replay",
    "tick_over",
]

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class CarbonForecastSetup:
    """How gridshift gets carbon forecasts in the replay: `CarbonForecasting` (the path of
    `gridshift run`) over the recorded traces, in `mode`, with the recorded provider
    forecasts and day-ahead inputs per region where given (each value played from the
    instant it became known), refitting its plan every `refit_every`."""

    mode: ForecastMode = "auto"
    provider_forecasts: Mapping[str, KnownSeries] | None = None
    exog: Mapping[str, KnownSeries] | None = None
    provider_name: Mapping[str, str] | None = None
    refit_every: timedelta = timedelta(days=1)
    settings: CarbonForecastSettings | None = None
    perfect: bool = False  # the provider forecasts are the truth itself (an upper bound)

    @property
    def label(self) -> str:
        if self.perfect:
            return "perfect foresight (the recorded intensity as the forecast)"
        if self.mode == "provider":
            return "recorded provider forecast, as it arrived"
        inputs = []
        if self.exog:
            inputs.append("day-ahead inputs")
        if self.provider_forecasts and self.mode == "auto":
            inputs.append("the recorded provider forecast")
        return (
            "gridshift's carbon forecast on history"
            + (" + " + " + ".join(inputs) if inputs else " only")
            + f", plan refitted every {humanize_duration(self.refit_every)}"
        )


def progress_total(scenario: ReplayScenario) -> int:
    """Units `run_replay` reports: one per interval plus one per elastic job."""
    return scenario.intervals + sum(len(w.jobs) for w in scenario.workloads)


def carbon_sources(
    scenario: ReplayScenario, setup: CarbonForecastSetup
) -> tuple[TraceCarbonSource, CarbonForecasting]:
    """The recorded traces as a source, and gridshift's forecast over them."""
    traces = {}
    for region, truth in scenario.carbon.items():
        traces[region] = CarbonTrace(
            region=region,
            truth=truth,
            provider=(setup.provider_name or {}).get(region, "trace"),
            provider_forecast=(setup.provider_forecasts or {}).get(region),
            exog=(setup.exog or {}).get(region),
        )
    src = TraceCarbonSource(traces)
    forecasting = CarbonForecasting(
        src,
        exog=src if setup.exog else None,
        mode=setup.mode,
        settings=setup.settings,
        refit_every=setup.refit_every,
        noise_fraction=scenario.forecast_noise_percent / 100.0,
        seed=scenario.seed,
    )
    return src, forecasting


def run_replay(
    scenario: ReplayScenario,
    *,
    params: PolicyParams,
    loop_settings: LoopSettings,
    carbon_forecast: CarbonForecastSetup,
    load_forecaster: Forecaster | None = None,
    refit_every: timedelta = timedelta(hours=1),
    progress: Progress | None = None,
) -> ReplayResult:
    """Every policy of `scenario` (see the module docstring)."""
    if params.decision_step != scenario.step:
        raise ValueError(
            f"the scaler's decision step {params.decision_step} must equal the replay step "
            f"{scenario.step}"
        )
    started = time.monotonic()
    tick = progress or (lambda _n: None)
    src = carbon_sources(scenario, carbon_forecast)
    policies = set(scenario.policies)
    wants_gridshift = bool(policies & {PolicyName.GRIDSHIFT, PolicyName.GRIDSHIFT_PERFORMANCE})
    out: dict[PolicyName, dict[str, WorkloadOutcome]] = {p: {} for p in scenario.policies}
    ticks = 0

    inter = [w for w in scenario.workloads if w.interactive]
    if inter:
        gs: dict[str, tuple[np.ndarray, np.ndarray, float]] = {}
        if wants_gridshift:
            gs, n_ticks = _gridshift_interactive(
                scenario, inter, src, params, loop_settings, load_forecaster, refit_every, tick
            )
            ticks += n_ticks
        else:
            tick(scenario.intervals)
        for w in inter:
            for p, o in _interactive_outcomes(scenario, w, gs.get(w.name)).items():
                if p in out:
                    out[p][w.name] = o
    else:
        tick(scenario.intervals)
    for w in scenario.workloads:
        if w.interactive:
            continue
        outcomes, n_ticks = _elastic_outcomes(
            scenario, w, src, params, loop_settings, wants_gridshift, tick
        )
        ticks += n_ticks
        for p, o in outcomes.items():
            if p in out:
                out[p][w.name] = o
    label = carbon_forecast.label
    if scenario.forecast_noise_percent:
        label += f", degraded by {scenario.forecast_noise_percent:g} % noise"
    return ReplayResult(scenario, out, label, time.monotonic() - started, ticks)


# ----------------------------------------------------------------------------- the loop
def tick_over(
    loop: ScalerLoop,
    *,
    start: datetime,
    step: timedelta,
    intervals: int,
    refit_every: timedelta,
) -> Iterator[Snapshot]:
    """THE replay loop: `loop.tick()` `intervals` times from `start` (the loop's clock is a
    `SteppingClock(start, step)`), refitting its forecasters at `start` and then every
    `refit_every` of replayed time (never after the last tick). Yields each snapshot."""
    loop.refit(at=start)
    next_refit = start + refit_every
    for i in range(intervals):
        yield loop.tick()
        at = start + step * (i + 1)
        if at >= next_refit and i + 1 < intervals:
            loop.refit(at=at)
            next_refit = at + refit_every


_POLL_S = 0.5  # how often a parallel replay asks `progress` (the stop check) while parts run


def run_replay_parallel(
    scenario: ReplayScenario,
    *,
    executor: Executor,
    parts: int,
    params: PolicyParams,
    loop_settings: LoopSettings,
    carbon_forecast: CarbonForecastSetup,
    load_forecaster: Forecaster | None = None,
    refit_every: timedelta = timedelta(hours=1),
    progress: Progress | None = None,
) -> ReplayResult:
    """`run_replay` of `scenario` cut into `parts` (`scaler.replay.fleet.partition`), each
    part on `executor` (a Dask cluster's, a process pool), merged into exactly the result of
    `run_replay` on the whole scenario. `progress` advances as parts finish, and is called with
    0 every half second meanwhile, so an exception it raises (a stop) cancels the parts left."""
    started = time.monotonic()
    pieces = partition(scenario, parts)
    futures = {
        executor.submit(
            run_replay,
            piece,
            params=params,
            loop_settings=loop_settings,
            carbon_forecast=carbon_forecast,
            load_forecaster=load_forecaster,
            refit_every=refit_every,
        ): piece
        for piece in pieces
    }
    total_work = sum(work_units(scenario, w) for w in scenario.workloads)
    units = progress_total(scenario)
    reported = 0
    results = []
    pending: set[Future[ReplayResult]] = set(futures)
    try:
        while pending:
            finished, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
            if not finished and progress is not None:
                progress(0)  # a part can run for minutes: the caller's stop check runs meanwhile
            for future in finished:
                results.append(future.result())
                if progress is not None:
                    piece = futures[future]
                    share = sum(work_units(scenario, w) for w in piece.workloads) / total_work
                    step = units - reported if len(results) == len(pieces) else round(units * share)
                    progress(step)
                    reported += step
    finally:
        for future in pending:  # stopped or failed: the parts not yet finished are not wanted
            future.cancel()
    return merge(scenario, results, seconds=time.monotonic() - started)


# ----------------------------------------------------------------------------- interactive


def _gridshift_interactive(
    scenario: ReplayScenario,
    inter: list[ReplayWorkload],
    src: tuple[TraceCarbonSource, CarbonForecasting],
    params: PolicyParams,
    settings: LoopSettings,
    forecaster: Forecaster | None,
    refit_every: timedelta,
    tick: Progress,
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray, float]], int]:
    """Tick the scaler loop over the period; (eco replicas, performance replicas, eco share)."""
    n = scenario.intervals
    load = TraceLoadSource({w.workload.load.query: _require(w.demand) for w in inter})
    loop = ScalerLoop(
        [w.workload for w in inter],
        carbon=src[0],
        carbon_forecast=src[1],
        load=load,
        clock=SteppingClock(scenario.start, scenario.step),
        holder=SnapshotHolder(),
        params=params,
        settings=settings,
        forecaster=forecaster,
    )
    eco = {w.name: np.zeros(n) for w in inter}
    perf = {w.name: np.zeros(n) for w in inter}
    eco_ticks = dict.fromkeys(eco, 0)
    batch = max(1, n // 200)
    ticks = tick_over(
        loop, start=scenario.start, step=scenario.step, intervals=n, refit_every=refit_every
    )
    for i, snap in enumerate(ticks):
        for w in inter:
            ws = snap.workloads.get(w.name)
            if ws is None:  # the loop logged a failure and had no decision yet: hold
                eco[w.name][i] = eco[w.name][i - 1] if i else w.workload.min_replicas
                perf[w.name][i] = perf[w.name][i - 1] if i else w.workload.min_replicas
                continue
            eco[w.name][i] = ws.desired_replicas
            cf = ws.counterfactual_replicas
            perf[w.name][i] = ws.desired_replicas if cf is None else cf
            eco_ticks[w.name] += ws.mode is Mode.ECO
        if (i + 1) % batch == 0:
            tick(batch)
    tick(n % batch)
    return {w.name: (eco[w.name], perf[w.name], eco_ticks[w.name] / n) for w in inter}, n


def _require(series: RegularSeries | None) -> RegularSeries:
    if series is None:
        raise ValueError("interactive workload without demand")
    return series


def _interactive_outcomes(
    scenario: ReplayScenario,
    w: ReplayWorkload,
    gridshift: tuple[np.ndarray, np.ndarray, float] | None,
) -> dict[PolicyName, WorkloadOutcome]:
    demand = scenario.demand_in_period(w)
    carbon = scenario.carbon_on_horizon(w.workload.region)
    n = scenario.intervals
    assert w.demand is not None
    first = scenario.index(w.demand, scenario.start)
    static = static_replicas(w.workload, demand)
    thresholds = keda_thresholds(carbon[:n], len(scenario.keda.max_replicas_fractions))
    ceilings = keda_ceilings(
        carbon[:n],
        thresholds=thresholds,
        params=scenario.keda,
        max_replicas=int(static[0]),
        min_replicas=w.workload.min_replicas,
    )
    replicas: dict[PolicyName, tuple[np.ndarray, float | None]] = {
        PolicyName.STATIC: (static, None),
        PolicyName.HPA: (
            hpa_replicas(
                w.workload,
                observed=w.demand.values,
                first=first,
                n=n,
                params=scenario.hpa,
                step=scenario.step,
            ),
            None,
        ),
        PolicyName.KEDA_CARBON: (
            hpa_replicas(
                w.workload,
                observed=w.demand.values,
                first=first,
                n=n,
                params=scenario.hpa,
                step=scenario.step,
                max_replicas=ceilings,
            ),
            None,
        ),
        PolicyName.ORACLE: (oracle_replicas(w.workload, demand), None),
    }
    if gridshift is not None:
        replicas[PolicyName.GRIDSHIFT] = (gridshift[0], gridshift[2])
        replicas[PolicyName.GRIDSHIFT_PERFORMANCE] = (gridshift[1], 0.0)
    return {
        p: score_interactive(
            w.workload,
            policy=p,
            replicas=r,
            demand=demand,
            carbon=carbon,
            step=scenario.step,
            horizon_intervals=scenario.horizon_intervals,
            eco_fraction=eco,
        )
        for p, (r, eco) in replicas.items()
        if p in scenario.policies
    }


# ----------------------------------------------------------------------------- elastic


def _elastic_outcomes(
    scenario: ReplayScenario,
    w: ReplayWorkload,
    src: tuple[TraceCarbonSource, CarbonForecasting],
    params: PolicyParams,
    settings: LoopSettings,
    wants_gridshift: bool,
    tick: Progress,
) -> tuple[dict[PolicyName, WorkloadOutcome], int]:
    wl = w.workload
    profile = wl.elastic
    assert profile is not None
    carbon = scenario.carbon_on_horizon(wl.region)
    total = scenario.horizon_intervals
    thresholds = keda_thresholds(
        carbon[: scenario.intervals], len(scenario.keda.max_replicas_fractions)
    )
    ceilings = keda_ceilings(
        carbon,
        thresholds=thresholds,
        params=scenario.keda,
        max_replicas=wl.max_replicas,
        min_replicas=max(1, wl.min_replicas),
    )
    acc = {p: (np.zeros(total), np.zeros(total)) for p in scenario.policies}
    jobs: dict[PolicyName, list[JobOutcome]] = {p: [] for p in scenario.policies}
    ticks = 0
    for job in w.jobs:
        spec = ElasticSpec(job.work, job.deadline, profile.throughput_per_replica)
        first = (job.submitted_at - scenario.start) // scenario.step
        rest = total - first
        schedules: dict[PolicyName, list[int]] = {
            PolicyName.STATIC: [w.base_replicas] * rest,
            PolicyName.HPA: [wl.max_replicas] * rest,
            PolicyName.KEDA_CARBON: [int(c) for c in ceilings[first:]],
        }
        if wants_gridshift:
            eco, shadow = _gridshift_job(wl, spec, job.submitted_at, rest, src, params, settings)
            ticks += len(eco)
            schedules[PolicyName.GRIDSHIFT] = eco
            schedules[PolicyName.GRIDSHIFT_PERFORMANCE] = shadow + [wl.max_replicas] * (
                rest - len(shadow)
            )
        for p in scenario.policies:
            reps, em = acc[p]
            jobs[p].append(
                _job_outcome(
                    scenario,
                    wl,
                    spec,
                    job,
                    replicas=None if p is PolicyName.ORACLE else schedules[p],
                    first=first,
                    carbon=carbon,
                    replicas_out=reps,
                    emitted_out=em,
                )
            )
        tick(1)
    result = {
        p: WorkloadOutcome(
            workload=wl.name,
            policy=p,
            interactive=False,
            replicas=acc[p][0],
            emitted_g_per_interval=acc[p][1],
            emitted_g=sum(j.emitted_g for j in jobs[p]),
            energy_kwh=sum(j.energy_kwh for j in jobs[p]),
            replica_hours=sum(j.replica_hours for j in jobs[p]),
            intervals=scenario.intervals,
            jobs=tuple(jobs[p]),
        )
        for p in scenario.policies
    }
    return result, ticks


def _job_outcome(
    scenario: ReplayScenario,
    wl: Workload,
    spec: ElasticSpec,
    job: Job,
    *,
    replicas: list[int] | None,
    first: int,
    carbon: FloatArray,
    replicas_out: FloatArray,
    emitted_out: FloatArray,
) -> JobOutcome:
    """One job under one policy from interval `first`: at the policy's `replicas` schedule,
    or (None) the oracle's plan on the true carbon; adds to `replicas_out`/`emitted_out`."""
    if replicas is None:
        return oracle_job(
            spec,
            job,
            busy_watts=wl.power.busy_watts,
            max_replicas=wl.max_replicas,
            first_interval=first,
            period_start=scenario.start,
            step=scenario.step,
            carbon=carbon,
            replicas_out=replicas_out,
            emitted_out=emitted_out,
        )
    return run_job(
        spec,
        job,
        busy_watts=wl.power.busy_watts,
        replicas=replicas,
        first_interval=first,
        period_start=scenario.start,
        step=scenario.step,
        carbon=carbon,
        replicas_out=replicas_out,
        emitted_out=emitted_out,
    )


def _gridshift_job(
    wl: Workload,
    spec: ElasticSpec,
    submitted: datetime,
    rest: int,
    src: tuple[TraceCarbonSource, CarbonForecasting],
    params: PolicyParams,
    settings: LoopSettings,
) -> tuple[list[int], list[int]]:
    """The scaler loop on one job from its submission until its work is done (or the
    scenario horizon ends): (replicas per interval, performance-shadow replicas)."""
    job_wl = replace(wl, elastic=spec)
    loop = ScalerLoop(
        [job_wl],
        carbon=src[0],
        carbon_forecast=src[1],
        load=TraceLoadSource({}),
        clock=SteppingClock(submitted, params.decision_step),
        holder=SnapshotHolder(),
        params=params,
        settings=settings,
    )
    eco: list[int] = []
    shadow: list[int] = []
    for _ in range(rest):
        ws = loop.tick().workloads.get(job_wl.name)
        if ws is None:
            eco.append(eco[-1] if eco else wl.max_replicas)
            shadow.append(shadow[-1] if shadow else wl.max_replicas)
            continue
        if eco and ws.remaining_work is not None and ws.remaining_work <= 0:
            break
        eco.append(ws.desired_replicas)
        cf = ws.counterfactual_replicas
        shadow.append(ws.desired_replicas if cf is None else cf)
    return eco, shadow
