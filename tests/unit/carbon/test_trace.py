"""The CSV trace provider (`forecasts.sources.trace.TraceCarbonSource.from_csv`) on tiny
hand-made traces and, where present, the real shared traces (read by path, never copied).

Aspects: out-of-order rows, a repeated instant (last row wins), blank and zero values
(zeros-as-missing on and off), resolution inference, latest (interval containing `at`, empty
in a gap), forecast column replay and its absence, direct/lifecycle column choice, malformed
files naming line and column, a row off its region's grid, missing file and unknown region;
`history_series` (the forecaster's fast path) equal to `history` on the grid up to `end`; a
forecast column is no provider record (no issue times); on the shared GB 2023 trace:
the 91-period gap, the five zeros, and the provider forecast.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from forecasts.platform.errors import SourceDataError, SourceRequestError
from forecasts.series import CarbonSeries, Quality, RegularSeries
from forecasts.sources.trace import TraceCarbonSource
from forecasts.time import FrozenClock
from tests.unit.carbon.conftest import FIXTURES, REGIONS, T0

TRACES = FIXTURES / "trace"
HH = timedelta(minutes=30)


def trace(name: str, **kw: object) -> TraceCarbonSource:
    return TraceCarbonSource.from_csv(TRACES / name, regions=REGIONS, clock=FrozenClock(T0), **kw)  # type: ignore[arg-type]


def pts(series: CarbonSeries) -> list[tuple[str, float, str]]:
    return [(p.at.strftime("%H:%M"), p.value, p.quality.value) for p in series.points]


def test_history_sorts_dedups_and_drops_blanks_and_zeros() -> None:
    series = trace("mixed.csv").history(
        "GB", start=T0 - timedelta(hours=2), end=T0 + timedelta(hours=2)
    )
    assert pts(series) == [
        ("10:30", 200.0, "measured"),
        ("11:00", 190.0, "measured"),
        ("12:00", 177.0, "measured"),
    ]
    assert series.resolution == HH
    assert series.provider == "trace"
    assert series.emission_factor is None


def test_zeros_kept_when_asked() -> None:
    series = trace("mixed.csv", zeros_as_missing=False).history("GB", start=T0 - HH, end=T0)
    assert pts(series) == [("11:30", 0.0, "measured")]


@pytest.mark.parametrize(
    ("minutes", "expected"),
    [
        pytest.param(10, [("12:00", 177.0, "measured")], id="inside a period"),
        pytest.param(40, [], id="blank period"),
        pytest.param(-120, [], id="before the trace"),
        pytest.param(600, [], id="long after the trace"),
    ],
)
def test_latest_is_the_period_containing_at(minutes: int, expected: list[object]) -> None:
    series = trace("mixed.csv").latest("GB", at=T0 + timedelta(minutes=minutes))
    assert pts(series) == expected


def test_forecast_column_replays_as_provider_forecast() -> None:
    series = trace("mixed.csv").forecast(
        "GB", at=T0 + timedelta(minutes=10), horizon=timedelta(hours=1)
    )
    assert pts(series) == [
        ("12:00", 182.0, "forecast"),
        ("12:30", 175.0, "forecast"),
        ("13:00", 168.0, "forecast"),
    ]


def test_resolution_is_inferred_per_region() -> None:
    series = trace("mixed.csv").history("FR", start=T0 - timedelta(hours=3), end=T0)
    assert series.resolution == timedelta(hours=1)
    assert series.values.tolist() == [40.5, 41.25]


@pytest.mark.parametrize(
    ("factor", "values"),
    [
        pytest.param("lifecycle", [37.9, 36.5], id="lifecycle"),
        pytest.param("direct", [43.5, 44.0, 42.0], id="direct"),
    ],
)
def test_direct_or_lifecycle_column(factor: str, values: list[float]) -> None:
    series = trace("pair.csv", emission_factor=factor).history(
        "SE", start=T0 - timedelta(hours=2), end=T0 + timedelta(hours=1)
    )
    assert series.values.tolist() == values
    assert series.emission_factor == factor


def test_no_forecast_column_is_a_request_error() -> None:
    with pytest.raises(SourceRequestError, match="no 'forecast_gco2_per_kwh' column"):
        trace("pair.csv").forecast("SE", at=T0, horizon=timedelta(hours=1))


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        pytest.param(
            "bad_value.csv",
            SourceDataError,
            "bad_value.csv line 3: column 'gco2_per_kwh' is not a number: 'high'",
            id="bad value",
        ),
        pytest.param(
            "bad_time.csv",
            SourceDataError,
            "bad_time.csv line 2: column 'timestamp_utc' is not an ISO 8601 timestamp",
            id="bad timestamp",
        ),
        pytest.param(
            "no_value_column.csv", SourceDataError, "no intensity column", id="no value column"
        ),
        pytest.param("absent.csv", SourceRequestError, "cannot open trace", id="missing file"),
    ],
)
def test_malformed_traces(name: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        trace(name).history("GB", start=T0 - HH, end=T0)
    assert message in str(info.value)


def test_region_absent_from_the_file() -> None:
    with pytest.raises(SourceRequestError, match=r"has no rows for region 'XX' \(it has: FR, GB\)"):
        trace("mixed.csv").latest("nowhere", at=T0)


def test_negative_value_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "neg.csv"
    path.write_text("timestamp_utc,region,gco2_per_kwh\n2025-01-20T12:00:00Z,GB,-5\n")
    source = TraceCarbonSource.from_csv(path, regions=REGIONS, clock=FrozenClock(T0))
    with pytest.raises(SourceDataError, match="is negative"):
        source.latest("GB", at=T0)


def test_naive_timestamps_are_utc(tmp_path: Path) -> None:
    path = tmp_path / "naive.csv"
    path.write_text("timestamp_utc,region,gco2_per_kwh\n2025-01-20T12:00:00,GB,5\n")
    source = TraceCarbonSource.from_csv(path, regions=REGIONS, clock=FrozenClock(T0))
    assert source.latest("GB", at=T0).points[0].at == T0


# ---------------------------------------------------------------------- shared data
def test_shared_gb_2023_gap_zeros_and_forecast(shared_data: Path) -> None:
    path = (
        shared_data
        / "gb-neso-carbon-intensity-2023"
        / "gb_national_carbon_intensity_2023_30min.csv"
    )
    source = TraceCarbonSource.from_csv(path, regions=REGIONS, clock=FrozenClock(T0))
    day = datetime(2023, 10, 20, tzinfo=UTC)
    gap = source.history("GB", start=day, end=day + timedelta(days=3))
    assert len(gap) == 3 * 48 - 91
    assert source.latest("GB", at=datetime(2023, 10, 21, 12, 0, tzinfo=UTC)).points == ()
    zeros_day = datetime(2023, 6, 7, tzinfo=UTC)
    june = source.history("GB", start=zeros_day, end=zeros_day + timedelta(days=1))
    assert len(june) == 48 - 4  # 09:30-11:00 are zeros (missing)
    assert june.resolution == HH
    forecast = source.forecast(
        "GB", at=datetime(2023, 1, 1, tzinfo=UTC), horizon=timedelta(hours=1)
    )
    assert [p.value for p in forecast.points] == [73.0, 63.0]
    assert {p.quality for p in forecast.points} == {Quality.FORECAST}


def test_shared_ensembleci_pair_columns(shared_data: Path) -> None:
    path = (
        shared_data
        / "ensembleci-grid-carbon-intensity-hourly"
        / "grid_carbon_intensity_hourly_2019_2022.csv"
    )
    source = TraceCarbonSource.from_csv(
        path, regions=REGIONS, clock=FrozenClock(T0), emission_factor="direct"
    )
    start = datetime(2019, 1, 1, tzinfo=UTC)
    series = source.history("caiso", start=start, end=start + timedelta(hours=2))
    assert series.values.tolist() == [164.27, 200.72]
    assert series.resolution == timedelta(hours=1)
    assert series.emission_factor == "direct"


def test_a_row_off_the_regions_grid_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.csv"
    rows = ["timestamp_utc,region,gco2_per_kwh"] + [
        f"2025-01-20T{h:02d}:00:00Z,GB,{100 + h}" for h in range(8, 12)
    ]
    path.write_text("\n".join([*rows, "2025-01-20T12:20:00Z,GB,5"]) + "\n")
    with pytest.raises(
        SourceDataError, match=r"odd.csv line 6: .* off the 1:00:00 grid of region 'GB'"
    ):
        trace_at(path).history("GB", start=T0 - HH, end=T0)


def trace_at(path: Path) -> TraceCarbonSource:
    return TraceCarbonSource.from_csv(path, regions=REGIONS, clock=FrozenClock(T0))


def test_history_series_is_history_on_its_grid_up_to_end(tmp_path: Path) -> None:
    # what CarbonForecasting reads on its fast path must equal `history` placed on the hour
    # grid (its other path): from the first value on, gaps NaN, up to `end` although the
    # file stops earlier, so the forecast's origin stays `end`
    path = tmp_path / "hourly.csv"
    rows = ["timestamp_utc,region,gco2_per_kwh"] + [
        f"2025-01-20T{h:02d}:00:00Z,GB,{'' if h in (3, 4, 7) else 100 + h}" for h in range(3, 10)
    ]
    path.write_text("\n".join(rows) + "\n")
    source = trace_at(path)
    start, end = T0 - timedelta(hours=11), T0
    grid = source.history_series("GB", start=start, end=end)
    hist = source.history("GB", start=start, end=end)
    slow = RegularSeries.from_points(
        hist.epoch_s,
        hist.values,
        step=timedelta(hours=1),
        unit="",
        start=hist.points[0].at,
        end=end,
    )
    assert grid.start == slow.start == T0 - timedelta(hours=7)
    assert grid.end == end
    np.testing.assert_array_equal(grid.values, slow.values)
    assert np.isnan(grid.values[[2, 5, 6]]).all()  # 07:00 blank; 10:00 and 11:00 past the file


def test_a_forecast_column_has_no_issue_times_so_no_provider_record() -> None:
    # served as given at any instant, but not a record of when each value was published:
    # CarbonForecasting keeps what it was served instead, as from a live provider
    source = trace("mixed.csv")
    assert source.forecast("GB", at=T0, horizon=HH).values.tolist() == [182.0]
    assert source.provider_record("GB") is None
