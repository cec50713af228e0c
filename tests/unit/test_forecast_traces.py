"""Recorded day-ahead inputs read with the instant each value became known.

Aspects: per-source generation forecasts as shares (every source, known from 04:00 of the
day) or a named subset as MW known the day before (a negative `known_after`, as a scenario
file writes it); inputs side by side keep each column's own publication time, so the one
published earlier is visible earlier and the other stays hidden.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from config.replay_scenario import ScenarioError, load_scenario
from forecasts.sources.forecast_traces import (
    join_known,
    read_generation_forecasts,
    read_weather_forecasts,
)

H = timedelta(hours=1)
T0 = datetime(2026, 1, 5, tzinfo=UTC)
DAY = 86400.0


def _dacf(tmp_path: Path, hours: int = 72) -> Path:
    rows = [
        "timestamp_utc,ci_actual_direct,wind_forecast_da_mw,solar_forecast_da_mw,coal_forecast_da_mw"
    ]
    for i in range(hours):
        at = (T0 + i * H).isoformat().replace("+00:00", "Z")
        rows.append(f"{at},300,{100 + i},{i % 24},{300 - i}")
    path = tmp_path / "dacf.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def _gfs(tmp_path: Path, hours: int = 96) -> Path:
    rows = ["timestamp_utc,wind_speed_ms,temperature_k,dewpoint_k,dswrf_wm2,precip_kgm2"]
    for i in range(hours):
        at = (T0 - 24 * H + i * H).isoformat().replace("+00:00", "Z")
        rows.append(f"{at},{i % 9},280,275,0,0")
    path = tmp_path / "gfs.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_generation_forecasts_as_shares_or_named_sources_in_mw(tmp_path: Path) -> None:
    path = _dacf(tmp_path)
    shares = read_generation_forecasts(path)
    assert shares.columns == ("wind_share", "solar_share", "coal_share")
    np.testing.assert_allclose(shares.values.sum(axis=1), 1.0)
    midnight = np.floor((T0.timestamp() + np.arange(72) * 3600.0) / DAY) * DAY
    np.testing.assert_array_equal(shares.known_s[:, 0], midnight + 4 * 3600)

    da = read_generation_forecasts(path, sources=("wind", "solar"), known_after=-7 * H)
    assert da.columns == ("wind_mw", "solar_mw")
    np.testing.assert_array_equal(da.values[:3], [[100, 0], [101, 1], [102, 2]])
    np.testing.assert_array_equal(da.known_s[:, 1], midnight - 7 * 3600)  # 17:00 the day before


def test_joined_inputs_keep_each_columns_publication_time(tmp_path: Path) -> None:
    weather = read_weather_forecasts(_gfs(tmp_path))  # each valid day from 04:00
    da = read_generation_forecasts(_dacf(tmp_path), sources=("wind",), known_after=-7 * H)
    both = join_known([weather, da])
    assert both.columns[-1] == "wind_mw"
    evening = T0 + 20 * H  # tomorrow's wind forecast is out (17:00), its weather is not
    tomorrow = both.on(T0 + 24 * H, 24, at=evening)
    assert np.isfinite(tomorrow[:, -1]).all()
    assert np.isnan(tomorrow[:, :-1]).all()
    today = both.on(T0, 24, at=evening)
    assert np.isfinite(today).all()
    early = both.on(T0 + 24 * H, 24, at=T0 + 16 * H)  # before 17:00: neither
    assert np.isnan(early).all()


def test_a_scenario_reads_a_negative_known_after(tmp_path: Path) -> None:
    carbon = tmp_path / "carbon.csv"
    lines = ["timestamp_utc,value"] + [
        f"{(T0 - 14 * 24 * H + i * H).isoformat().replace('+00:00', 'Z')},{300 + i % 24}"
        for i in range(17 * 24)
    ]
    carbon.write_text("\n".join(lines) + "\n")
    dacf = _dacf(tmp_path)
    body = f"""
name: t
period: {{start: 2026-01-05T00:00:00Z, end: 2026-01-06T00:00:00Z, step: 1h, warmup: 7d}}
regions:
  - name: R
    carbon: {{csv: "{carbon}", column: value}}
    generation: {{csv: "{dacf}", known_after: "{{after}}", sources: [wind]}}
workloads: [{{name: w, region: R, load: {{sample: w}}, max_replicas: 3,
  power: {{idle_watts: 1, busy_watts: 2}}}}]
"""
    path = tmp_path / "s.yaml"
    path.write_text(body.replace("{after}", "-7h"))
    exog = load_scenario(path).carbon_forecast.exog
    assert exog is not None
    assert exog["R"].columns == ("wind_mw",)
    assert exog["R"].known_s[0, 0] == T0.timestamp() - 7 * 3600
    path.write_text(body.replace("{after}", "-soon"))
    with pytest.raises(ScenarioError, match=r"generation\.known_after"):
        load_scenario(path)
