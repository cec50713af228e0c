"""`ScalerService`: the scaler's ticks on APScheduler (a real `BackgroundScheduler`, an hour
between scheduled ticks, so every tick after the first is one the test asked for).

Aspects: the first tick runs on start; `tick_now` ticks at once when idle; asked for while a
tick runs, it ticks again right after that one (never skipped, never two at once).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from forecasts.time import FrozenClock
from scaler.service import ScalerService
from tests.unit.test_loop import T0, make_loop, web

WAIT_S = 1.5


@pytest.mark.timeout(10)  # about 1 s alone (a scheduler thread); slack for a loaded machine
def test_tick_now_ticks_at_once_and_again_after_the_tick_in_progress() -> None:
    loop, _, _ = make_loop([web()])
    ticked = threading.Semaphore(0)
    hold = threading.Event()
    hold.set()
    running = threading.Event()
    inner = loop.tick

    def tick():  # signals each tick; waits on `hold` while the test keeps it running
        running.set()
        hold.wait(WAIT_S)
        snap = inner()
        ticked.release()
        return snap

    loop.tick = tick
    service = ScalerService(
        loop,
        tick_interval=timedelta(hours=1),
        refit_interval=timedelta(hours=1),
        wall_clock=FrozenClock(T0),
    )
    service.start()
    try:
        assert ticked.acquire(timeout=WAIT_S)  # the first tick, on start
        service.tick_now()
        assert ticked.acquire(timeout=WAIT_S)  # idle: at once
        assert service.ticks_run == 2
        hold.clear()
        running.clear()
        service.tick_now()
        assert running.wait(WAIT_S)  # the third tick is running (and held)
        service.tick_now()  # asked for during it
        hold.set()
        assert ticked.acquire(timeout=WAIT_S)
        assert ticked.acquire(timeout=WAIT_S)  # the one asked for, right after
        assert service.ticks_run == 4
        assert not ticked.acquire(timeout=0.05)  # and no more
    finally:
        hold.set()
        service.shutdown()
