"""forecasts.time: clocks, UTC enforcement, flooring, durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from forecasts.time import (
    FrozenClock,
    SteppingClock,
    ensure_utc,
    floor_to,
    from_epoch_s,
    humanize_duration,
    parse_duration,
    to_epoch_s,
)

T0 = datetime(2024, 5, 1, 12, 34, 56, tzinfo=UTC)


def test_frozen_clock_stays_and_moves_only_when_told() -> None:
    clock = FrozenClock(T0)
    assert clock.now() == clock.now() == T0
    clock.advance(timedelta(minutes=1))
    assert clock.now() == T0 + timedelta(minutes=1)


def test_stepping_clock_steps_per_read() -> None:
    clock = SteppingClock(T0, timedelta(seconds=60))
    assert [clock.now() for _ in range(3)] == [T0 + timedelta(minutes=i) for i in range(3)]


def test_stepping_clock_rejects_non_positive_step() -> None:
    with pytest.raises(ValueError, match="positive"):
        SteppingClock(T0, timedelta(0))


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        FrozenClock(datetime(2024, 1, 1))  # noqa: DTZ001


def test_ensure_utc_converts_offsets() -> None:
    cet = timezone(timedelta(hours=1))
    assert ensure_utc(datetime(2024, 1, 1, 1, tzinfo=cet)) == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        pytest.param(timedelta(minutes=1), datetime(2024, 5, 1, 12, 34, tzinfo=UTC), id="minute"),
        pytest.param(timedelta(hours=1), datetime(2024, 5, 1, 12, tzinfo=UTC), id="hour"),
        pytest.param(timedelta(minutes=30), datetime(2024, 5, 1, 12, 30, tzinfo=UTC), id="half"),
    ],
)
def test_floor_to(step: timedelta, expected: datetime) -> None:
    assert floor_to(T0, step) == expected


def test_epoch_round_trip() -> None:
    assert from_epoch_s(to_epoch_s(T0)) == T0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90", 90, id="bare"),
        pytest.param("90s", 90, id="seconds"),
        pytest.param("5m", 300, id="minutes"),
        pytest.param("1h30m", 5400, id="compound"),
        pytest.param("1.5h", 5400, id="fraction"),
        pytest.param("2d", 172800, id="days"),
        pytest.param("250ms", 0.25, id="millis"),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    # the last three overflowed timedelta (OverflowError, a 500 from the extender's rank API,
    # found by schemathesis)
    ["", "h", "5x", "1h-", "m5", "1E100", "inf", "99999999999999999999w"],
)
def test_parse_duration_errors_name_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        pytest.param(timedelta(days=7), "7d", id="a week of history"),
        pytest.param(timedelta(hours=1, minutes=30), "1h30m", id="mixed"),
        pytest.param(timedelta(minutes=10), "10m", id="minutes"),
        pytest.param(timedelta(seconds=90), "1m30s", id="seconds"),
        pytest.param(timedelta(milliseconds=500), "0.5s", id="sub-second"),
        pytest.param(timedelta(days=2, hours=12), "2d12h", id="days and hours"),
        pytest.param(timedelta(0), "0s", id="zero"),
        pytest.param(timedelta(seconds=-30), "-30s", id="negative"),
    ],
)
def test_humanize_duration_reads_as_written_and_parses_back(duration, text) -> None:
    assert humanize_duration(duration) == text
    assert "day" not in text
    assert ":" not in text
    if duration >= timedelta(0):
        assert parse_duration(text) == duration
