"""CI schedules: cron expressions in a time zone -> run instants -> model regressors.

A `CISchedule` is a 5-field cron expression (the syntax of Kubernetes CronJobs, KEDA's cron
scaler and GitHub Actions: minute, hour, day of month, month, day of week), an IANA time zone,
an expected run duration and, if known, the extra load one run adds (in the load series' unit).

Cron semantics:

- Fields accept `*`, numbers, `a-b` ranges, `/n` steps (`*/15`, `1-30/5`, `5/15` = `5-max/15`),
  comma lists, month names `jan`..`dec` and weekday names `sun`..`sat` (case-insensitive).
  Day of week counts from 0 = Sunday; 7 is Sunday too. Macros: `@yearly`/`@annually`,
  `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`.
- When both day of month and day of week are restricted (neither starts with `*`), a day
  matches if **either** matches (POSIX cron, Kubernetes' robfig/cron, GitHub Actions).
- Instants come from APScheduler's `CronTrigger` evaluated in the schedule's zone, which gives
  these DST rules: a wall time skipped by a spring-forward transition fires at that wall time
  read with the old offset (01:30 on the Europe/London spring-forward day fires at 01:30 UTC,
  i.e. 02:30 BST); a wall time that occurs twice on fall-back fires twice (once per
  occurrence, as robfig/cron does).
- Rejected with a message naming the field: 6- or 7-field expressions (seconds/years),
  Quartz extras (`?`, `L`, `W`, `#`), values out of range, reversed ranges, zero steps, and
  day/month combinations that can never occur (`0 0 31 2 *`).

Regressors: `regressor_matrix` gives one column per schedule and one row per grid step; the
value is the mean number of runs in progress during the step, i.e. the fraction of the step
covered by a run (greater than 1 only while runs of the same schedule overlap).

Uplift learning (`learn_uplift`): ordinary least squares of the load on a smooth seasonal
baseline (intercept, linear trend, daily Fourier terms and, with two weeks of history or more,
weekly ones) plus the regressors of the schedules whose extra load is unknown (known ones are
subtracted first). A smooth baseline cannot take up a run's sharp, short plateau, so even a
job that runs every day at the same time is separated from the daily pattern, which
per-hour dummies or an in-run/out-of-run difference at the same hour cannot do. A schedule is
left unestimated (with the reason) when it never runs in the history, or when its regressor is
(almost) a combination of the baseline and the other regressors.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import numpy.typing as npt
from apscheduler.triggers.cron import CronTrigger

from forecasts.series import RegularSeries
from forecasts.time import UTC, ensure_utc, parse_duration, to_epoch_s

__all__ = [
    "CIRun",
    "CISchedule",
    "CronExpression",
    "UpliftEstimate",
    "expand_runs",
    "extra_load",
    "learn_uplift",
    "regressor_matrix",
    "regressors_for",
    "with_learned_uplift",
]

FloatArray = npt.NDArray[np.float64]

_FIELD_NAMES = ("minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
    )
}
_WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_NAMES: tuple[Mapping[str, int], ...] = ({}, {}, {}, _MONTHS, _WEEKDAYS)
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_ITEM = re.compile(r"^(?P<range>\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")
_APS_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _field_values(index: int, text: str, expr: str) -> tuple[int, ...]:
    """The sorted values one cron field selects; ValueError naming the field otherwise."""
    name = _FIELD_NAMES[index]
    lo, hi = _BOUNDS[index]
    names = _NAMES[index]

    def fail(problem: str) -> ValueError:
        return ValueError(f"cron {expr!r}: {name} field {text!r}: {problem}")

    def number(token: str) -> int:
        if token in names:
            return names[token]
        if not token.isdigit():
            allowed = f" or a name ({', '.join(names)})" if names else ""
            return_msg = f"{token!r} is not a number{allowed}"
            if token in {"?", "l", "w"} or "#" in token or token.endswith(("l", "w")):
                return_msg += " (Quartz extensions ?, L, W and # are not cron syntax)"
            raise fail(return_msg)
        value = int(token)
        if not lo <= value <= hi:
            raise fail(f"value {value} is out of range {lo}-{hi}")
        return value

    selected: set[int] = set()
    for item in text.lower().split(","):
        match = _ITEM.match(item)
        if match is None:
            hint = " (Quartz extensions ?, L, W and # are not cron syntax)" if item else ""
            raise fail(f"cannot parse {item!r}{hint}")
        rng, step_text = match.group("range"), match.group("step")
        step = 1
        if step_text is not None:
            step = int(step_text)
            if step == 0:
                raise fail("step /0 is not allowed")
        if rng == "*":
            first, last = lo, hi
        elif "-" in rng:
            a, b = rng.split("-", 1)
            first, last = number(a), number(b)
            if first > last:
                raise fail(f"range {rng!r} runs backwards ({first} > {last})")
        else:
            first = number(rng)
            last = hi if step_text is not None else first
        selected.update(range(first, last + 1, step))
    if index == 4:
        selected = {v % 7 for v in selected}
    return tuple(sorted(selected))


@dataclass(frozen=True, slots=True)
class CronExpression:
    """A validated 5-field cron expression (see the module docstring for the syntax)."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, text: str) -> CronExpression:
        expr = text.strip()
        body = _MACROS.get(expr.lower(), expr)
        if body.startswith("@"):
            raise ValueError(
                f"cron {text!r}: unknown macro; use one of {', '.join(sorted(_MACROS))} "
                f"or five fields"
            )
        parts = body.split()
        if len(parts) != 5:
            extra = ""
            if len(parts) in (6, 7):
                extra = " (seconds or year fields are not supported: drop them)"
            raise ValueError(
                f"cron {text!r}: expected 5 fields (minute hour day-of-month month "
                f"day-of-week), got {len(parts)}{extra}"
            )
        values = [_field_values(i, part, text) for i, part in enumerate(parts)]
        minutes, hours, days, months, weekdays = values
        days_restricted = not parts[2].startswith("*")
        weekdays_restricted = not parts[4].startswith("*")
        if not (days_restricted and weekdays_restricted) and not any(
            d <= _DAYS_IN_MONTH[m - 1] for m in months for d in days
        ):
            raise ValueError(
                f"cron {text!r}: day-of-month field {parts[2]!r} never occurs in "
                f"month field {parts[3]!r}, so the schedule would never fire"
            )
        return cls(
            text=expr,
            minutes=minutes,
            hours=hours,
            days=days,
            months=months,
            weekdays=weekdays,
            days_restricted=days_restricted,
            weekdays_restricted=weekdays_restricted,
        )

    def triggers(self, zone: ZoneInfo) -> tuple[CronTrigger, ...]:
        """APScheduler triggers whose union is this expression (two when day of month and
        day of week are both restricted: cron ORs them, APScheduler ANDs its fields)."""

        def join(values: Sequence[int], lo: int, hi: int) -> str:
            if values == tuple(range(lo, hi + 1)):
                return "*"
            return ",".join(str(v) for v in values)

        common = {
            "minute": join(self.minutes, 0, 59),
            "hour": join(self.hours, 0, 23),
            "month": join(self.months, 1, 12),
            "timezone": zone,
        }
        # APScheduler numbers weekdays from Monday; names avoid the off-by-one.
        weekdays = ",".join(_APS_WEEKDAYS[d] for d in self.weekdays)
        days = join(self.days, 1, 31)
        if self.days_restricted and self.weekdays_restricted:
            return (
                CronTrigger(day=days, day_of_week="*", **common),
                CronTrigger(day="*", day_of_week=weekdays, **common),
            )
        return (CronTrigger(day=days, day_of_week=weekdays, **common),)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"timezone {name!r} is not an IANA time zone name (e.g. 'Europe/London', 'UTC')"
        ) from None


@dataclass(frozen=True, slots=True)
class CISchedule:
    """A recurring CI job that adds load: cron in `timezone`, each run lasting `duration`.

    `extra_load` is what one run adds to the load (in the load series' unit); None means
    unknown, to be learned from history with `learn_uplift`.
    """

    name: str
    cron: str
    duration: timedelta
    timezone: str = "UTC"
    extra_load: float | None = None
    _expression: CronExpression = field(init=False, repr=False, compare=False)
    _triggers: tuple[CronTrigger, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("schedule name is empty")
        label = f"schedule {self.name!r}"
        try:
            expression = CronExpression.parse(self.cron)
            zone = _zone(self.timezone)
        except ValueError as exc:
            raise ValueError(f"{label}: {exc}") from None
        if self.duration <= timedelta(0):
            raise ValueError(f"{label}: duration must be positive, got {self.duration}")
        if self.extra_load is not None and not math.isfinite(self.extra_load):
            raise ValueError(f"{label}: extra_load must be finite, got {self.extra_load}")
        object.__setattr__(self, "_expression", expression)
        object.__setattr__(self, "_triggers", expression.triggers(zone))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, object]) -> CISchedule:
        """From configuration: keys name, cron, duration ('45m' or seconds), timezone,
        extra_load. Unknown keys are an error."""
        known = {"name", "cron", "duration", "timezone", "extra_load"}
        unknown = sorted(set(raw) - known)
        label = f"schedule {raw.get('name', '?')!r}"
        if unknown:
            raise ValueError(f"{label}: unknown keys {unknown} (allowed: {sorted(known)})")
        for key in ("name", "cron", "duration"):
            if key not in raw:
                raise ValueError(f"{label}: missing key {key!r}")
        duration_raw = raw["duration"]
        try:
            duration = (
                timedelta(seconds=float(duration_raw))
                if isinstance(duration_raw, int | float)
                else parse_duration(str(duration_raw))
            )
        except ValueError as exc:
            raise ValueError(f"{label}: duration: {exc}") from None
        extra = raw.get("extra_load")
        if extra is not None and not isinstance(extra, int | float):
            raise ValueError(f"{label}: extra_load must be a number, got {extra!r}")
        return cls(
            name=str(raw["name"]),
            cron=str(raw["cron"]),
            duration=duration,
            timezone=str(raw.get("timezone", "UTC")),
            extra_load=None if extra is None else float(extra),
        )

    @property
    def expression(self) -> CronExpression:
        return self._expression

    def fire_times(self, *, start: datetime, end: datetime) -> tuple[datetime, ...]:
        """UTC instants at which runs start, in [start, end)."""
        start = ensure_utc(start, name="start")
        end = ensure_utc(end, name="end")
        found: set[datetime] = set()
        for trigger in self._triggers:
            previous: datetime | None = None
            now = start
            while True:
                fire = trigger.get_next_fire_time(previous, now)
                if fire is None:  # pragma: no cover - APScheduler's year-9999 cut-off
                    break
                # Feed APScheduler its own zone-aware value back: the UTC copy loses the
                # fold of a repeated wall time and APScheduler would never get past it.
                at = fire.astimezone(UTC)
                if at >= end:
                    break
                found.add(at)
                previous = now = fire
        return tuple(sorted(found))


@dataclass(frozen=True, slots=True)
class CIRun:
    """One run of a schedule: [start, end) in UTC."""

    schedule: str
    start: datetime
    end: datetime


def expand_runs(
    schedules: Sequence[CISchedule], *, start: datetime, end: datetime
) -> tuple[CIRun, ...]:
    """Every run that overlaps [start, end), ordered by start then schedule name."""
    start = ensure_utc(start, name="start")
    end = ensure_utc(end, name="end")
    if end <= start:
        raise ValueError(f"end {end.isoformat()} must be after start {start.isoformat()}")
    runs = [
        CIRun(schedule=s.name, start=t, end=t + s.duration)
        for s in schedules
        for t in s.fire_times(start=start - s.duration + timedelta(microseconds=1), end=end)
    ]
    return tuple(sorted(runs, key=lambda r: (r.start, r.schedule)))


def _coverage(starts_s: FloatArray, duration_s: float, edges_s: FloatArray) -> FloatArray:
    """Run-seconds between consecutive edges divided by the step (mean runs in progress).

    Uses F(x) = sum over runs of clip(x - s, 0, d), the run time accumulated up to x.
    """
    origin = edges_s[0]  # small offsets keep the prefix sums exact enough
    s = np.sort(starts_s) - origin
    edges = edges_s - origin
    prefix = np.concatenate(([0.0], np.cumsum(s)))
    done = np.searchsorted(s, edges - duration_s, side="right")
    begun = np.searchsorted(s, edges, side="right")
    partial = begun - done
    accumulated = done * duration_s + partial * edges - (prefix[begun] - prefix[done])
    coverage: FloatArray = np.diff(accumulated) / np.diff(edges)
    return coverage


def _check_unique(schedules: Sequence[CISchedule]) -> None:
    names = [s.name for s in schedules]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"schedule names must be unique, repeated: {dupes}")


def regressor_matrix(
    schedules: Sequence[CISchedule], *, start: datetime, step: timedelta, steps: int
) -> FloatArray:
    """Shape (steps, len(schedules)): runs in progress during each step, per schedule.

    Row i covers [start + i*step, start + (i+1)*step); column j is `schedules[j]`. Works the
    same for history (exog) and for a forecast horizon (exog_future).
    """
    start = ensure_utc(start, name="start")
    if step <= timedelta(0):
        raise ValueError(f"step must be positive, got {step}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    _check_unique(schedules)
    out = np.zeros((steps, len(schedules)))
    if steps == 0:
        return out
    step_s = step.total_seconds()
    edges = to_epoch_s(start) + np.arange(steps + 1, dtype=float) * step_s
    end = start + step * steps
    for j, schedule in enumerate(schedules):
        fires = schedule.fire_times(start=start - schedule.duration, end=end)
        starts_s = np.array([to_epoch_s(t) for t in fires], dtype=float)
        out[:, j] = _coverage(starts_s, schedule.duration.total_seconds(), edges)
    return out


def regressors_for(series: RegularSeries, schedules: Sequence[CISchedule]) -> FloatArray:
    """`regressor_matrix` on `series`' grid."""
    return regressor_matrix(schedules, start=series.start, step=series.step, steps=len(series))


def extra_load(
    schedules: Sequence[CISchedule], *, start: datetime, step: timedelta, steps: int
) -> FloatArray:
    """Load the schedules add at each step: regressors times each `extra_load`, summed."""
    unknown = [s.name for s in schedules if s.extra_load is None]
    if unknown:
        raise ValueError(
            f"extra_load is unknown for {unknown}: set it or learn it with with_learned_uplift"
        )
    x = regressor_matrix(schedules, start=start, step=step, steps=steps)
    loads = np.array([s.extra_load for s in schedules], dtype=float)
    return x @ loads if schedules else np.zeros(steps)


# --------------------------------------------------------------------------- uplift
@dataclass(frozen=True, slots=True)
class UpliftEstimate:
    """A schedule's learned extra load per run, or why it could not be learned.

    `stderr` is the OLS standard error; `in_run_steps` counts history steps a run touched.
    """

    schedule: str
    extra_load: float | None
    stderr: float | None
    in_run_steps: int
    note: str = ""


def _baseline(
    epoch_s: FloatArray, *, daily_harmonics: int, weekly_harmonics: int
) -> tuple[FloatArray, list[str]]:
    span = float(epoch_s[-1] - epoch_s[0]) if epoch_s.size else 0.0
    centred = epoch_s - epoch_s.mean() if epoch_s.size else epoch_s
    cols = [np.ones_like(epoch_s), centred / max(span, 1.0)]
    names = ["intercept", "trend"]
    periods = [(86_400.0, daily_harmonics, "daily")]
    if span >= 14 * 86_400.0:
        periods.append((7 * 86_400.0, weekly_harmonics, "weekly"))
    for period, harmonics, label in periods:
        for k in range(1, harmonics + 1):
            angle = 2 * np.pi * k * epoch_s / period
            cols += [np.sin(angle), np.cos(angle)]
            names += [f"{label} sin {k}", f"{label} cos {k}"]
    return np.column_stack(cols), names


def _residualise(design: FloatArray, column: int) -> FloatArray:
    """Column `column` of `design` minus its least-squares fit on the other columns."""
    others = np.delete(design, column, axis=1)
    coef, *_ = np.linalg.lstsq(others, design[:, column], rcond=None)
    resid: FloatArray = design[:, column] - others @ coef
    return resid


def _regressors(
    history: RegularSeries, schedules: Sequence[CISchedule], given: FloatArray | None
) -> FloatArray:
    """`given` checked against the history and schedules, or computed."""
    if given is None:
        return regressors_for(history, schedules)
    x_all = np.asarray(given, dtype=float)
    if x_all.shape != (len(history), len(schedules)):
        raise ValueError(
            f"regressors have shape {x_all.shape}, expected "
            f"({len(history)}, {len(schedules)}) (steps x schedules)"
        )
    return x_all


def _drop_explained(
    xr: FloatArray,
    x_all: FloatArray,
    schedules: Sequence[CISchedule],
    *,
    candidates: list[int],
    estimates: dict[int, UpliftEstimate],
) -> None:
    """Drop from `candidates` the regressors the baseline and the others explain (residual
    ~ 0), worst first, each with its estimate saying so."""
    sizes = (x_all * x_all).sum(axis=0)
    while candidates:
        sub = xr[:, candidates]
        unexplained = {}
        for pos, j in enumerate(candidates):
            resid = _residualise(sub, pos)
            unexplained[j] = float(resid @ resid) / float(sizes[j])
        worst = min(candidates, key=unexplained.__getitem__)
        if unexplained[worst] >= 1e-6:
            break
        estimates[worst] = UpliftEstimate(
            schedules[worst].name,
            None,
            None,
            int((x_all[:, worst] > 0).sum()),
            "indistinguishable from the seasonal baseline or other schedules "
            "(it runs in a fixed pattern the baseline also fits)",
        )
        candidates.remove(worst)


def _fit(
    xr: FloatArray,
    yr: FloatArray,
    x_all: FloatArray,
    schedules: Sequence[CISchedule],
    *,
    base_columns: int,
    candidates: list[int],
    estimates: dict[int, UpliftEstimate],
) -> None:
    """Least squares of the residualised load on the `candidates`' residualised regressors:
    each one's uplift and its standard error."""
    sub = xr[:, candidates]
    coef, *_ = np.linalg.lstsq(sub, yr, rcond=None)
    resid = yr - sub @ coef
    dof = max(sub.shape[0] - base_columns - sub.shape[1], 1)
    sigma2 = float(resid @ resid) / dof
    for pos, j in enumerate(candidates):
        # var(beta_j) = sigma^2 / ||x_j residualised on the baseline and the others||^2.
        r = _residualise(sub, pos)
        estimates[j] = UpliftEstimate(
            schedules[j].name,
            float(coef[pos]),
            math.sqrt(sigma2 / float(r @ r)),
            int((x_all[:, j] > 0).sum()),
            "least squares on a seasonal baseline",
        )


def learn_uplift(
    history: RegularSeries,
    schedules: Sequence[CISchedule],
    *,
    daily_harmonics: int = 3,
    weekly_harmonics: int = 2,
    min_in_run_steps: int = 3,
    regressors: FloatArray | None = None,
) -> tuple[UpliftEstimate, ...]:
    """Estimate each schedule's extra load per run from `history` (method in the module doc).

    Schedules with a known `extra_load` are not re-estimated: their load is subtracted first
    and their estimate repeats the given value. NaN steps of `history` are ignored.
    `regressors` may pass `regressors_for(history, schedules)` when the caller has it already.
    """
    if daily_harmonics < 0 or weekly_harmonics < 0:
        raise ValueError("harmonics must be >= 0")
    _check_unique(schedules)
    x_all = _regressors(history, schedules, regressors)
    y = np.array(history.values, dtype=float)
    known = [j for j, s in enumerate(schedules) if s.extra_load is not None]
    if known:
        loads = np.array([schedules[j].extra_load for j in known], dtype=float)
        y = y - x_all[:, known] @ loads
    rows = np.isfinite(y)
    base, _ = _baseline(
        history.epoch_s()[rows],
        daily_harmonics=daily_harmonics,
        weekly_harmonics=weekly_harmonics,
    )
    y = y[rows]
    x_all = x_all[rows]
    estimates: dict[int, UpliftEstimate] = {}
    for j in known:
        s = schedules[j]
        in_run = int((x_all[:, j] > 0).sum())
        estimates[j] = UpliftEstimate(s.name, s.extra_load, None, in_run, "given")
    candidates = [j for j in range(len(schedules)) if j not in estimates]
    for j in list(candidates):
        in_run = int((x_all[:, j] > 0).sum())
        if in_run < min_in_run_steps:
            estimates[j] = UpliftEstimate(
                schedules[j].name,
                None,
                None,
                in_run,
                f"ran during {in_run} measured steps of the history; need {min_in_run_steps}",
            )
            candidates.remove(j)
    # Frisch-Waugh-Lovell: take the baseline out of the load and of every regressor once
    # (an orthonormal basis from QR), then work with the few regressor columns only.
    basis, _ = np.linalg.qr(base)
    xr = x_all - basis @ (basis.T @ x_all)
    yr = y - basis @ (basis.T @ y)
    _drop_explained(xr, x_all, schedules, candidates=candidates, estimates=estimates)
    if candidates:
        _fit(
            xr,
            yr,
            x_all,
            schedules,
            base_columns=base.shape[1],
            candidates=candidates,
            estimates=estimates,
        )
    return tuple(estimates[j] for j in range(len(schedules)))


def with_learned_uplift(
    schedules: Sequence[CISchedule],
    history: RegularSeries,
    *,
    daily_harmonics: int = 3,
    weekly_harmonics: int = 2,
    min_in_run_steps: int = 3,
) -> tuple[tuple[CISchedule, ...], tuple[UpliftEstimate, ...]]:
    """Schedules with `extra_load` filled in from `learn_uplift` where it was unknown and
    could be learned (others unchanged), plus the estimates."""
    estimates = learn_uplift(
        history,
        schedules,
        daily_harmonics=daily_harmonics,
        weekly_harmonics=weekly_harmonics,
        min_in_run_steps=min_in_run_steps,
    )
    updated = tuple(
        replace(s, extra_load=e.extra_load)
        if s.extra_load is None and e.extra_load is not None
        else s
        for s, e in zip(schedules, estimates, strict=True)
    )
    return updated, estimates
