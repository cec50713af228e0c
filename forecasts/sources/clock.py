"""`SystemClock`: the one place that reads the wall clock."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["SystemClock"]


class SystemClock:
    """The real clock, tz-aware UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)
