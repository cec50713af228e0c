"""Ctrl-C like SIGTERM: a clean stop for every long-running command.

Inside `stop_on_signals()`, SIGINT and SIGTERM set the returned event instead of raising
`KeyboardInterrupt` or ending the process, so the command finishes what it is doing (the tick
in progress), says so and exits 0. uvicorn installs its own handlers while it serves and
re-raises the signal it caught afterwards; that re-raise lands here and only sets the event.
Outside the main thread (where handlers cannot be installed) the event is returned unarmed.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

__all__ = ["STOP_SIGNALS", "stop_on_signals"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """SIGINT/SIGTERM set the yielded event while inside; the previous handlers after."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
