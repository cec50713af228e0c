"""Renders forecasts and backtests for people: text tables, JSON documents, a PNG plot
(matplotlib, Agg backend) and a self-contained HTML page (the PNG inlined as base64, no CDN)."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from forecasts.backtest import Scores, Selection
from forecasts.forecast import Forecast
from forecasts.series import RegularSeries

__all__ = [
    "forecast_rows",
    "forecast_table",
    "plot_png",
    "render_html",
    "scores_table",
]

TABLE_LEVELS = (0.1, 0.5, 0.9, 0.95)


def forecast_rows(fc: Forecast) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, at in enumerate(fc.times()):
        row: dict[str, Any] = {"timestamp_utc": at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        row["mean"] = float(fc.mean[i])
        for q in sorted(fc.quantiles):
            row[f"p{round(q * 100):02d}"] = float(fc.quantiles[q][i])
        rows.append(row)
    return rows


def forecast_table(fc: Forecast) -> str:
    head = ["timestamp_utc", "mean"] + [f"p{round(q * 100):02d}" for q in TABLE_LEVELS]
    lines = [
        f"model {fc.model}, unit {fc.unit}",
        "  ".join(f"{h:>20}" if i == 0 else f"{h:>10}" for i, h in enumerate(head)),
    ]
    for i, at in enumerate(fc.times()):
        cells = [f"{at.strftime('%Y-%m-%dT%H:%M:%SZ'):>20}", f"{fc.mean[i]:>10.2f}"]
        cells += [f"{fc.quantile(q)[i]:>10.2f}" for q in TABLE_LEVELS]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def _fmt(value: float, spec: str = ".3f") -> str:
    return "-" if not np.isfinite(value) else format(value, spec)


def scores_table(
    scores: Mapping[str, Scores], *, errors: Mapping[str, str], chosen: str | None
) -> str:
    head = (
        f"{'model':<22}{'MAE':>10}{'RMSE':>10}{'MAPE%':>8}{'sMAPE%':>8}{'MASEb':>7}"
        f"{'cov80':>7}{'cov90':>7}{'fit s':>9}{'pred s':>9}"
    )
    lines = [head, "-" * len(head)]
    footer = "MASEb: MASE against the better (lower in-sample error) of the scored seasonal naives"
    for name, s in sorted(scores.items(), key=lambda kv: kv[1].mae):
        mark = " *" if name == chosen else ""
        mase = s.mase_worst_baseline
        cov80 = s.coverage.get(0.8, float("nan"))
        cov90 = s.coverage.get(0.9, float("nan"))
        lines.append(
            f"{name + mark:<22}{_fmt(s.mae):>10}{_fmt(s.rmse):>10}{_fmt(s.mape_pct, '.2f'):>8}"
            f"{_fmt(s.smape_pct, '.2f'):>8}{_fmt(mase):>7}{_fmt(cov80, '.2f'):>7}"
            f"{_fmt(cov90, '.2f'):>7}{_fmt(s.fit_seconds, '.4f'):>9}"
            f"{_fmt(s.predict_seconds, '.4f'):>9}"
        )
    for name, err in sorted(errors.items()):
        lines.append(f"{name:<22}failed: {err}")
    lines.append(footer)
    return "\n".join(lines)


def _np_times(times: Sequence[datetime]) -> Any:
    """UTC instants as naive numpy datetimes (matplotlib's axis is labelled UTC)."""
    return np.array([t.replace(tzinfo=None) for t in times], dtype="datetime64[s]")


def plot_png(
    *,
    title: str,
    history: RegularSeries,
    forecast: Forecast,
    actual: RegularSeries | None = None,
) -> bytes:
    """History, the forecast mean, its p10-p90 and p05-p95 bands, and what happened."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    ht = _np_times(history.times())
    ax.plot(ht, history.values, color="#444444", lw=1, label="history")
    ft = _np_times(forecast.times())
    ax.fill_between(
        ft,
        forecast.quantile(0.05),
        forecast.quantile(0.95),
        color="#9ecae1",
        alpha=0.5,
        label="p05-p95",
    )
    ax.fill_between(
        ft,
        forecast.quantile(0.1),
        forecast.quantile(0.9),
        color="#4292c6",
        alpha=0.5,
        label="p10-p90",
    )
    ax.plot(ft, forecast.mean, color="#08306b", lw=1.5, label=f"forecast ({forecast.model})")
    if actual is not None:
        at = _np_times(actual.times())
        ax.plot(at, actual.values, color="#d94801", lw=1, ls="--", label="actual")
    ax.set_title(title)
    ax.set_ylabel(history.unit)
    ax.set_xlabel("UTC")
    ax.legend(loc="upper left", fontsize=8)
    fig.autofmt_xdate()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


def render_html(
    *, title: str, png: bytes, table: str, selection: Selection | None, notes: Sequence[str] = ()
) -> str:
    """One page, no external resources: the plot as a data URI, the table, the reasons."""
    img = base64.b64encode(png).decode("ascii")
    reasons = "".join(
        f"<li>{html.escape(r)}</li>" for r in (selection.reasons if selection else ())
    )
    extra = "".join(f"<p>{html.escape(n)}</p>" for n in notes)
    chosen = f"<p>Selected model: <b>{html.escape(selection.model)}</b></p>" if selection else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}pre{background:#f4f4f4;padding:1em}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>"
        f"<img alt='history, forecast and intervals' src='data:image/png;base64,{img}'>"
        f"{chosen}<pre>{html.escape(table)}</pre><ul>{reasons}</ul>{extra}</body></html>"
    )
