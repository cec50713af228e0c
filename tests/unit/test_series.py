"""forecasts.series: normalisation, invariants (property tests), lookups, regular grids."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecasts.series import CarbonSeries, CarbonUnit, Quality, RegularSeries, Signal

T0 = datetime(2024, 1, 1, tzinfo=UTC)
H = timedelta(hours=1)


def build(points, unit=CarbonUnit.G_PER_KWH):
    return CarbonSeries.build(
        region="DE",
        points=points,
        unit=unit,
        signal=Signal.AVERAGE,
        provider="test",
        fetched_at=T0,
        resolution=H,
    )


def test_build_sorts_drops_nulls_and_prefers_measured_duplicates() -> None:
    s = build(
        [
            (T0 + 2 * H, 300.0, Quality.MEASURED),
            (T0, None, Quality.MEASURED),
            (T0 + H, 200.0, Quality.FORECAST),
            (T0 + H, 210.0, Quality.MEASURED),
            (T0 + H, 220.0, Quality.FORECAST),
            (T0 + 3 * H, math.nan, Quality.FORECAST),
        ]
    )
    assert [p.at for p in s.points] == [T0 + H, T0 + 2 * H]
    assert s.points[0].value == 210.0
    assert s.points[0].quality is Quality.MEASURED


def test_direct_construction_rejects_unsorted_points() -> None:
    ok = build([(T0, 1.0, Quality.MEASURED), (T0 + H, 2.0, Quality.MEASURED)])
    with pytest.raises(ValueError, match="strictly increasing"):
        CarbonSeries(
            region="DE",
            points=ok.points[::-1],
            unit=ok.unit,
            signal=ok.signal,
            provider="x",
            fetched_at=T0,
            resolution=H,
        )


def test_negative_intensity_rejected_but_percentile_units_kept_apart() -> None:
    with pytest.raises(ValueError, match="negative"):
        build([(T0, -1.0, Quality.MEASURED)])
    pct = build([(T0, 42.0, Quality.MEASURED)], unit=CarbonUnit.PERCENTILE)
    assert pct.unit is CarbonUnit.PERCENTILE


def test_latest_mean_over_and_window() -> None:
    s = build([(T0 + i * H, 100.0 * (i + 1), Quality.MEASURED) for i in range(4)])
    assert s.latest(at=T0 + H + timedelta(minutes=30)).value == 200.0
    assert s.latest(at=T0 - H) is None
    assert s.mean_over(T0, T0 + 2 * H) == pytest.approx(150.0)
    assert s.mean_over(T0 + timedelta(minutes=30), T0 + H + timedelta(minutes=30)) == pytest.approx(
        150.0
    )
    assert s.mean_over(T0 + 10 * H, T0 + 11 * H) is None
    assert len(s.window(T0 + H, T0 + 3 * H)) == 2
    assert s.end == T0 + 4 * H


@given(
    st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=500),
            st.one_of(st.none(), st.just(math.nan), st.floats(min_value=0, max_value=2000)),
            st.sampled_from(list(Quality)),
        ),
        max_size=60,
    )
)
def test_built_series_is_sorted_unique_finite_and_tagged(raw) -> None:
    s = build([(T0 + i * H, v, q) for i, v, q in raw])
    times = [p.at for p in s.points]
    assert times == sorted(set(times))
    assert all(math.isfinite(p.value) for p in s.points)
    assert s.unit is CarbonUnit.G_PER_KWH
    assert np.all(np.diff(s.epoch_s) > 0)
    assert len(s.values) == len(s)


def test_regular_series_from_points_marks_gaps() -> None:
    times = [T0, T0 + H, T0 + 3 * H]
    r = RegularSeries.from_points(times, [1.0, 2.0, 4.0], step=H, unit="req/s")
    assert len(r) == 4
    assert np.isnan(r.values[2])
    assert r.missing().tolist() == [False, False, True, False]
    assert r.end == T0 + 4 * H
    assert r.tail(2).start == T0 + 2 * H
    assert len(r.until(T0 + 2 * H)) == 2


def test_regular_series_is_immutable_and_rejects_inf() -> None:
    r = RegularSeries(start=T0, step=H, values=np.array([1.0, 2.0]), unit="x")
    with pytest.raises(ValueError, match="read-only"):
        r.values[0] = 5.0
    with pytest.raises(ValueError, match="infinite"):
        RegularSeries(start=T0, step=H, values=np.array([np.inf]), unit="x")
