"""The dashboard's extender summary (pure text -> figures).

Aspects: requests, errors (non-2xx) and mean latency per verb; decisions by outcome; nodes;
regions with fresh carbon; text without extender metrics and unparsable text are clear
errors; a non-positive poll interval is refused; the fixed exposition these tests use has
the real extender's metric families (names and types); the scaler's composition closes its
watch's HTTP client (`ScalerApp.close()`), started or not.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from config.scenario import sample_settings
from config.wiring import build_scaler
from extender.core.scoring import ScoringPolicy
from extender.metrics import ExtenderMetrics
from extender.snapshot import SnapshotHolder
from forecasts.sources.sample import SampleCarbonSource, SampleLoadSource
from forecasts.time import FrozenClock
from scaler.extender_watch import ExtenderWatch, summarise_extender_metrics
from tests.extender_exposition import extender_registry
from tests.snapshots import TAKEN_AT


def test_summary_of_an_extender_exposition():
    text = generate_latest(extender_registry()).decode()
    figures = summarise_extender_metrics(text)
    assert figures["filter requests"] == 8
    assert figures["filter errors"] == 0
    assert figures["prioritize requests"] == 2
    assert figures["prioritize errors"] == 1
    assert figures["filter mean latency s"] == pytest.approx(0.002)
    assert figures["filter passed decisions"] == 8
    assert figures["prioritize scored decisions"] == 1
    assert figures["nodes known"] == 12
    assert figures["regions with fresh carbon"] == 1
    assert figures["regions"] == 2
    assert list(figures) == sorted(figures)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("# HELP up x\n# TYPE up gauge\nup 1\n", "no gridshift_extender_", id="other"),
        pytest.param("", "no gridshift_extender_", id="empty"),
        pytest.param("gridshift_extender_nodes{ 12\n", "not Prometheus text", id="garbage"),
    ],
)
def test_summary_errors_are_clear(text, message):
    with pytest.raises(ValueError, match=message):
        summarise_extender_metrics(text)


def test_watch_refuses_bad_interval():
    with pytest.raises(ValueError, match="interval_seconds"):
        ExtenderWatch(
            "http://127.0.0.1:1/metrics",
            client=httpx.Client(),
            clock=FrozenClock(TAKEN_AT),
            interval_seconds=0,
        )


def _families(registry: CollectorRegistry) -> dict[str, str]:
    return {f.name: f.type for f in registry.collect()}


def test_the_fixed_exposition_has_the_real_extenders_families():
    real = CollectorRegistry()
    ExtenderMetrics(
        real, holder=SnapshotHolder(), clock=FrozenClock(TAKEN_AT), policy=ScoringPolicy()
    )
    fixed = _families(extender_registry())
    assert fixed.items() <= _families(real).items(), set(fixed.items()) - set(
        _families(real).items()
    )


def test_the_scaler_closes_its_extender_watch_even_if_it_never_started():
    # `gridshift run` closes it when a start fails after the build, `gridshift replay` when
    # its replay ends: both through `ScalerApp.close()`
    settings = sample_settings(TAKEN_AT)
    settings = settings.model_copy(
        update={
            "server": settings.server.model_copy(
                update={"extender_metrics_url": "http://127.0.0.1:1/metrics"}
            )
        }
    )
    built = build_scaler(
        settings,
        clock=FrozenClock(TAKEN_AT),
        registry=CollectorRegistry(),
        carbon=SampleCarbonSource(),
        load=SampleLoadSource(),
    )
    watch = built.extender_watch
    assert watch is not None
    built.close()
    assert watch._client.is_closed
