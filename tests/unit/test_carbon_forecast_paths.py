"""`gridshift run` and `gridshift replay` forecast carbon the same way.

Aspects: the live path (the CSV trace provider `TraceCarbonSource.from_csv` under a clock,
as `gridshift run --source trace` reads it, through the loop's `CarbonForecasting`) and the
replay path (the scenario reader `forecasts.sources.csv_series` into the replay's
`TraceCarbonSource`, through the engine's `CarbonForecasting`) give the same forecast from the
same file at the same instant, from plans with the same interval calibration; both never see
the hour being forecast.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np

from forecasts.sources.carbon.forecasting import CarbonForecasting
from forecasts.sources.csv_series import read_csv_series
from forecasts.sources.trace import CarbonTrace, TraceCarbonSource
from forecasts.time import FrozenClock
from tests.unit.carbon.conftest import REGIONS, T0

H = timedelta(hours=1)


def test_run_and_replay_forecast_alike(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    start = T0 - timedelta(days=30)
    n = 24 * 32
    t = np.arange(n)
    values = 250 + 60 * np.sin(2 * np.pi * t / 24) + np.cumsum(rng.normal(0, 3, n))
    rows = ["timestamp_utc,region,gco2_per_kwh"] + [
        f"{(start + H * i).strftime('%Y-%m-%dT%H:%M:%SZ')},GB,{v:.2f}" for i, v in enumerate(values)
    ]
    path = tmp_path / "trace.csv"
    path.write_text("\n".join(rows) + "\n")
    at = T0 + timedelta(hours=5)
    horizon = timedelta(hours=24)

    live = CarbonForecasting(
        TraceCarbonSource.from_csv(path, regions=REGIONS, clock=FrozenClock(at))
    )
    run_fc = live.forecast("GB", at=at, horizon=horizon)

    truth = read_csv_series(path, region="GB", column="gco2_per_kwh", step=H)
    replay = CarbonForecasting(TraceCarbonSource({"GB": CarbonTrace("GB", truth, "trace")}))
    replay_fc = replay.forecast("GB", at=at, horizon=horizon)

    assert len(run_fc.points) == len(replay_fc.points) == 24
    assert [p.at for p in run_fc.points] == [p.at for p in replay_fc.points]
    np.testing.assert_allclose(run_fc.values, replay_fc.values, rtol=0, atol=1e-9)
    assert run_fc.points[0].at == at
    # the intervals: both plans hold the same calibration (errors, what each knew, when)
    run_cal = live.plan("GB", at=at, horizon=horizon).calibration
    replay_cal = replay.plan("GB", at=at, horizon=horizon).calibration
    assert run_cal.residuals.size > 0
    for name in ("residuals", "states", "origin_s", "scale"):
        np.testing.assert_array_equal(getattr(run_cal, name), getattr(replay_cal, name))
    # the forecast is not the recorded value of the hour it forecasts
    i = round((at - start) / H)
    assert run_fc.values[0] != values[i]
