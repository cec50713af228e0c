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
    "BatchPredictor",
    "FittedModel",
    "Forecast",
    "Forecaster",
    "PredictRequest",
    "fit_each",
    "forecasts_of_table",
    "predict_each",
]

FloatArray = npt.NDArray[np.float64]

#: Quantile levels every forecast must carry.
REQUIRED_QUANTILES: tuple[float, ...] = (0.1, 0.5, 0.9, 0.95)
#: Levels the bundled models produce (a superset of the required ones).
STANDARD_QUANTILES: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def _crossing(lo: FloatArray, hi: FloatArray) -> npt.NDArray[np.bool_]:
    """Where a lower level's value exceeds the next level's, beyond rounding: `Forecast`'s
    rule, for one forecast's table and for `forecasts_of_table`'s many at once."""
    return np.asarray(lo > hi + 1e-9 * (1 + np.abs(hi)))


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
        crossed = _crossing(table[:-1], table[1:]).any(axis=1)
        if crossed.any():
            i = int(np.argmax(crossed))
            raise ValueError(f"{self.model}: quantile {levels[i]} exceeds quantile {levels[i + 1]}")
        table.setflags(write=False)
        qs: dict[float, FloatArray] = dict(zip(levels, table, strict=True))
        object.__setattr__(self, "quantiles", qs)
        object.__setattr__(self, "_levels", levels)

    @classmethod
    def _checked_row(
        cls,
        *,
        start: datetime,
        step: timedelta,
        levels: tuple[float, ...],
        table: FloatArray,
        mean_row: int,
        unit: str,
        model: str,
    ) -> Forecast:
        """A forecast from one read-only (level, step) table that `forecasts_of_table` has
        checked as `__post_init__` would (levels sorted, finite, not crossing): its rows are
        the quantiles, row `mean_row` the mean."""
        out = object.__new__(cls)
        for name, value in (
            ("start", start),
            ("step", step),
            ("mean", table[mean_row]),
            ("quantiles", dict(zip(levels, table, strict=True))),
            ("unit", unit),
            ("model", model),
            ("_levels", levels),
        ):
            object.__setattr__(out, name, value)
        return out

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


def forecasts_of_table(
    *,
    starts: Sequence[datetime],
    steps: Sequence[timedelta],
    levels: tuple[float, ...],
    table: FloatArray,
    mean_level: float,
    units: Sequence[str],
    model: str,
) -> list[Forecast | ValueError]:
    """One `Forecast` per row of `table` (forecast, level, step), its mean the `mean_level`
    row, checked all at once with `Forecast`'s own rules; a row that breaks one gets the
    `ValueError` that `Forecast(...)` raises for it. Exactly the forecasts `Forecast` builds
    one by one, at a fraction of the numpy calls when a tick forecasts many workloads."""
    if list(levels) != sorted(levels) or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be sorted and distinct, got {levels}")
    table = np.array(table, dtype=float, copy=True)  # ours, read-only once checked
    if table.ndim != 3 or table.shape[1] != len(levels):
        raise ValueError(f"table must be (forecast, {len(levels)} levels, step), got {table.shape}")
    table.setflags(write=False)
    mean_row = levels.index(mean_level)
    finite = np.asarray(np.isfinite(table).all(axis=(1, 2)))
    crossed = np.asarray(_crossing(table[:, :-1], table[:, 1:]).any(axis=(1, 2)))
    well_formed = all(q in levels for q in REQUIRED_QUANTILES) and all(
        0.0 < q < 1.0 for q in levels
    )
    out: list[Forecast | ValueError] = []
    for i, (start, step, unit) in enumerate(zip(starts, steps, units, strict=True)):
        utc = ensure_utc(start, name="Forecast.start")
        if well_formed and finite[i] and not crossed[i] and step > timedelta(0):
            out.append(
                Forecast._checked_row(
                    start=utc,
                    step=step,
                    levels=levels,
                    table=table[i],
                    mean_row=mean_row,
                    unit=unit,
                    model=model,
                )
            )
            continue
        try:  # `Forecast` says what is wrong, in its own words
            out.append(
                Forecast(
                    start=start,
                    step=step,
                    mean=table[i, mean_row],
                    quantiles=dict(zip(levels, table[i], strict=True)),
                    unit=unit,
                    model=model,
                )
            )
        except ValueError as exc:
            out.append(exc)
    return out


@dataclass(frozen=True, slots=True)
class PredictRequest:
    """One `predict(horizon=..., history=...)` call on a fitted model."""

    model: FittedModel
    horizon: int
    history: RegularSeries | None = None


@runtime_checkable
class BatchPredictor(Protocol):
    """What predicts many fits of one forecaster at once, each exactly as its `predict`."""

    def predict_many(self, requests: Sequence[PredictRequest]) -> list[Forecast | ValueError]:
        """Each request's forecast, in order, or the `ValueError` its `predict` raises.
        Every request's model is a fit this predictor made."""
        ...


def predict_each(requests: Sequence[PredictRequest]) -> list[Forecast | ValueError]:
    """Each request's `predict`, in order, or the `ValueError` it raised: fits whose
    `batch_predictor` is a `BatchPredictor` are predicted together, in one call per
    predictor (a tick forecasting every workload's load at once)."""
    out: list[Forecast | ValueError | None] = [None] * len(requests)
    groups: dict[BatchPredictor, list[int]] = {}
    for i, r in enumerate(requests):
        batch = getattr(r.model, "batch_predictor", None)
        rows = groups.get(batch) if batch is not None else None
        if rows is None and isinstance(batch, BatchPredictor):  # the protocol check once each
            rows = groups[batch] = []
        if rows is not None:
            rows.append(i)
            continue
        try:
            out[i] = r.model.predict(horizon=r.horizon, history=r.history)
        except ValueError as exc:
            out[i] = exc
    for batch, rows in groups.items():
        for i, got in zip(rows, batch.predict_many([requests[i] for i in rows]), strict=True):
            out[i] = got
    return [o for o in out if o is not None]


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
