"""Reads one regular series from a `timestamp_utc,<columns>` CSV trace (the I/O edge).

Long format (a `region` column naming several series) and wide format (one value column per
series) both work. Rows are placed on a regular grid of `step` (inferred as the most common
spacing when not given); slots without a row, empty cells and non-numeric cells are NaN
(missing); duplicate instants keep the last row. Bad input raises `SourceDataError` naming
the file, the column and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from forecasts.platform.errors import SourceDataError
from forecasts.series import RegularSeries
from forecasts.time import from_epoch_s

__all__ = ["SeriesSpec", "list_columns", "parse_series_spec", "read_csv_series"]

TIME_COLUMN = "timestamp_utc"
FloatArray = npt.NDArray[np.float64]


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


def _load(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SourceDataError("no such file", source=str(path))
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise SourceDataError(f"not a readable CSV ({exc})", source=str(path)) from exc
    if TIME_COLUMN not in frame.columns:
        raise SourceDataError(f"missing column {TIME_COLUMN!r}", source=str(path))
    return frame


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


def read_csv_series(
    path: Path,
    *,
    region: str | None = None,
    column: str | None = None,
    step: timedelta | None = None,
    unit: str | None = None,
    zero_is_missing: bool = False,
) -> RegularSeries:
    """One series from the file. Without `region`/`column` the file must hold exactly one."""
    frame = _load(path)
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
        frame = frame[frame["region"].astype(str) == region]
    elif region is not None:
        raise SourceDataError(
            f"region: file has no region column, got {region!r}", source=str(path)
        )
    columns = _value_columns(frame)
    if column is None:
        if len(columns) != 1:
            raise SourceDataError(
                f"column: choose one of {', '.join(columns) or '(none)'}", source=str(path)
            )
        column = columns[0]
    if column not in frame.columns:
        raise SourceDataError(
            f"column: {column!r} not in file (has {', '.join(columns)})", source=str(path)
        )
    try:
        stamps = pd.to_datetime(frame[TIME_COLUMN], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise SourceDataError(
            f"{TIME_COLUMN}: unparseable timestamp ({exc})", source=str(path)
        ) from exc
    values: FloatArray = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64)
    epoch = np.asarray(
        (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(), dtype=np.float64
    )
    if epoch.size == 0:
        raise SourceDataError(f"no rows for region={region!r}", source=str(path))
    order = np.argsort(epoch, kind="stable")
    epoch, values = epoch[order], values[order]
    if zero_is_missing:
        values = np.where(values == 0, np.nan, values)
    values = np.where(np.isfinite(values), values, np.nan)
    if step is None:
        diffs = np.diff(np.unique(epoch))
        if diffs.size == 0:
            raise SourceDataError("need at least two instants to infer the step", source=str(path))
        uniq, counts = np.unique(diffs, return_counts=True)
        step = timedelta(seconds=float(uniq[np.argmax(counts)]))
    step_s = step.total_seconds()
    start_s = float(np.floor(epoch[0] / step_s) * step_s)
    return RegularSeries.from_points(
        epoch.astype(np.float64),
        values,
        step=step,
        unit=unit or column,
        start=from_epoch_s(start_s),
        end=from_epoch_s(float(np.floor(epoch[-1] / step_s) * step_s + step_s)),
    )
