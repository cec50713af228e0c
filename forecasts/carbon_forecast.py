"""The carbon-intensity forecast (pure): the one module `gridshift run`, `gridshift replay`,
`gridshift forecast` and the extender forecast with.

Inputs are what is known at the origin (`CarbonInputs`): the observed intensity up to the
origin, optionally a provider's forecast and day-ahead inputs (weather and generation
forecasts: `exog`), each a `KnownSeries` that
carries the instant every value became known, so a backtest origin only ever sees what had
arrived by then (and a replay can play recorded forecasts exactly as they arrived).

- `plan_carbon_forecast`: per region, a rolling-origin backtest over the newest history
  chooses the own model (24 h seasonal naive, seasonal regression, or the regression with
  exog inputs, each input's lag chosen on the data before the backtest window); where a
  provider forecast is given, whether to correct it by its latest observed error fading with
  lead time (half-life chosen by the backtest, kept only where it lowers MAE) and whether a
  blend with the own model beats both (else the provider's forecast is used as given).
  Inputs published at different times keep their own (a day-ahead wind forecast published
  the afternoon before beside weather known from 04:00 of its day): the exog model has a
  second fit on the inputs published earliest, for the steps only they reach. The
  chosen forecast's out-of-sample errors from origins every third hour of the last six
  weeks calibrate the intervals (`Calibration`): split-conformal quantiles conditional on
  the origin's hour of day, the lead and which inputs had arrived for the step, scaled by
  the volatility before each origin. The plan keeps its scores and reasons. Day-ahead
  values end with the day they were issued for: past the last one, the own model carries
  on from where they left the path (the difference fading, `seam_half_life_steps`), so a
  48 h path has no level jump at midnight for the elastic planner to rank hours by.
- `forecast_carbon`: `horizon` steps from the origin with a plan: mean and p05..p95.
- `score_forecasts`: the honest metrics (out-of-sample MAE relative to the 24 h seasonal
  naive on the same points, MAPE, Spearman rank correlation per window, interval coverage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from forecasts.forecast import STANDARD_QUANTILES, FittedModel, Forecast
from forecasts.models._support import build_forecast, fill_gaps
from forecasts.models.regression import SeasonalRegression
from forecasts.series import RegularSeries
from forecasts.time import ensure_utc, to_epoch_s

__all__ = [
    "Calibration",
    "CarbonForecastSettings",
    "CarbonInputs",
    "CarbonPlan",
    "ForecastScores",
    "KnownSeries",
    "align",
    "forecast_carbon",
    "plan_carbon_forecast",
    "score_forecasts",
    "seasonal_naive",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DAY_STEPS = 24
#: The exog model's second fit, on the inputs published earliest (`_early_columns`).
EARLY = "regression+early inputs"


def align(series: RegularSeries, *, like: RegularSeries) -> FloatArray:
    """Values of `series` on the grid of `like` (NaN where `series` has no step)."""
    if series.step != like.step:
        raise ValueError(f"steps differ: {series.step} vs {like.step}")
    return _shifted(series.values, series.start, like.start, like.step, len(like))


def _shifted(
    values: FloatArray, start: datetime, like_start: datetime, step: timedelta, n: int
) -> FloatArray:
    offset = (to_epoch_s(start) - to_epoch_s(like_start)) / step.total_seconds()
    if abs(offset - round(offset)) > 1e-9:
        raise ValueError("series are not on the same grid")
    shift = round(offset)
    out = np.full((n, *values.shape[1:]), np.nan)
    lo, hi = max(0, shift), min(n, shift + len(values))
    if hi > lo:
        out[lo:hi] = values[lo - shift : hi - shift]
    return out


@dataclass(frozen=True, slots=True)
class KnownSeries:
    """Values on a regular grid (one column or several) with the instant (epoch seconds)
    each row became known, one instant per row or one per row and column (inputs published
    at different times side by side): a provider's forecast, weather or generation
    forecasts. `known_s` is kept as one column per value column."""

    start: datetime
    step: timedelta
    values: FloatArray
    known_s: FloatArray
    columns: tuple[str, ...] = ("value",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, name="KnownSeries.start"))
        values = np.array(self.values, dtype=float, copy=True)
        if values.ndim == 1:
            values = values[:, None]
        known = np.array(self.known_s, dtype=float, copy=True)
        if known.ndim == 1 and known.shape == (values.shape[0],):
            known = np.repeat(known[:, None], values.shape[1], axis=1)
        if known.shape != values.shape or values.shape[1] != len(self.columns):
            raise ValueError(
                f"KnownSeries: {values.shape} values, {np.shape(self.known_s)} known instants, "
                f"{len(self.columns)} columns"
            )
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "known_s", known)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def on(self, start: datetime, n: int, *, at: datetime | None) -> FloatArray:
        """Rows for the `n` steps from `start`, NaN where absent or not yet known at `at`
        (None: every row, for choosing lags on the past)."""
        offset = (to_epoch_s(start) - to_epoch_s(self.start)) / self.step.total_seconds()
        lo = min(max(0, round(offset)), len(self))
        hi = min(max(lo, round(offset) + n), len(self))
        vals = self.values[lo:hi]
        if at is not None:
            vals = np.where(self.known_s[lo:hi] <= to_epoch_s(at), vals, np.nan)
        return _shifted(vals, self.start + self.step * lo, start, self.step, n)

    def shifted(self, steps: int) -> KnownSeries:
        """The same values moved `steps` later in time (a lagged input)."""
        return KnownSeries(
            start=self.start + self.step * steps,
            step=self.step,
            values=self.values,
            known_s=self.known_s,
            columns=self.columns,
        )


@dataclass(frozen=True, slots=True)
class CarbonInputs:
    """What is known at the origin `history.end`: the observed intensity before it, and
    optionally a provider's forecast (one column) and day-ahead inputs (weather, generation
    forecasts: several columns)."""

    history: RegularSeries
    provider: KnownSeries | None = None
    exog: KnownSeries | None = None

    @property
    def origin(self) -> datetime:
        return self.history.end


@dataclass(frozen=True, slots=True)
class CarbonForecastSettings:
    """How the plan is chosen. Defaults: six weeks of daily-ish origins (25 h apart, so every
    hour of the day is an origin), 12 weeks of training for the regression. The calibration
    fields (`calibration_*`, `volatility_window_steps`, `interval_widening`) make the plan's
    `Calibration`, which carries those its forecasts apply it with."""

    horizon_steps: int = 48
    backtest_origins: int = 42
    origin_stride_steps: int = 25
    train_steps: int = 24 * 7 * 12
    #: Half-lives (steps) of the fading correction by the latest observed error.
    correction_half_lives: tuple[float, ...] = (3.0, 8.0, 24.0)
    blend_weights: tuple[float, ...] = (0.25, 0.5, 0.75)
    #: Candidate extra lags (steps) per exog column, chosen before the backtest window.
    weather_lags: tuple[int, ...] = (-3, 0, 3, 6)
    min_gain: float = 0.01
    #: Day-ahead values (provider, exog) end at the last hour of the day they were issued
    #: for; past it, the own model carries on from where they left it, the difference fading
    #: with this half-life (steps), so the 48 h path has no level jump at that seam
    #: (0: no carry-over).
    seam_half_life_steps: float = 12.0
    #: Days of origins whose out-of-sample errors calibrate the intervals (the newest before
    #: the plan, within the backtest window), every `calibration_stride_steps` hours: every
    #: third hour, so each hour of the day is within an hour of one.
    calibration_days: int = 42
    calibration_stride_steps: int = 3
    #: Fewest errors an interval is calibrated on (`CALIBRATION_POOLS`).
    calibration_min_points: int = 100
    #: Errors are scaled by the volatility before their origin (mean absolute day-on-day
    #: change over this many hours), and intervals by the volatility before theirs: a
    #: windy, volatile week gets wider intervals than the calm weeks it was calibrated on.
    volatility_window_steps: int = 36
    #: Intervals are widened by this factor: the errors of the days after a plan vary more
    #: than those it was calibrated on (regimes last days), so quantiles of the calibration
    #: window alone under-cover. Chosen with `volatility_window_steps` (24/36/48 h) on the
    #: day-ahead bench's Jul-Sep 2021 (coverage p10-p90 78-82 %, p05-p95 88-92 %), checked on
    #: Oct-Dec (README).
    interval_widening: float = 1.1

    def __post_init__(self) -> None:
        for name in (
            "horizon_steps",
            "backtest_origins",
            "origin_stride_steps",
            "train_steps",
            "calibration_days",
            "calibration_stride_steps",
            "calibration_min_points",
            "volatility_window_steps",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.seam_half_life_steps < 0:
            raise ValueError("seam_half_life_steps must be >= 0")
        if self.interval_widening <= 0:
            raise ValueError("interval_widening must be > 0")

    @property
    def history_steps(self) -> int:
        """Steps of history a full plan uses (training, backtest window, lags)."""
        return (
            self.train_steps
            + self.backtest_origins * self.origin_stride_steps
            + self.horizon_steps
            + 24 * 7 * 2
        )


#: `Calibration.states` bits: what a forecast knew of the step it forecast.
PROVIDER_KNOWN = 1
EXOG_KNOWN = 2
EARLY_EXOG_KNOWN = 4


@dataclass(frozen=True, slots=True)
class Calibration:
    """Out-of-sample errors of the plan's forecast (truth - forecast, a row per origin and
    a column per lead) with what each forecast knew of the step (`states`: the bits
    `PROVIDER_KNOWN`, `EXOG_KNOWN`, `EARLY_EXOG_KNOWN`; see `_known_state`), its origin
    (epoch seconds) and the volatility before that origin (`scale`, `_volatility`). Every
    error is of a step before the plan's origin. The intervals are split-conformal
    quantiles of the errors over the volatility (`_interval_offsets`), from origins at the
    same hour of day, at the same lead and knowing the same: a forecast made at 04:00,
    when the day's provider forecast and weather have arrived, is calibrated on errors
    made with them, not pooled with the larger ones made before they arrived.
    `scale_floor`: the least volatility used (a tenth of the mean over the origins).

    It carries the knobs a forecast applies it with (`CarbonForecastSettings`' calibration
    fields): `widening` (`interval_widening`), `min_points` (`calibration_min_points`) and
    `volatility_window_steps`, the window of the volatility before a forecast's origin, as
    before each of its own origins."""

    residuals: FloatArray
    states: IntArray
    origin_s: FloatArray
    scale: FloatArray
    widening: float = 1.0
    min_points: int = 100
    volatility_window_steps: int = 36

    def __post_init__(self) -> None:
        r = np.asarray(self.residuals, dtype=float)
        st = np.asarray(self.states, dtype=np.int64)
        o = np.asarray(self.origin_s, dtype=float)
        sc = np.asarray(self.scale, dtype=float)
        if r.ndim != 2 or st.shape != r.shape or o.shape != (r.shape[0],) or sc.shape != o.shape:
            raise ValueError(
                f"Calibration: residuals {r.shape}, states {st.shape}, origins {o.shape}, "
                f"scales {sc.shape}"
            )
        object.__setattr__(self, "residuals", r)
        object.__setattr__(self, "states", st)
        object.__setattr__(self, "origin_s", o)
        object.__setattr__(self, "scale", sc)

    @classmethod
    def empty(cls, horizon: int, *, settings: CarbonForecastSettings) -> Calibration:
        """No backtest: zero-width intervals (with the knobs of `settings`)."""
        return cls(
            residuals=np.zeros((0, horizon)),
            states=np.zeros((0, horizon), dtype=np.int64),
            origin_s=np.zeros(0),
            scale=np.zeros(0),
            widening=settings.interval_widening,
            min_points=settings.calibration_min_points,
            volatility_window_steps=settings.volatility_window_steps,
        )

    @property
    def scale_floor(self) -> float:
        finite = self.scale[np.isfinite(self.scale)]
        mean = float(finite.mean()) if finite.size else 0.0
        return 0.1 * mean if mean > 0 else 1.0


@dataclass(frozen=True, slots=True)
class CarbonPlan:
    """One region's forecast method, as chosen by `plan_carbon_forecast`.

    `exog_columns`: the names of the exog inputs it was planned on; `early_columns`: which
    of them (indices) were published earliest then (`_early_columns`), the columns of its
    early-inputs fit and of the `EARLY_EXOG_KNOWN` state its intervals were calibrated on.
    A forecast keeps these, whatever the publication leads of its own inputs."""

    own: str
    fits: dict[str, FittedModel] = field(repr=False)
    weather_lags: tuple[int, ...]
    provider_weight: float
    half_life_steps: float | None
    calibration: Calibration = field(repr=False)
    scores: dict[str, float]
    reasons: tuple[str, ...]
    seam_half_life_steps: float = 0.0
    exog_columns: tuple[str, ...] = ()
    early_columns: tuple[int, ...] = ()

    @property
    def name(self) -> str:
        if self.provider_weight >= 1.0:
            base = "provider"
        elif self.provider_weight > 0:
            base = f"blend({self.provider_weight:g} provider + {self.own})"
        else:
            base = self.own
        return base + ("+correction" if self.half_life_steps else "")


def seasonal_naive(values: FloatArray, origin: int, horizon: int) -> FloatArray:
    """The 24 h seasonal naive from `origin`: each step takes the value a whole number of
    days before it, the newest observed one."""
    h = np.arange(horizon)
    idx = origin + h - DAY_STEPS * (h // DAY_STEPS + 1)
    if idx.min() < 0:
        raise ValueError("seasonal naive needs a day of history")
    return np.asarray(values[idx], dtype=float)


def _weather_matrix(
    inputs: CarbonInputs, lags: Sequence[int], first: int, n: int, at: datetime
) -> FloatArray:
    """Exog columns (each at its lag) for the `n` steps from history index `first`, as known
    at `at`."""
    w = inputs.exog
    assert w is not None
    start = inputs.history.time_at(first)
    cols = [w.shifted(lag).on(start, n, at=at)[:, j] for j, lag in enumerate(lags)]
    return np.column_stack(cols)


def _early_columns(exog: KnownSeries | None) -> tuple[int, ...]:
    """The exog columns published furthest ahead of the steps they describe (by the median
    lead of their rows), when that is a strict subset of the columns: e.g. a day-ahead wind
    and solar forecast published the afternoon before, beside weather known from 04:00 of
    its day. The exog model then has a second fit on these alone for the steps only they
    reach. () when every column is published alike, or there are no inputs."""
    if exog is None:
        return ()
    t = to_epoch_s(exog.start) + np.arange(len(exog))[:, None] * exog.step.total_seconds()
    lead = np.where(np.isfinite(exog.known_s), t - exog.known_s, np.nan)
    if not np.isfinite(lead).any(axis=0).all():
        return ()
    med = np.nanmedian(lead, axis=0)
    early = tuple(int(j) for j in np.flatnonzero(med >= med.max() - 3600.0))
    return early if len(early) < len(exog.columns) else ()


def _choose_lags(
    values: FloatArray, exog: KnownSeries, hist: RegularSeries, end: int, cands: Sequence[int]
) -> tuple[int, ...]:
    """Per exog column, the lag whose values best correlate (absolute) with the day-on-day
    change of the intensity on steps before `end` (the data before the backtest window)."""
    change = values[DAY_STEPS:end] - values[: end - DAY_STEPS]
    lags = []
    for j in range(len(exog.columns)):
        best, best_r = 0, -1.0
        for lag in cands:
            col = exog.shifted(lag).on(hist.start, end, at=None)[:, j]
            d = col[DAY_STEPS:end] - col[: end - DAY_STEPS]
            ok = np.isfinite(d) & np.isfinite(change)
            if ok.sum() < 24 * 14 or np.std(d[ok]) == 0:
                continue
            r = abs(float(np.corrcoef(d[ok], change[ok])[0, 1]))
            if r > best_r:
                best, best_r = lag, r
        lags.append(best)
    return tuple(lags)


def _regression(settings: CarbonForecastSettings) -> SeasonalRegression:
    return SeasonalRegression(
        max_horizon=settings.horizon_steps, window_steps=settings.train_steps, holdout_steps=0
    )


def _fit(
    model: SeasonalRegression,
    values: FloatArray,
    hist: RegularSeries,
    end: int,
    ex: FloatArray | None,
) -> FittedModel | None:
    """The regression fitted on steps before `end` (with exog: on the newest stretch where
    it is known; the last steps before a refit instant often have no exog yet: a negative
    lag reaches into a day whose inputs arrive later, so those steps are left out rather
    than losing the exog model)."""
    first = 0
    if ex is not None:
        known = np.asarray(np.isfinite(ex[:end]).all(axis=1), dtype=bool)
        ok = np.flatnonzero(known)
        if ok.size == 0:
            return None
        end = int(ok[-1]) + 1
        bad = np.flatnonzero(~known[:end])
        first = int(bad[-1]) + 1 if bad.size else 0
    series = RegularSeries(
        start=hist.time_at(first), step=hist.step, values=values[first:end], unit=hist.unit
    )
    try:
        return model.fit(series, exog=None if ex is None else ex[first:end])
    except ValueError:
        return None


def _carry(
    base: FloatArray, over: FloatArray, ok: npt.NDArray[np.bool_], half_life: float
) -> FloatArray:
    """`over` where `ok`, `base` elsewhere; past the last `ok` step (of each row), `base`
    plus the difference there fading with `half_life` steps (no level jump where `over`
    ends)."""
    out = np.where(ok, over, base)
    if half_life <= 0:
        return out
    rows, b, o, k = (np.atleast_2d(x) for x in (out, base, over, ok))
    lead = np.arange(rows.shape[1])
    for r in range(rows.shape[0]):
        idx = np.flatnonzero(k[r])
        if idx.size:
            last = int(idx[-1])
            gap = lead[last + 1 :] - last
            rows[r, last + 1 :] += (o[r, last] - b[r, last]) * 0.5 ** (gap / half_life)
    return out


def _own_paths(
    inputs: CarbonInputs,
    values: FloatArray,
    fits: dict[str, FittedModel],
    lags: tuple[int, ...],
    origin: int,
    horizon: int,
    seam_half_life: float,
    *,
    early: tuple[int, ...],
    only: str | None = None,
) -> dict[str, FloatArray]:
    """Each own model's mean path from `origin` (an index into the history grid), using
    only what was known at that origin (`only`: that model's and what it builds on). The
    exog model falls back to the plain regression on steps whose exog was not known yet.
    `early`: the exog columns of the early-inputs fit (`CarbonPlan.early_columns`)."""
    hist = inputs.history
    at = hist.time_at(origin)
    out = {"seasonal_naive": seasonal_naive(values, origin, horizon)}
    if only == "seasonal_naive":
        return out
    lo = max(0, origin - 24 * 7 * 2 - DAY_STEPS)
    recent = RegularSeries(
        start=hist.time_at(lo), step=hist.step, values=values[lo:origin], unit=hist.unit
    )
    reg = fits.get("regression")
    if reg is not None:
        out["regression"] = np.asarray(reg.predict(horizon=horizon, history=recent).mean)
    wfit = fits.get("regression+exog")
    if only == "regression":
        return out
    if wfit is not None and inputs.exog is not None and "regression" in out:
        ex = _weather_matrix(inputs, lags, origin, horizon, at)
        path = out["regression"]
        # the inputs published earliest reach furthest: their own fit there, then every input
        efit = fits.get(EARLY)
        stages = [(wfit, ex)]
        if early and efit is not None:
            stages.insert(0, (efit, ex[:, early]))
        for fit, cols in stages:
            known = np.asarray(np.isfinite(cols).all(axis=1), dtype=bool)
            if known.any():
                filled = np.where(np.isfinite(cols), cols, 0.0)
                mean = np.asarray(
                    fit.predict(horizon=horizon, history=recent, exog_future=filled).mean
                )
                path = _carry(path, mean, known, seam_half_life)
        out["regression+exog"] = path
    return out


def _provider_path(
    inputs: CarbonInputs, values: FloatArray, origin: int, horizon: int, half_life: float | None
) -> tuple[FloatArray, FloatArray]:
    """(provider values as known at `origin`, the same corrected by the latest observed
    error fading with `half_life` steps) for the steps from `origin`; NaN where absent."""
    p = inputs.provider
    assert p is not None
    hist = inputs.history
    at = hist.time_at(origin)
    lo = max(0, origin - DAY_STEPS)
    known = p.on(hist.time_at(lo), origin - lo + horizon, at=at)[:, 0]
    future = known[origin - lo :]
    if half_life is None:
        return future, future
    errs = values[lo:origin] - known[: origin - lo]
    finite = np.flatnonzero(np.isfinite(errs))
    if finite.size == 0:
        return future, future
    last = int(finite[-1])
    age = (origin - lo) - last - 1
    lead = np.arange(horizon) + 1 + age
    return future, future + errs[last] * 0.5 ** (lead / half_life)


def _combine(own: FloatArray, prov: FloatArray, weight: float, seam_half_life: float) -> FloatArray:
    """`weight` x provider + the rest own model where the provider has values; past its
    last value the own model carries on from the blend (`_carry`)."""
    ok = np.isfinite(prov)
    mixed = np.where(ok, weight * np.where(ok, prov, 0.0) + (1 - weight) * own, own)
    return _carry(own, mixed, ok, seam_half_life)


def _known_state(
    inputs: CarbonInputs,
    *,
    origin: int,
    horizon: int,
    lags: tuple[int, ...],
    provider: bool,
    exog: bool,
    early: tuple[int, ...],
) -> IntArray:
    """Per step from `origin` (an index into the history grid), which day-ahead inputs the
    forecast made there had for it (`Calibration` bits): the provider's value (when the
    forecast uses the provider), every exog input or only the earliest-published ones (when
    it uses the exog model; `early`: the plan's early columns)."""
    hist = inputs.history
    at = hist.time_at(origin)
    state = np.zeros(horizon, dtype=np.int64)
    if provider and inputs.provider is not None:
        prov = inputs.provider.on(at, horizon, at=at)[:, 0]
        state |= np.where(np.isfinite(prov), PROVIDER_KNOWN, 0)
    w = inputs.exog
    if exog and w is not None:
        known = np.column_stack(
            [np.isfinite(w.shifted(lag).on(at, horizon, at=at)[:, j]) for j, lag in enumerate(lags)]
        )
        every = known.all(axis=1)
        state |= np.where(every, EXOG_KNOWN, 0)
        if early:
            state |= np.where(~every & known[:, list(early)].all(axis=1), EARLY_EXOG_KNOWN, 0)
    return state


def plan_carbon_forecast(
    inputs: CarbonInputs, *, settings: CarbonForecastSettings | None = None
) -> CarbonPlan:
    """Choose and fit the region's forecast on its history (see the module docstring)."""
    settings = settings or CarbonForecastSettings()
    hist = inputs.history
    if hist.step != timedelta(hours=1):
        raise ValueError(f"carbon forecasts are hourly; history step is {hist.step}")
    n = len(hist)
    if n < DAY_STEPS:
        raise ValueError(f"carbon forecast needs at least {DAY_STEPS} h of history, got {n}")
    values = fill_gaps(hist.values, DAY_STEPS)
    horizon = settings.horizon_steps
    stride = settings.origin_stride_steps
    last = n - horizon
    origins = [last - i * stride for i in range(settings.backtest_origins)]
    origins = sorted(o for o in origins if o >= 2 * DAY_STEPS)
    reasons: list[str] = []
    model = _regression(settings)
    lags: tuple[int, ...] = ()
    early = _early_columns(inputs.exog)
    exog_columns = inputs.exog.columns if inputs.exog is not None else ()
    if inputs.exog is not None:
        lags = _choose_lags(
            values, inputs.exog, hist, origins[0] if origins else n, settings.weather_lags
        )
        reasons.append(
            "exog lags (chosen before the backtest window): "
            + ", ".join(f"{c} {lag:+d} h" for c, lag in zip(inputs.exog.columns, lags, strict=True))
        )
    final_fits = _fits_until(model, inputs, values, lags, n, early=early)
    if not origins:
        reasons.append("too little history for a backtest: the 24 h seasonal naive, no interval")
        return CarbonPlan(
            own="seasonal_naive",
            fits={},
            weather_lags=lags,
            provider_weight=1.0 if inputs.provider is not None else 0.0,
            half_life_steps=None,
            calibration=Calibration.empty(horizon, settings=settings),
            scores={},
            reasons=tuple(reasons),
            seam_half_life_steps=settings.seam_half_life_steps,
            exog_columns=exog_columns,
            early_columns=early,
        )
    bt_fits = _fits_until(model, inputs, values, lags, origins[0], early=early)
    truth = np.vstack([values[o : o + horizon] for o in origins])
    own_mat = _own_backtest(inputs, values, bt_fits, lags, origins, horizon, settings, early=early)
    scores = {k: float(np.mean(np.abs(m - truth))) for k, m in own_mat.items()}
    own = min(scores, key=lambda k: (scores[k], k))
    naive_mae = scores["seasonal_naive"]
    reasons.append(
        "own model by backtest MAE: "
        + ", ".join(f"{k} {v:.4g}" for k, v in sorted(scores.items()))
        + f" -> {own}"
    )
    chosen = own_mat[own]
    weight, half_life = 0.0, None
    if inputs.provider is not None:
        chosen, weight, half_life = _choose_provider(
            inputs, values, origins, horizon, own_mat[own], truth, settings, scores, reasons
        )
    resid = truth - chosen
    calibration = _calibrate(
        inputs,
        values,
        bt_fits,
        lags,
        early=early,
        first=origins[0],
        last=last,
        settings=settings,
        own=own,
        weight=weight,
        half_life=half_life,
    )
    scores["relative_mae"] = float(np.mean(np.abs(resid))) / naive_mae if naive_mae else np.nan
    return CarbonPlan(
        own=own,
        fits={
            k: v
            for k, v in final_fits.items()
            if own == k or k == "regression" or (own == "regression+exog" and k == EARLY)
        },
        weather_lags=lags,
        provider_weight=weight,
        half_life_steps=half_life,
        calibration=calibration,
        scores=scores,
        reasons=tuple(reasons),
        seam_half_life_steps=settings.seam_half_life_steps,
        exog_columns=exog_columns,
        early_columns=early,
    )


def _calibrate(
    inputs: CarbonInputs,
    values: FloatArray,
    fits: dict[str, FittedModel],
    lags: tuple[int, ...],
    *,
    early: tuple[int, ...],
    first: int,
    last: int,
    settings: CarbonForecastSettings,
    own: str,
    weight: float,
    half_life: float | None,
) -> Calibration:
    """The chosen forecast's out-of-sample errors from origins every
    `calibration_stride_steps` over the newest `calibration_days` (from `first` at the
    earliest, where the backtest fits end, to `last`, the newest whose whole horizon is
    observed), with what each knew (`_known_state`; `early`: the plan's early columns) and
    the volatility before it."""
    horizon = settings.horizon_steps
    hist = inputs.history
    origins = range(
        last,
        max(first, last - settings.calibration_days * DAY_STEPS) - 1,
        -settings.calibration_stride_steps,
    )[::-1]
    use_exog = own == "regression+exog"
    rows, states = [], []
    for o in origins:
        paths = _own_paths(
            inputs,
            values,
            fits,
            lags,
            o,
            horizon,
            settings.seam_half_life_steps,
            early=early,
            only=own,
        )
        path = paths[own]
        if weight > 0:
            _, prov = _provider_path(inputs, values, o, horizon, half_life)
            path = _combine(path, prov, weight, settings.seam_half_life_steps)
        rows.append(values[o : o + horizon] - path)
        states.append(
            _known_state(
                inputs,
                origin=o,
                horizon=horizon,
                lags=lags,
                provider=weight > 0,
                exog=use_exog,
                early=early,
            )
        )
    return Calibration(
        residuals=np.vstack(rows),
        states=np.vstack(states),
        origin_s=np.array([to_epoch_s(hist.time_at(o)) for o in origins]),
        scale=np.array([_volatility(values, o, settings.volatility_window_steps) for o in origins]),
        widening=settings.interval_widening,
        min_points=settings.calibration_min_points,
        volatility_window_steps=settings.volatility_window_steps,
    )


def _volatility(values: FloatArray, origin: int, window: int) -> float:
    """Mean absolute day-on-day change over the `window` steps before `origin` (NaN where
    there is too little history)."""
    lo = origin - window
    if lo < DAY_STEPS:
        return float("nan")
    return float(
        np.nanmean(np.abs(values[lo:origin] - values[lo - DAY_STEPS : origin - DAY_STEPS]))
    )


def _fits_until(
    model: SeasonalRegression,
    inputs: CarbonInputs,
    values: FloatArray,
    lags: tuple[int, ...],
    end: int,
    *,
    early: tuple[int, ...],
) -> dict[str, FittedModel]:
    """The regression fitted on the steps before `end`, and with the exog inputs (at `lags`)
    when the region has them (and on the `early` columns alone); a fit that fails is left
    out."""
    hist = inputs.history
    out: dict[str, FittedModel] = {}
    reg = _fit(model, values, hist, end, None)
    if reg is not None:
        out["regression"] = reg
    if inputs.exog is not None and reg is not None:
        ex = _weather_matrix(inputs, lags, 0, end, hist.end)
        wfit = _fit(model, values, hist, end, ex)
        if wfit is not None:
            out["regression+exog"] = wfit
        efit = _fit(model, values, hist, end, ex[:, early]) if early else None
        if efit is not None:
            out[EARLY] = efit
    return out


def _own_backtest(
    inputs: CarbonInputs,
    values: FloatArray,
    fits: dict[str, FittedModel],
    lags: tuple[int, ...],
    origins: Sequence[int],
    horizon: int,
    settings: CarbonForecastSettings,
    *,
    early: tuple[int, ...],
) -> dict[str, FloatArray]:
    """Each own model's forecast paths from every backtest origin (a row per origin)."""
    paths: dict[str, list[FloatArray]] = {}
    for o in origins:
        for name, path in _own_paths(
            inputs, values, fits, lags, o, horizon, settings.seam_half_life_steps, early=early
        ).items():
            paths.setdefault(name, []).append(path)
    return {k: np.vstack(v) for k, v in paths.items()}


def _choose_provider(
    inputs: CarbonInputs,
    values: FloatArray,
    origins: Sequence[int],
    horizon: int,
    own: FloatArray,
    truth: FloatArray,
    settings: CarbonForecastSettings,
    scores: dict[str, float],
    reasons: list[str],
) -> tuple[FloatArray, float, float | None]:
    """Provider as given, corrected, or blended with the own model: whichever the backtest
    shows best (a correction or blend must gain `min_gain`)."""
    raw_rows: list[FloatArray] = []
    corr_rows: dict[float, list[FloatArray]] = {h: [] for h in settings.correction_half_lives}
    for o in origins:
        raw, _ = _provider_path(inputs, values, o, horizon, None)
        raw_rows.append(raw)
        for h in settings.correction_half_lives:
            corr_rows[h].append(_provider_path(inputs, values, o, horizon, h)[1])
    raw_mat = np.vstack(raw_rows)
    covered = np.isfinite(raw_mat)
    if not covered.any():
        reasons.append("provider: no forecast values in the backtest window; own model")
        return own, 0.0, None

    def mae(m: FloatArray) -> float:
        return float(np.mean(np.abs(_combine(own, m, 1.0, settings.seam_half_life_steps) - truth)))

    base = scores["provider"] = mae(raw_mat)
    best_p, half_life = raw_mat, None
    for h, rows in corr_rows.items():
        m = np.vstack(rows)
        s = mae(m)
        scores[f"provider+correction(half-life {h:g} h)"] = s
        if s < scores["provider"] * (1 - settings.min_gain) and (half_life is None or s < base):
            best_p, half_life, base = m, h, s
    own_mae = float(np.mean(np.abs(own - truth)))
    weight, best = 1.0, min(base, own_mae) * (1 - settings.min_gain)
    for w in settings.blend_weights:
        s = float(np.mean(np.abs(_combine(own, best_p, w, settings.seam_half_life_steps) - truth)))
        scores[f"blend {w:g}"] = s
        if s < best:
            weight, best = w, s
    reasons.append(
        f"provider MAE {scores['provider']:.4g}"
        + (
            f", corrected (half-life {half_life:g} h) {base:.4g}"
            if half_life
            else ", no correction"
        )
        + (f"; blend weight {weight:g} beats both" if weight < 1 else "; provider as given")
    )
    return _combine(own, best_p, weight, settings.seam_half_life_steps), weight, half_life


def _quantiles(pool: FloatArray, levels: FloatArray) -> FloatArray:
    """Empirical quantiles at finite-sample adjusted levels (split conformal)."""
    k = pool.size
    adj = np.clip((levels - 0.5) * (k + 1) / k + 0.5, 0.0, 1.0)
    return np.asarray(np.quantile(pool, adj), dtype=float)


#: The pools an interval is calibrated on, narrowest first: (origin hours either side,
#: leads either side, same state); the first with `Calibration.min_points` errors is used.
CALIBRATION_POOLS: tuple[tuple[int, int, bool], ...] = (
    (1, 2, True),
    (3, 3, True),
    (12, 3, True),
    (12, 3, False),
)


def _interval_offsets(
    cal: Calibration,
    states: IntArray,
    origin_s: float,
    scale: float,
    levels: FloatArray,
) -> FloatArray:
    """Per step of a forecast made at `origin_s` (`states`: what it knows of each step,
    `_known_state`; `scale`: the volatility before it), quantiles of the calibration
    errors over their volatility from origins at the same hour of day, at the same lead,
    knowing the same: the first pool of `CALIBRATION_POOLS` with the calibration's
    `min_points` errors (else the widest), times `scale` and the calibration's widening."""
    res, st = cal.residuals, cal.states
    n_cal = res.shape[1]
    out = np.zeros((levels.size, states.size))
    if res.size == 0:
        return out
    floor = cal.scale_floor
    z = res / np.fmax(cal.scale, floor)[:, None]
    ok = np.isfinite(z)
    hours = np.abs((cal.origin_s - origin_s) / 3600.0) % 24
    hours = np.minimum(hours, 24 - hours)[:, None]
    lead = np.arange(n_cal)
    for h, s in enumerate(states):
        near = np.abs(lead - min(h, n_cal - 1))[None, :]
        pool = z[:0, 0]
        for hour_w, lead_w, same in CALIBRATION_POOLS:
            sel = ok & (hours <= hour_w) & (near <= lead_w)
            if same:
                sel &= st == s
            pool = z[sel]
            if pool.size >= cal.min_points:
                break
        if pool.size:
            out[:, h] = _quantiles(pool, levels)
    return out * cal.widening * (scale if np.isfinite(scale) and scale > floor else floor)


def forecast_carbon(inputs: CarbonInputs, plan: CarbonPlan, *, horizon: int) -> Forecast:
    """`horizon` steps from `inputs.origin` with `plan` (fitted earlier, possibly on older
    history: the newest observations and inputs are used without refitting).

    The exog inputs are used as planned: the early-inputs fit on the plan's
    `early_columns`, even where the inputs' publication leads now differ (it applies to the
    steps its columns are known for, as before); inputs whose columns are not the plan's
    `exog_columns` are left out (the forecast falls back to the regression, named in
    `Forecast.model`), as the fits do not know them."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    hist = inputs.history
    if len(hist) < DAY_STEPS:
        raise ValueError(f"carbon forecast needs {DAY_STEPS} h of history, got {len(hist)}")
    values = fill_gaps(hist.values, DAY_STEPS)
    origin = len(hist)
    if inputs.exog is not None and inputs.exog.columns != plan.exog_columns:
        inputs = CarbonInputs(hist, provider=inputs.provider)
    early = plan.early_columns
    paths = _own_paths(
        inputs,
        values,
        plan.fits,
        plan.weather_lags,
        origin,
        horizon,
        plan.seam_half_life_steps,
        early=early,
    )
    # the plan's own model; where it cannot forecast (no fit), the next simpler one, named
    name = next(k for k in (plan.own, "regression", "seasonal_naive") if k in paths)
    mean = paths[name]
    if inputs.provider is not None and plan.provider_weight > 0:
        _, prov = _provider_path(inputs, values, origin, horizon, plan.half_life_steps)
        if np.isfinite(prov).any():
            mean = _combine(mean, prov, plan.provider_weight, plan.seam_half_life_steps)
            name = plan.name
    states = _known_state(
        inputs,
        origin=origin,
        horizon=horizon,
        lags=plan.weather_lags,
        provider=plan.provider_weight > 0,
        exog=plan.own == "regression+exog",
        early=early,
    )
    cal = plan.calibration
    rq = _interval_offsets(
        cal,
        states,
        to_epoch_s(hist.end),
        _volatility(values, origin, cal.volatility_window_steps),
        np.asarray(STANDARD_QUANTILES),
    )
    qs = {q: mean + rq[i] for i, q in enumerate(STANDARD_QUANTILES)}
    return build_forecast(
        start=hist.end,
        step=hist.step,
        mean=mean,
        quantiles=qs,
        unit=hist.unit,
        model=name,
        lower_bound=0.0,
    )


@dataclass(frozen=True, slots=True)
class ForecastScores:
    """Out-of-sample scores of forecasts on the same test points as the 24 h seasonal naive."""

    relative_mae: float
    mae: float
    naive_mae: float
    mape_percent: float
    rank_correlation: float
    coverage_80_percent: float
    coverage_90_percent: float
    points: int


def _spearman(a: FloatArray, b: FloatArray) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def score_forecasts(
    truth: FloatArray,
    mean: FloatArray,
    naive: FloatArray,
    *,
    bands: dict[float, FloatArray] | None = None,
) -> ForecastScores:
    """Rows are origins, columns leads. Rank correlation: Spearman per row (window), averaged."""
    t, m, nv = (np.atleast_2d(np.asarray(x, dtype=float)) for x in (truth, mean, naive))
    err = np.abs(m - t)
    mae, naive_mae = float(err.mean()), float(np.abs(nv - t).mean())
    nz = t != 0
    cov = {}
    for lo, hi in ((0.1, 0.9), (0.05, 0.95)):
        if bands is None or lo not in bands or hi not in bands:
            cov[hi] = float("nan")
            continue
        inside = (t >= np.atleast_2d(bands[lo])) & (t <= np.atleast_2d(bands[hi]))
        cov[hi] = 100.0 * float(inside.mean())
    return ForecastScores(
        relative_mae=mae / naive_mae if naive_mae else float("nan"),
        mae=mae,
        naive_mae=naive_mae,
        mape_percent=100.0 * float(np.mean(err[nz] / np.abs(t[nz]))),
        rank_correlation=float(np.mean([_spearman(a, b) for a, b in zip(t, m, strict=True)])),
        coverage_80_percent=cov[0.9],
        coverage_90_percent=cov[0.95],
        points=int(t.size),
    )
