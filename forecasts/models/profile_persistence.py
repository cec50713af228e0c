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

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from forecasts.forecast import STANDARD_QUANTILES, Forecast
from forecasts.models._support import ModelFit, PredictCall, fill_gaps
from forecasts.series import RegularSeries

__all__ = ["ProfilePersistence", "ProfilePersistenceFit"]

FloatArray = npt.NDArray[np.float64]


def _filled(values: FloatArray) -> FloatArray:
    """Gaps filled linearly (no seasonal step: the profile is what is being estimated); an
    empty history has no observed values either."""
    if values.size == 0:
        raise ValueError("history has no observed values")
    return fill_gaps(values, 0)


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
        y = _filled(history.values)
        p = self.period
        n_seasons = min(self.seasons, y.size // p)
        if n_seasons < 1 or y.size < p + 2:
            raise ValueError(f"{self.name} needs more than {p + 1} steps of history, got {y.size}")
        if self.multiplicative and (y <= 0).any():
            raise ValueError(f"{self.name}: multiplicative model needs positive values")
        tail = y[-n_seasons * p :]
        profile = np.median(tail.reshape(n_seasons, p), axis=0)
        phase0 = (y.size - n_seasons * p) % p  # phase of y[0] relative to the profile
        phases = (np.arange(y.size) + (p - phase0)) % p
        prof_y = profile[phases]
        dev = np.log(y / prof_y) if self.multiplicative else y - prof_y
        d0, d1 = dev[:-1], dev[1:]
        denom = float(d0 @ d0)
        phi = float(np.clip((d0 @ d1) / denom, 0.0, 0.999)) if denom > 0 else 0.0
        pred_dev = phi * d0
        err = d1 - pred_dev  # one-step errors in deviation space (log-ratio when multiplicative)
        # only the recent seasons the profile describes
        keep = min(err.size, n_seasons * p)
        err = err[-keep:]
        err_phase = (np.arange(y.size - keep, y.size) + (p - phase0)) % self.group_period
        levels = np.array(STANDARD_QUANTILES)
        pooled = np.quantile(err, levels)
        groups = np.tile(pooled, (self.group_period, 1))
        g_n = self.group_period
        rows = err.size // g_n
        if rows >= self.min_group:
            # whole rows of one value per group (the oldest remainder dropped): one call
            used = err[err.size - rows * g_n :].reshape(rows, g_n)
            first = int(err_phase[err.size - rows * g_n])
            per_col = np.quantile(used, levels, axis=0).T  # (group column, level)
            groups = np.roll(per_col, first, axis=0)  # column j holds group (first + j) % G
        return ProfilePersistenceFit(
            model=self,
            profile=profile,
            phase_of_end=int((y.size + (p - phase0)) % p),
            phi=phi,
            group_spread=groups,
            levels=tuple(STANDARD_QUANTILES),
            history=history,
        )


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

    def _predict(self, call: PredictCall) -> Forecast:
        """From the end of the call's history: the profile is the fitted one, the anomaly is
        that of the history's last value."""
        hist, horizon = call.history, call.horizon
        m = self.model
        p = m.period
        y = _filled(hist.values)
        shift = round((hist.end - self.history.end) / hist.step)
        end_phase = (self.phase_of_end + shift) % p
        last_phase = (end_phase - 1) % p
        last = float(y[-1])
        k = np.arange(horizon)
        phases = (end_phase + k) % p
        fade = self.phi ** (k + 1.0)
        base = self.profile[phases]
        widen = np.sqrt(k + 1.0)
        g_idx = (end_phase + k) % m.group_period  # error groups share the profile's phase origin
        spread = self.group_spread[g_idx]  # (horizon, levels)
        if m.multiplicative:
            if last <= 0:
                raise ValueError(f"{self.name}: last value must be positive")
            dev = np.log(last / self.profile[last_phase]) * fade
            quantiles = {
                q: base * np.exp(dev + spread[:, i] * widen) for i, q in enumerate(self.levels)
            }
        else:
            dev = (last - self.profile[last_phase]) * fade
            quantiles = {q: base + dev + spread[:, i] * widen for i, q in enumerate(self.levels)}
            if np.nanmin(hist.values) >= 0:  # a non-negative series stays non-negative
                quantiles = {q: np.maximum(v, 0.0) for q, v in quantiles.items()}
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
