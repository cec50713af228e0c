"""The forecast value type and the `Forecaster` role every model plays.

A `Forecast` is a mean plus quantiles for each step of a horizon on a regular grid. The models
in `forecasts/models/` produce them; the scaler and the extender consume them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from forecasts.series import RegularSeries
from forecasts.time import ensure_utc, to_epoch_s

__all__ = [
    "REQUIRED_QUANTILES",
    "STANDARD_QUANTILES",
    "BatchForecaster",
    "FittedModel",
    "Forecast",
    "Forecaster",
    "fit_each",
]

FloatArray = npt.NDArray[np.float64]

#: Quantile levels every forecast must carry.
REQUIRED_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9, 0.95)
#: Levels the bundled models produce (a superset of the required ones).
STANDARD_QUANTILES: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


@dataclass(frozen=True, slots=True)
class Forecast:
    """Mean and quantiles for `horizon` steps starting at `start` (step i covers
    [start + i*step, start + (i+1)*step))."""

    start: datetime
    step: timedelta
    mean: FloatArray
    quantiles: Mapping[float, FloatArray]
    unit: str
    model: str
    _levels: tuple[float, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, name="Forecast.start"))
        if self.step <= timedelta(0):
            raise ValueError(f"step must be positive, got {self.step}")
        mean = np.array(self.mean, dtype=float, copy=True)
        if mean.ndim != 1:
            raise ValueError(f"mean must be one-dimensional, got shape {mean.shape}")
        if not np.isfinite(mean).all():
            raise ValueError(f"{self.model}: mean forecast has non-finite values")
        mean.setflags(write=False)
        object.__setattr__(self, "mean", mean)
        missing = [q for q in REQUIRED_QUANTILES if q not in self.quantiles]
        if missing:
            raise ValueError(f"{self.model}: forecast lacks required quantiles {missing}")
        levels = tuple(sorted(self.quantiles))
        rows: list[FloatArray] = []
        for q in levels:
            if not 0.0 < q < 1.0:
                raise ValueError(f"quantile level must be in (0, 1), got {q}")
            arr = np.asarray(self.quantiles[q], dtype=float)
            if arr.shape != mean.shape:
                raise ValueError(f"quantile {q} has shape {arr.shape}, mean has {mean.shape}")
            rows.append(arr)
        # every level checked at once: one copy (row q of `table` is level q's values)
        table = np.array(rows, dtype=float)
        finite = np.isfinite(table).all(axis=1)
        if not finite.all():
            q = levels[int(np.argmin(finite))]
            raise ValueError(f"{self.model}: quantile {q} has non-finite values")
        lo_rows, hi_rows = table[:-1], table[1:]
        crossed = (lo_rows > hi_rows + 1e-9 * (1 + np.abs(hi_rows))).any(axis=1)
        if crossed.any():
            i = int(np.argmax(crossed))
            raise ValueError(f"{self.model}: quantile {levels[i]} exceeds quantile {levels[i + 1]}")
        table.setflags(write=False)
        qs: dict[float, FloatArray] = dict(zip(levels, table, strict=True))
        object.__setattr__(self, "quantiles", qs)
        object.__setattr__(self, "_levels", levels)

    @property
    def horizon(self) -> int:
        return int(self.mean.shape[0])

    def __len__(self) -> int:
        return self.horizon

    @property
    def end(self) -> datetime:
        return self.start + self.step * self.horizon

    def times(self) -> list[datetime]:
        return [self.start + self.step * i for i in range(self.horizon)]

    def quantile(self, q: float) -> FloatArray:
        """Values at level `q`: linear between carried levels, clamped at the ends."""
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile level must be in (0, 1), got {q}")
        if q in self.quantiles:
            return self.quantiles[q]
        levels = self._levels
        if q <= levels[0]:
            return self.quantiles[levels[0]]
        if q >= levels[-1]:
            return self.quantiles[levels[-1]]
        hi_i = int(np.searchsorted(levels, q))
        lo, hi = levels[hi_i - 1], levels[hi_i]
        w = (q - lo) / (hi - lo)
        out: FloatArray = (1 - w) * self.quantiles[lo] + w * self.quantiles[hi]
        return out

    def index_of(self, at: datetime) -> int | None:
        """Step index whose interval contains `at`, or None outside the horizon."""
        offset = (to_epoch_s(at) - to_epoch_s(self.start)) / self.step.total_seconds()
        i = int(np.floor(offset))
        return i if 0 <= i < self.horizon else None

    def as_series(self, q: float | None = None) -> RegularSeries:
        values = self.mean if q is None else self.quantile(q)
        return RegularSeries(start=self.start, step=self.step, values=values, unit=self.unit)


class FittedModel(Protocol):
    """A model after `fit`: predicts from the end of the history it is given."""

    @property
    def name(self) -> str: ...

    def predict(
        self,
        *,
        horizon: int,
        history: RegularSeries | None = None,
        exog_future: FloatArray | None = None,
        exog_history: FloatArray | None = None,
    ) -> Forecast:
        """Forecast `horizon` steps after the end of `history` (default: the fit history).

        `history` may extend past the data the model was fitted on: the model conditions on
        the newer observations without refitting. `exog_future` has one row per step;
        `exog_history` one row per step of `history` (needed by models fitted with exog that
        filter on the regressors, when `history` is not the fit history).
        """
        ...


class Forecaster(Protocol):
    """A forecasting method (unfitted). Deterministic for a given seed; never mutates inputs."""

    @property
    def name(self) -> str: ...

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> FittedModel: ...


@runtime_checkable
class BatchForecaster(Forecaster, Protocol):
    """A forecaster that fits many histories in one call, each exactly as `fit` would."""

    def fit_many(self, histories: Sequence[RegularSeries]) -> Sequence[FittedModel | ValueError]:
        """The fit of each history, in order, or the `ValueError` `fit` raises for it."""
        ...


def fit_each(
    forecaster: Forecaster, histories: Sequence[RegularSeries]
) -> list[FittedModel | ValueError]:
    """`forecaster.fit` of each history (no exog, seed 0), in order, or the `ValueError` it
    raised: in one call where the forecaster fits many at once (`BatchForecaster`)."""
    if isinstance(forecaster, BatchForecaster):
        return list(forecaster.fit_many(histories))
    out: list[FittedModel | ValueError] = []
    for history in histories:
        try:
            out.append(forecaster.fit(history))
        except ValueError as exc:
            out.append(exc)
    return out
