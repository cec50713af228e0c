"""Recorded forecasts with the instant each value became known (the I/O edge for replay and
benchmarks): a provider's day-ahead carbon forecast, per-source generation forecasts, and
weather forecasts, as `KnownSeries`.

Availability follows each folder's SOURCE.md in `shared/data`:
- DACF (`dacf-dayahead-carbon-forecasts-2021H2`): a UTC day's 24 values (intensity forecast
  and per-source generation forecasts) are known from 04:00 UTC of that day.
- GFS (`gfs-weather-forecasts-2021`): the row labelled t describes the weather at t + 24 h,
  so rows are moved 24 h later; a valid day's values are known from 04:00 UTC of that day.

The files are read with `forecasts.sources.csv_series.read_csv_columns` (the one reader).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np

from forecasts.carbon_forecast import KnownSeries
from forecasts.series import RegularSeries
from forecasts.sources.csv_series import read_csv_columns
from forecasts.time import to_epoch_s

__all__ = [
    "DAY_AHEAD_KNOWN_AFTER",
    "GFS_LABEL_SHIFT",
    "join_known",
    "known_ahead",
    "read_generation_forecasts",
    "read_provider_forecast",
    "read_weather_forecasts",
]

HOUR = timedelta(hours=1)
#: A valid day's day-ahead values are known from this long after its midnight (UTC).
DAY_AHEAD_KNOWN_AFTER = timedelta(hours=4)
#: GFS rows are labelled this much before the instant they describe.
GFS_LABEL_SHIFT = timedelta(hours=24)
WEATHER_COLUMNS = ("wind_speed_ms", "temperature_k", "dewpoint_k", "dswrf_wm2", "precip_kgm2")


def _day_known(
    path: Path, columns: tuple[str, ...] | None, shift: timedelta, known_after: timedelta
) -> KnownSeries:
    start, step, names, values = read_csv_columns(path, columns=columns, step=HOUR, shift=shift)
    t = to_epoch_s(start) + np.arange(values.shape[0]) * step.total_seconds()
    known = np.floor(t / 86400.0) * 86400.0 + known_after.total_seconds()
    return KnownSeries(start=start, step=step, values=values, known_s=known, columns=names)


def known_ahead(series: RegularSeries, ahead: timedelta | None = timedelta(days=1)) -> KnownSeries:
    """A forecast column without issue times: each value known `ahead` before its step
    (None: always known, for perfect foresight)."""
    t = series.epoch_s()
    known = np.full(t.shape, -np.inf) if ahead is None else t - ahead.total_seconds()
    return KnownSeries(start=series.start, step=series.step, values=series.values, known_s=known)


def read_provider_forecast(
    path: Path,
    *,
    column: str = "ci_forecast_da_direct",
    known_after: timedelta = DAY_AHEAD_KNOWN_AFTER,
) -> KnownSeries:
    """A recorded day-ahead intensity forecast, each day known from `known_after` its
    midnight."""
    return _day_known(Path(path), (column,), timedelta(0), known_after)


def read_generation_forecasts(
    path: Path,
    *,
    known_after: timedelta = DAY_AHEAD_KNOWN_AFTER,
    sources: tuple[str, ...] | None = None,
) -> KnownSeries:
    """Every `<source>_forecast_da_mw` column of a DACF file, as shares of their hourly sum
    (DE's MW are 4x: shares are unaffected), known like the provider's forecast; or only
    the named `sources` (`wind`, `solar`), as MW: a subset whose issue time differs from the
    rest (DE's and SE's ENTSO-E wind and solar forecasts are published the day before)."""
    if sources is not None:
        cols = tuple(f"{s}_forecast_da_mw" for s in sources)
        picked = _day_known(Path(path), cols, timedelta(0), known_after)
        return replace(picked, columns=tuple(f"{s}_mw" for s in sources))
    raw = _day_known(Path(path), None, timedelta(0), known_after)
    keep = [i for i, c in enumerate(raw.columns) if c.endswith("_forecast_da_mw")]
    gen = raw.values[:, keep]
    total = np.nansum(gen, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(total > 0, gen / total, np.nan)
    return replace(
        raw,
        values=shares,
        known_s=raw.known_s[:, keep],
        columns=tuple(f"{raw.columns[i].removesuffix('_forecast_da_mw')}_share" for i in keep),
    )


def read_weather_forecasts(
    path: Path,
    *,
    columns: tuple[str, ...] = WEATHER_COLUMNS,
    label_shift: timedelta = GFS_LABEL_SHIFT,
    known_after: timedelta = DAY_AHEAD_KNOWN_AFTER,
) -> KnownSeries:
    """A GFS weather trace: rows moved `label_shift` later (to the instant they describe),
    each valid day known from `known_after` its midnight."""
    return _day_known(Path(path), columns, label_shift, known_after)


def join_known(parts: list[KnownSeries]) -> KnownSeries:
    """Several inputs side by side on the union of their grids (one hour step); each
    column keeps the instants its part became known (absent rows: NaN, known at once), so an
    input published earlier is used earlier."""
    if len(parts) == 1:
        return parts[0]
    start = min(p.start for p in parts)
    end = max(p.start + p.step * len(p) for p in parts)
    n = round((end - start) / HOUR)
    cols = [p.on(start, n, at=None) for p in parts]
    knowns = []
    for p in parts:
        k = np.full((n, len(p.columns)), -np.inf)
        off = round((p.start - start) / HOUR)
        k[off : off + len(p)] = p.known_s
        knowns.append(k)
    known = np.hstack(knowns)
    return KnownSeries(
        start=start,
        step=HOUR,
        values=np.hstack(cols),
        known_s=known,
        columns=tuple(c for p in parts for c in p.columns),
    )
