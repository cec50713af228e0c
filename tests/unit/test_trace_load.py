"""`TraceLoadSource`: recorded demand as a load source.

Aspects: a window inside the trace, one reaching past either end (NaN there), a step that is a
multiple of the recorded one (averaged), the errors (unknown name, a step it cannot serve, a
start off the grid), and `history_many`: exactly `history` of each name (errors in place),
over traces on different grids.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.platform.errors import SourceRequestError
from forecasts.series import RegularSeries
from forecasts.sources.load import BatchLoadSource
from forecasts.sources.trace import TraceLoadSource

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)


def trace(start: datetime = T0, step: timedelta = HOUR, n: int = 10) -> RegularSeries:
    return RegularSeries(start=start, step=step, values=np.arange(n, dtype=float), unit="rps")


SOURCE = TraceLoadSource(
    {
        "a": trace(),
        "b": trace(T0 + 2 * HOUR, n=4),
        "half": trace(T0, HOUR / 2, 20),
        "odd": trace(T0 + timedelta(minutes=20)),
    }
)


@pytest.mark.parametrize(
    ("query", "start", "hours", "step", "want"),
    [
        pytest.param("a", T0 + HOUR, 3, HOUR, [1.0, 2.0, 3.0], id="inside"),
        pytest.param("a", T0 - 2 * HOUR, 3, HOUR, [np.nan, np.nan, 0.0], id="before the start"),
        pytest.param("a", T0 + 8 * HOUR, 3, HOUR, [8.0, 9.0, np.nan], id="past the end"),
        pytest.param("b", T0, 7, HOUR, [np.nan, np.nan, 0, 1, 2, 3, np.nan], id="both ends"),
        pytest.param("a", T0 + 12 * HOUR, 2, HOUR, [np.nan, np.nan], id="all after"),
        pytest.param("half", T0, 2, HOUR, [0.5, 2.5], id="averaged to a coarser step"),
        pytest.param("a", T0, 0, HOUR, [], id="empty window"),
    ],
)
def test_history_cuts_the_window(query, start, hours, step, want) -> None:
    got = SOURCE.history(query, start=start, end=start + hours * HOUR, step=step)
    assert (got.start, got.step, got.unit) == (start, step, "rps")
    np.testing.assert_array_equal(got.values, want)


@pytest.mark.parametrize(
    ("query", "step", "message"),
    [
        pytest.param("nope", HOUR, "no load trace named 'nope'", id="unknown"),
        pytest.param("a", HOUR / 2, "cannot serve step 0:30:00", id="finer step"),
        pytest.param("odd", HOUR, "off the trace grid of 'odd'", id="off the grid"),
    ],
)
def test_history_errors(query, step, message) -> None:
    with pytest.raises(SourceRequestError, match=message):
        SOURCE.history(query, start=T0, end=T0 + 2 * HOUR, step=step)


def test_history_many_is_history_of_each_name() -> None:
    assert isinstance(SOURCE, BatchLoadSource)
    names = ["a", "nope", "b", "half", "odd"]
    for start, hours in [(T0 + HOUR, 3), (T0 - HOUR, 12), (T0 + 3 * HOUR, 1)]:
        got = SOURCE.history_many(names, start=start, end=start + hours * HOUR, step=HOUR)
        assert list(got) == names
        assert sum(isinstance(g, SourceRequestError) for g in got.values()) == 2
        for name in names:
            one = got[name]
            if isinstance(one, SourceRequestError):
                with pytest.raises(SourceRequestError) as info:
                    SOURCE.history(name, start=start, end=start + hours * HOUR, step=HOUR)
                assert str(info.value) == str(one)
                continue
            want = SOURCE.history(name, start=start, end=start + hours * HOUR, step=HOUR)
            assert isinstance(one, RegularSeries)
            assert (one.start, one.step, one.unit) == (want.start, want.step, want.unit)
            np.testing.assert_array_equal(one.values, want.values)
