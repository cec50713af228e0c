"""Cost and accuracy of CI schedule regressors and uplift learning (prints figures).

One year of hourly steps, five schedules typical of CI (nightly, weekday working hours every
15 minutes, weekly, monthly, hourly); then uplift learned back from a synthetic year with
known uplifts and Gaussian noise. The hourly job covers every hour alike, so it cannot be
told from the baseline and must come back unestimated. Run by `make bench`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from forecasts.ci import CISchedule, learn_uplift, regressor_matrix
from forecasts.series import RegularSeries

pytestmark = pytest.mark.slow  # `make bench` runs it; `make unit` skips it

START = datetime(2023, 1, 1, tzinfo=UTC)
STEPS = 365 * 24
SCHEDULES = [
    CISchedule(
        name="nightly", cron="0 2 * * *", duration=timedelta(minutes=50), timezone="Europe/London"
    ),
    CISchedule(
        name="pr-checks",
        cron="*/15 9-17 * * 1-5",
        duration=timedelta(minutes=8),
        timezone="America/New_York",
    ),
    CISchedule(name="weekly", cron="30 4 * * 0", duration=timedelta(hours=2)),
    CISchedule(name="monthly", cron="0 6 1 * *", duration=timedelta(hours=3)),
    CISchedule(name="hourly-sync", cron="5 * * * *", duration=timedelta(minutes=10)),
]
UPLIFT = np.array([40.0, 15.0, 60.0, 80.0, 5.0])


def test_regressors_and_uplift_for_a_year() -> None:
    t0 = time.perf_counter()
    x = regressor_matrix(SCHEDULES, start=START, step=timedelta(hours=1), steps=STEPS)
    expand_s = time.perf_counter() - t0
    t = np.arange(STEPS, dtype=float)
    rng = np.random.default_rng(42)
    load = (
        300
        + 80 * np.sin(2 * np.pi * t / 24)
        + 30 * np.sin(2 * np.pi * t / 168)
        + x @ UPLIFT
        + rng.normal(0, 5, STEPS)
    )
    history = RegularSeries(start=START, step=timedelta(hours=1), values=load, unit="req/s")
    t0 = time.perf_counter()
    estimates = learn_uplift(history, SCHEDULES)
    learn_s = time.perf_counter() - t0
    print(
        f"\nregressor_matrix: {len(SCHEDULES)} schedules x {STEPS} hourly steps in {expand_s:.2f} s"
    )
    print(f"learn_uplift: {learn_s:.2f} s")
    print(f"{'schedule':<14}{'true':>8}{'learned':>10}{'stderr':>9}{'runs steps':>12}")
    for est, truth in zip(estimates, UPLIFT, strict=True):
        if est.schedule == "hourly-sync":
            # The same coverage every hour: a constant regressor, confounded with the intercept.
            print(f"{est.schedule:<14}{truth:>8.1f}{'-':>10}{'-':>9}{est.in_run_steps:>12}")
            assert est.extra_load is None
            continue
        assert est.extra_load is not None
        assert est.stderr is not None
        print(
            f"{est.schedule:<14}{truth:>8.1f}{est.extra_load:>10.2f}{est.stderr:>9.2f}"
            f"{est.in_run_steps:>12}"
        )
        assert abs(est.extra_load - truth) < 4 * est.stderr + 0.02 * truth
