"""A fast look at the elastic benchmark (minutes, not the full run's hours): one or a few
grids of `config/scenarios/bench-elastic-2021h2.yaml` over a few weeks, linear scaling, each
forecast replayed exactly as the benchmark does (`scaler.replay.run_replay`). Per forecast
it prints the share of the oracle's saving captured, grams saved, and what the planner saw:
the Spearman rank correlation of each hourly 48 h forecast with the recorded truth (the
planner only needs the order), its MAE, and the mean jump of the forecast at each UTC
midnight inside the window minus the truth's (a seam where day-ahead inputs end).

    PYTHONPATH=$PWD .venv/bin/python -m tests.benchmarks.elastic_diagnostic \
        --grids DE PL --start 2021-10-01 --weeks 5 --forecasts history weather
"""

from __future__ import annotations

import argparse
import ast
import os
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import scaler.replay.engine as engine
from config.replay_scenario import load_scenario
from forecasts.carbon_forecast import CarbonForecastSettings, score_forecasts, seasonal_naive
from scaler.replay.engine import run_replay
from scaler.replay.summary import summarise
from tests.benchmarks.test_elastic_forecast_benchmarks import FORECASTS, SCENARIO

HORIZON = 48


def _subset(grids: list[str], profile: str, start: datetime, weeks: int) -> Path:
    """The benchmark scenario cut to `grids`, one throughput profile, `weeks` from `start`."""
    spec = yaml.safe_load(SCENARIO.read_text())
    spec["regions"] = [r for r in spec["regions"] if r["name"] in grids]
    spec["workloads"] = [
        w for w in spec["workloads"] if w["name"] in {f"{g}-{profile}" for g in grids}
    ]
    spec["period"]["start"] = start.isoformat().replace("+00:00", "Z")
    spec["period"]["end"] = (start + timedelta(weeks=weeks)).isoformat().replace("+00:00", "Z")
    fd, name = tempfile.mkstemp(suffix=".yaml", prefix="elastic-diag-")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(spec, fh)
    return Path(name)


def _seams(at: datetime, fc: np.ndarray, truth: np.ndarray) -> list[float]:
    """|forecast jump| - |truth jump| at each UTC midnight strictly inside the window."""
    out = []
    first = (24 - at.hour) % 24 or 24
    for k in range(first, len(fc), 24):
        out.append(abs(fc[k] - fc[k - 1]) - abs(truth[k] - truth[k - 1]))
    return out


def run(name: str, path: Path, shared: str, overrides: dict[str, Any]) -> dict[str, Any]:
    loaded = load_scenario(
        path, environ={"GRIDSHIFT_SHARED_DATA": shared}, forecast_overrides=FORECASTS[name]
    )
    if overrides:
        setup = loaded.carbon_forecast
        tuned = replace(setup.settings or CarbonForecastSettings(), **overrides)
        loaded = replace(loaded, carbon_forecast=replace(setup, settings=tuned))
    seen: list[Any] = []
    original = engine.carbon_sources

    def recording(scenario: Any, setup: Any) -> Any:
        out = original(scenario, setup)
        seen.append(out[1])
        return out

    engine.carbon_sources = recording
    started = time.monotonic()
    try:
        result = run_replay(
            loaded.scenario,
            **loaded.replay_options,
        )
    finally:
        engine.carbon_sources = original
    seconds = time.monotonic() - started
    summary = summarise(result)
    sc = loaded.scenario
    forecasting = seen[0]
    rows: dict[str, Any] = {}
    for w, s in summary["workloads"].items():
        region = next(x.workload.region for x in sc.workloads if x.name == w)
        truth_series = sc.carbon[region]
        pol = s["policies"]
        saved = (pol["static"]["emitted_g"] - pol["gridshift"]["emitted_g"]) / 1000
        oracle = (pol["static"]["emitted_g"] - pol["oracle"]["emitted_g"]) / 1000
        truths, means, naives, seams = [], [], [], []
        for i in range(sc.intervals):
            at = sc.start + sc.step * i
            fc = forecasting.forecast(region, at=at, horizon=loaded.params.carbon_horizon)
            vals = np.asarray(fc.values[:HORIZON], dtype=float)
            lo = sc.index(truth_series, at)
            tr = truth_series.values[lo : lo + HORIZON]
            if len(vals) < HORIZON or len(tr) < HORIZON:
                continue
            truths.append(tr)
            means.append(vals)
            naives.append(seasonal_naive(truth_series.values, lo, HORIZON))
            seams.extend(_seams(at, vals, tr))
        sco = score_forecasts(np.array(truths), np.array(means), np.array(naives))
        rows[w] = {
            "share": pol["gridshift"]["oracle_share_percent"],
            "saved_kg": saved,
            "oracle_kg": oracle,
            "misses": pol["gridshift"]["deadline_misses"],
            "rho": sco.rank_correlation,
            "mae": sco.mae,
            "rel_mae": sco.relative_mae,
            "seam": float(np.mean(seams)) if seams else float("nan"),
        }
    return {"seconds": seconds, "rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grids", nargs="+", default=["DE", "PL"])
    ap.add_argument("--start", default="2021-10-01")
    ap.add_argument("--weeks", type=int, default=5)
    ap.add_argument("--profile", default="linear", choices=("linear", "sublinear"))
    ap.add_argument("--forecasts", nargs="+", default=["history", "weather"], choices=FORECASTS)
    ap.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="FIELD=VALUE",
        help="CarbonForecastSettings fields (Python literals), e.g. seam_half_life_steps=0",
    )
    ap.add_argument("--shared", default=os.environ.get("GRIDSHIFT_SHARED_DATA", "../shared/data"))
    args = ap.parse_args()
    start = datetime.fromisoformat(args.start).replace(tzinfo=UTC)
    path = _subset(args.grids, args.profile, start, args.weeks)
    overrides = {k: ast.literal_eval(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    try:
        print(
            f"{'forecast':<10}{'workload':<14}{'share%':>8}{'saved kg':>10}{'oracle kg':>10}"
            f"{'miss':>5}{'rho48':>7}{'MAE':>8}{'relMAE':>8}{'seam':>7}{'s':>6}"
        )
        for name in args.forecasts:
            out = run(name, path, args.shared, overrides)
            for w, r in out["rows"].items():
                print(
                    f"{name:<10}{w:<14}{r['share']:8.1f}{r['saved_kg']:10.1f}{r['oracle_kg']:10.1f}"
                    f"{r['misses']:5d}{r['rho']:7.3f}{r['mae']:8.1f}{r['rel_mae']:8.3f}"
                    f"{r['seam']:7.1f}{out['seconds']:6.0f}",
                    flush=True,
                )
    finally:
        path.unlink()


if __name__ == "__main__":
    main()
