"""forecasts.ci: cron parsing and validation, expansion, DST, regressors and uplift learning.

Aspects: the accepted syntax (steps, ranges, names, 7 = Sunday, macros); rejected
expressions with the field named; schedule validation and from_mapping; weekday numbering
(0 = Sunday, unlike APScheduler's own); day-of-month OR day-of-week when both are restricted;
Europe/London spring-forward and fall-back; runs overlapping a window; regressor coverage
(partial steps, runs begun before the window, overlapping runs) and its agreement with
`expand_runs` (hypothesis); fire times against a brute-force POSIX-cron reference
(hypothesis; all 1,878 valid combinations of the sampled fields were also checked once, offline);
extra_load; uplift learned from synthetic data with a known
uplift, including a job that runs daily at a fixed hour, plus the unidentifiable cases.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasts.ci import (
    CISchedule,
    CronExpression,
    expand_runs,
    extra_load,
    learn_uplift,
    regressor_matrix,
    regressors_for,
    with_learned_uplift,
)
from forecasts.series import RegularSeries

H = timedelta(hours=1)
M = timedelta(minutes=1)
MON = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def _utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# ----------------------------------------------------------------------------- syntax
@pytest.mark.parametrize(
    ("text", "field", "values"),
    [
        pytest.param("*/15 * * * *", "minutes", (0, 15, 30, 45), id="step"),
        pytest.param("5/15 * * * *", "minutes", (5, 20, 35, 50), id="start/step"),
        pytest.param("1-10/3 * * * *", "minutes", (1, 4, 7, 10), id="range/step"),
        pytest.param("0 9-11,14 * * *", "hours", (9, 10, 11, 14), id="range and list"),
        pytest.param("0 0 1,15 * *", "days", (1, 15), id="days"),
        pytest.param("0 0 * JAN,jul-aug *", "months", (1, 7, 8), id="month names"),
        pytest.param("0 0 * * mon-fri", "weekdays", (1, 2, 3, 4, 5), id="weekday names"),
        pytest.param("0 0 * * 7", "weekdays", (0,), id="7 is sunday"),
        pytest.param("0 0 * * 5-7", "weekdays", (0, 5, 6), id="range to 7"),
        pytest.param("0 0 * * */2", "weekdays", (0, 2, 4, 6), id="weekday step from sunday"),
        pytest.param("@hourly", "hours", tuple(range(24)), id="@hourly"),
        pytest.param("@weekly", "weekdays", (0,), id="@weekly"),
        pytest.param("@yearly", "months", (1,), id="@yearly"),
    ],
)
def test_accepted_syntax(text: str, field: str, values: tuple[int, ...]) -> None:
    assert getattr(CronExpression.parse(text), field) == values


@pytest.mark.parametrize(
    ("text", "match"),
    [
        pytest.param("0 0 9 * * *", "expected 5 fields.*got 6.*seconds or year", id="6 fields"),
        pytest.param("0 0 9 * * * 2024", "got 7", id="7 fields"),
        pytest.param("0 9 * *", "got 4", id="4 fields"),
        pytest.param("", "got 0", id="empty"),
        pytest.param("60 * * * *", "minute field '60': value 60 is out of range 0-59", id="minute"),
        pytest.param("0 24 * * *", "hour field '24'.*0-23", id="hour"),
        pytest.param("0 0 0 * *", "day-of-month field '0'.*1-31", id="day zero"),
        pytest.param("0 0 * 13 *", "month field '13'.*1-12", id="month"),
        pytest.param("0 0 * * 8", "day-of-week field '8'.*0-7", id="weekday"),
        pytest.param("30-10 * * * *", "minute field.*runs backwards", id="reversed range"),
        pytest.param("*/0 * * * *", "minute field.*step /0", id="zero step"),
        pytest.param("0 0 ? * *", "day-of-month field.*Quartz", id="quartz ?"),
        pytest.param("0 0 L * *", "day-of-month field.*Quartz", id="quartz L"),
        pytest.param("0 0 * * 1#2", "day-of-week field.*Quartz", id="quartz #"),
        pytest.param("0 0 15W * *", "day-of-month field.*Quartz", id="quartz W"),
        pytest.param("0 0 * foo *", "month field 'foo'.*not a number or a name", id="bad name"),
        pytest.param("0 0 * * mon-", "day-of-week field", id="dangling range"),
        pytest.param("0 0 31 2 *", "never occurs.*never fire", id="31 february"),
        pytest.param("0 0 30,31 2 *", "never occurs", id="impossible set"),
        pytest.param("@every 5m", "unknown macro", id="@every"),
    ],
)
def test_rejected_expressions_name_the_field(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CronExpression.parse(text)


def test_impossible_day_is_fine_when_weekday_can_match() -> None:
    # Both restricted: 31 February OR any Monday -> fires on Mondays.
    expr = CronExpression.parse("0 0 31 2 mon")
    assert expr.days_restricted
    assert expr.weekdays_restricted


def _schedule(cron: str, **kwargs: Any) -> CISchedule:
    base: dict[str, Any] = {"name": "job", "cron": cron, "duration": 30 * M}
    return CISchedule(**(base | kwargs))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"timezone": "Mars/Olympus"}, "'Mars/Olympus' is not an IANA", id="zone"),
        pytest.param({"timezone": "../etc"}, "not an IANA", id="path zone"),
        pytest.param({"duration": timedelta(0)}, "duration must be positive", id="duration"),
        pytest.param({"extra_load": float("nan")}, "extra_load must be finite", id="nan load"),
        pytest.param({"cron": "61 * * * *"}, "schedule 'job': cron .*minute", id="cron"),
        pytest.param({"name": " "}, "name is empty", id="name"),
    ],
)
def test_schedule_validation(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _schedule(kwargs.pop("cron", "0 * * * *"), **kwargs)


def test_from_mapping() -> None:
    got = CISchedule.from_mapping(
        {
            "name": "nightly",
            "cron": "0 2 * * *",
            "duration": "1h30m",
            "timezone": "Europe/Paris",
            "extra_load": 40,
        }
    )
    assert got == CISchedule(
        name="nightly",
        cron="0 2 * * *",
        duration=90 * M,
        timezone="Europe/Paris",
        extra_load=40.0,
    )
    seconds = CISchedule.from_mapping({"name": "x", "cron": "@daily", "duration": 600})
    assert seconds.duration == 10 * M
    assert seconds.timezone == "UTC"
    assert seconds.extra_load is None
    assert seconds.expression.hours == (0,)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        pytest.param(
            {"name": "x", "cron": "@daily", "duration": "1h", "tz": "UTC"},
            "unknown keys \\['tz'\\]",
            id="unknown key",
        ),
        pytest.param({"name": "x", "cron": "@daily"}, "missing key 'duration'", id="missing"),
        pytest.param(
            {"name": "x", "cron": "@daily", "duration": "soon"},
            "schedule 'x': duration: invalid duration",
            id="bad duration",
        ),
        pytest.param(
            {"name": "x", "cron": "@daily", "duration": "1h", "extra_load": "lots"},
            "extra_load must be a number",
            id="bad load",
        ),
    ],
)
def test_from_mapping_errors(raw: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CISchedule.from_mapping(raw)


# ----------------------------------------------------------------------------- expansion
def test_weekdays_count_from_sunday() -> None:
    week = {"start": MON, "end": MON + 7 * 24 * H}
    weekdays = _schedule("0 9 * * 1-5").fire_times(**week)
    assert [t.isoweekday() for t in weekdays] == [1, 2, 3, 4, 5]
    assert _schedule("0 9 * * 0").fire_times(**week) == (_utc(2024, 1, 7, 9),)
    assert _schedule("0 9 * * sun").fire_times(**week) == (_utc(2024, 1, 7, 9),)
    alternate = _schedule("0 0 * * */2").fire_times(**week)
    assert [t.isoweekday() for t in alternate] == [2, 4, 6, 7]  # tue thu sat sun


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    january = {"start": MON, "end": _utc(2024, 2, 1)}
    either = _schedule("0 0 13 * fri").fire_times(**january)
    # Fridays 5, 12, 19, 26 and Saturday the 13th.
    assert [t.day for t in either] == [5, 12, 13, 19, 26]
    # A day-of-month starting with * is unrestricted: the fields AND (robfig/cron, Vixie).
    both = _schedule("0 0 */10 * mon").fire_times(**january)
    assert [t.day for t in both] == [1]


def test_fire_times_are_half_open_and_utc() -> None:
    got = _schedule("0 * * * *").fire_times(start=MON, end=MON + 3 * H)
    assert got == (MON, MON + H, MON + 2 * H)
    assert all(t.tzinfo is UTC for t in got)


LONDON = {"timezone": "Europe/London"}


def test_dst_spring_forward_europe_london() -> None:
    # 2024-03-31 01:00 GMT -> 02:00 BST.
    window = {"start": _utc(2024, 3, 30), "end": _utc(2024, 4, 1)}
    assert _schedule("0 9 * * *", **LONDON).fire_times(**window) == (
        _utc(2024, 3, 30, 9),  # 09:00 GMT
        _utc(2024, 3, 31, 8),  # 09:00 BST
    )
    # 01:30 does not exist that night: it fires at 01:30 read with the old offset.
    assert _schedule("30 1 * * *", **LONDON).fire_times(**window) == (
        _utc(2024, 3, 30, 1, 30),
        _utc(2024, 3, 31, 1, 30),
    )
    # Interval jobs keep their real-time spacing across the jump.
    half_hourly = _schedule("*/30 * * * *", **LONDON).fire_times(
        start=_utc(2024, 3, 31, 0), end=_utc(2024, 3, 31, 3)
    )
    assert half_hourly == tuple(_utc(2024, 3, 31, 0) + 30 * M * k for k in range(6))


def test_dst_fall_back_europe_london() -> None:
    # 2024-10-27 02:00 BST -> 01:00 GMT: 01:00-01:59 happens twice.
    window = {"start": _utc(2024, 10, 26), "end": _utc(2024, 10, 28)}
    assert _schedule("0 9 * * *", **LONDON).fire_times(**window) == (
        _utc(2024, 10, 26, 8),  # 09:00 BST
        _utc(2024, 10, 27, 9),  # 09:00 GMT
    )
    assert _schedule("30 1 * * *", **LONDON).fire_times(**window) == (
        _utc(2024, 10, 26, 0, 30),
        _utc(2024, 10, 27, 0, 30),  # 01:30 BST
        _utc(2024, 10, 27, 1, 30),  # 01:30 GMT, the repeated hour
    )
    hourly = _schedule("0 * * * *", **LONDON).fire_times(
        start=_utc(2024, 10, 26, 23), end=_utc(2024, 10, 27, 3)
    )
    assert hourly == tuple(_utc(2024, 10, 26, 23) + H * k for k in range(4))


def test_dst_moves_the_regressor_column_on_a_utc_grid() -> None:
    job = _schedule("0 9 * * *", duration=H, **LONDON)
    x = regressor_matrix([job], start=_utc(2024, 3, 30), step=H, steps=48)
    assert np.flatnonzero(x[:, 0]).tolist() == [9, 24 + 8]


def test_expand_runs_includes_runs_begun_before_the_window() -> None:
    a = _schedule("0 * * * *", name="a", duration=90 * M)
    b = _schedule("30 * * * *", name="b", duration=10 * M)
    runs = expand_runs([b, a], start=MON + H, end=MON + 2 * H)
    assert [(r.schedule, r.start) for r in runs] == [
        ("a", MON),  # still running at 01:00
        ("a", MON + H),
        ("b", MON + H + 30 * M),
    ]
    assert runs[0].end == MON + 90 * M
    with pytest.raises(ValueError, match="must be after start"):
        expand_runs([a], start=MON, end=MON)


# ----------------------------------------------------------------------------- regressors
@pytest.mark.parametrize(
    ("cron", "duration", "step", "expected"),
    [
        pytest.param("0 * * * *", 30 * M, H, [0.5, 0.5, 0.5, 0.5], id="half of each hour"),
        pytest.param("0 */2 * * *", 90 * M, H, [1, 0.5, 1, 0.5], id="spills over"),
        pytest.param("0 * * * *", 2 * H, H, [2, 2, 2, 2], id="overlapping runs add"),
        pytest.param("0 0 * * *", 20 * M, 15 * M, [1, 1 / 3, 0, 0], id="sub-hour grid"),
        pytest.param("0 0 * * *", 30 * M, H, [0.5, 0, 0, 0], id="daily"),
        pytest.param("0 23 * * *", 2 * H, H, [1, 0, 0, 0], id="run begun the day before"),
    ],
)
def test_regressor_coverage(
    cron: str, duration: timedelta, step: timedelta, expected: list[float]
) -> None:
    x = regressor_matrix([_schedule(cron, duration=duration)], start=MON, step=step, steps=4)
    assert x.shape == (4, 1)
    np.testing.assert_allclose(x[:, 0], expected, atol=1e-9)


def test_regressor_columns_follow_schedule_order() -> None:
    a = _schedule("0 0 * * *", name="a", duration=H)
    b = _schedule("0 1 * * *", name="b", duration=H)
    x = regressor_matrix([b, a], start=MON, step=H, steps=3)
    np.testing.assert_array_equal(x, [[0, 1], [1, 0], [0, 0]])
    series = RegularSeries(start=MON, step=H, values=np.zeros(3), unit="1")
    np.testing.assert_array_equal(regressors_for(series, [b, a]), x)


def test_regressor_matrix_arguments() -> None:
    job = _schedule("0 0 * * *")
    assert regressor_matrix([job], start=MON, step=H, steps=0).shape == (0, 1)
    assert regressor_matrix([], start=MON, step=H, steps=3).shape == (3, 0)
    with pytest.raises(ValueError, match="step must be positive"):
        regressor_matrix([job], start=MON, step=timedelta(0), steps=3)
    with pytest.raises(ValueError, match="steps must be >= 0"):
        regressor_matrix([job], start=MON, step=H, steps=-1)
    with pytest.raises(ValueError, match=r"unique.*'job'"):
        regressor_matrix([job, job], start=MON, step=H, steps=3)


@settings(max_examples=25)
@given(
    minutes=st.sets(st.integers(0, 59), min_size=1, max_size=4),
    duration_min=st.integers(1, 180),
    step_min=st.sampled_from([5, 15, 60]),
    offset_min=st.integers(0, 59),
)
def test_regressor_total_equals_run_time_in_window(
    minutes: set[int], duration_min: int, step_min: int, offset_min: int
) -> None:
    job = _schedule(f"{','.join(map(str, sorted(minutes)))} * * * *", duration=duration_min * M)
    start = MON + offset_min * M
    steps = 6 * 60 // step_min
    end = start + step_min * M * steps
    x = regressor_matrix([job], start=start, step=step_min * M, steps=steps)
    covered = sum(
        (min(r.end, end) - max(r.start, start)).total_seconds()
        for r in expand_runs([job], start=start, end=end)
    )
    assert x.sum() * step_min * 60 == pytest.approx(covered, rel=1e-9, abs=1e-6)
    assert (x >= 0).all()


def test_extra_load_adds_known_loads() -> None:
    a = _schedule("0 0 * * *", name="a", duration=H, extra_load=10.0)
    b = _schedule("0 0 * * *", name="b", duration=30 * M, extra_load=4.0)
    np.testing.assert_allclose(extra_load([a, b], start=MON, step=H, steps=2), [12.0, 0.0])
    np.testing.assert_array_equal(extra_load([], start=MON, step=H, steps=2), [0.0, 0.0])
    with pytest.raises(ValueError, match=r"unknown for \['c'\]"):
        extra_load([a, _schedule("@daily", name="c")], start=MON, step=H, steps=2)


# ----------------------------------------------------------------------------- uplift
DAYS = 42
STEPS = DAYS * 24
NIGHTLY = CISchedule(
    name="nightly", cron="0 2 * * 1-5", duration=H, timezone="Europe/London"
)  # weekdays only
LUNCH = CISchedule(
    name="lunch", cron="0 12 * * *", duration=30 * M, timezone="Europe/London"
)  # every day, same hour: needs the smooth baseline


def _synthetic(uplifts: dict[str, float], seed: int = 7, noise: float = 2.0) -> RegularSeries:
    t = np.arange(STEPS, dtype=float)
    baseline = (
        200
        + 40 * np.sin(2 * np.pi * t / 24)
        + 15 * np.cos(2 * np.pi * 2 * t / 24)
        + 12 * np.sin(2 * np.pi * t / 168)
        + 0.05 * t
    )
    schedules = [NIGHTLY, LUNCH]
    x = regressor_matrix(schedules, start=MON, step=H, steps=STEPS)
    load = baseline + x @ np.array([uplifts[s.name] for s in schedules])
    load += np.random.default_rng(seed).normal(0, noise, STEPS)
    return RegularSeries(start=MON, step=H, values=load, unit="requests/s")


def test_learns_a_known_uplift_from_synthetic_history() -> None:
    history = _synthetic({"nightly": 50.0, "lunch": 20.0})
    nightly, lunch = learn_uplift(history, [NIGHTLY, LUNCH])
    for est, truth in ((nightly, 50.0), (lunch, 20.0)):
        assert est.extra_load is not None
        assert est.stderr is not None
        assert abs(est.extra_load - truth) < max(3 * est.stderr, 0.05 * truth)
        assert est.stderr < 0.05 * truth
    assert nightly.in_run_steps == 30  # 6 weeks of weekdays
    assert lunch.in_run_steps == DAYS


def test_no_uplift_is_learned_as_about_zero() -> None:
    nightly, lunch = learn_uplift(_synthetic({"nightly": 0.0, "lunch": 0.0}), [NIGHTLY, LUNCH])
    assert nightly.extra_load is not None
    assert lunch.extra_load is not None
    assert abs(nightly.extra_load) < 3 * (nightly.stderr or 0)
    assert abs(lunch.extra_load) < 3 * (lunch.stderr or 0)


def test_missing_steps_are_ignored() -> None:
    history = _synthetic({"nightly": 50.0, "lunch": 20.0})
    values = history.values.copy()
    values[100:300] = np.nan
    holed = RegularSeries(start=history.start, step=history.step, values=values, unit="1")
    nightly, _ = learn_uplift(holed, [NIGHTLY, LUNCH])
    assert nightly.extra_load == pytest.approx(50.0, rel=0.05)
    assert nightly.in_run_steps < 30


def test_known_loads_are_subtracted_not_relearned() -> None:
    history = _synthetic({"nightly": 50.0, "lunch": 20.0})
    known = CISchedule(
        name="nightly", cron=NIGHTLY.cron, duration=H, timezone="Europe/London", extra_load=50.0
    )
    given_est, lunch = learn_uplift(history, [known, LUNCH])
    assert (given_est.extra_load, given_est.stderr, given_est.note) == (50.0, None, "given")
    assert lunch.extra_load == pytest.approx(20.0, rel=0.1)


def test_unidentifiable_schedules_are_reported_not_guessed() -> None:
    history = _synthetic({"nightly": 50.0, "lunch": 20.0})
    june = CISchedule(name="june", cron="0 0 * 6 *", duration=H)
    always = CISchedule(name="always", cron="* * * * *", duration=M)
    twin = CISchedule(name="twin", cron=NIGHTLY.cron, duration=H, timezone="Europe/London")
    short = RegularSeries(start=history.start, step=H, values=history.values[: 24 * 3], unit="1")
    never, constant = learn_uplift(short, [june, always])
    assert never.extra_load is None
    assert "ran during 0 measured steps" in never.note
    assert constant.extra_load is None
    assert "indistinguishable" in constant.note
    first, second, _ = learn_uplift(history, [NIGHTLY, twin, LUNCH])
    assert [first.extra_load is None, second.extra_load is None].count(True) == 1
    survivor = first if first.extra_load is not None else second
    assert survivor.extra_load == pytest.approx(50.0, rel=0.05)


def test_with_learned_uplift_fills_only_unknown_loads() -> None:
    history = _synthetic({"nightly": 50.0, "lunch": 20.0})
    june = CISchedule(name="june", cron="0 0 * 6 *", duration=H)
    updated, estimates = with_learned_uplift([NIGHTLY, LUNCH, june], history)
    assert updated[0].extra_load == pytest.approx(50.0, rel=0.05)
    assert updated[1].extra_load == pytest.approx(20.0, rel=0.1)
    assert updated[2] is june
    assert estimates[2].extra_load is None
    assert NIGHTLY.extra_load is None  # inputs are not mutated


def test_uplift_options_are_checked() -> None:
    history = _synthetic({"nightly": 0.0, "lunch": 0.0})
    with pytest.raises(ValueError, match="harmonics"):
        learn_uplift(history, [NIGHTLY], daily_harmonics=-1)
    with pytest.raises(ValueError, match=r"shape \(3, 1\), expected \(1008, 1\)"):
        learn_uplift(history, [NIGHTLY], regressors=np.zeros((3, 1)))


def test_precomputed_regressors_give_the_same_estimates() -> None:
    history = _synthetic({"nightly": 50.0, "lunch": 20.0})
    x = regressors_for(history, [NIGHTLY, LUNCH])
    assert learn_uplift(history, [NIGHTLY, LUNCH], regressors=x) == learn_uplift(
        history, [NIGHTLY, LUNCH]
    )


# ----------------------------------------------------------------------------- reference
def _reference_fires(expr: CronExpression, *, start: datetime, days: int) -> list[datetime]:
    """Brute force over every minute (UTC): POSIX cron matching, independent of APScheduler."""
    minutes = np.arange(days * 1440)
    stamps = np.datetime64(start.replace(tzinfo=None), "m") + minutes
    day = stamps.astype("M8[D]")
    minute = minutes % 60
    hour = (minutes // 60) % 24
    dom = (day - day.astype("M8[M]")).astype(int) + 1
    month = day.astype("M8[M]").astype(int) % 12 + 1
    weekday = (day.astype(int) + 4) % 7  # 1970-01-01 was a Thursday; 0 = Sunday
    dom_ok = np.isin(dom, expr.days)
    dow_ok = np.isin(weekday, expr.weekdays)
    if expr.days_restricted and expr.weekdays_restricted:
        day_ok = dom_ok | dow_ok
    else:
        day_ok = dom_ok & dow_ok
    ok = np.isin(minute, expr.minutes) & np.isin(hour, expr.hours)
    ok &= np.isin(month, expr.months) & day_ok
    return [start + timedelta(minutes=int(m)) for m in minutes[ok]]


_MINUTE = st.sampled_from(["0", "7", "15,45", "*/20", "10-12", "5/30"])
_HOUR = st.sampled_from(["*", "0", "9-17", "*/6", "1,13", "22-23"])
_DOM = st.sampled_from(["*", "1", "13", "*/10", "10-20", "31", "1,15"])
_MONTH = st.sampled_from(["*", "1", "2", "jan-feb", "*/2"])
_DOW = st.sampled_from(["*", "0", "1-5", "mon-fri", "6,0", "7", "*/2", "fri", "2-4"])


@settings(max_examples=8)
@given(minute=_MINUTE, hour=_HOUR, dom=_DOM, month=_MONTH, dow=_DOW)
def test_fire_times_match_a_brute_force_reference(
    minute: str, hour: str, dom: str, month: str, dow: str
) -> None:
    cron = f"{minute} {hour} {dom} {month} {dow}"
    try:
        expr = CronExpression.parse(cron)
    except ValueError:
        return  # e.g. 31 February: rejected, covered elsewhere
    start = _utc(2024, 1, 1)
    got = _schedule(cron).fire_times(start=start, end=start + timedelta(days=40))
    assert list(got) == _reference_fires(expr, start=start, days=40), cron
