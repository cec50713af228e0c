"""The scaler's tick: adapters -> pure core -> one immutable `Snapshot`.

`ScalerLoop.tick()` reads `now` from the injected clock once, asks the adapters for carbon
(once per region, shared by every workload there; the forecast through `CarbonForecasting`,
gridshift's one carbon forecast path, shared with replays and the extender) and for every
workload's load (and measured power) in one batched call per kind
(`forecasts.sources.load.history_many`: one Prometheus range query per `prometheus.batch_size`
workloads), runs the pure policy and accounting, and publishes one frozen `Snapshot` through
the `SnapshotHolder`. A `SourceError` marks that input stale, is logged and counted; the
policy then holds (never scales down on missing data). A batched answer is per query, so an
error marks only the workloads whose query failed.

With a `ReplicaReader` (the cluster connection, `scaler.kube.KubeReplicaReader`) each tick
also reads every target's current replica count; a failed read leaves that workload's
`actual_replicas` unknown (None, with a note), is logged and counted like any source error,
and never breaks the tick. Without one (replays, no cluster) actual replicas are unknown.

`ScalerLoop.refit()` fits the load models; it runs on its own schedule, off the tick's path,
and swaps the fitted models in by reference. `ScalerService` uses APScheduler (3.x
`BackgroundScheduler`) only to trigger ticks and refits. Replays call `tick()` in a loop
with a `SteppingClock` instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Protocol

import numpy as np
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from forecasts.forecast import FittedModel, Forecast, Forecaster
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.platform.errors import SourceError
from forecasts.series import CarbonSeries, RegularSeries
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.carbon.forecasting import CarbonForecasting
from forecasts.sources.load import LoadSource
from forecasts.time import Clock, floor_to, humanize_duration
from scaler.core.accounting import IntervalAccount, Ledger, Totals, account_interval, budget_status
from scaler.core.policy import (
    CarbonOutlook,
    ModeDecision,
    ModeState,
    PolicyParams,
    ReplicaState,
    carbon_outlook,
    decide_elastic,
    decide_mode,
    decide_replicas,
    elastic_slots,
    slot_intensities,
)
from scaler.core.workload import Workload, WorkloadClass
from scaler.inputs import LoadInputs
from scaler.schedules import WorkloadSchedules
from scaler.snapshot import Mode, RegionCarbon, Snapshot, SnapshotHolder, WorkloadStatus
from scaler.state import LoopCheckpoint, StateStore, WorkloadCheckpoint

__all__ = ["LoopSettings", "RefitReport", "ReplicaReader", "ScalerLoop", "ScalerService"]

_FORECAST_LEVELS = (0.5, 0.75, 0.9, 0.95)
NO_CLUSTER_NOTE = "no cluster connection"


class ReplicaReader(Protocol):
    """Reads how many replicas each workload's target runs now (I/O; called once per tick).

    `read` answers per workload name: the count, or the `SourceError` that prevented reading
    it (a missing name means "not read"). It must not raise for one workload's failure.
    `in_effect` names the workloads whose targets gridshift itself sets (actuation on, not a
    dry run): their intervals are accounted at the replicas that actually ran."""

    @property
    def name(self) -> str: ...

    def read(self, workloads: Sequence[Workload]) -> Mapping[str, int | SourceError]: ...

    def in_effect(self, workloads: Sequence[Workload]) -> frozenset[str]: ...


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """The loop's own knobs (from `ScalerSettings`/`CarbonSettings`, translated in wiring)."""

    load_step: timedelta = timedelta(minutes=5)
    load_history: timedelta = timedelta(days=3)
    tick_history: timedelta = timedelta(hours=25)
    load_stale_after: timedelta = timedelta(minutes=15)
    carbon_stale_after: timedelta = timedelta(hours=2)
    budget_window: timedelta = timedelta(days=1)
    data_note: str = ""


@dataclass(frozen=True, slots=True)
class RefitReport:
    fitted: int
    failed: tuple[str, ...]
    seconds: float


@dataclass(slots=True)
class _WorkloadState:
    """Mutable per-workload state; only the tick touches it (ticks never overlap)."""

    replicas: ReplicaState
    shadow: ReplicaState
    remaining_work: float
    shadow_remaining: float
    mode: ModeState | None = None
    last_at: datetime | None = None
    last_status: WorkloadStatus | None = None
    window: deque[IntervalAccount] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What one tick fetched for every workload at once: load by workload name, measured
    power by query (a series, or the error fetching it)."""

    loads: Mapping[str, RegularSeries | SourceError]
    powers: Mapping[str, RegularSeries | SourceError]


@dataclass(frozen=True, slots=True)
class _Inputs:
    """What one workload's tick read: load history (interactive only) and measured power."""

    history: RegularSeries | None
    load_stale: bool
    load_now: float | None
    measured_watts: float | None
    stale_inputs: tuple[str, ...]


@dataclass(slots=True)
class _Decision:
    """One workload's decision as the tick builds it (mode first, then the target)."""

    mode: ModeDecision
    reasons: list[str]
    target: int = 0
    load_forecast: dict[str, float] = field(default_factory=dict)
    deadline: datetime | None = None
    feasible: bool | None = None


@dataclass(frozen=True, slots=True)
class _RegionView:
    latest: CarbonSeries | None
    forecast: CarbonSeries | None
    outlook: CarbonOutlook | None
    status: RegionCarbon


class ScalerLoop:
    """One tick per call; see the module docstring."""

    def __init__(
        self,
        workloads: Sequence[Workload],
        *,
        carbon: CarbonSource,
        load: LoadSource,
        clock: Clock,
        holder: SnapshotHolder,
        params: PolicyParams,
        settings: LoopSettings = LoopSettings(),
        forecaster: Forecaster | None = None,
        carbon_forecast: CarbonForecasting | None = None,
        logger: logging.Logger | None = None,
        state_store: StateStore | None = None,
        replica_reader: ReplicaReader | None = None,
    ) -> None:
        names = [w.name for w in workloads]
        if len(set(names)) != len(names):
            raise ValueError(f"workload names must be unique: {names}")
        self.workloads = tuple(workloads)
        self._carbon = carbon
        self._load = load
        self._clock = clock
        self._holder = holder
        self._params = params
        self._settings = settings
        steps_per_day = max(2, round(86400 / settings.load_step.total_seconds()))
        self._forecaster: Forecaster = forecaster or SeasonalNaive(period=steps_per_day)
        self._carbon_forecasting = carbon_forecast or CarbonForecasting(carbon)
        self._log = logger or logging.getLogger("gridshift.scaler")
        self._schedules = {
            w.name: WorkloadSchedules.parse(w.name, w.ci_schedules, w.overrides) for w in workloads
        }
        self._state = {w.name: _fresh_state(w) for w in workloads}
        self._restorable: dict[str, WorkloadCheckpoint] = {}
        self._workload_source: Callable[[], Sequence[Workload]] | None = None
        self._models: Mapping[str, FittedModel] = {}
        self._last_region: dict[str, _RegionView] = {}
        self._ledger = Ledger()
        # every source starts at 0, so the errors counter exists before the first error
        self._errors: dict[str, int] = {carbon.name: 0, load.name: 0}
        self._errors_lock = threading.Lock()
        self._load_inputs = LoadInputs(
            load,
            step=settings.load_step,
            logger=self._log,
            on_internal_error=lambda: self._count_error("internal"),
        )
        self._ticks = 0
        self._refits = 0
        self._last_refit_at: datetime | None = None
        self._replica_reader: ReplicaReader | None = None
        if replica_reader is not None:
            self.use_replica_reader(replica_reader)
        self._store = state_store
        if state_store is not None:
            restored = state_store.load()
            if restored is not None:
                self.restore(restored)

    def use_replica_reader(self, reader: ReplicaReader) -> None:
        """Read actual replicas with `reader` from the next tick on (the composition root
        attaches the cluster connection once it exists, before ticks are scheduled)."""
        self._replica_reader = reader
        with self._errors_lock:
            self._errors.setdefault(reader.name, 0)

    def _in_effect(self) -> frozenset[str]:
        """Workloads whose decisions reach the cluster (see `ReplicaReader`); never raises."""
        reader = self._replica_reader
        if reader is None:
            return frozenset()
        try:
            return reader.in_effect(self.workloads)
        except Exception:  # accounting falls back to the decided replicas
            self._log.exception("asking which workloads are actuated failed")
            return frozenset()

    def _actual_replicas(self, logged: set[str]) -> dict[str, tuple[int | None, str]]:
        """(count or None, why unknown) per workload; never raises."""
        reader = self._replica_reader
        if reader is None:
            return {w.name: (None, NO_CLUSTER_NOTE) for w in self.workloads}
        try:
            answers = reader.read(self.workloads)
        except Exception as exc:  # a broken reader must not break the tick
            self._log.exception("reading actual replicas failed")
            self._count_error(reader.name)
            return {w.name: (None, f"read failed: {exc}") for w in self.workloads}
        out: dict[str, tuple[int | None, str]] = {}
        for w in self.workloads:
            answer = answers.get(w.name)
            if isinstance(answer, SourceError):
                self._source_error(
                    f"actual replicas of {w.name}", answer, logged, "shown as unknown"
                )
                out[w.name] = (None, f"read failed: {answer}")
            elif answer is None:
                out[w.name] = (None, "not read")
            else:
                out[w.name] = (answer, "")
        return out

    # ------------------------------------------------------------------ state
    def checkpoint(self) -> LoopCheckpoint:
        """What must survive a restart: decisions and cumulative counters."""
        out: dict[str, WorkloadCheckpoint] = {}
        for w in self.workloads:
            st = self._state[w.name]
            t = self._ledger.by_workload.get(w.name, Totals())
            out[w.name] = WorkloadCheckpoint(
                replicas=st.replicas.current,
                counterfactual_replicas=st.shadow.current,
                last_at=st.last_at,
                remaining_work=st.remaining_work,
                counterfactual_remaining_work=st.shadow_remaining,
                energy_joules=t.energy_joules,
                counterfactual_energy_joules=t.counterfactual_energy_joules,
                emitted_g=t.emitted_g,
                counterfactual_g=t.counterfactual_g,
            )
        for name, kept in self._restorable.items():  # not listed since the restore (yet)
            out.setdefault(name, kept)
        saved_at = max((c.last_at for c in out.values() if c.last_at), default=None)
        return LoopCheckpoint(
            saved_at=saved_at or self._clock.now(), ticks_total=self._ticks, workloads=out
        )

    def restore(self, cp: LoopCheckpoint) -> None:
        """Continue from a checkpoint; workloads it does not name start fresh, workloads it
        names that are gone are dropped. Replicas are clamped to the current bounds. The
        checkpoint is kept: a workload that appears later (a new CarbonAwareScaler listed
        after the start) continues from it too (`set_workloads`)."""
        self._ledger = Ledger()
        self._restorable = dict(cp.workloads)
        restored = self._restore_workloads(self.workloads)
        self._ticks = cp.ticks_total
        self._log.info(
            "restored state from %s: %d ticks, %d workloads, %.3f g saved",
            cp.saved_at.isoformat(),
            cp.ticks_total,
            restored,
            self._ledger.total.saved_g,
        )

    def _restore_workloads(self, workloads: Sequence[Workload]) -> int:
        """Continue each of `workloads` that the kept checkpoint names (once each), adding
        its counters to the ledger (rebuilt once, not once per workload); how many."""
        led = self._ledger
        by_workload, by_region, total = dict(led.by_workload), dict(led.by_region), led.total
        restored = 0
        for w in workloads:
            c = self._restorable.pop(w.name, None)
            if c is None:
                continue
            st = self._state[w.name]
            st.replicas = ReplicaState(min(w.max_replicas, max(w.min_replicas, c.replicas)))
            st.shadow = ReplicaState(
                min(w.max_replicas, max(w.min_replicas, c.counterfactual_replicas))
            )
            st.last_at = c.last_at
            if w.elastic is not None:
                st.remaining_work = c.remaining_work
                st.shadow_remaining = c.counterfactual_remaining_work
            t = Totals(
                c.energy_joules, c.counterfactual_energy_joules, c.emitted_g, c.counterfactual_g
            )
            by_workload[w.name] = t
            by_region[w.region] = _sum_totals(by_region.get(w.region, Totals()), t)
            total = _sum_totals(total, t)
            restored += 1
        if restored:
            self._ledger = Ledger(by_workload, by_region, total, led.provenance)
        return restored

    # ------------------------------------------------------------------ workloads
    def use_workload_source(self, source: Callable[[], Sequence[Workload]]) -> None:
        """Take the workload set from `source` before every tick (config-file workloads plus
        the CarbonAwareScalers the cluster has now); see `set_workloads`."""
        self._workload_source = source

    def set_workloads(self, workloads: Sequence[Workload]) -> None:
        """Replace the workload set between ticks. A new workload starts fresh (or from the
        kept checkpoint) and gets its load model fitted at once; a changed one keeps its
        replicas and mode (elastic work restarts when its work or deadline changed); a gone
        one is dropped."""
        names = [w.name for w in workloads]
        if len(set(names)) != len(names):
            raise ValueError(f"workload names must be unique: {names}")
        old = {w.name: w for w in self.workloads}
        state: dict[str, _WorkloadState] = {}
        schedules: dict[str, WorkloadSchedules] = {}
        added: list[Workload] = []
        for w in workloads:
            prev = old.get(w.name)
            st = self._state.get(w.name)
            if prev is None or st is None:
                st = _fresh_state(w)
                added.append(w)
            elif prev.elastic != w.elastic:
                st.remaining_work = st.shadow_remaining = w.elastic.total_work if w.elastic else 0.0
            state[w.name] = st
            keep = prev is not None and (prev.ci_schedules, prev.overrides) == (
                w.ci_schedules,
                w.overrides,
            )
            schedules[w.name] = (
                self._schedules[w.name]
                if keep
                else WorkloadSchedules.parse(w.name, w.ci_schedules, w.overrides)
            )
        self._state, self._schedules, self.workloads = state, schedules, tuple(workloads)
        self._restore_workloads(added)
        gone = sorted(set(old) - set(names))
        if added or gone:
            self._log.info(
                "workloads now %s (added %s, removed %s)",
                ", ".join(names) or "none",
                ", ".join(w.name for w in added) or "none",
                ", ".join(gone) or "none",
            )
        fit = [w.name for w in added if w.elastic is None]
        if fit:
            self.refit(only=fit)

    def _start_from_actual(self, w: Workload, running: int | None) -> None:
        """A workload's first decision starts from what its target runs now (clamped to its
        bounds), not from min_replicas: a new CarbonAwareScaler that actuates must not scale
        a running Deployment down to its floor while an input is still stale."""
        st = self._state[w.name]
        if st.last_at is not None or st.last_status is not None or running is None:
            return
        start = min(w.max_replicas, max(w.min_replicas, running))
        st.replicas = ReplicaState(start)
        st.shadow = ReplicaState(start)

    def _refresh_workloads(self) -> None:
        source = self._workload_source
        if source is None:
            return
        try:
            workloads = tuple(source())
            if workloads != self.workloads:
                self.set_workloads(workloads)
        except Exception:  # keep deciding for the workloads we have
            self._log.exception("updating the workload set failed; keeping the previous one")
            self._count_error("internal")

    def _take_over(self) -> None:
        """Continue from the store's checkpoint when this replica just became its writer."""
        if self._store is None:
            return
        try:
            stored = self._store.takeover()
        except Exception as exc:  # the save is skipped until the re-read succeeds
            self._count_error("state")
            self._log.warning("state not re-read on taking over: %s; not saving yet", exc)
            return
        if stored is not None:
            self.restore(stored)

    def _persist(self) -> None:
        if self._store is None:
            return
        try:
            self._store.save(self.checkpoint())
        except Exception as exc:  # a full disk must not stop scaling
            self._count_error("state")
            self._log.warning("state not persisted: %s", exc)

    # ------------------------------------------------------------------ errors
    def _count_error(self, source: str) -> None:
        with self._errors_lock:  # ticks and refits run on different threads
            self._errors[source] = self._errors.get(source, 0) + 1

    def _source_error(
        self,
        what: str,
        exc: SourceError,
        logged: set[str],
        consequence: str = "input marked stale",
    ) -> None:
        self._count_error(exc.source)
        if exc.source not in logged:
            logged.add(exc.source)
            self._log.warning("%s: %s; %s", what, exc, consequence)

    # ------------------------------------------------------------------ refit
    def refit(
        self,
        *,
        at: datetime | None = None,
        executor: Executor | None = None,
        only: Collection[str] | None = None,
    ) -> RefitReport:
        """Fit every workload's load model on its history up to `at` (default: the clock's
        now); a workload whose fit fails keeps its previous model.

        Histories are fetched here (I/O, in order); the fits run on `executor` when given
        (a process pool spreads CPU-heavy models over cores), else in this thread."""
        started = time.monotonic()
        now = at if at is not None else self._clock.now()
        end = floor_to(now, self._settings.load_step)
        models = dict(self._models)
        failed: list[str] = []
        logged: set[str] = set()
        histories: dict[str, RegularSeries] = {}
        # elastic work is planned from carbon, not a load forecast
        forecast_load = [
            w for w in self.workloads if w.elastic is None and (only is None or w.name in only)
        ]
        window = (end - self._settings.load_history, end)
        got = self._load_inputs.loads(forecast_load, window, "refit load")
        for w in forecast_load:
            try:
                histories[w.name] = self._load_inputs.load_of(w, window, got)
            except SourceError as exc:
                self._source_error(f"refit {w.name}", exc, logged)
                failed.append(w.name)
        pending: dict[str, Future[FittedModel]] = {}
        for name, hist in histories.items():
            if executor is None:
                try:
                    models[name] = self._forecaster.fit(hist)
                except ValueError as exc:
                    self._log.warning("refit %s: %s (keeping the previous model)", name, exc)
                    failed.append(name)
            else:
                pending[name] = executor.submit(_fit, self._forecaster, hist)
        for name, future in pending.items():
            try:
                models[name] = future.result()
            except ValueError as exc:
                self._log.warning("refit %s: %s (keeping the previous model)", name, exc)
                failed.append(name)
        self._models = {k: v for k, v in models.items() if k in self._state}
        self._refits += 1
        self._last_refit_at = now
        seconds = time.monotonic() - started
        self._log.info("refit %d models in %.3f s (%d failed)", len(models), seconds, len(failed))
        for name, fitted in sorted(models.items()):
            self._log.debug("refit %s: %s", name, fitted.name)
        return RefitReport(len(models), tuple(failed), seconds)

    # ------------------------------------------------------------------ carbon
    def _carbon_forecast(self, region: str, now: datetime) -> CarbonSeries:
        return self._carbon_forecasting.forecast(
            region, at=now, horizon=self._params.carbon_horizon
        )

    def _region(self, region: str, now: datetime, logged: set[str]) -> _RegionView:
        prev = self._last_region.get(region)
        latest: CarbonSeries | None
        forecast: CarbonSeries | None
        try:
            latest = self._carbon.latest(region, at=now)
        except SourceError as exc:
            self._source_error(f"carbon latest {region}", exc, logged)
            latest = (
                prev.latest.as_stale(f"last known value: {exc}") if prev and prev.latest else None
            )
        try:
            forecast = self._carbon_forecast(region, now)
        except SourceError as exc:
            self._source_error(f"carbon forecast {region}", exc, logged)
            forecast = (
                prev.forecast.as_stale(f"last known forecast: {exc}")
                if prev and prev.forecast
                else None
            )
        point = latest.latest(at=now) if latest is not None else None
        age = (now - point.at).total_seconds() if point is not None else None
        stale = (
            latest is None
            or latest.stale
            or age is None
            or age > self._settings.carbon_stale_after.total_seconds()
        )
        if latest is not None and stale and not latest.stale:
            latest = latest.as_stale(f"newest value is {age:.0f} s old")
        outlook = carbon_outlook(forecast, now=now, params=self._params)
        status = RegionCarbon(
            region=region,
            intensity_g_per_kwh=point.value if point else None,
            at=point.at if point else None,
            provider=latest.provider if latest else "none",
            stale=stale,
            age_seconds=age,
            signal=str(latest.signal) if latest else "",
            note=(latest.note if latest else "") or (forecast.note if forecast else ""),
            forecast_window_g_per_kwh=outlook.window_mean_g_per_kwh if outlook else None,
            forecast_percentile=outlook.percentile if outlook else None,
            forecast_provider=forecast.provider if forecast else "",
        )
        view = _RegionView(latest, forecast, outlook, status)
        self._last_region[region] = view
        return view

    # ------------------------------------------------------------------ load
    def _load_window(self, now: datetime) -> tuple[datetime, datetime]:
        end = floor_to(now, self._settings.load_step)
        return end - self._settings.tick_history, end

    def _power_window(self, now: datetime) -> tuple[datetime, datetime]:
        end = floor_to(now, self._settings.load_step) + self._settings.load_step
        return end - self._settings.load_stale_after, end

    def _load_history(
        self,
        w: Workload,
        now: datetime,
        logged: set[str],
        prefetched: Mapping[str, RegularSeries | SourceError],
    ) -> tuple[RegularSeries | None, bool]:
        try:
            hist = self._load_inputs.load_of(w, self._load_window(now), prefetched)
        except SourceError as exc:
            self._source_error(f"load {w.name}", exc, logged)
            return None, True
        valid = np.flatnonzero(~np.isnan(hist.values))
        if valid.size == 0:
            return hist, True
        newest_end = hist.time_at(int(valid[-1])) + hist.step
        return hist, now - newest_end > self._settings.load_stale_after

    def _measured_watts(
        self,
        w: Workload,
        now: datetime,
        logged: set[str],
        prefetched: Mapping[str, RegularSeries | SourceError],
    ) -> float | None:
        """Newest total watts of the workload from its measured power series, if it has one."""
        query = w.power.measured_query
        if query is None:
            return None
        try:
            hist = self._load_inputs.history(query, self._power_window(now), prefetched)
        except SourceError as exc:
            self._source_error(f"power {w.name}", exc, logged)
            return None
        return _last_value(hist)

    def _forecast(
        self, w: Workload, hist: RegularSeries | None, now: datetime
    ) -> tuple[Forecast | None, str | None]:
        model = self._models.get(w.name)
        if model is None:
            return None, "no fitted load model yet"
        if hist is None:
            return None, None
        ahead = now + self._params.decision_step + self._params.scale_up_lead - hist.end
        horizon = max(1, math.ceil(ahead / hist.step))
        try:
            return model.predict(horizon=horizon, history=hist), None
        except ValueError as exc:
            return None, f"load forecast failed: {exc}"

    # ------------------------------------------------------------------ tick
    def tick(self) -> Snapshot:
        """One decision for every workload; publishes and returns the snapshot."""
        started = time.monotonic()
        self._refresh_workloads()  # CarbonAwareScalers created, changed or deleted since
        self._take_over()  # before deciding: a new leader continues from the last save
        now = self._clock.now()
        logged: set[str] = set()
        previous = dict(self._last_region)
        regions = {
            r: self._region(r, now, logged) for r in sorted({w.region for w in self.workloads})
        }
        statuses: dict[str, WorkloadStatus] = {}
        accounts: list[IntervalAccount] = []
        actual = self._actual_replicas(logged)
        effect = self._in_effect()
        fetched = _Fetched(
            loads=self._load_inputs.loads(
                [w for w in self.workloads if w.elastic is None], self._load_window(now), "load"
            ),
            powers=self._load_inputs.queries(
                [
                    w.power.measured_query
                    for w in self.workloads
                    if w.power.measured_query is not None
                    and self._state[w.name].last_at is not None
                ],
                self._power_window(now),
                "power",
            ),
        )
        for w in self.workloads:
            try:
                ran = actual[w.name][0] if w.name in effect else None
                self._start_from_actual(w, actual[w.name][0])
                status, account = self._tick_workload(
                    w, now, regions[w.region], previous.get(w.region), logged, fetched, ran
                )
            except Exception:  # one bad workload must not stop the others
                self._log.exception("tick %s failed; keeping its previous decision", w.name)
                self._count_error("internal")
                prev = self._state[w.name].last_status
                if prev is None:
                    continue
                status, account = prev, None
            replicas, note = actual[w.name]
            statuses[w.name] = replace(status, actual_replicas=replicas, actual_replicas_note=note)
            if account is not None:
                accounts.append(account)
        self._ledger = self._ledger.add(accounts)
        self._ticks += 1
        self._persist()  # before the snapshot, so a failed save is counted in this one
        with self._errors_lock:
            errors = dict(self._errors)
        snapshot = Snapshot(
            taken_at=now,
            workloads=statuses,
            regions={r: v.status for r, v in regions.items()},
            tick_seconds=time.monotonic() - started,
            ticks_total=self._ticks,
            source_errors_total=errors,
            refits_total=self._refits,
            last_refit_at=self._last_refit_at,
            data_note=self._settings.data_note,
        )
        self._holder.publish(snapshot)
        return snapshot

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    def _tick_workload(
        self,
        w: Workload,
        now: datetime,
        region: _RegionView,
        previous: _RegionView | None,
        logged: set[str],
        fetched: _Fetched,
        ran: int | None = None,
    ) -> tuple[WorkloadStatus, IntervalAccount | None]:
        """One workload's decision, in four steps: its inputs, the interval just ended
        accounted, the decision, its status. `ran` is its actual replica count when its
        decisions are in effect in the cluster (the interval is accounted at it)."""
        st = self._state[w.name]
        inputs = self._inputs(w, st, now, region, logged, fetched)
        account, reasons = self._account_window(w, st, now, previous or region, inputs, ran)
        decision = self._decide(w, st, now, region, inputs, reasons)
        st.last_at = now
        status = self._status(w, st, now, region, inputs, account, decision)
        st.last_status = status
        return status, account

    def _inputs(
        self,
        w: Workload,
        st: _WorkloadState,
        now: datetime,
        region: _RegionView,
        logged: set[str],
        fetched: _Fetched,
    ) -> _Inputs:
        """Step 1: load history (interactive only), measured power, and which are stale."""
        hist, load_stale = (
            (None, False)
            if w.elastic is not None
            else self._load_history(w, now, logged, fetched.loads)
        )
        stale_inputs: list[str] = []
        if load_stale:
            stale_inputs.append("load")
        if region.status.stale:
            stale_inputs.append("carbon")
        measured = (
            self._measured_watts(w, now, logged, fetched.powers) if st.last_at is not None else None
        )
        if w.power.measured_query is not None and measured is None:
            stale_inputs.append("power")
        return _Inputs(hist, load_stale, _last_value(hist), measured, tuple(stale_inputs))

    def _account_window(
        self,
        w: Workload,
        st: _WorkloadState,
        now: datetime,
        region: _RegionView,
        inputs: _Inputs,
        ran: int | None,
    ) -> tuple[IntervalAccount | None, list[str]]:
        """Step 2: account the interval since the last tick and keep the budget window;
        the reasons it gives (accounted at replicas other than decided)."""
        decided = st.replicas.current
        account = self._account(w, st, now, region, inputs.load_now, inputs.measured_watts, ran)
        reasons: list[str] = []
        if account is not None:
            st.window.append(account)
            while st.window and st.window[0].end <= now - self._settings.budget_window:
                st.window.popleft()
        if account is not None and ran is not None and ran != decided:
            reasons.append(
                f"accounted at the {ran} replicas running, not the {decided} decided "
                "(the cluster has not caught up)"
            )
        return account, reasons

    def _decide(
        self,
        w: Workload,
        st: _WorkloadState,
        now: datetime,
        region: _RegionView,
        inputs: _Inputs,
        reasons: list[str],
    ) -> _Decision:
        """Step 3: the mode (budget, overrides, outlook), then the replica target."""
        budget_behind = False
        if w.budget_reduction_percent is not None and w.workload_class is not WorkloadClass.ELASTIC:
            budget = budget_status(
                tuple(st.window), target_reduction_percent=w.budget_reduction_percent
            )
            budget_behind = budget.behind
            reasons.append(budget.reason)
        mode_decision = decide_mode(
            region.outlook,
            state=st.mode,
            now=now,
            params=self._params,
            overrides=self._schedules[w.name].override_windows(now=now),
            budget_behind=budget_behind,
        )
        st.mode = mode_decision.state
        decision = _Decision(mode_decision, reasons)
        if w.elastic is not None:
            self._decide_elastic(w, st, now, region, decision)
        else:
            self._decide_interactive(w, st, now, inputs, decision)
        return decision

    def _decide_elastic(
        self, w: Workload, st: _WorkloadState, now: datetime, region: _RegionView, d: _Decision
    ) -> None:
        """An elastic job: replicas from the plan over the slots to its deadline."""
        assert w.elastic is not None
        params = self._params
        d.deadline = w.elastic.deadline
        starts, ends = elastic_slots(now, d.deadline, params.elastic_slot)
        intens = slot_intensities(region.forecast, starts=starts, ends=ends) if starts else None
        decision = decide_elastic(
            w,
            remaining_work=st.remaining_work,
            intensities=intens,
            carbon_stale=region.outlook is None or region.outlook.stale,
            current=st.replicas.current,
            now=now,
            params=params,
        )
        d.target = decision.target
        d.feasible = decision.plan.feasible if decision.plan else None
        was = st.last_status.deadline_feasible if st.last_status else None
        if d.feasible is False and was is not False:
            self._log.warning("%s: %s", w.name, decision.reasons[0])
        d.reasons.extend(decision.reasons)
        st.replicas = ReplicaState(d.target)
        shadow_target = w.max_replicas if st.shadow_remaining > 0 else w.min_replicas
        st.shadow = ReplicaState(shadow_target)

    def _decide_interactive(
        self, w: Workload, st: _WorkloadState, now: datetime, inputs: _Inputs, d: _Decision
    ) -> None:
        """An interactive workload: replicas from the load forecast in the decided mode, and
        the performance-only shadow beside it."""
        params = self._params
        forecast, why = self._forecast(w, inputs.history, now)
        if why:
            d.reasons.append(why)
        if forecast is not None:
            idx = min(forecast.horizon - 1, max(0, forecast.index_of(now) or 0))
            d.load_forecast["mean"] = float(forecast.mean[idx])
            for q in _FORECAST_LEVELS:
                d.load_forecast[f"{q:g}"] = float(forecast.quantile(q)[idx])
        ci = self._schedules[w.name].ci_windows(
            now=now, ahead=params.decision_step + params.scale_up_lead
        )
        decision_r = decide_replicas(
            w,
            forecast=forecast,
            load_stale=inputs.load_stale,
            mode=d.mode.mode,
            state=st.replicas,
            now=now,
            params=params,
            ci_windows=ci,
        )
        shadow = decide_replicas(
            w,
            forecast=forecast,
            load_stale=inputs.load_stale,
            mode=Mode.PERFORMANCE,
            state=st.shadow,
            now=now,
            params=params,
            ci_windows=ci,
        )
        d.target = decision_r.target
        st.replicas = decision_r.state
        st.shadow = shadow.state
        d.reasons.extend(decision_r.reasons)

    def _status(
        self,
        w: Workload,
        st: _WorkloadState,
        now: datetime,
        region: _RegionView,
        inputs: _Inputs,
        account: IntervalAccount | None,
        d: _Decision,
    ) -> WorkloadStatus:
        """Step 4: the workload's status, with its running totals."""
        totals = self._ledger.by_workload.get(w.name)
        emitted = (totals.emitted_g if totals else 0.0) + (account.emitted_g if account else 0.0)
        cf = (totals.counterfactual_g if totals else 0.0) + (
            account.counterfactual_g if account else 0.0
        )
        energy = (totals.energy_joules if totals else 0.0) + (
            account.energy_joules if account else 0.0
        )
        note = self._settings.data_note
        return WorkloadStatus(
            name=w.name,
            namespace=w.namespace,
            region=w.region,
            desired_replicas=d.target,
            mode=d.mode.mode,
            reasons=(
                *((note,) if note else ()),
                *d.mode.reasons,
                *d.reasons,
            ),
            decided_at=now,
            stale_inputs=inputs.stale_inputs,
            emitted_g=emitted,
            saved_g=cf - emitted,
            workload_class=str(w.workload_class),
            target_kind=str(w.target.kind),
            target_name=w.target.name,
            mode_since=d.mode.since,
            load_now=inputs.load_now,
            load_unit=w.load.unit,
            load_forecast=d.load_forecast,
            counterfactual_replicas=st.shadow.current,
            load_model=model.name if (model := self._models.get(w.name)) is not None else None,
            energy_joules=energy,
            counterfactual_g=cf,
            carbon_provenance=(
                f"{region.status.provider}/{region.status.signal}" if region.latest else "none"
            ),
            remaining_work=st.remaining_work if w.elastic is not None else None,
            deadline=d.deadline,
            deadline_feasible=d.feasible,
            min_replicas=w.min_replicas,
            max_replicas=w.max_replicas,
            capacity_per_replica=w.capacity_per_replica,
        )

    def _account(
        self,
        w: Workload,
        st: _WorkloadState,
        now: datetime,
        region: _RegionView,
        load_now: float | None,
        measured_watts: float | None = None,
        ran: int | None = None,
    ) -> IntervalAccount | None:
        """Account [last tick, now) at the replicas decided last tick, or at `ran` (the count
        the cluster runs at the end of the interval, when the decisions are in effect there),
        and the shadow's, with the carbon intensity the last tick saw (held over the interval).
        Elastic work progresses at the same replicas.

        With a measured power series, the actual watts are measured; the counterfactual keeps
        the measured load-dependent part and idles its own replica count:
        cf = cf_replicas * idle + (measured - replicas * idle)."""
        if st.last_at is None or now <= st.last_at:
            return None
        seconds = (now - st.last_at).total_seconds()
        replicas = st.replicas.current if ran is None else max(0, ran)
        cf_replicas = st.shadow.current
        if w.elastic is not None:
            st.remaining_work = max(
                0.0, st.remaining_work - w.elastic.throughput(replicas) * seconds
            )
            st.shadow_remaining = max(
                0.0, st.shadow_remaining - w.elastic.throughput(cf_replicas) * seconds
            )
            watts = cf_watts = w.power.busy_watts
        else:
            load = load_now if load_now is not None else 0.0
            cap = w.capacity_per_replica
            watts = w.power.replica_watts(load / (replicas * cap) if replicas else 0.0)
            cf_watts = w.power.replica_watts(load / (cf_replicas * cap) if cf_replicas else 0.0)
        if measured_watts is not None and replicas > 0:
            busy_part = max(0.0, measured_watts - replicas * w.power.idle_watts)
            watts = measured_watts / replicas
            cf_watts = (
                (cf_replicas * w.power.idle_watts + busy_part) / cf_replicas if cf_replicas else 0.0
            )
        return account_interval(
            workload=w.name,
            region=w.region,
            start=st.last_at,
            end=now,
            replicas=replicas,
            replica_watts=watts,
            counterfactual_replicas=cf_replicas,
            counterfactual_replica_watts=cf_watts,
            carbon=region.latest,
        )


def _fresh_state(w: Workload) -> _WorkloadState:
    work = w.elastic.total_work if w.elastic else 0.0
    return _WorkloadState(
        replicas=ReplicaState(w.min_replicas),
        shadow=ReplicaState(w.min_replicas),
        remaining_work=work,
        shadow_remaining=work,
    )


def _sum_totals(a: Totals, b: Totals) -> Totals:
    return Totals(*(x + y for x, y in zip(_totals(a), _totals(b), strict=True)))


def _fit(forecaster: Forecaster, history: RegularSeries) -> FittedModel:
    """Module-level so a process pool can pickle it."""
    return forecaster.fit(history)


def _totals(t: Totals) -> tuple[float, float, float, float]:
    return (t.energy_joules, t.counterfactual_energy_joules, t.emitted_g, t.counterfactual_g)


def _last_value(hist: RegularSeries | None) -> float | None:
    if hist is None or len(hist) == 0:
        return None
    valid = hist.values[~np.isnan(hist.values)]
    return float(valid[-1]) if valid.size else None


class ScalerService:
    """Runs a `ScalerLoop` on APScheduler: ticks every `tick_interval`, refits every
    `refit_interval` (its own job, so a slow refit never delays a tick)."""

    def __init__(
        self,
        loop: ScalerLoop,
        *,
        tick_interval: timedelta,
        refit_interval: timedelta,
        wall_clock: Clock,
        refit_executor: Executor | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.loop = loop
        self._executor = refit_executor
        self._tick_interval = tick_interval
        self._refit_interval = refit_interval
        self._wall = wall_clock
        self._log = logger or logging.getLogger("gridshift.scaler")
        self._scheduler = BackgroundScheduler(timezone="UTC")
        self.ticks_run = 0  # ticks this process ran (the loop's count includes restored ones)

    def _tick(self) -> None:
        snap = self.loop.tick()
        self.ticks_run += 1
        self._log.info("%s", tick_line(snap))

    def start(self) -> None:
        """Fit the models once (so the first tick can forecast), then schedule."""
        self.loop.refit(executor=self._executor)
        now = self._wall.now()
        self._scheduler.add_job(
            self._tick,
            IntervalTrigger(seconds=self._tick_interval.total_seconds(), timezone="UTC"),
            id="tick",
            next_run_time=now,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.add_job(
            self._refit,
            IntervalTrigger(seconds=self._refit_interval.total_seconds(), timezone="UTC"),
            id="refit",
            next_run_time=now + self._refit_interval,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self._scheduler.start()
        self._log.info(
            "scaler started: tick every %s, refit every %s",
            humanize_duration(self._tick_interval),
            humanize_duration(self._refit_interval),
        )

    def _refit(self) -> None:
        self.loop.refit(executor=self._executor)

    def shutdown(self) -> None:
        """Stop scheduling; a tick in progress finishes first."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
            self._log.info("stopped after %d ticks", self.ticks_run)
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)


def tick_line(snap: Snapshot) -> str:
    """One console line per tick: each workload's decision and mode, gCO2 saved so far."""
    parts = []
    for name, ws in sorted(snap.workloads.items()):
        stale = f", stale {'+'.join(ws.stale_inputs)}" if ws.stale_inputs else ""
        parts.append(f"{name} {ws.desired_replicas} ({ws.mode.value}{stale})")
    saved = sum(ws.saved_g for ws in snap.workloads.values())
    return (
        f"tick {snap.ticks_total} at {snap.taken_at:%Y-%m-%d %H:%M}Z: "
        + (", ".join(parts) or "no workloads")
        + f"; saved {saved:.1f} gCO2 so far"
    )
