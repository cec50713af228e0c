"""The fallback chain (`FallbackSource`) and last-known stores.

Aspects: first source answers (no note); a failing or empty source is skipped and named in
the note; per-region chains; every source failing -> last known value marked stale with its
age, narrowed to the asked window; too old or not covering -> a typed error listing every
failure; all refusals -> `SourceRequestError`; unknown region and empty chains; the file
store's round trip, corrupt and unwritable files; the JSON codec's round trip (property);
`close()` closes each source holding a client once, every one even if another fails.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forecasts.platform.errors import SourceRequestError, SourceUnavailable
from forecasts.regions import Region, RegionMap
from forecasts.series import CarbonSeries, CarbonUnit, Quality, Signal
from forecasts.sources.carbon.fallback import (
    FallbackSource,
    FileLastKnown,
    MemoryLastKnown,
    format_age,
    series_from_dict,
    series_to_dict,
)
from forecasts.time import FrozenClock
from tests.fakes import FakeCarbonSource
from tests.unit.carbon.conftest import T0

H = timedelta(hours=1)
REGIONS = RegionMap.of(
    [
        Region("GB", {"electricitymaps": "GB", "uk": "national"}),
        Region("DE", {"electricitymaps": "DE"}),
        Region("moon", {}),
    ]
)


def series(provider: str, region: str = "GB", base: float = 100.0) -> CarbonSeries:
    pts = [(T0 + i * H, base + i, Quality.MEASURED) for i in range(-3, 1)]
    pts += [(T0 + i * H, base + 10 * i, Quality.FORECAST) for i in range(1, 5)]
    return CarbonSeries.build(
        region=region,
        points=pts,
        unit=CarbonUnit.G_PER_KWH,
        signal=Signal.AVERAGE,
        provider=provider,
        fetched_at=T0,
        resolution=H,
    )


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def em() -> FakeCarbonSource:
    return FakeCarbonSource(
        "electricitymaps",
        regions=REGIONS,
        data={"GB": series("electricitymaps", base=200), "DE": series("electricitymaps", "DE")},
    )


@pytest.fixture
def uk() -> FakeCarbonSource:
    return FakeCarbonSource("uk", regions=REGIONS, data={"GB": series("uk", base=100)})


def chain(em: FakeCarbonSource, uk: FakeCarbonSource, clock: FrozenClock, **kw: object):
    return FallbackSource(
        {"GB": [em, uk], "DE": [em], "moon": []},
        regions=REGIONS,
        clock=clock,
        **kw,  # type: ignore[arg-type]
    )


def test_first_source_answers(em, uk, clock) -> None:
    got = chain(em, uk, clock).latest("gb", at=T0)
    assert got.provider == "electricitymaps"
    assert got.values.tolist() == [200.0]
    assert got.note == ""
    assert not got.stale
    assert uk.calls == []


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        pytest.param(
            SourceUnavailable("down", source="electricitymaps", status=503), "down", id="5xx"
        ),
        pytest.param(
            SourceRequestError("bad token", source="electricitymaps", status=401),
            "bad token",
            id="401",
        ),
    ],
)
def test_failing_source_falls_through_and_is_named(em, uk, clock, error, reason, caplog) -> None:
    em.error = error
    with caplog.at_level(logging.WARNING):
        got = chain(em, uk, clock).forecast("GB", at=T0, horizon=3 * H)
    assert got.provider == "uk"
    assert not got.stale
    assert got.note.startswith("answered by uk after: electricitymaps: ")
    assert reason in got.note
    assert [p.value for p in got.points] == [110.0, 120.0]
    assert "electricitymaps failed" in caplog.text


class Broken:
    name = "electricitymaps"

    def latest(self, region, *, at):
        raise RuntimeError("adapter bug")


class Holding:
    """A source holding a client: counts its closes (`fails`: the close raises)."""

    def __init__(self, name: str, *, fails: bool = False) -> None:
        self.name, self.fails, self.closes = name, fails, 0

    def close(self) -> None:
        self.closes += 1
        if self.fails:
            raise OSError("close failed")


def test_close_closes_each_source_once_even_if_one_fails(uk, clock) -> None:
    em, wt = Holding("electricitymaps", fails=True), Holding("watttime")
    source = FallbackSource(
        {"GB": [em, wt, uk], "DE": [wt]},  # type: ignore[list-item]
        regions=REGIONS,
        clock=clock,
    )
    with pytest.raises(OSError, match="close failed"):
        source.close()
    assert (em.closes, wt.closes) == (1, 1)


def test_an_adapter_bug_falls_through_and_is_logged(uk, clock, caplog) -> None:
    source = FallbackSource(
        {"GB": [Broken(), uk]},  # type: ignore[list-item]
        regions=REGIONS,
        clock=clock,
    )
    with caplog.at_level(logging.ERROR):
        got = source.latest("GB", at=T0)
    assert got.provider == "uk"
    assert "internal error (RuntimeError: adapter bug)" in got.note
    assert "Traceback" in caplog.text


def test_empty_answer_falls_through(em, uk, clock) -> None:
    em_empty = FakeCarbonSource(
        "electricitymaps", regions=REGIONS, data={"GB": series("electricitymaps").window(T0, T0)}
    )
    got = chain(em_empty, uk, clock).latest("GB", at=T0)
    assert got.provider == "uk"
    assert "electricitymaps: no data" in got.note


def test_stale_last_known_value_when_everything_fails(em, uk, clock) -> None:
    source = chain(em, uk, clock)
    fresh = source.latest("GB", at=T0)
    em.error = SourceUnavailable("timed out", source="electricitymaps")
    uk.error = SourceUnavailable("connection refused", source="uk")
    clock.advance(timedelta(minutes=42, seconds=5))
    got = source.latest("GB", at=clock.now())
    assert got.stale
    assert got.provider == "electricitymaps"
    assert got.points == fresh.points
    assert got.fetched_at == T0
    assert "42m05s ago" in got.note
    assert "timed out" in got.note
    assert "connection refused" in got.note


def test_stale_forecast_is_narrowed_to_the_asked_window(em, uk, clock) -> None:
    source = chain(em, uk, clock)
    source.forecast("GB", at=T0, horizon=4 * H)
    em.error = uk.error = SourceUnavailable("down", source="x")
    clock.advance(2 * H)
    got = source.forecast("GB", at=clock.now(), horizon=H)
    assert got.stale
    assert [p.at for p in got.points] == [T0 + 2 * H]


def test_too_old_last_known_value_is_an_error(em, uk, clock) -> None:
    source = chain(em, uk, clock, last_known_max_age=timedelta(hours=6))
    source.latest("GB", at=T0)
    em.error = uk.error = SourceUnavailable("down", source="x")
    clock.advance(timedelta(hours=7))
    with pytest.raises(SourceUnavailable, match="7h00m old, over the 6h00m limit"):
        source.latest("GB", at=clock.now())


def test_last_known_not_covering_the_window_is_an_error(em, uk, clock) -> None:
    source = chain(em, uk, clock)
    source.forecast("GB", at=T0, horizon=2 * H)
    em.error = uk.error = SourceUnavailable("down", source="x")
    with pytest.raises(SourceUnavailable, match="does not cover"):
        source.forecast("GB", at=T0 + 10 * H, horizon=H)


def test_nothing_remembered_lists_every_failure(em, uk, clock) -> None:
    em.error = SourceUnavailable("em down", source="electricitymaps")
    uk.error = SourceRequestError("uk refused", source="uk", status=400)
    with pytest.raises(SourceUnavailable) as info:
        chain(em, uk, clock).latest("GB", at=T0)
    assert "em down" in str(info.value)
    assert "uk refused" in str(info.value)


def test_all_refusals_stay_a_request_error(em, uk, clock) -> None:
    em.error = SourceRequestError("bad token", source="electricitymaps", status=401)
    uk.error = SourceRequestError("bad date", source="uk", status=400)
    with pytest.raises(SourceRequestError, match="every source refused"):
        chain(em, uk, clock).latest("GB", at=T0)


def test_chains_are_per_region(em, uk, clock) -> None:
    source = chain(em, uk, clock)
    assert [s.name for s in source.chain("gb")] == ["electricitymaps", "uk"]
    assert [s.name for s in source.chain("DE")] == ["electricitymaps"]
    assert source.latest("DE", at=T0).region == "DE"
    assert uk.calls == []


def test_unknown_region_and_empty_chain(em, uk, clock) -> None:
    source = chain(em, uk, clock)
    with pytest.raises(SourceRequestError, match="unknown region 'Atlantis'"):
        source.latest("Atlantis", at=T0)
    with pytest.raises(
        SourceRequestError, match="no carbon source is configured for region 'moon'"
    ):
        source.latest("moon", at=T0)


# ---------------------------------------------------------------------- stores
def test_file_store_survives_a_new_process(tmp_path: Path, em, uk, clock) -> None:
    path = tmp_path / "sub" / "carbon.json"
    chain(em, uk, clock, last_known=FileLastKnown(path)).forecast("GB", at=T0, horizon=3 * H)
    assert path.exists()
    em.error = uk.error = SourceUnavailable("down", source="x")
    again = chain(em, uk, clock, last_known=FileLastKnown(path))  # a fresh process
    got = again.forecast("GB", at=T0, horizon=3 * H)
    assert got.stale
    assert got.values.tolist() == [210.0, 220.0]


def test_corrupt_file_store_is_ignored(tmp_path: Path, caplog) -> None:
    path = tmp_path / "carbon.json"
    path.write_text("{not json")
    store = FileLastKnown(path)
    with caplog.at_level(logging.WARNING):
        assert store.get("GB", "latest") is None
    assert "unreadable" in caplog.text
    path.write_text('{"GB|latest": {"region": "GB"}}')
    assert store.get("GB", "latest") is None
    store.put("GB", "latest", series("uk"))
    assert store.get("GB", "latest") == series("uk")


def test_unwritable_file_store_does_not_break_answers(tmp_path: Path, caplog) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = FileLastKnown(blocker / "carbon.json")  # parent is a file: cannot mkdir
    with caplog.at_level(logging.WARNING):
        store.put("GB", "latest", series("uk"))
    assert "cannot write" in caplog.text
    assert store.get("GB", "latest") is None


def test_memory_store() -> None:
    store = MemoryLastKnown()
    assert store.get("GB", "latest") is None
    store.put("GB", "latest", series("uk"))
    assert store.get("GB", "latest") == series("uk")
    assert store.get("GB", "forecast") is None


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (5, "5s"),
        (125, "2m05s"),
        (3 * 3600 + 7 * 60, "3h07m"),
        (2 * 86400 + 4 * 3600, "2d04h"),
        (-3, "0s"),
    ],
)
def test_format_age(seconds: int, text: str) -> None:
    assert format_age(timedelta(seconds=seconds)) == text


finite = st.floats(min_value=0, max_value=5000, allow_nan=False)
offsets = st.lists(
    st.tuples(st.integers(-500, 500), finite, st.sampled_from(list(Quality))), max_size=12
)


@settings(max_examples=30)
@given(
    raw=offsets,
    stale=st.booleans(),
    note=st.sampled_from(["", "last known value from uk, 3m05s ago", "ünïcode ✓"]),
    factor=st.sampled_from([None, "direct"]),
)
def test_codec_round_trip(raw, stale, note, factor) -> None:
    built = CarbonSeries.build(
        region="GB",
        points=[(T0 + timedelta(minutes=5 * m), v, q) for m, v, q in raw],
        unit=CarbonUnit.G_PER_KWH,
        signal=Signal.MARGINAL,
        provider="watttime",
        fetched_at=T0,
        resolution=timedelta(minutes=5),
        emission_factor=factor,
    )
    if stale:
        built = built.as_stale(note)
    back = series_from_dict(series_to_dict(built))
    assert back == built
    assert back.stale == stale
