"""Property: whatever JSON a provider sends, an adapter returns a clean `CarbonSeries` or raises
a `SourceError` — never another exception, never a value in the wrong unit.

Each example takes a provider's normal fixture and replaces a few parts of it (a leaf, an
object, a list) with arbitrary JSON, then serves it through `httpx.MockTransport` (the HTTP
layer and the parsers are real). Clean means: UTC, strictly increasing, finite, non-negative
g/kWh, the provider's name, the asked region.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from forecasts.platform.errors import SourceError
from forecasts.platform.http import HttpSource, RetryPolicy
from forecasts.series import CarbonSeries, CarbonUnit, Signal
from forecasts.sources.carbon.carbon_aware_sdk import CarbonAwareSdkSource
from forecasts.sources.carbon.electricitymaps import ElectricityMapsSource
from forecasts.sources.carbon.uk import UkCarbonIntensitySource
from forecasts.sources.carbon.watttime import WattTimeSource
from forecasts.time import FrozenClock
from tests.unit.carbon.conftest import REGIONS, T0, fixture_bytes

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.sampled_from(
        ["", "x", "2025-01-20T12:00Z", "2025-01-20T12:00", "00:05:00", "percentile", "GB"]
    ),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += paths(v, (*prefix, i))
    return out


def replace_at(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        return {**doc, head: replace_at(doc[head], rest, value)}
    copy = list(doc)
    copy[head] = replace_at(copy[head], rest, value)
    return copy


@st.composite
def mutated(draw: st.DrawFn, base: bytes) -> bytes:
    doc = json.loads(base)
    for _ in range(draw(st.integers(1, 3))):
        choices = paths(doc)
        where = draw(st.sampled_from(choices))
        doc = replace_at(doc, where, draw(json_value))
    return json.dumps(doc).encode()


def serve(
    body: bytes, login: bytes = b'{"token": "t"}'
) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/login":
            return httpx.Response(200, content=login)
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    return handler


def http(name: str, body: bytes, base: str = "http://test") -> HttpSource:
    return HttpSource(
        name=name,
        client=httpx.Client(base_url=base, transport=httpx.MockTransport(serve(body))),
        clock=FrozenClock(T0),
        retry=RetryPolicy(attempts=1),
        cache_ttl_seconds=0.0,
        sleep=lambda s: None,
    )


CALLS: dict[str, tuple[str, Callable[[bytes], CarbonSeries]]] = {
    "uk national": (
        "national_range",
        lambda b: UkCarbonIntensitySource(http("uk", b), regions=REGIONS).history(
            "GB", start=T0 - timedelta(hours=2), end=T0 + timedelta(hours=2)
        ),
    ),
    "uk regional": (
        "regional_object",
        lambda b: UkCarbonIntensitySource(http("uk", b), regions=REGIONS).forecast(
            "london", at=T0, horizon=timedelta(hours=3)
        ),
    ),
    "electricitymaps": (
        "past_range",
        lambda b: ElectricityMapsSource(
            http("electricitymaps", b), regions=REGIONS, token=SecretStr("t")
        ).history("DE", start=T0 - timedelta(hours=3), end=T0 + timedelta(hours=1)),
    ),
    "watttime": (
        "historical",
        lambda b: WattTimeSource(
            http("watttime", b), regions=REGIONS, username="u", password=SecretStr("p")
        ).history("caiso", start=T0 - timedelta(minutes=20), end=T0),
    ),
    "carbon_aware_sdk": (
        "forecast_current",
        lambda b: CarbonAwareSdkSource(
            http("carbon_aware_sdk", b), regions=REGIONS, signal=Signal.MARGINAL
        ).forecast("eastus", at=T0, horizon=timedelta(hours=1)),
    ),
}
PROVIDER_DIR = {
    "uk national": "uk",
    "uk regional": "uk",
    "electricitymaps": "electricitymaps",
    "watttime": "watttime",
    "carbon_aware_sdk": "carbon_aware_sdk",
}


# ~0.8 s alone; the wider budget keeps it honest on a loaded 2-core machine.
@pytest.mark.timeout(8)
@settings(max_examples=40)
@given(data=st.data(), which=st.sampled_from(sorted(CALLS)))
def test_any_answer_is_clean_data_or_a_typed_error(data: st.DataObject, which: str) -> None:
    case, call = CALLS[which]
    body = data.draw(mutated(fixture_bytes(PROVIDER_DIR[which], case)))
    try:
        series = call(body)
    except SourceError:
        return
    assert series.unit is CarbonUnit.G_PER_KWH
    assert series.provider == PROVIDER_DIR[which]
    assert series.region in REGIONS.names
    times = [p.at for p in series.points]
    assert times == sorted(set(times))
    assert all(p.value >= 0 for p in series.points)
    assert all(p.at.utcoffset() == timedelta(0) for p in series.points)
