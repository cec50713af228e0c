"""Cron schedules (CI runs, recurring mode overrides) expanded to windows around a tick.

Expressions are standard five-field crontab (weekday 0 or 7 = Sunday), evaluated by
APScheduler's `CronTrigger` after translating the weekday field (APScheduler 3.x numbers
weekdays from Monday = 0). Triggers are parsed once, when the workload is registered, so a bad
expression fails at start-up with the workload and field named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from apscheduler.triggers.cron import CronTrigger

from forecasts.time import UTC
from scaler.policy import CiWindow, OverrideWindow
from scaler.snapshot import Mode
from scaler.workload import CiSchedule, ModeOverride

__all__ = ["WorkloadSchedules", "cron_firings", "crontab_day_of_week"]


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_day_of_week(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler 3.x day names.

    APScheduler 3.x reads weekday *numbers* with 0 = Monday (its issue 286), so
    `CronTrigger.from_crontab("0 9 * * 1-5")` would fire Tuesday to Saturday. Names mean the
    same in both, so numbers, ranges and steps are expanded to an explicit list of names."""
    if field == "*":
        return "*"
    out: list[str] = []
    for part in field.split(","):
        spec, _, step_text = part.partition("/")
        if spec.replace("-", "").isalpha():  # names and name ranges mean the same in both
            out.append(part)
            continue
        step = int(step_text) if step_text else 1
        if spec == "*":
            lo, hi = 0, 6
        else:
            first, _, last = spec.partition("-")
            lo = int(first)
            hi = int(last) if last else (6 if step_text else lo)
        if not 0 <= lo <= hi <= 7 or step < 1:
            raise ValueError(f"day of week {part!r} is out of range 0-7")
        out.extend(_DAY_NAMES[d % 7] for d in range(lo, hi + 1, step))
    return ",".join(dict.fromkeys(out))


def _trigger(expr: str, timezone: str, *, where: str) -> CronTrigger:
    try:
        fields = expr.split()
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields, got {len(fields)}")
        minute, hour, day, month, dow = fields
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=crontab_day_of_week(dow.lower()),
            timezone=timezone,
        )
    except Exception as exc:  # APScheduler raises ValueError/LookupError variants
        raise ValueError(f"{where}: invalid cron {expr!r} in zone {timezone!r}: {exc}") from exc


def cron_firings(trigger: CronTrigger, *, start: datetime, end: datetime) -> list[datetime]:
    """Firing instants in [start, end), in UTC."""
    out: list[datetime] = []
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire < end:
        out.append(fire.astimezone(UTC))
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return out


@dataclass(frozen=True, slots=True)
class WorkloadSchedules:
    """One workload's parsed CI schedules and overrides."""

    ci: tuple[tuple[CiSchedule, CronTrigger], ...]
    overrides: tuple[tuple[ModeOverride, CronTrigger | None], ...]

    @classmethod
    def parse(
        cls, name: str, ci: Sequence[CiSchedule], overrides: Sequence[ModeOverride]
    ) -> WorkloadSchedules:
        return cls(
            tuple(
                (c, _trigger(c.cron, c.timezone, where=f"{name}.ci_schedules[{i}]"))
                for i, c in enumerate(ci)
            ),
            tuple(
                (
                    o,
                    None
                    if o.cron is None
                    else _trigger(o.cron, o.timezone, where=f"{name}.overrides[{i}]"),
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
