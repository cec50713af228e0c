"""scaler.schedules (cron -> windows) and forecasts.sources.clock.AcceleratedClock.

Aspects: CI windows overlapping [now, now + ahead), including a run already in progress and
a cron read in a local timezone; `until` and cron overrides become override windows;
accelerated time runs `speed` times faster from its origin and refuses a non-positive speed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forecasts.sources.clock import AcceleratedClock
from forecasts.time import FrozenClock
from scaler.core.policy import CiWindow
from scaler.core.workload import CiSchedule, ModeOverride
from scaler.schedules import WorkloadSchedules
from scaler.snapshot import Mode

T = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # Monday


def test_ci_windows() -> None:
    sched = WorkloadSchedules.parse(
        "web",
        [
            CiSchedule("50 8 * * *", "UTC", timedelta(minutes=20), 5.0),  # running now
            CiSchedule("0 11 * * *", "Europe/Berlin", timedelta(minutes=20), 7.0),  # 10:00 UTC
            CiSchedule("0 12 * * *", "UTC", timedelta(minutes=20), 9.0),  # too far ahead
        ],
        [],
    )
    windows = sched.ci_windows(now=T, ahead=timedelta(hours=1, minutes=1))
    assert windows == (
        CiWindow(T - timedelta(minutes=10), T + timedelta(minutes=10), 5.0),
        CiWindow(T + timedelta(hours=1), T + timedelta(hours=1, minutes=20), 7.0),
    )


def test_override_windows() -> None:
    sched = WorkloadSchedules.parse(
        "web",
        [],
        [
            ModeOverride("performance", until=T + timedelta(hours=2), reason="launch"),
            ModeOverride("eco", cron="0 8 * * 1", duration=timedelta(hours=2)),
            ModeOverride("eco", cron="0 20 * * *", duration=timedelta(hours=1)),
        ],
    )
    windows = sched.override_windows(now=T)
    assert windows[0].mode is Mode.PERFORMANCE
    assert windows[0].contains(T)
    assert windows[1].start == T - timedelta(hours=1)
    assert windows[1].contains(T)
    assert len(windows) == 2  # the 20:00 window is not near


def test_accelerated_clock() -> None:
    base = FrozenClock(T)
    clock = AcceleratedClock(base, speed=60.0)
    assert clock.now() == T
    base.advance(timedelta(seconds=2))
    assert clock.now() == T + timedelta(minutes=2)
    with pytest.raises(ValueError, match="speed must be positive"):
        AcceleratedClock(base, speed=0.0)


def test_day_of_month_or_day_of_week_as_in_crontab() -> None:
    """Both restricted: a day matches if EITHER matches (POSIX cron, Kubernetes CronJobs):
    `0 9 1 * 1` fires on the 1st and on every Monday, not only on Mondays the 1st."""
    sched = WorkloadSchedules.parse(
        "web", [CiSchedule("0 9 1 * 1", "UTC", timedelta(minutes=20), 1.0)], []
    )
    april = datetime(2026, 4, 1, tzinfo=UTC)  # a Wednesday
    fired = {
        (april + timedelta(days=d)).day
        for d in range(30)
        if sched.ci_windows(now=april + timedelta(days=d, hours=9), ahead=timedelta(minutes=1))
    }
    assert fired == {1, 6, 13, 20, 27}


def test_bad_cron_names_the_workload_and_field() -> None:
    with pytest.raises(ValueError, match=r"web\.overrides\[0\]: invalid cron '0 25 \* \* \*'"):
        WorkloadSchedules.parse(
            "web", [], [ModeOverride("eco", cron="0 25 * * *", duration=timedelta(hours=1))]
        )


def test_weekday_crons_fire_on_crontab_days() -> None:
    """`1-5` is Monday to Friday, as in crontab (APScheduler 3.x alone would say Tue-Sat)."""
    sched = WorkloadSchedules.parse(
        "web", [CiSchedule("0 9 * * 1-5", "UTC", timedelta(minutes=20), 1.0)], []
    )
    days = []
    for d in range(7):
        at = T + timedelta(days=d)  # Monday 09:00 onwards
        if sched.ci_windows(now=at, ahead=timedelta(minutes=1)):
            days.append(at.strftime("%a"))
    assert days == ["Mon", "Tue", "Wed", "Thu", "Fri"]
