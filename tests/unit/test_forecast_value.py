"""The `Forecast` value: what it accepts and the error it names for what it refuses.

Aspects: a valid forecast keeps its levels sorted, read-only and copied from the input; each
refusal (non-finite mean or level, missing required level, level outside (0, 1), a level of
the wrong shape, crossing levels) is a `ValueError` naming the level at fault.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.forecast import Forecast

START = datetime(2024, 3, 4, tzinfo=UTC)
LEVELS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def _quantiles(horizon: int = 3) -> dict[float, np.ndarray]:
    return {q: np.full(horizon, 10.0 + 10 * q) for q in LEVELS}


def _forecast(quantiles: dict[float, np.ndarray], mean: np.ndarray | None = None) -> Forecast:
    return Forecast(
        start=START,
        step=timedelta(hours=1),
        mean=quantiles[0.5] if mean is None else mean,
        quantiles=quantiles,
        unit="rps",
        model="m",
    )


def test_valid_forecast_is_sorted_copied_and_read_only() -> None:
    given = dict(reversed(list(_quantiles().items())))
    fc = _forecast(given)
    assert tuple(fc.quantiles) == LEVELS
    given[0.9][0] = 99.0
    assert fc.quantiles[0.9][0] == 19.0
    with pytest.raises(ValueError, match="read-only"):
        fc.quantiles[0.9][0] = 1.0
    assert fc.quantile(0.3) == pytest.approx(np.full(3, 13.0))


def _with(q: float, values: list[float]) -> dict[float, np.ndarray]:
    qs = _quantiles()
    qs[q] = np.array(values)
    return qs


@pytest.mark.parametrize(
    ("quantiles", "message"),
    [
        pytest.param(_with(0.25, [12.5, np.nan, 12.5]), "quantile 0.25 has non-finite", id="nan"),
        pytest.param(_with(0.95, [19.5, 19.5, np.inf]), "quantile 0.95 has non-finite", id="inf"),
        pytest.param(_with(0.75, [17.5, 17.5]), r"quantile 0.75 has shape \(2,\)", id="shape"),
        pytest.param(
            _with(0.9, [19.0, 30.0, 19.0]), "quantile 0.9 exceeds quantile 0.95", id="cross"
        ),
        pytest.param(_with(1.0, [30.0, 30.0, 30.0]), r"must be in \(0, 1\), got 1.0", id="level"),
        pytest.param(
            {q: v for q, v in _quantiles().items() if q != 0.1},
            r"lacks required quantiles \[0.1\]",
            id="missing",
        ),
    ],
)
def test_refused_forecast_names_the_level(quantiles: dict[float, np.ndarray], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _forecast(quantiles, mean=np.full(3, 15.0))


def test_non_finite_mean_is_refused() -> None:
    with pytest.raises(ValueError, match="mean forecast has non-finite"):
        _forecast(_quantiles(), mean=np.array([15.0, np.nan, 15.0]))
