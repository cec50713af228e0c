"""Ctrl-C like SIGTERM (`forecasts.platform.signals.stop_on_signals`).

Aspects: inside, SIGINT and SIGTERM set the event instead of raising KeyboardInterrupt or
ending the process; the previous handlers come back after; outside the main thread the
event is returned unarmed (handlers can only be set there)."""

from __future__ import annotations

import signal
import threading

import pytest

from forecasts.platform.signals import stop_on_signals


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_sets_the_event_and_handlers_come_back(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with stop_on_signals() as stop:
        assert not stop.is_set()
        signal.raise_signal(sig)  # no KeyboardInterrupt, the process lives on
        assert stop.is_set()
    assert signal.getsignal(sig) is before


def test_outside_the_main_thread_the_event_is_unarmed() -> None:
    seen: list[bool] = []
    # as inherited: a shell's background job starts with SIGINT ignored, not the default
    before = signal.getsignal(signal.SIGINT)

    def worker() -> None:
        with stop_on_signals() as stop:
            seen.append(stop.is_set())

    t = threading.Thread(target=worker)
    t.start()
    t.join(timeout=1)
    assert seen == [False]
    assert signal.getsignal(signal.SIGINT) is before
