"""forecasts.load: the gap rule and the LoadHistory report.

Aspects: gap finding; short inner gaps interpolated linearly; long and edge gaps marked;
short_gap_steps=0; non-finite inputs; report of gaps by kind; masks, coverage and
last_observed_at; invariants under hypothesis (no finite value changes, only short inner
gaps are filled).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecasts.load import Gap, LoadHistory, apply_gap_rule, find_gaps
from forecasts.series import RegularSeries

T0 = datetime(2024, 1, 15, tzinfo=UTC)
STEP = timedelta(minutes=5)
N = np.nan


@pytest.mark.parametrize(
    ("values", "gaps"),
    [
        pytest.param([], [], id="empty"),
        pytest.param([1, 2, 3], [], id="none"),
        pytest.param([N, 1, N, N, 2, N], [(0, 1), (2, 2), (5, 1)], id="edges and inside"),
        pytest.param([1, np.inf, -np.inf, 2], [(1, 2)], id="infinities"),
        pytest.param([N, N], [(0, 2)], id="all missing"),
    ],
)
def test_find_gaps(values: list[float], gaps: list[tuple[int, int]]) -> None:
    assert find_gaps(np.array(values, dtype=float)) == gaps


@pytest.mark.parametrize(
    ("values", "short", "expected", "filled"),
    [
        pytest.param([1, N, 3], 3, [1, 2, 3], [0, 1, 0], id="one step"),
        pytest.param([0, N, N, N, 8], 3, [0, 2, 4, 6, 8], [0, 1, 1, 1, 0], id="at the limit"),
        pytest.param([0, N, N, N, N, 5], 3, [0, N, N, N, N, 5], [0] * 6, id="too long"),
        pytest.param([N, 1, 2], 3, [N, 1, 2], [0, 0, 0], id="leading edge"),
        pytest.param([1, 2, N], 3, [1, 2, N], [0, 0, 0], id="trailing edge"),
        pytest.param([1, N, 3], 0, [1, N, 3], [0, 0, 0], id="interpolation off"),
        pytest.param([1, np.inf, 3], 1, [1, 2, 3], [0, 1, 0], id="inf is missing"),
        pytest.param(
            [4, N, 2, N, N, N, N, 9], 2, [4, 3, 2, N, N, N, N, 9], [0, 1] + [0] * 6, id="mixed"
        ),
    ],
)
def test_gap_rule(
    values: list[float], short: int, expected: list[float], filled: list[int]
) -> None:
    arr = np.array(values, dtype=float)
    out, mask = apply_gap_rule(arr, short_gap_steps=short)
    np.testing.assert_allclose(out, expected)
    assert mask.tolist() == [bool(f) for f in filled]
    assert np.isnan(arr).sum() + np.isinf(arr).sum() >= np.isnan(out).sum()


def test_gap_rule_rejects_negative_limit() -> None:
    with pytest.raises(ValueError, match="short_gap_steps"):
        apply_gap_rule(np.zeros(3), short_gap_steps=-1)


def test_input_is_not_mutated() -> None:
    arr = np.array([1.0, N, 3.0])
    apply_gap_rule(arr, short_gap_steps=2)
    assert np.isnan(arr[1])


@given(
    st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), max_size=60),
    st.integers(0, 5),
)
def test_gap_rule_invariants(values: list[float], short: int) -> None:
    arr = np.array(values, dtype=float)
    out, mask = apply_gap_rule(arr, short_gap_steps=short)
    finite = np.isfinite(arr)
    np.testing.assert_array_equal(out[finite], arr[finite])  # measured values never change
    assert not mask[finite].any()
    assert np.isfinite(out[mask]).all()
    for first, length in find_gaps(arr):
        inner = first > 0 and first + length < len(arr)
        assert mask[first : first + length].all() == (inner and length <= short)


def test_history_reports_gaps_by_kind() -> None:
    raw = np.array([N, 1, N, 3, 4, N, N, N, N, 9, 10, N])
    got = LoadHistory.from_samples(
        "q", raw, start=T0, step=STEP, unit="requests/s", short_gap_steps=2, requests=2
    )
    assert got.interpolated == (Gap(start=T0 + STEP * 2, steps=1, step=STEP),)
    assert [(g.start, g.steps) for g in got.marked] == [
        (T0, 1),
        (T0 + STEP * 5, 4),
        (T0 + STEP * 11, 1),
    ]
    assert got.marked[1].end == T0 + STEP * 9
    assert got.interpolated_mask.tolist() == [i == 2 for i in range(12)]
    assert got.measured_mask.sum() == 5
    assert got.coverage == pytest.approx(5 / 12)
    assert got.last_observed_at == T0 + STEP * 10
    assert got.series.unit == "requests/s"
    assert got.requests == 2


def test_nothing_measured() -> None:
    got = LoadHistory.from_samples(
        "q", np.array([N, N]), start=T0, step=STEP, unit="1", short_gap_steps=3
    )
    assert got.last_observed_at is None
    assert got.coverage == 0.0


def test_empty_history_has_zero_coverage() -> None:
    got = LoadHistory.from_samples(
        "q", np.array([]), start=T0, step=STEP, unit="1", short_gap_steps=3
    )
    assert got.coverage == 0.0


def test_interpolated_gaps_must_lie_on_the_series() -> None:
    series = RegularSeries(start=T0, step=STEP, values=np.ones(3), unit="1")
    with pytest.raises(ValueError, match="off the series"):
        LoadHistory(
            query="q", series=series, interpolated=(Gap(start=T0 + STEP * 2, steps=2, step=STEP),)
        )
