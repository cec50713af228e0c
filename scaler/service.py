"""The scaler as a long-running service: `ScalerService` triggers a `ScalerLoop`'s ticks and
refits on APScheduler (3.x `BackgroundScheduler`, used only as the trigger; refits run as their
own job, so a slow refit never delays a tick), and `tick_line` is the console line per tick.
Replays do not use it: they call `ScalerLoop.tick()` in a loop with a `SteppingClock`.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from datetime import timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from forecasts.time import Clock, humanize_duration
from scaler.loop import ScalerLoop
from scaler.snapshot import Snapshot

__all__ = ["ScalerService", "tick_line"]


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
        self._again = threading.Event()  # a tick was asked for (`tick_now`)
        self._busy = False  # a tick is running
        self.ticks_run = 0  # ticks this process ran (the loop's count includes restored ones)

    def _tick(self) -> None:
        self._busy = True
        try:
            while True:  # once, and again when a tick was asked for while this one ran
                self._again.clear()
                snap = self.loop.tick()
                self.ticks_run += 1
                self._log.info("%s", tick_line(snap))
                if not self._again.is_set():
                    return
        finally:
            self._busy = False

    def tick_now(self) -> None:
        """Tick as soon as possible instead of at the next interval (the sharded scaler calls
        it when its shards change, so a shard's workloads are decided within the Lease
        duration and a round): now when idle, else right after the tick in progress, which
        may have listed its workloads before the change. The interval runs on from then."""
        self._again.set()
        if self._scheduler.running and not self._busy:
            self._scheduler.modify_job("tick", next_run_time=self._wall.now())

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
