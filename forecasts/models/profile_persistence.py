"""Profile + persistence: the seasonal profile of recent seasons, plus today's anomaly fading.

    forecast(t + h) = P(t + h) + a(t) * phi^h            (additive, e.g. carbon intensity)
    forecast(t + h) = P(t + h) * r(t) ** (phi^h)         (multiplicative, e.g. request load)

`P` is the median of each phase over the last `seasons` whole seasons (robust to one odd
season: a holiday week, a filled gap) of the history, `a(t)` the
last observation's deviation from it (or `r(t)` its ratio) and `phi` the lag-1
autocorrelation of the deviations, estimated from the same history at every fit (clipped to
[0, 0.999]): a persistent anomaly (a windy day, a busy morning) is carried forward and fades
as the evidence for it ages. Nothing is tuned by hand.

Intervals come from the model's own one-step-ahead in-sample errors, grouped by phase of day
when there are enough (at least `min_group` per phase of `group_period`), otherwise pooled,
widened by sqrt(h) for the h-th step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecasts.forecast import STANDARD_QUANTILES, Forecast, PredictRequest, forecasts_of_table
from forecasts.models._support import ModelFit, PredictCall, fill_gaps, predict_history
from forecasts.series import RegularSeries

__all__ = ["ProfilePersistence", "ProfilePersistenceFit"]

FloatArray = npt.NDArray[np.float64]


def _filled(values: FloatArray) -> FloatArray:
    """Gaps filled linearly (no seasonal step: the profile is what is being estimated); an
    empty history has no observed values either."""
    if values.size == 0:
        raise ValueError("history has no observed values")
    return fill_gaps(values, 0)


def _last_observed(hist: RegularSeries) -> float:
    """The newest observed value (what `_filled(hist.values)[-1]` is), without filling."""
    i = hist.last_observed_index()
    if i is None:
        raise ValueError("history has no observed values")
    return float(hist.values[i])


@dataclass(frozen=True, slots=True)
class ProfilePersistence:
    """`period` steps per season (24 hourly days, 168 hourly weeks); the profile averages up to
    `seasons` whole seasons; `multiplicative` for positive series whose noise scales with the
    level; errors grouped by phase of `group_period` steps (24: hour of day)."""

    period: int = 24
    seasons: int = 7
    multiplicative: bool = False
    group_period: int = 24
    min_group: int = 7
    label: str = ""  # its name when set (`profile_persistence`, the name the settings take)

    def __post_init__(self) -> None:
        if self.period < 1 or self.seasons < 1 or self.group_period < 1 or self.min_group < 1:
            raise ValueError("period, seasons, group_period and min_group must be >= 1")
        if self.period % self.group_period and self.group_period % self.period:
            raise ValueError("group_period must divide period (or be a multiple of it)")

    @property
    def name(self) -> str:
        kind = "mul" if self.multiplicative else "add"
        return self.label or f"profile_persistence_{self.period}_{kind}"

    def fit(
        self, history: RegularSeries, *, exog: FloatArray | None = None, seed: int = 0
    ) -> ProfilePersistenceFit:
        got = self.fit_many([history])[0]
        if isinstance(got, ValueError):
            raise got
        return got

    def fit_many(
        self, histories: Sequence[RegularSeries]
    ) -> list[ProfilePersistenceFit | ValueError]:
        """`fit` of each history, in order (the error where one cannot be fitted). Histories
        of one length are fitted together, as rows of one array: every row's arithmetic is
        the one-history fit's, so each fit is exactly `fit`'s, at a fraction of the numpy
        calls when a replay refits many workloads at once."""
        out: list[ProfilePersistenceFit | ValueError | None] = [None] * len(histories)
        by_size: dict[int, list[tuple[int, FloatArray]]] = {}
        for i, h in enumerate(histories):
            try:
                y = self._checked(_filled(h.values))
            except ValueError as exc:
                out[i] = exc
                continue
            by_size.setdefault(y.size, []).append((i, y))
        for rows in by_size.values():
            fits = self._fit_rows(np.stack([y for _, y in rows]), [histories[i] for i, _ in rows])
            for (i, _), fitted in zip(rows, fits, strict=True):
                out[i] = fitted
        return [o for o in out if o is not None]

    def predict_many(self, requests: Sequence[PredictRequest]) -> list[Forecast | ValueError]:
        """Each request's `predict` (its model a fit of this forecaster), in order, or the
        `ValueError` it raises. Requests of one horizon are predicted together, as rows of
        one array: every row's arithmetic is the one-fit `_predict`'s, element by element
        (the log of the anomaly taken per fit, as there), so each forecast is exactly
        `predict`'s; `forecasts_of_table` checks them all at once."""
        out: list[Forecast | ValueError | None] = [None] * len(requests)
        by_horizon: dict[tuple[int, tuple[float, ...]], list[tuple[int, RegularSeries, float]]] = {}
        for i, r in enumerate(requests):
            fit = r.model
            if not isinstance(fit, ProfilePersistenceFit) or fit.model != self:
                raise ValueError(f"{self.name} cannot predict {fit.name}'s fit")
            try:
                hist = predict_history(r.horizon, r.history, fitted=fit.history)
                last = _last_observed(hist)
            except ValueError as exc:
                out[i] = exc
                continue
            if self.multiplicative and last <= 0:
                out[i] = ValueError(f"{self.name}: last value must be positive")
                continue
            by_horizon.setdefault((r.horizon, fit.levels), []).append((i, hist, last))
        for (horizon, levels), rows in by_horizon.items():
            fits = [requests[i].model for i, _, _ in rows]
            assert all(isinstance(f, ProfilePersistenceFit) for f in fits)
            table = self._predict_rows(
                [f for f in fits if isinstance(f, ProfilePersistenceFit)],
                [h for _, h, _ in rows],
                [last for _, _, last in rows],
                horizon,
            )
            got = forecasts_of_table(
                starts=[h.end for _, h, _ in rows],
                steps=[h.step for _, h, _ in rows],
                levels=levels,
                table=table,
                mean_level=0.5,
                units=[h.unit for _, h, _ in rows],
                model=self.name,
            )
            for (i, _, _), forecast in zip(rows, got, strict=True):
                out[i] = forecast
        return [o for o in out if o is not None]

    def _predict_rows(
        self,
        fits: Sequence[ProfilePersistenceFit],
        hists: Sequence[RegularSeries],
        lasts: Sequence[float],
        horizon: int,
    ) -> FloatArray:
        """The forecast table of each fit from the end of its history (`lasts`: each
        history's newest observed value), as (fit, level, step): the profile is the fitted
        one, the anomaly that of the history's last value, fading. `predict` (one fit) and
        `predict_many` both compute it here."""
        p, g = self.period, self.group_period
        end_phase = np.array(
            [
                (f.phase_of_end + round((h.end - f.history.end) / h.step)) % p
                for f, h in zip(fits, hists, strict=True)
            ]
        )
        last_phase = (end_phase - 1) % p
        k = np.arange(horizon)
        fade = np.array([f.phi for f in fits])[:, None] ** (k + 1.0)  # rows of phi ** (k + 1)
        profiles = np.stack([f.profile for f in fits])
        base = np.take_along_axis(profiles, (end_phase[:, None] + k) % p, axis=1)
        widen = np.sqrt(k + 1.0)
        g_idx = (end_phase[:, None] + k) % g
        spreads = np.stack([f.group_spread for f in fits])  # (fit, group, level)
        spread = np.take_along_axis(spreads, g_idx[:, :, None], axis=1).transpose(0, 2, 1)
        at_last = profiles[np.arange(len(fits)), last_phase]
        if self.multiplicative:
            # the log per fit, on a scalar, as `_predict` takes it
            anomaly = np.array(
                [np.log(last / ref) for last, ref in zip(lasts, at_last, strict=True)]
            )
            dev = anomaly[:, None] * fade
            table: FloatArray = base[:, None, :] * np.exp(dev[:, None, :] + spread * widen)
            return table
        dev = (np.array(lasts) - at_last)[:, None] * fade
        table = (base + dev)[:, None, :] + spread * widen
        floor = np.array([np.nanmin(h.values) >= 0 for h in hists])  # non-negative stays so
        return np.where(floor[:, None, None], np.maximum(table, 0.0), table)

    def _checked(self, y: FloatArray) -> FloatArray:
        p = self.period
        if min(self.seasons, y.size // p) < 1 or y.size < p + 2:
            raise ValueError(f"{self.name} needs more than {p + 1} steps of history, got {y.size}")
        if self.multiplicative and (y <= 0).any():
            raise ValueError(f"{self.name}: multiplicative model needs positive values")
        return y

    def _fit_rows(
        self, ys: FloatArray, histories: Sequence[RegularSeries]
    ) -> list[ProfilePersistenceFit]:
        """The fits of histories of one length, one per row of `ys` (filled, checked)."""
        m, size = ys.shape
        p = self.period
        n_seasons = min(self.seasons, size // p)
        tail = ys[:, -n_seasons * p :]
        profile = np.median(tail.reshape(m, n_seasons, p), axis=1)
        phase0 = (size - n_seasons * p) % p  # phase of y[0] relative to the profile
        phases = (np.arange(size) + (p - phase0)) % p
        prof_y = profile[:, phases]
        dev = np.log(ys / prof_y) if self.multiplicative else ys - prof_y
        d0, d1 = dev[:, :-1], dev[:, 1:]
        # one dot per row (BLAS), the same sums as for one history
        denom = np.array([d0[r] @ d0[r] for r in range(m)])
        cross = np.array([d0[r] @ d1[r] for r in range(m)])
        with np.errstate(divide="ignore", invalid="ignore"):
            phi = np.where(denom > 0, np.clip(cross / denom, 0.0, 0.999), 0.0)
        pred_dev = phi[:, None] * d0
        err = d1 - pred_dev  # one-step errors in deviation space (log-ratio when multiplicative)
        # only the recent seasons the profile describes
        keep = min(err.shape[1], n_seasons * p)
        err = err[:, -keep:]
        err_phase = (np.arange(size - keep, size) + (p - phase0)) % self.group_period
        levels = np.array(STANDARD_QUANTILES)
        pooled = np.quantile(err, levels, axis=1).T  # (row, level)
        groups = np.repeat(pooled[:, None, :], self.group_period, axis=1)
        g_n = self.group_period
        n_rows = keep // g_n
        if n_rows >= self.min_group:
            # whole rows of one value per group (the oldest remainder dropped): one call
            used = err[:, keep - n_rows * g_n :].reshape(m, n_rows, g_n)
            first = int(err_phase[keep - n_rows * g_n])
            per_col = np.quantile(used, levels, axis=1).transpose(1, 2, 0)  # (row, group, level)
            groups = np.roll(per_col, first, axis=1)  # column j holds group (first + j) % G
        phase_of_end = int((size + (p - phase0)) % p)
        return [
            ProfilePersistenceFit(
                model=self,
                profile=profile[r],
                phase_of_end=phase_of_end,
                phi=float(phi[r]),
                group_spread=groups[r],
                levels=tuple(STANDARD_QUANTILES),
                history=history,
            )
            for r, history in enumerate(histories)
        ]


@dataclass(frozen=True, slots=True)
class ProfilePersistenceFit(ModelFit):
    model: ProfilePersistence
    profile: FloatArray
    phase_of_end: int
    phi: float
    group_spread: FloatArray
    levels: tuple[float, ...]
    history: RegularSeries

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def batch_predictor(self) -> ProfilePersistence:
        """Predicts many fits of this model at once (`forecasts.forecast.predict_each`)."""
        return self.model

    def _predict(self, call: PredictCall) -> Forecast:
        """From the end of the call's history (`ProfilePersistence._predict_rows`, one row)."""
        hist, m = call.history, self.model
        last = _last_observed(hist)
        if m.multiplicative and last <= 0:
            raise ValueError(f"{self.name}: last value must be positive")
        table = m._predict_rows([self], [hist], [last], call.horizon)[0]
        quantiles = dict(zip(self.levels, table, strict=True))
        # The point forecast is the median path: the anomaly's fade plus the median error of
        # its phase group, so a group whose errors lean one way moves the point too and the
        # point always lies inside the intervals.
        mean = quantiles[0.5]
        return Forecast(
            start=hist.end,
            step=hist.step,
            mean=mean,
            quantiles=quantiles,
            unit=hist.unit,
            model=self.name,
        )
