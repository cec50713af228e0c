"""forecasts.sources.csv_series: long/wide CSV traces to a RegularSeries.

Aspects: spec parsing; region and column choice; gaps and blanks become NaN; zero as missing;
step inference; a repeated instant keeps its last row, in the grid reader and in the CSV trace
provider alike (one reader); clear errors naming the file, line and field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from forecasts.platform.errors import SourceDataError
from forecasts.sources.csv_series import list_columns, parse_series_spec, read_csv_series
from forecasts.sources.trace import TraceCarbonSource
from forecasts.time import FrozenClock
from tests.unit.carbon.conftest import REGIONS, T0

LONG = """timestamp_utc,region,gco2,forecast
2023-01-01T00:00:00Z,GB,100,90
2023-01-01T00:30:00Z,GB,,95
2023-01-01T01:30:00Z,GB,0,99
2023-01-01T00:00:00Z,FR,50,40
2023-01-01T00:30:00Z,FR,55,41
"""


@pytest.fixture
def long_file(tmp_path: Path) -> Path:
    p = tmp_path / "trace.csv"
    p.write_text(LONG)
    return p


def test_reads_region_and_column_with_gaps(long_file: Path) -> None:
    s = read_csv_series(long_file, region="GB", column="gco2")
    assert s.start == datetime(2023, 1, 1, tzinfo=UTC)
    assert s.step == timedelta(minutes=30)
    np.testing.assert_array_equal(s.values, [100, np.nan, np.nan, 0])
    z = read_csv_series(long_file, region="GB", column="gco2", zero_is_missing=True)
    assert np.isnan(z.values[-1])
    assert s.unit == "gco2"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({}, "region: choose one of FR, GB", id="region ambiguous"),
        pytest.param({"region": "XX"}, "region: 'XX' not in file", id="unknown region"),
        pytest.param(
            {"region": "GB"}, "column: choose one of gco2, forecast", id="column ambiguous"
        ),
        pytest.param(
            {"region": "GB", "column": "nope"}, "column: 'nope' not in file", id="unknown column"
        ),
    ],
)
def test_errors_name_the_field(long_file: Path, kwargs, message: str) -> None:
    with pytest.raises(SourceDataError, match=message) as info:
        read_csv_series(long_file, **kwargs)
    assert str(long_file) in str(info.value)


def test_missing_file_and_time_column(tmp_path: Path) -> None:
    with pytest.raises(SourceDataError, match="no such file"):
        read_csv_series(tmp_path / "absent.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,value\n1,2\n")
    with pytest.raises(SourceDataError, match="timestamp_utc"):
        read_csv_series(bad)
    stamps = tmp_path / "stamps.csv"
    stamps.write_text("timestamp_utc,value\nnot-a-time,2\n")
    with pytest.raises(SourceDataError, match="line 2: column 'timestamp_utc' is not an ISO 8601"):
        read_csv_series(stamps)
    words = tmp_path / "words.csv"
    words.write_text("timestamp_utc,value\n2023-01-01T00:00:00Z,2\n2023-01-01T01:00:00Z,high\n")
    with pytest.raises(SourceDataError, match="line 3: column 'value' is not a number: 'high'"):
        read_csv_series(words, column="value")
    one = tmp_path / "one.csv"
    one.write_text("timestamp_utc,value\n2023-01-01T00:00:00Z,2\n")
    with pytest.raises(SourceDataError, match="two instants"):
        read_csv_series(one)


def test_wide_file_single_column(tmp_path: Path) -> None:
    p = tmp_path / "wide.csv"
    p.write_text("timestamp_utc,requests\n2012-01-01T00:00:00Z,5\n2012-01-01T01:00:00Z,6\n")
    s = read_csv_series(p)
    np.testing.assert_array_equal(s.values, [5, 6])
    assert list_columns(p) == ([], ["requests"])
    with pytest.raises(SourceDataError, match="no region column"):
        read_csv_series(p, region="GB")


@pytest.mark.parametrize(
    ("text", "region", "column"),
    [
        pytest.param("a.csv", None, None, id="file only"),
        pytest.param("a.csv:GB", "GB", None, id="region"),
        pytest.param("a.csv::col", None, "col", id="column only"),
        pytest.param("a.csv:GB:col", "GB", "col", id="both"),
    ],
)
def test_parse_series_spec(text: str, region, column) -> None:
    spec = parse_series_spec(text)
    assert (spec.path, spec.region, spec.column) == (Path("a.csv"), region, column)


def test_parse_series_spec_errors() -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_series_spec(" ")
    with pytest.raises(ValueError, match="4 parts"):
        parse_series_spec("a:b:c:d")


def test_a_repeated_instant_keeps_its_last_row_in_both_readers(tmp_path: Path) -> None:
    p = tmp_path / "corrected.csv"
    p.write_text(
        "timestamp_utc,region,gco2_per_kwh\n"
        "2025-01-20T10:00:00Z,GB,100\n"
        "2025-01-20T10:30:00Z,GB,120\n"
        "2025-01-20T10:00:00Z,GB,110\n"  # a later row for 10:00 corrects the first
    )
    hourly = read_csv_series(p, region="GB", column="gco2_per_kwh", step=timedelta(hours=1))
    assert hourly.values.tolist() == [115.0]  # mean of 110 and 120: each instant counted once
    half_hourly = read_csv_series(p, region="GB", column="gco2_per_kwh")
    assert half_hourly.values.tolist() == [110.0, 120.0]
    live = TraceCarbonSource.from_csv(p, regions=REGIONS, clock=FrozenClock(T0))
    points = live.history("GB", start=T0 - timedelta(hours=3), end=T0).points
    assert [pt.value for pt in points] == [110.0, 120.0]
