"""Cron schedules (CI runs, recurring mode overrides) expanded to windows around a tick.

One cron implementation for the whole product: `forecasts.ci.CISchedule` (five-field crontab,
weekday 0 or 7 = Sunday, day of month OR day of week when both are restricted as POSIX cron
and Kubernetes CronJobs do, IANA zones with its documented DST rules). Schedules are parsed
once, when the workload is registered, so a bad expression fails at start-up with the
workload and field named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from forecasts.ci import CISchedule
from scaler.core.policy import CiWindow, OverrideWindow
from scaler.core.workload import CiSchedule, ModeOverride
from scaler.snapshot import Mode

__all__ = ["WorkloadSchedules", "cron_firings", "cron_schedule"]


def cron_schedule(expr: str, timezone: str, duration: timedelta, *, where: str) -> CISchedule:
    """`expr` in `timezone` parsed; ValueError naming `where`, the expression and the zone."""
    try:
        return CISchedule(name=where, cron=expr, duration=duration, timezone=timezone)
    except ValueError as exc:
        raise ValueError(f"{where}: invalid cron {expr!r} in zone {timezone!r}: {exc}") from exc


def cron_firings(schedule: CISchedule, *, start: datetime, end: datetime) -> list[datetime]:
    """Firing instants in [start, end), in UTC."""
    return list(schedule.fire_times(start=start, end=end))


@dataclass(frozen=True, slots=True)
class WorkloadSchedules:
    """One workload's parsed CI schedules and overrides."""

    ci: tuple[tuple[CiSchedule, CISchedule], ...]
    overrides: tuple[tuple[ModeOverride, CISchedule | None], ...]

    @classmethod
    def parse(
        cls, name: str, ci: Sequence[CiSchedule], overrides: Sequence[ModeOverride]
    ) -> WorkloadSchedules:
        return cls(
            tuple(
                (
                    c,
                    cron_schedule(
                        c.cron, c.timezone, c.duration, where=f"{name}.ci_schedules[{i}]"
                    ),
                )
                for i, c in enumerate(ci)
            ),
            tuple(
                (
                    o,
                    None
                    if o.cron is None or o.duration is None
                    else cron_schedule(
                        o.cron, o.timezone, o.duration, where=f"{name}.overrides[{i}]"
                    ),
                )
                for i, o in enumerate(overrides)
            ),
        )

    def ci_windows(self, *, now: datetime, ahead: timedelta) -> tuple[CiWindow, ...]:
        """CI runs overlapping [now, now + ahead)."""
        out: list[CiWindow] = []
        for sched, trig in self.ci:
            for fire in cron_firings(trig, start=now - sched.duration, end=now + ahead):
                if fire + sched.duration > now:
                    out.append(CiWindow(fire, fire + sched.duration, sched.extra_load))
        return tuple(out)

    def override_windows(self, *, now: datetime) -> tuple[OverrideWindow, ...]:
        """Overrides that could be active at `now` (the policy checks containment)."""
        out: list[OverrideWindow] = []
        for o, trig in self.overrides:
            if trig is None:
                assert o.until is not None
                out.append(OverrideWindow(Mode(o.mode), o.until, None, o.reason))
                continue
            assert o.duration is not None
            for fire in cron_firings(trig, start=now - o.duration, end=now + timedelta(0, 1)):
                out.append(OverrideWindow(Mode(o.mode), fire + o.duration, fire, o.reason))
        return tuple(out)
