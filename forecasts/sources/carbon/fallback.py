"""A fallback chain of carbon sources per region, ending in the last known value.

`FallbackSource` plays `CarbonSource`: for each call it tries the region's chain in order
(e.g. electricitymaps -> uk), takes the first non-empty answer, and remembers it. When every
source fails it answers with the last known series for that (region, query kind), marked
`stale=True` with its age and the failures in `note`, as long as it is not older than
`last_known_max_age`; otherwise it raises one `SourceError` listing every failure.

Which source answered is always visible in the result: `provider` names it, a non-empty
`note` says which sources failed before it, and `stale` marks a last-known answer.

Last-known stores: `MemoryLastKnown` (long-running processes) and `FileLastKnown` (a JSON file,
so one-shot commands such as `gridshift carbon` also have a last known value).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from forecasts.platform.errors import SourceError, SourceRequestError, SourceUnavailable
from forecasts.regions import RegionMap
from forecasts.series import CarbonPoint, CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon.base import CarbonSource, ClosableSource
from forecasts.time import Clock, ensure_utc

__all__ = [
    "FallbackSource",
    "FileLastKnown",
    "LastKnownStore",
    "MemoryLastKnown",
    "Query",
    "format_age",
    "series_from_dict",
    "series_to_dict",
]

log = logging.getLogger(__name__)

Query = Literal["latest", "history", "forecast"]


class LastKnownStore(Protocol):
    """Remembers the last good series per (region, query kind)."""

    def get(self, region: str, query: Query) -> CarbonSeries | None: ...

    def put(self, region: str, query: Query, series: CarbonSeries) -> None: ...


class MemoryLastKnown:
    """In-process store (the scaler's loop)."""

    def __init__(self) -> None:
        self._data: dict[tuple[str, Query], CarbonSeries] = {}

    def get(self, region: str, query: Query) -> CarbonSeries | None:
        return self._data.get((region, query))

    def put(self, region: str, query: Query, series: CarbonSeries) -> None:
        self._data[(region, query)] = series


class FileLastKnown:
    """A JSON file of last good series; unreadable or unwritable files are logged, never
    fatal (a broken cache must not break the answer)."""

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    def __repr__(self) -> str:
        return f"FileLastKnown(path={str(self._path)!r})"

    def _read(self) -> dict[str, Any]:
        try:
            data = msgspec.json.decode(self._path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("last-known store %s unreadable, ignoring it: %s", self._path, exc)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, region: str, query: Query) -> CarbonSeries | None:
        entry = self._read().get(f"{region}|{query}")
        if entry is None:
            return None
        try:
            return series_from_dict(entry)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("last-known entry %s|%s in %s unusable: %s", region, query, self._path, exc)
            return None

    def put(self, region: str, query: Query, series: CarbonSeries) -> None:
        data = self._read()
        data[f"{region}|{query}"] = series_to_dict(series)
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=".last-known-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(msgspec.json.format(msgspec.json.encode(data), indent=2))
                os.replace(tmp, self._path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            log.warning("cannot write last-known store %s: %s", self._path, exc)


class FallbackSource:
    """`CarbonSource` trying each region's chain in order, then the last known value."""

    def __init__(
        self,
        chains: Mapping[str, Sequence[CarbonSource]],
        *,
        regions: RegionMap,
        clock: Clock,
        last_known: LastKnownStore | None = None,
        last_known_max_age: timedelta = timedelta(days=1),
    ) -> None:
        self._regions = regions
        self._chains = {regions.get(name).name: tuple(chain) for name, chain in chains.items()}
        self._clock = clock
        self._last_known = last_known if last_known is not None else MemoryLastKnown()
        self._max_age = last_known_max_age

    @property
    def name(self) -> str:
        return "fallback"

    def __repr__(self) -> str:
        chains = {r: [s.name for s in c] for r, c in self._chains.items()}
        return f"FallbackSource(chains={chains!r})"

    def chain(self, region: str) -> tuple[CarbonSource, ...]:
        return self._chains.get(self._canonical(region), ())

    def close(self) -> None:
        """Close the client of every source in the chains (each once, every one even if
        another fails), when the component owning the chain stops."""
        sources = {id(s): s for chain in self._chains.values() for s in chain}
        with contextlib.ExitStack() as closing:
            for source in sources.values():
                if isinstance(source, ClosableSource):
                    closing.callback(source.close)

    # ------------------------------------------------------------------ the role
    def latest(self, region: str, *, at: datetime) -> CarbonSeries:
        return self._run(region, "latest", lambda s, r: s.latest(r, at=at), lambda s: s)

    def history(self, region: str, *, start: datetime, end: datetime) -> CarbonSeries:
        return self._run(
            region,
            "history",
            lambda s, r: s.history(r, start=start, end=end),
            lambda s: s.window(start, end),
        )

    def forecast(self, region: str, *, at: datetime, horizon: timedelta) -> CarbonSeries:
        return self._run(
            region,
            "forecast",
            lambda s, r: s.forecast(r, at=at, horizon=horizon),
            lambda s: s.window(at, at + horizon),
        )

    # ------------------------------------------------------------------ the chain
    def _canonical(self, region: str) -> str:
        try:
            return self._regions.get(region).name
        except ValueError as exc:
            raise SourceRequestError(str(exc), source=self.name) from None

    def _run(
        self,
        region: str,
        query: Query,
        call: Callable[[CarbonSource, str], CarbonSeries],
        narrow: Callable[[CarbonSeries], CarbonSeries],
    ) -> CarbonSeries:
        canonical = self._canonical(region)
        failures: list[SourceError] = []
        reasons: list[str] = []
        for source in self._chains.get(canonical, ()):
            try:
                series = call(source, canonical)
            except SourceError as exc:
                failures.append(exc)
                reasons.append(str(exc))
                log.warning("carbon %s for %s: %s failed: %s", query, canonical, source.name, exc)
                continue
            except Exception as exc:  # a bug in one adapter must not take the chain down
                reasons.append(f"{source.name}: internal error ({type(exc).__name__}: {exc})")
                log.exception("carbon %s for %s: %s crashed", query, canonical, source.name)
                continue
            if not series.points:
                reasons.append(f"{source.name}: no data")
                log.warning("carbon %s for %s: %s had no data", query, canonical, source.name)
                continue
            self._last_known.put(canonical, query, series)
            if reasons:
                series = replace(
                    series, note=f"answered by {source.name} after: {'; '.join(reasons)}"
                )
            return series
        if not reasons:
            raise SourceRequestError(
                f"no carbon source is configured for region {canonical!r}", source=self.name
            )
        stale = self._stale(canonical, query, narrow, reasons)
        if stale is not None:
            return stale
        summary = "; ".join(reasons)
        if (
            failures
            and len(failures) == len(reasons)
            and all(isinstance(f, SourceRequestError) for f in failures)
        ):
            raise SourceRequestError(f"every source refused: {summary}", source=self.name)
        raise SourceUnavailable(
            f"no source answered for {canonical} and no last known value: {summary}",
            source=self.name,
        )

    def _stale(
        self,
        region: str,
        query: Query,
        narrow: Callable[[CarbonSeries], CarbonSeries],
        reasons: list[str],
    ) -> CarbonSeries | None:
        stored = self._last_known.get(region, query)
        if stored is None:
            return None
        age = self._clock.now() - stored.fetched_at
        if age > self._max_age:
            reasons.append(
                f"last known value is {format_age(age)} old, over the "
                f"{format_age(self._max_age)} limit"
            )
            return None
        kept = narrow(stored)
        if not kept.points:
            reasons.append("last known value does not cover the asked time")
            return None
        note = (
            f"last known value from {stored.provider}, fetched "
            f"{stored.fetched_at.strftime('%Y-%m-%dT%H:%M:%SZ')} ({format_age(age)} ago); "
            f"all sources failed: {'; '.join(reasons)}"
        )
        log.warning("carbon %s for %s: serving stale data: %s", query, region, note)
        return kept.as_stale(note)


def format_age(age: timedelta) -> str:
    """`45s`, `12m05s`, `3h07m`, `2d04h`: short, for notes and tables."""
    seconds = max(0, int(age.total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def series_to_dict(series: CarbonSeries) -> dict[str, Any]:
    """A JSON-ready dict of a series (the last-known file and the CLI's JSON output)."""
    return {
        "region": series.region,
        "provider": series.provider,
        "unit": series.unit.value,
        "signal": series.signal.value,
        "emission_factor": series.emission_factor,
        "resolution_seconds": series.resolution.total_seconds(),
        "fetched_at": series.fetched_at.isoformat().replace("+00:00", "Z"),
        "stale": series.stale,
        "note": series.note,
        "points": [
            {
                "at": p.at.isoformat().replace("+00:00", "Z"),
                "value": p.value,
                "quality": p.quality.value,
            }
            for p in series.points
        ],
    }


def series_from_dict(data: Mapping[str, Any]) -> CarbonSeries:
    """Inverse of `series_to_dict`; raises `KeyError`/`ValueError`/`TypeError` on bad input."""
    return CarbonSeries(
        region=str(data["region"]),
        points=tuple(_point(p["at"], p["value"], p["quality"]) for p in data["points"]),
        unit=CarbonUnit(data["unit"]),
        signal=Signal(data["signal"]),
        provider=str(data["provider"]),
        fetched_at=ensure_utc(datetime.fromisoformat(data["fetched_at"]), name="fetched_at"),
        resolution=timedelta(seconds=float(data["resolution_seconds"])),
        emission_factor=data.get("emission_factor"),
        stale=bool(data.get("stale", False)),
        note=str(data.get("note", "")),
    )


def _point(at: str, value: float, quality: str) -> CarbonPoint:
    return CarbonPoint(
        ensure_utc(datetime.fromisoformat(at), name="point instant"), float(value), Quality(quality)
    )
