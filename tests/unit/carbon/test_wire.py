"""Wire helpers shared by the adapters: every bad field becomes a `SourceDataError` naming the
field. Aspects: timestamp forms (Z, offsets, minutes only, .NET 7 digits), naive and
implausible timestamps, numbers vs strings/booleans/null, negative intensities, bounded
durations, unit fields, chunking and resolution inference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forecasts.platform.errors import SourceDataError
from forecasts.sources.carbon._wire import (
    as_list,
    as_mapping,
    check_unit,
    chunks,
    infer_resolution,
    parse_duration_seconds,
    parse_instant,
    parse_intensity,
    parse_number,
)

T = datetime(2024, 5, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-01T00:00:00Z",
        "2024-05-01T00:00Z",
        "2024-05-01T02:00:00+02:00",
        "2024-05-01T00:00:00.0000000+00:00",
        " 2024-05-01T00:00:00.000Z ",
    ],
)
def test_instants(text: str) -> None:
    assert parse_instant(text, source="p", where="f") == T


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(
            "2024-05-01T00:00:00", "f: timestamp '2024-05-01T00:00:00' has no time zone", id="naive"
        ),
        pytest.param("yesterday", "f: not an ISO 8601 timestamp: 'yesterday'", id="text"),
        pytest.param(
            1714521600, "f: expected an ISO 8601 timestamp, got int 1714521600", id="epoch"
        ),
        pytest.param(None, "f: expected an ISO 8601 timestamp, got null", id="null"),
        pytest.param("9999-01-01T00:00Z", "implausible timestamp", id="far future"),
        pytest.param("1900-01-01T00:00Z", "implausible timestamp", id="far past"),
    ],
)
def test_bad_instants(value: object, message: str) -> None:
    with pytest.raises(SourceDataError) as info:
        parse_instant(value, source="p", where="f")
    assert message in str(info.value)
    assert str(info.value).startswith("p: ")


@pytest.mark.parametrize(
    ("value", "expected"), [(None, None), (3, 3.0), (2.5, 2.5), (float("nan"), None)]
)
def test_numbers(value: object, expected: float | None) -> None:
    assert parse_number(value, source="p", where="f") == expected


@pytest.mark.parametrize("value", ["3", True, [1], {"v": 1}])
def test_non_numbers(value: object) -> None:
    with pytest.raises(SourceDataError, match="f: expected a number or null"):
        parse_number(value, source="p", where="f")


def test_negative_intensity() -> None:
    with pytest.raises(SourceDataError, match="negative carbon intensity -1"):
        parse_intensity(-1, source="p", where="f")


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [(5, 60, timedelta(minutes=5)), (None, 60, timedelta(0)), (300, 1, timedelta(minutes=5))],
)
def test_durations(value: object, unit: float, expected: timedelta) -> None:
    assert parse_duration_seconds(value, source="p", where="f", unit_seconds=unit) == expected


@pytest.mark.parametrize("value", [-5, 10**12])
def test_durations_out_of_bounds(value: int) -> None:
    with pytest.raises(SourceDataError, match=r"outside 0\.\.366 days"):
        parse_duration_seconds(value, source="p", where="f", unit_seconds=60)


@pytest.mark.parametrize("unit", ["kgCO2/kWh", ["g"], 1])
def test_unit_fields(unit: object) -> None:
    with pytest.raises(SourceDataError, match=r"f\.unit: expected gCO2eq/kWh"):
        check_unit({"unit": unit}, source="p", where="f")
    check_unit({"unit": "gCO2eq/kWh", "units": "g/kWh"}, source="p", where="f")


def test_shapes() -> None:
    with pytest.raises(SourceDataError, match="f: expected a JSON object, got list"):
        as_mapping([], source="p", where="f")
    with pytest.raises(SourceDataError, match="f: expected a JSON array, got str 'x"):
        as_list("x" * 100, source="p", where="f")


def test_chunks_cover_the_range_exactly() -> None:
    got = list(chunks(T, T + timedelta(days=25), size=timedelta(days=10)))
    assert [(a - T).days for a, _ in got] == [0, 10, 20]
    assert got[-1][1] == T + timedelta(days=25)
    assert list(chunks(T, T, size=timedelta(days=1))) == []


def test_infer_resolution() -> None:
    half = timedelta(minutes=30)
    times = [T, T + half, T + 2 * half, T + 5 * half, T + half]
    assert infer_resolution(times) == half
    assert infer_resolution([T]) is None
    assert infer_resolution([T, T + half, T + 3 * half]) == half  # tie: the smaller
