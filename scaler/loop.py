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

Each workload's tick has four steps (`_tick_workload`): its inputs (read here), the interval
just ended accounted, the decision (mode, then target) and its status; the last three are pure
and live in `scaler.core.tick`.

`ScalerLoop.refit()` fits the load models; it runs on its own schedule, off the tick's path,
and swaps the fitted models in by reference. `scaler.service.ScalerService` triggers ticks and
refits on APScheduler; replays call `tick()` in a loop with a `SteppingClock` instead.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from forecasts.forecast import (
    FittedModel,
    Forecast,
    Forecaster,
    PredictRequest,
    fit_each,
    predict_each,
)
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.platform.errors import SourceError
from forecasts.series import CarbonSeries, RegularSeries
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.carbon.forecasting import CarbonForecasting
from forecasts.sources.load import LoadSource
from forecasts.time import Clock, floor_to
from scaler.core.accounting import IntervalAccount, Ledger, Totals
from scaler.core.policy import PolicyParams, ReplicaState
from scaler.core.tick import (
    Decision,
    RegionView,
    TickInputs,
    WorkloadState,
    account_tick,
    decide_elastic_target,
    decide_interactive_target,
    decide_mode_tick,
    fresh_state,
    last_value,
    region_view,
    workload_status,
)
from scaler.core.workload import Workload
from scaler.inputs import LoadInputs
from scaler.schedules import WorkloadSchedules
from scaler.snapshot import Snapshot, SnapshotHolder, WorkloadStatus
from scaler.state import LoopCheckpoint, StateStore, WorkloadCheckpoint

__all__ = ["LoopSettings", "RefitReport", "ReplicaReader", "ScalerLoop"]

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


@dataclass(frozen=True, slots=True)
class _Fetched:
    """What one tick fetched for every workload at once: load by workload name, measured
    power by query (a series, or the error fetching it)."""

    loads: Mapping[str, RegularSeries | SourceError]
    powers: Mapping[str, RegularSeries | SourceError]


_Forecasted = tuple[Forecast | None, str | None]  # a load forecast, or why there is none
_T = TypeVar("_T")


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
        self._state = {w.name: fresh_state(w) for w in workloads}
        self._restorable: dict[str, WorkloadCheckpoint] = {}
        self._workload_source: Callable[[], Sequence[Workload]] | None = None
        self._models: Mapping[str, FittedModel] = {}
        self._last_region: dict[str, RegionView] = {}
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
                namespace=w.namespace,
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

    def continue_from(self, cp: LoopCheckpoint) -> None:
        """Continue the workloads a partial checkpoint names (shards this replica took over
        from another): their replicas, elastic work left and counters replace what this
        replica had for them (they started fresh here); every other workload, the ledger's
        other entries and the tick count stay. Workloads not listed yet continue from it
        when they appear (`set_workloads`)."""
        self._restorable.update(cp.workloads)
        restored = self._restore_workloads([w for w in self.workloads if w.name in cp.workloads])
        self._log.info(
            "continuing %d workloads taken over (checkpoint saved at %s), %d more when listed",
            restored,
            cp.saved_at.isoformat(),
            len(cp.workloads) - restored,
        )

    def _restore_workloads(self, workloads: Sequence[Workload]) -> int:
        """Continue each of `workloads` that the kept checkpoint names (once each), its
        counters replacing its own in the ledger (rebuilt once, not once per workload); how
        many."""
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
            own = by_workload.get(w.name)
            if own is not None:  # what this replica counted for it gives way to the checkpoint
                by_region[w.region] = _minus_totals(by_region.get(w.region, Totals()), own)
                total = _minus_totals(total, own)
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
        state: dict[str, WorkloadState] = {}
        schedules: dict[str, WorkloadSchedules] = {}
        added: list[Workload] = []
        for w in workloads:
            prev = old.get(w.name)
            st = self._state.get(w.name)
            if prev is None or st is None:
                st = fresh_state(w)
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
        if stored is not None and stored.partial:
            self.continue_from(stored)
        elif stored is not None:
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
        if executor is None:  # in one call where the model fits many histories at once
            fits = fit_each(self._forecaster, list(histories.values()))
            for name, fitted in zip(histories, fits, strict=True):
                if isinstance(fitted, ValueError):
                    self._log.warning("refit %s: %s (keeping the previous model)", name, fitted)
                    failed.append(name)
                else:
                    models[name] = fitted
        else:
            for name, hist in histories.items():
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

    def _region(self, region: str, now: datetime, logged: set[str]) -> RegionView:
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
        view = region_view(
            region,
            latest=latest,
            forecast=forecast,
            now=now,
            params=self._params,
            stale_after=self._settings.carbon_stale_after,
        )
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
        newest = hist.last_observed_index()
        if newest is None:
            return hist, True
        newest_end = hist.time_at(newest) + hist.step
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
        return last_value(hist)

    def _every_input(
        self,
        now: datetime,
        regions: Mapping[str, RegionView],
        logged: set[str],
        fetched: _Fetched,
    ) -> dict[str, TickInputs | Exception]:
        """Step 1 for every workload (`_inputs`), or the exception it raised, which fails
        that workload's tick only."""
        out: dict[str, TickInputs | Exception] = {}
        for w in self.workloads:
            try:
                out[w.name] = self._inputs(
                    w, self._state[w.name], now, regions[w.region], logged, fetched
                )
            except Exception as exc:  # raised again in that workload's own tick
                out[w.name] = exc
        return out

    def _forecasts(
        self, now: datetime, inputs: Mapping[str, TickInputs | Exception]
    ) -> dict[str, _Forecasted | Exception]:
        """Every interactive workload's load forecast (or why it has none) over the next
        decision step, all in one `predict_each` call: models that predict many fits at once
        do so. Should the batch fail unexpectedly, each is predicted on its own, and an
        exception fails that workload's tick only."""
        out: dict[str, _Forecasted | Exception] = {}
        names: list[str] = []
        requests: list[PredictRequest] = []
        ahead = now + self._params.decision_step + self._params.scale_up_lead
        for w in self.workloads:
            got = inputs.get(w.name)
            if w.elastic is not None or not isinstance(got, TickInputs):
                continue
            model = self._models.get(w.name)
            hist = got.history
            if model is None:
                out[w.name] = (None, "no fitted load model yet")
            elif hist is None:
                out[w.name] = (None, None)
            else:
                horizon = max(1, math.ceil((ahead - hist.end) / hist.step))
                names.append(w.name)
                requests.append(PredictRequest(model, horizon, hist))
        predicted: list[Forecast | Exception]
        try:
            predicted = list(predict_each(requests))
        except Exception:  # one bad model must not stop the others
            predicted = [_predict_one(r) for r in requests]
        for name, forecast in zip(names, predicted, strict=True):
            if isinstance(forecast, ValueError):
                out[name] = (None, f"load forecast failed: {forecast}")
            elif isinstance(forecast, Exception):
                out[name] = forecast
            else:
                out[name] = (forecast, None)
        return out

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
        inputs = self._every_input(now, regions, logged, fetched)
        forecasts = self._forecasts(now, inputs)
        for w in self.workloads:
            try:
                ran = actual[w.name][0] if w.name in effect else None
                self._start_from_actual(w, actual[w.name][0])
                status, account = self._tick_workload(
                    w,
                    now,
                    regions[w.region],
                    previous.get(w.region),
                    _ready(inputs[w.name]),
                    forecasts.get(w.name, (None, None)),
                    ran,
                    actual[w.name],
                )
            except Exception:  # one bad workload must not stop the others
                self._log.exception("tick %s failed; keeping its previous decision", w.name)
                self._count_error("internal")
                prev = self._state[w.name].last_status
                if prev is None:
                    continue
                replicas, note = actual[w.name]
                status = replace(prev, actual_replicas=replicas, actual_replicas_note=note)
                account = None
            statuses[w.name] = status
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
        region: RegionView,
        previous: RegionView | None,
        inputs: TickInputs,
        forecast: _Forecasted | Exception,
        ran: int | None = None,
        actual: tuple[int | None, str] = (None, NO_CLUSTER_NOTE),
    ) -> tuple[WorkloadStatus, IntervalAccount | None]:
        """One workload's decision, in four steps: its inputs (read for every workload
        first, `_every_input`, and its load forecast with every other's, `_forecasts`), the
        interval just ended accounted, the decision, its status. `ran` is its actual replica
        count when its decisions are in effect in the cluster (the interval is accounted at
        it); `actual` the replicas its target runs as the status shows them (count or None,
        why unknown)."""
        st = self._state[w.name]
        account, reasons = account_tick(
            w,
            st,
            now=now,
            region=previous or region,
            inputs=inputs,
            ran=ran,
            budget_window=self._settings.budget_window,
        )
        decision = decide_mode_tick(
            w,
            st,
            reasons,
            now=now,
            region=region,
            overrides=self._schedules[w.name].override_windows(now=now),
            params=self._params,
        )
        if w.elastic is not None:
            decide_elastic_target(
                w, st, decision, now=now, region=region, params=self._params, log=self._log
            )
        else:
            self._decide_interactive(w, st, now, inputs, decision, _ready(forecast))
        st.last_at = now
        model = self._models.get(w.name)
        status = workload_status(
            w,
            st,
            decision,
            now=now,
            region=region,
            inputs=inputs,
            account=account,
            totals=self._ledger.by_workload.get(w.name),
            data_note=self._settings.data_note,
            load_model=model.name if model is not None else None,
            actual=actual,
        )
        st.last_status = status
        return status, account

    def _inputs(
        self,
        w: Workload,
        st: WorkloadState,
        now: datetime,
        region: RegionView,
        logged: set[str],
        fetched: _Fetched,
    ) -> TickInputs:
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
        return TickInputs(hist, load_stale, last_value(hist), measured, tuple(stale_inputs))

    def _decide_interactive(
        self,
        w: Workload,
        st: WorkloadState,
        now: datetime,
        inputs: TickInputs,
        d: Decision,
        forecasted: _Forecasted,
    ) -> None:
        """An interactive workload: its load forecast, CI windows, then the target."""
        params = self._params
        forecast, why = forecasted
        if why:
            d.reasons.append(why)
        ci = self._schedules[w.name].ci_windows(
            now=now, ahead=params.decision_step + params.scale_up_lead
        )
        decide_interactive_target(
            w,
            st,
            d,
            forecast=forecast,
            load_stale=inputs.load_stale,
            ci_windows=ci,
            now=now,
            params=params,
        )


def _sum_totals(a: Totals, b: Totals) -> Totals:
    return Totals(*(x + y for x, y in zip(_totals(a), _totals(b), strict=True)))


def _minus_totals(a: Totals, b: Totals) -> Totals:
    return Totals(*(x - y for x, y in zip(_totals(a), _totals(b), strict=True)))


def _ready(got: _T | Exception) -> _T:
    """`got`, or raise the exception an earlier step of the tick stored for it."""
    if isinstance(got, Exception):
        raise got
    return got


def _predict_one(r: PredictRequest) -> Forecast | Exception:
    try:
        return r.model.predict(horizon=r.horizon, history=r.history)
    except Exception as exc:  # ValueError: no forecast; anything else fails that workload
        return exc


def _fit(forecaster: Forecaster, history: RegularSeries) -> FittedModel:
    """Module-level so a process pool can pickle it."""
    return forecaster.fit(history)


def _totals(t: Totals) -> tuple[float, float, float, float]:
    return (t.energy_joules, t.counterfactual_energy_joules, t.emitted_g, t.counterfactual_g)
