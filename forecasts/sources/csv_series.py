"""Reads one regular series from a `timestamp_utc,<columns>` CSV trace (the I/O edge).

Long format (a `region` column naming several series) and wide format (one value column per
series) both work. This is gridshift's one reader of these files, in two layers:

- `read_trace_frame` + `trace_rows`: each region's rows as recorded, one per distinct instant
  (sorted; a repeated instant keeps its last row, as a later correction of the same period
  supersedes the earlier one); blank cells (and, when asked, zeros) are NaN. A timestamp
  without an offset is UTC, as the column name says. A cell that is not a timestamp or not a
  number is an error naming the line and column. The CSV trace provider
  (`forecasts.sources.trace.TraceCarbonSource.from_csv`) replays these rows.
- `read_csv_columns` / `read_csv_series`: the same rows placed on a regular grid of `step`
  (inferred as the most common spacing when not given), the distinct instants falling in one
  slot averaged (half-hourly rows read at 1 h give hourly means); slots without a row are NaN.
  `gridshift forecast`/`backtest`, the replay scenarios and the recorded-forecast traces use it.

Bad input raises `SourceDataError` naming the file, the column and the problem.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecasts.platform.errors import SourceDataError
from forecasts.series import RegularSeries
from forecasts.time import from_epoch_s, to_epoch_s

__all__ = [
    "SeriesSpec",
    "TraceRows",
    "list_columns",
    "parse_series_spec",
    "read_csv_columns",
    "read_csv_series",
    "read_trace_frame",
    "trace_rows",
]

TIME_COLUMN = "timestamp_utc"
REGION_COLUMN = "region"
FloatArray = npt.NDArray[np.float64]
_HEADER_LINES = 1  # file line of frame row i: i + 1 + _HEADER_LINES


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    """`FILE[:region[:column]]` as given on the command line."""

    path: Path
    region: str | None = None
    column: str | None = None

    @property
    def label(self) -> str:
        parts = [self.path.stem]
        if self.region:
            parts.append(self.region)
        if self.column:
            parts.append(self.column)
        return ":".join(parts)


def parse_series_spec(text: str) -> SeriesSpec:
    """Split `FILE[:region[:column]]`; empty parts mean "the only one"."""
    if not text.strip():
        raise ValueError("series: empty specification (expected FILE[:region[:column]])")
    parts = text.split(":")
    if len(parts) > 3:
        raise ValueError(
            f"series {text!r}: expected FILE[:region[:column]], got {len(parts)} parts"
        )
    path = Path(parts[0])
    region = parts[1] or None if len(parts) > 1 else None
    column = parts[2] or None if len(parts) > 2 else None
    return SeriesSpec(path=path, region=region, column=column)


def read_trace_frame(path: Path, *, source: str | None = None) -> pd.DataFrame:
    """The file's cells (region names as text); `source` names the reader in errors (default:
    the path)."""
    src = source or str(path)
    if not path.is_file():
        raise SourceDataError("no such file", source=src)
    try:
        return pd.read_csv(path, dtype={REGION_COLUMN: str}, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceDataError(f"not a readable CSV ({exc})", source=src) from exc


def _load(path: Path, time_column: str = TIME_COLUMN) -> pd.DataFrame:
    frame = read_trace_frame(path)
    if time_column not in frame.columns:
        raise SourceDataError(f"missing column {time_column!r}", source=str(path))
    return frame


@dataclass(frozen=True, slots=True)
class TraceRows:
    """One region's rows (or a file's without a region column): distinct instants, sorted,
    each with its last row's values (a column per value column, NaN where missing) and the
    file line that row stands on."""

    epoch_s: FloatArray
    values: FloatArray
    lines: npt.NDArray[np.int64]


def trace_rows(
    frame: pd.DataFrame,
    *,
    path: Path,
    columns: tuple[str, ...],
    regions: Collection[str] | None = None,
    time_column: str = TIME_COLUMN,
    zero_is_missing: bool = False,
    source: str | None = None,
) -> dict[str | None, TraceRows]:
    """`columns` of the rows of `regions` (every region when None; the key None when the file
    has no region column), by region. See the module docstring for the rules."""
    src = source or str(path)
    if REGION_COLUMN in frame.columns:
        names = frame[REGION_COLUMN]
        blank = names.isna() | (names.astype(str).str.strip() == "")
        if blank.any():
            line = int(np.flatnonzero(blank.to_numpy())[0]) + 1 + _HEADER_LINES
            raise SourceDataError(
                f"{path.name} line {line}: column {REGION_COLUMN!r} is empty", source=src
            )
        names = names.astype(str).str.strip()
        keep = names.isin(list(regions)) if regions is not None else np.ones(len(frame), bool)
        keys: pd.Series | None = names[keep]
        frame = frame[keep]
    else:
        keys = None
    lines = np.arange(len(frame), dtype=np.int64)
    if keys is not None:
        lines = np.asarray(keys.index, dtype=np.int64)
    lines = lines + 1 + _HEADER_LINES
    epoch = _epoch_seconds(frame[time_column], lines=lines, path=path, column=time_column, src=src)
    values = (
        np.column_stack(
            [_numbers(frame[c], lines=lines, path=path, column=c, src=src) for c in columns]
        )
        if columns
        else np.zeros((len(frame), 0))
    )
    if zero_is_missing:
        values = np.where(values == 0, np.nan, values)
    out: dict[str | None, TraceRows] = {}
    groups = (
        [(None, np.arange(len(frame)))]
        if keys is None
        else [(str(k), np.flatnonzero((keys == k).to_numpy())) for k in pd.unique(keys)]
    )
    for key, idx in groups:
        order = idx[np.argsort(epoch[idx], kind="stable")]
        e = epoch[order]
        last = np.ones(len(order), dtype=bool)
        last[:-1] = e[1:] != e[:-1]  # a repeated instant keeps its last row
        kept = order[last]
        out[key] = TraceRows(epoch[kept], values[kept], lines[kept])
    return out


def _epoch_seconds(
    cells: pd.Series, *, lines: npt.NDArray[np.int64], path: Path, column: str, src: str
) -> FloatArray:
    stamps = pd.to_datetime(cells, utc=True, format="ISO8601", errors="coerce")
    bad = stamps.isna().to_numpy()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise SourceDataError(
            f"{path.name} line {lines[i]}: column {column!r} is not an ISO 8601 timestamp: "
            f"{cells.iloc[i]!r}",
            source=src,
        )
    return np.asarray(
        (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(), dtype=np.float64
    )


def _numbers(
    cells: pd.Series, *, lines: npt.NDArray[np.int64], path: Path, column: str, src: str
) -> FloatArray:
    """The column as floats: blank and non-finite cells NaN; any other non-number an error."""
    values = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
    if not pd.api.types.is_numeric_dtype(cells):
        text = cells.astype(str).str.strip()
        bad = np.isnan(values) & cells.notna().to_numpy() & (text != "").to_numpy()
        bad &= ~text.str.lower().isin(["nan", "inf", "-inf", "+inf", "infinity"]).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise SourceDataError(
                f"{path.name} line {lines[i]}: column {column!r} is not a number: "
                f"{str(cells.iloc[i]).strip()!r}",
                source=src,
            )
    return np.where(np.isfinite(values), values, np.nan)


def _value_columns(frame: pd.DataFrame) -> list[str]:
    return [
        c
        for c in frame.columns
        if c not in (TIME_COLUMN, "region") and pd.api.types.is_numeric_dtype(frame[c])
    ]


def list_columns(path: Path) -> tuple[list[str], list[str]]:
    """(regions, numeric value columns) of a trace file."""
    frame = _load(path)
    regions = sorted(frame["region"].astype(str).unique()) if "region" in frame else []
    return regions, _value_columns(frame)


def _region_rows(frame: pd.DataFrame, region: str | None, path: Path) -> pd.DataFrame:
    if "region" in frame.columns:
        regions = sorted(frame["region"].astype(str).unique())
        if region is None:
            if len(regions) != 1:
                raise SourceDataError(
                    f"region: choose one of {', '.join(regions)}", source=str(path)
                )
            region = regions[0]
        if region not in regions:
            raise SourceDataError(
                f"region: {region!r} not in file (has {', '.join(regions)})", source=str(path)
            )
        return frame[frame["region"].astype(str) == region]
    if region is not None:
        raise SourceDataError(
            f"region: file has no region column, got {region!r}", source=str(path)
        )
    return frame


def read_csv_columns(
    path: Path,
    *,
    columns: tuple[str, ...] | None = None,
    region: str | None = None,
    step: timedelta | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    time_column: str = TIME_COLUMN,
    zero_is_missing: bool = False,
    shift: timedelta = timedelta(0),
) -> tuple[datetime, timedelta, tuple[str, ...], FloatArray]:
    """(grid start, step, column names, values with one row per step): `columns` (default:
    every numeric one) of `region`'s rows, timestamps moved by `shift`, samples averaged per
    slot of [start, end) (default: the file's span)."""
    path = Path(path)
    frame = _region_rows(_load(path, time_column), region, path)
    available = _value_columns(frame)
    if columns is None:
        columns = tuple(available)
    for c in columns:
        if c not in frame.columns:
            raise SourceDataError(
                f"column: {c!r} not in file (has {', '.join(available)})", source=str(path)
            )
    if len(frame) == 0:
        raise SourceDataError(f"no rows for region={region!r}", source=str(path))
    (rows,) = trace_rows(
        frame,
        path=path,
        columns=columns,
        time_column=time_column,
        zero_is_missing=zero_is_missing,
    ).values()
    epoch = rows.epoch_s + shift.total_seconds()
    values = rows.values
    if step is None:
        diffs = np.diff(np.unique(epoch))
        if diffs.size == 0:
            raise SourceDataError("need at least two instants to infer the step", source=str(path))
        uniq, counts = np.unique(diffs, return_counts=True)
        step = timedelta(seconds=float(uniq[np.argmax(counts)]))
    step_s = step.total_seconds()
    s0 = to_epoch_s(start) if start is not None else float(np.floor(epoch.min() / step_s) * step_s)
    e0 = (
        to_epoch_s(end)
        if end is not None
        else float(np.floor(epoch.max() / step_s) * step_s + step_s)
    )
    n = max(0, int(np.ceil((e0 - s0) / step_s - 1e-9)))
    slot = np.floor((epoch - s0) / step_s).astype(np.int64)
    inside = (slot >= 0) & (slot < n)
    sums = np.zeros((n, len(columns)))
    hits: FloatArray = np.zeros((n, len(columns)))
    ok = np.isfinite(values) & inside[:, None]
    for j in range(len(columns)):
        np.add.at(sums[:, j], slot[ok[:, j]], values[ok[:, j], j])
        np.add.at(hits[:, j], slot[ok[:, j]], 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        grid = np.where(hits > 0, sums / np.maximum(hits, 1), np.nan)
    return from_epoch_s(s0), step, tuple(columns), grid


def read_csv_series(
    path: Path,
    *,
    region: str | None = None,
    column: str | None = None,
    step: timedelta | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    time_column: str = TIME_COLUMN,
    unit: str | None = None,
    zero_is_missing: bool = False,
    shift: timedelta = timedelta(0),
) -> RegularSeries:
    """One series from the file. Without `region`/`column` the file must hold exactly one."""
    path = Path(path)
    if column is None:
        frame = _region_rows(_load(path, time_column), region, path)
        columns = _value_columns(frame)
        if len(columns) != 1:
            raise SourceDataError(
                f"column: choose one of {', '.join(columns) or '(none)'}", source=str(path)
            )
        column = columns[0]
    grid_start, grid_step, _, values = read_csv_columns(
        path,
        columns=(column,),
        region=region,
        step=step,
        start=start,
        end=end,
        time_column=time_column,
        zero_is_missing=zero_is_missing,
        shift=shift,
    )
    return RegularSeries(start=grid_start, step=grid_step, values=values[:, 0], unit=unit or column)
