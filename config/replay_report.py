"""Replay output: a text table, JSON, and a self-contained HTML report with inline plots.

The HTML embeds every figure as base64 PNG (matplotlib `Figure` objects rendered by Agg, no
pyplot state; matplotlib is imported only when a report is drawn, so the `gridshift` command
starts without it or a writable matplotlib cache): no CDN, no external file; it opens
offline. Plots: per workload, carbon intensity of its region and demand vs capacity per
policy (the first two weeks at full resolution), and cumulative emissions of every policy
over the whole horizon.
"""

from __future__ import annotations

import base64
import html
import io
from datetime import timedelta
from typing import Any

import numpy as np

from forecasts.time import from_epoch_s, humanize_duration, to_epoch_s
from scaler.replay.model import PolicyName, ReplayResult

__all__ = ["render_html", "render_table"]

_COLOURS = {
    PolicyName.STATIC: "#7f7f7f",
    PolicyName.HPA: "#1f77b4",
    PolicyName.KEDA_CARBON: "#9467bd",
    PolicyName.GRIDSHIFT_PERFORMANCE: "#ff7f0e",
    PolicyName.GRIDSHIFT: "#2ca02c",
    PolicyName.ORACLE: "#d62728",
}


def _f(x: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if x is None else fmt.format(x)


def _kg(g: float) -> str:
    return f"{g / 1000:.1f}" if g < 1e7 else f"{g / 1e6:.2f} t"


def render_table(summary: dict[str, Any]) -> str:
    """The policies side by side (totals), then per workload gCO2 and SLO/deadline figures."""
    lines = [
        f"replay {summary['scenario']}: {summary['from']} -> {summary['to']}",
        f"{summary['intervals']} intervals of "
        f"{humanize_duration(timedelta(seconds=summary['step_seconds']))}, "
        f"{summary['ticks']} scaler ticks in {summary['seconds']:.1f} s",
        f"gridshift carbon forecasts: {summary['carbon_forecast']}",
        *summary["notes"],
        "",
    ]
    pol = summary["policies"]
    base_names = [p for p in pol if p != PolicyName.ORACLE]
    head = (
        f"{'policy':<22} {'kgCO2':>8} {'kWh':>8} {'replica-h':>9} {'SLO viol.':>13} "
        f"{'misses':>7} {'done h':>6} {'vs oracle':>9} {'captured':>8}"
    )
    lines += [head, "-" * len(head)]
    for name, row in pol.items():
        slo = (
            f"{row['slo_violations']} ({row['slo_violation_percent']:.2f}%)"
            if row["slo_intervals"]
            else "-"
        )
        misses = f"{row['deadline_misses']}/{row['jobs']}" if row["jobs"] else "-"
        lines.append(
            f"{name:<22} {_kg(row['emitted_g']):>8} {row['energy_kwh']:>8.1f} "
            f"{row['replica_hours']:>9.1f} {slo:>13} {misses:>7} "
            f"{_f(row['mean_completion_hours']):>6} "
            f"{_f(row['oracle_gap_percent'], '{:+.1f}%'):>9} "
            f"{_f(row['oracle_share_percent'], '{:.1f}%'):>8}"
        )
    lines.append("")
    lines.append(
        "vs oracle: emissions above the oracle; captured: share of the oracle's saving over "
        "static captured."
    )
    # the pairwise savings as their own matrix, so no line is wider than about 100 columns
    lines.append("")
    short = {b: _short(b) for b in base_names}
    matrix_head = f"{'saving vs (column)':<22} " + " ".join(f"{short[b]:>14}" for b in base_names)
    lines += [matrix_head, "-" * len(matrix_head)]
    for name, row in pol.items():
        lines.append(
            f"{name:<22} "
            + " ".join(
                f"{_f(row['saving_vs'].get(b), '{:+.1f}%'):>14}" if b != name else f"{'':>14}"
                for b in base_names
            )
        )
    if any(short[b] != b for b in base_names):
        lines.append("gs-: gridshift-")
    if len(summary["workloads"]) > 1:
        lines.append("")
        lines.append(
            f"{'workload':<22} {'policy':<22} {'kgCO2':>10} {'SLO viol.':>10} {'misses':>8}"
        )
        for wname, wl in summary["workloads"].items():
            for pname, row in wl["policies"].items():
                misses = f"{row['deadline_misses']}/{row['jobs']}" if row["jobs"] else "-"
                slo = str(row["slo_violations"]) if row["slo_intervals"] else "-"
                lines.append(
                    f"{wname:<22} {pname:<22} {_kg(row['emitted_g']):>10} {slo:>10} {misses:>8}"
                )
    return "\n".join(lines)


def _short(policy: str) -> str:
    return policy.replace("gridshift-", "gs-")


def _figure(**kw: Any) -> Any:
    from matplotlib.figure import Figure

    return Figure(**kw)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _times(result: ReplayResult, n: int) -> list[Any]:
    s = to_epoch_s(result.scenario.start)
    step = result.scenario.step.total_seconds()
    return [from_epoch_s(s + i * step) for i in range(n)]


def _workload_figure(result: ReplayResult, name: str, window: int) -> str:
    sc = result.scenario
    w = next(x for x in sc.workloads if x.name == name)
    n = min(window, sc.horizon_intervals)
    times = _times(result, n)
    carbon = sc.carbon_on_horizon(w.workload.region)[:n]
    fig = _figure(figsize=(11, 5.5))
    ax_c, ax_r = fig.subplots(2, 1, sharex=True)
    ax_c.step(times, carbon, where="post", color="#444444", lw=1)
    ax_c.set_ylabel("gCO2/kWh")
    ax_c.set_title(f"{name} in {w.workload.region}: carbon intensity, capacity per policy")
    if w.interactive:
        demand = sc.demand_in_period(w)[:n] / w.workload.capacity_per_replica
        ax_r.fill_between(
            times[: demand.size], demand, step="post", color="#dddddd", label="demand / capacity"
        )
    for p in sc.policies:
        o = result.outcomes[p].get(name)
        if o is None:
            continue
        ax_r.step(times, o.replicas[:n], where="post", lw=1.1, label=str(p), color=_COLOURS[p])
    ax_r.set_ylabel("replicas")
    ax_r.legend(fontsize=7, ncol=4, loc="upper left")
    fig.autofmt_xdate()
    return _png(fig)


def _cumulative_figure(result: ReplayResult) -> str:
    sc = result.scenario
    n = sc.horizon_intervals
    times = _times(result, n)
    fig = _figure(figsize=(11, 4))
    ax = fig.subplots()
    for p in sc.policies:
        total = np.zeros(n)
        for o in result.outcomes[p].values():
            total += o.emitted_g_per_interval[:n]
        ax.plot(times, np.cumsum(total) / 1000.0, label=str(p), color=_COLOURS[p], lw=1.3)
    ax.set_ylabel("cumulative kgCO2")
    ax.set_title("Cumulative emissions, all workloads")
    ax.legend(fontsize=8, ncol=3)
    fig.autofmt_xdate()
    return _png(fig)


def render_html(
    result: ReplayResult,
    summary: dict[str, Any],
    *,
    max_workload_plots: int = 12,
    window: timedelta = timedelta(days=14),
) -> str:
    """A self-contained HTML page (inline CSS and base64 PNG plots)."""
    sc = result.scenario
    steps = max(1, int(window / sc.step))
    figs = [
        f'<h3>{html.escape(w.name)}</h3><img alt="{html.escape(w.name)}" '
        f'src="data:image/png;base64,{_workload_figure(result, w.name, steps)}">'
        for w in sc.workloads[:max_workload_plots]
    ]
    table = html.escape(render_table(summary))
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary["notes"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>gridshift replay: {html.escape(sc.name)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: 12px; }}
img {{ max-width: 100%; }}
</style></head><body>
<h1>gridshift replay: {html.escape(sc.name)}</h1>
<p>{html.escape(summary["from"])} &rarr; {html.escape(summary["to"])};
gridshift carbon forecasts: {html.escape(summary["carbon_forecast"])}.</p>
<ul>{notes}</ul>
<h2>Policies side by side</h2>
<pre>{table}</pre>
<h2>Cumulative emissions</h2>
<img alt="cumulative emissions" src="data:image/png;base64,{_cumulative_figure(result)}">
<h2>Carbon, demand and capacity (first {window.days} days)</h2>
{"".join(figs)}
</body></html>
"""
