"""`gridshift forecast` and `gridshift backtest`: forecasts and backtests of CSV traces.

`forecast` forecasts one series (`--model auto` picks the model by a short backtest first);
`backtest` runs rolling-origin backtests of several models on one or more series, prints a
results table with the selected model and why, and writes JSON, PNG and HTML under `--out`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import sys
import warnings
from concurrent.futures import Executor
from datetime import timedelta
from pathlib import Path
from typing import Any

import click
import numpy as np

from config.fleet import fleet_executor, fleet_options, plan_fleet
from config.forecast_report import (
    forecast_rows,
    forecast_table,
    plot_png,
    render_html,
    scores_table,
)
from forecasts.backtest import (
    BacktestResult,
    Selection,
    rolling_origins,
    run_backtests,
    select_model,
    slice_series,
)
from forecasts.carbon_forecast import (
    CarbonForecastSettings,
    CarbonInputs,
    KnownSeries,
    forecast_carbon,
    plan_carbon_forecast,
)
from forecasts.forecast import Forecast, Forecaster
from forecasts.models.catalog import DEFAULT_SELECTION, MODEL_NAMES, build_model, season_steps
from forecasts.platform.errors import SourceDataError
from forecasts.series import RegularSeries
from forecasts.sources.csv_series import SeriesSpec, parse_series_spec, read_csv_series
from forecasts.time import humanize_duration, parse_duration

__all__ = ["BACKTEST_WORTH_A_CLUSTER", "backtest_command", "forecast_command"]

#: Model fits (series x models x origins) from which `--workers auto` starts a local cluster:
#: the slower models take about a second a fit, so 200 fits outweigh a cluster's start.
BACKTEST_WORTH_A_CLUSTER = 200


def _duration_steps(text: str, step: timedelta, *, name: str) -> int:
    try:
        span = parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=name) from exc
    steps = span / step
    if steps < 1 or abs(steps - round(steps)) > 1e-9:
        raise click.BadParameter(
            f"{text} is not a positive whole number of {humanize_duration(step)} steps",
            param_hint=name,
        )
    return round(steps)


def _models(names: str, step: timedelta) -> list[Forecaster]:
    out: list[Forecaster] = []
    for raw in names.split(","):
        name = raw.strip()
        if not name:
            continue
        try:
            out.append(build_model(name, step=step))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--models") from exc
    if not out:
        raise click.BadParameter("no model named", param_hint="--models")
    return out


def _load(spec: SeriesSpec) -> RegularSeries:
    try:
        series = read_csv_series(spec.path, region=spec.region, column=spec.column)
        season_steps(series.step)
    except (SourceDataError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--series/--trace") from exc
    return series


def _select(
    series: RegularSeries,
    models: list[Forecaster],
    *,
    horizon: int,
    origins: int,
    progress: bool,
    executor: Executor | None = None,
) -> tuple[dict[str, BacktestResult], Selection]:
    """Backtest every model (on `executor`, one task per model, when given) and select."""
    day, week = season_steps(series.step)
    points = rolling_origins(
        len(series), horizon=horizon, count=origins, stride=day, min_train=2 * week + 2 * day
    )
    total = len(points) * len(models)
    common: dict[str, Any] = {
        "origins": points,
        "horizon": horizon,
        "train_steps": 16 * week,
        "mase_periods": (day, week),
    }
    with click.progressbar(
        length=total, label="backtesting", file=sys.stderr if progress else io.StringIO()
    ) as bar:
        if executor is None:
            results = run_backtests(
                series, models, on_origin=lambda _name, _i: bar.update(1), **common
            )
        else:  # the models are independent: the same results, gathered in model order
            futures = [executor.submit(run_backtests, series, [m], **common) for m in models]
            results = {}
            for future in futures:
                results.update(future.result())
                bar.update(len(points))
    return results, select_model(results)


@click.command("forecast")
@click.option(
    "--trace",
    "trace",
    required=True,
    type=click.Path(path_type=Path),
    help="CSV file: timestamp_utc,<value columns> (optional region column).",
)
@click.option("--region", default=None, help="Region to read when the file has a region column.")
@click.option("--column", default=None, help="Value column (default: the only numeric one).")
@click.option(
    "--model",
    "model_name",
    default="auto",
    show_default=True,
    type=click.Choice(("auto", *MODEL_NAMES)),
    help="Model; auto backtests the fast models and picks one.",
)
@click.option("--horizon", default="24h", show_default=True, help="How far ahead (duration).")
@click.option(
    "--origins",
    default=7,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="Backtest origins for --model auto.",
)
@click.option(
    "--format",
    "fmt",
    default="table",
    show_default=True,
    type=click.Choice(("table", "json", "csv")),
)
@click.option(
    "--provider-column",
    default=None,
    help="Column holding the provider's own forecast (e.g. forecast_gco2_per_kwh): the series is"
    " then forecast as carbon intensity by gridshift's carbon forecast (own model, provider,"
    " fading correction and blend chosen by rolling backtest; each forecast value taken as"
    " known a day ahead).",
)
@click.option("--seed", default=0, show_default=True, type=int)
def forecast_command(
    trace: Path,
    region: str | None,
    column: str | None,
    model_name: str,
    horizon: str,
    origins: int,
    provider_column: str | None,
    fmt: str,
    seed: int,
) -> None:
    """Forecast one series of a CSV trace from its last observed value."""
    series = _observed_prefix(_load(SeriesSpec(path=trace, region=region, column=column)))
    steps = _duration_steps(horizon, series.step, name="--horizon")
    selection = None
    if model_name == "auto":
        models = _models(",".join(DEFAULT_SELECTION), series.step)
        _, selection = _select(
            series, models, horizon=steps, origins=origins, progress=fmt == "table"
        )
        chosen = next(m for m in models if m.name == selection.model)
    else:
        chosen = build_model(model_name, step=series.step)
    notes: list[str] = []
    try:
        if provider_column is None:
            fc = chosen.fit(series, seed=seed).predict(horizon=steps)
        else:
            provider = _load(SeriesSpec(path=trace, region=region, column=provider_column))
            hours = max(1, math.ceil(steps * series.step / timedelta(hours=1)))
            fc, notes = _carbon_forecast(series, provider, horizon=hours)
    except ValueError as exc:
        raise click.ClickException(f"{chosen.name}: {exc}") from exc
    click.echo(_render_forecast(fc, fmt=fmt, selection=selection, notes=notes))


def _observed_prefix(series: RegularSeries) -> RegularSeries:
    """The series up to its last observed step (a trace may end in blank rows)."""
    observed = np.flatnonzero(np.isfinite(series.values))
    if observed.size == 0:
        raise click.BadParameter("the series has no observed values", param_hint="--column")
    return slice_series(series, 0, int(observed[-1]) + 1)


def _hourly(series: RegularSeries) -> RegularSeries:
    """Carbon forecasts are hourly: finer series are averaged per hour (a partial last hour
    is dropped), coarser ones are refused."""
    k = timedelta(hours=1) / series.step
    if abs(k - round(k)) > 1e-9 or round(k) < 1:
        raise ValueError(
            f"carbon forecasts are hourly; a {series.step} step does not divide an hour"
        )
    k = round(k)
    first = (-round(series.start.timestamp() / series.step.total_seconds())) % k
    n = (len(series) - first) // k
    values = series.values[first : first + n * k].reshape(n, k)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        hourly = np.nanmean(values, axis=1)
    return RegularSeries(
        start=series.time_at(first), step=timedelta(hours=1), values=hourly, unit=series.unit
    )


def _carbon_forecast(
    history: RegularSeries, provider: RegularSeries, *, horizon: int
) -> tuple[Forecast, list[str]]:
    """gridshift's carbon forecast (the module `gridshift run` uses) with the provider column
    as its provider forecast, each value known one day before its step."""
    history, provider = _hourly(history), _hourly(provider)
    t = provider.epoch_s()
    known = KnownSeries(
        start=provider.start, step=provider.step, values=provider.values, known_s=t - 86400.0
    )
    inputs = CarbonInputs(history, provider=known)
    plan = plan_carbon_forecast(inputs, settings=CarbonForecastSettings(horizon_steps=horizon))
    return forecast_carbon(inputs, plan, horizon=horizon), [plan.name, *plan.reasons]


def _render_forecast(
    fc: Forecast, *, fmt: str, selection: Selection | None, notes: list[str]
) -> str:
    rows = forecast_rows(fc)
    if fmt == "json":
        doc: dict[str, Any] = {
            "model": fc.model,
            "unit": fc.unit,
            "step_seconds": fc.step.total_seconds(),
            "points": rows,
        }
        if selection is not None:
            doc["selection"] = {"model": selection.model, "reasons": list(selection.reasons)}
        if notes:
            doc["carbon_plan"] = notes
        return json.dumps(doc, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buf.getvalue().rstrip("\n")
    text = forecast_table(fc)
    if selection is not None:
        text += "\n" + "\n".join(selection.reasons)
    if notes:
        text += "\ncarbon forecast: " + "; ".join(notes)
    return text


@click.command("backtest")
@click.option(
    "--series",
    "series_specs",
    required=True,
    multiple=True,
    help="FILE[:region[:column]] (repeatable).",
)
@click.option(
    "--models",
    default=",".join(DEFAULT_SELECTION),
    show_default=True,
    help=f"Comma-separated, from: {', '.join(MODEL_NAMES)}.",
)
@click.option("--horizon", default="24h", show_default=True, help="Forecast horizon (duration).")
@click.option(
    "--origins",
    default=14,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Rolling origins, one day apart, ending one horizon before the series end.",
)
@click.option(
    "--out",
    "out_dir",
    default=None,
    type=click.Path(path_type=Path, file_okay=False),
    help="Directory for backtest.json, <series>.png and <series>.html.",
)
@click.option(
    "--format", "fmt", default="table", show_default=True, type=click.Choice(("table", "json"))
)
@fleet_options
def backtest_command(
    series_specs: tuple[str, ...],
    models: str,
    horizon: str,
    origins: int,
    out_dir: Path | None,
    fmt: str,
    workers: str,
    scheduler_address: str | None,
) -> None:
    """Rolling-origin backtest of models on CSV series, with per-series model selection."""
    specs = []
    for text in series_specs:
        try:
            specs.append(parse_series_spec(text))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--series") from exc
    report: dict[str, Any] = {}
    n_models = len([m for m in models.split(",") if m.strip()]) + 1  # + the baseline
    plan = plan_fleet(
        workers,
        scheduler_address,
        parts=n_models,
        work=len(specs) * n_models * origins,
        worth_it=BACKTEST_WORTH_A_CLUSTER,
        unit="model fits",
    )
    if not plan.single_process:
        click.echo(f"backtest: {plan.why}", err=True)
    with fleet_executor(plan) as (executor, _parts):
        for spec in specs:
            _backtest_one(spec, models, horizon, origins, out_dir, fmt, executor, report)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "backtest.json").write_text(json.dumps(report, indent=2))
        if fmt == "table":
            click.echo(f"\nwrote {out_dir / 'backtest.json'} and the plots")
    if fmt == "json":
        click.echo(json.dumps(report, indent=2))


def _backtest_one(
    spec: SeriesSpec,
    models: str,
    horizon: str,
    origins: int,
    out_dir: Path | None,
    fmt: str,
    executor: Executor | None,
    report: dict[str, Any],
) -> None:
    """Backtest one series, print its table, add it to `report`, write its plots."""
    series = _load(spec)
    steps = _duration_steps(horizon, series.step, name="--horizon")
    forecasters = _models(models, series.step)
    if not any(m.name.startswith("seasonal_naive") for m in forecasters):
        forecasters.insert(0, build_model("seasonal_naive_day", step=series.step))
    try:
        results, selection = _select(
            series, forecasters, horizon=steps, origins=origins, progress=True, executor=executor
        )
    except ValueError as exc:
        raise click.ClickException(f"{spec.label}: {exc}") from exc
    errors = {k: r.errors[0] for k, r in results.items() if r.errors}
    table = scores_table(selection.scores, errors=errors, chosen=selection.model)
    report[spec.label] = {
        "selected": selection.model,
        "baseline": selection.baseline,
        "reasons": list(selection.reasons),
        "scores": {k: v.as_dict() for k, v in selection.scores.items()},
        "errors": errors,
        "origins": len(results[selection.model].origins),
        "horizon_steps": steps,
    }
    if fmt == "table":
        click.echo(
            f"\n{spec.label}  ({len(series)} steps of "
            f"{humanize_duration(series.step)}, horizon {steps})"
        )
        click.echo(table)
        click.echo("\n".join(f"  {r}" for r in selection.reasons))
    if out_dir is not None:
        _write_plots(out_dir, spec, series, results[selection.model], table, selection)


def _write_plots(
    out_dir: Path,
    spec: SeriesSpec,
    series: RegularSeries,
    result: BacktestResult,
    table: str,
    selection: Selection,
) -> None:
    """Plot the selected model's forecast from the last origin against what happened."""
    out_dir.mkdir(parents=True, exist_ok=True)
    origin = result.origins[-1]
    _day, week = season_steps(series.step)
    history = slice_series(series, origin - week, origin)
    actual = slice_series(series, origin, origin + result.horizon)
    i = len(result.origins) - 1
    fc = Forecast(
        start=series.time_at(origin),
        step=series.step,
        mean=result.mean[i],
        quantiles={q: arr[i] for q, arr in result.bands.items()},
        unit=series.unit,
        model=result.model,
    )
    title = f"{spec.label}: {result.model} from the last backtest origin"
    png = plot_png(title=title, history=history, forecast=fc, actual=actual)
    stem = spec.label.replace(":", "_").replace("/", "_")
    (out_dir / f"{stem}.png").write_bytes(png)
    (out_dir / f"{stem}.html").write_text(
        render_html(title=title, png=png, table=table, selection=selection)
    )
