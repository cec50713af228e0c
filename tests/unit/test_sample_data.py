"""forecasts.sources.sample: the SAMPLE DATA generator and its adapters.

Aspects: determinism (same instant, same value, whatever the query window); distinct regional
shapes (solar dip at midday, hydro low); every series labelled provider `sample` with the
SAMPLE DATA note; forecast error grows with lead time; the CI burst schedule shows in the load;
unknown regions and empty profiles are refused with a clear error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.platform.errors import SourceRequestError
from forecasts.series import Quality
from forecasts.sources.sample import (
    SAMPLE_NOTE,
    SAMPLE_REGIONS,
    SampleCarbonSource,
    SampleLoadSource,
    sample_ci_extra_load,
    sample_intensity,
)
from forecasts.time import to_epoch_s

T = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # Monday


def test_carbon_is_deterministic_and_labelled() -> None:
    src = SampleCarbonSource(seed=3)
    a = src.history("sample-wind", start=T, end=T + timedelta(days=1))
    b = src.history("sample-wind", start=T + timedelta(hours=5), end=T + timedelta(hours=7))
    assert a.values[10:14].tolist() == b.values.tolist()
    for series in (
        a,
        src.latest("sample-solar", at=T),
        src.forecast("sample-hydro", at=T, horizon=timedelta(hours=3)),
    ):
        assert series.provider == "sample"
        assert series.note == SAMPLE_NOTE
        assert "SAMPLE DATA" in series.note
    assert (
        SampleCarbonSource(seed=4)
        .history("sample-wind", start=T, end=T + timedelta(hours=2))
        .values.tolist()
        != a.values[:4].tolist()
    )


def test_regions_have_distinct_shapes() -> None:
    hours = to_epoch_s(T) + 3600.0 * np.arange(48, dtype=np.float64)
    solar = sample_intensity("sample-solar", hours)
    hydro = sample_intensity("sample-hydro", hours)
    assert solar[12] < 0.6 * solar[3]  # midday dip
    assert hydro.max() < 100 < solar.min()
    with pytest.raises(ValueError, match="unknown sample region"):
        sample_intensity("atlantis", hours)


def test_forecast_error_grows_with_lead_time() -> None:
    src = SampleCarbonSource()
    fc = src.forecast("sample-wind", at=T, horizon=timedelta(hours=24))
    truth = src.history("sample-wind", start=T, end=T + timedelta(hours=24))
    err = np.abs(fc.values - truth.values) / truth.values
    assert all(p.quality is Quality.FORECAST for p in fc.points)
    assert err[:2].max() < 0.05
    assert err.max() < 0.25


def test_unknown_region_is_a_request_error() -> None:
    with pytest.raises(SourceRequestError, match="sample regions are sample-solar"):
        SampleCarbonSource().latest("eu-west", at=T)
    assert len(SAMPLE_REGIONS) == 3


def test_load_has_ci_bursts_and_weekends() -> None:
    src = SampleLoadSource()
    day = src.history("web", start=T, end=T + timedelta(days=1), step=timedelta(minutes=5))
    assert len(day) == 288
    assert "SAMPLE DATA" in day.unit
    extra = sample_ci_extra_load("web")
    # 04:00 (burst) vs 04:30 (none): the burst adds about `extra`
    assert day.values[48] - day.values[54] == pytest.approx(extra, rel=0.35)
    sat = src.history(
        "sample:web",
        start=T + timedelta(days=5),
        end=T + timedelta(days=6),
        step=timedelta(minutes=5),
    )
    assert sat.values.mean() < 0.8 * day.values.mean()
    with pytest.raises(SourceRequestError, match="empty sample load profile"):
        src.history("sample:", start=T, end=T + timedelta(hours=1), step=timedelta(minutes=5))
