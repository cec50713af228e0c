// gridshift built-in dashboard: polls the status API and draws SVG charts (no libraries).
"use strict";
(function () {
  const NS = "http://www.w3.org/2000/svg";
  const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"];
  const POLL_MS = 2000;
  const $ = (id) => document.getElementById(id);

  function el(tag, attrs, parent) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(value, digits) {
    if (value === null || value === undefined || !Number.isFinite(value)) return "–";
    const abs = Math.abs(value);
    if (abs >= 1e6) return (value / 1e6).toFixed(2) + " M";
    if (abs >= 1e4) return (value / 1e3).toFixed(1) + " k";
    return value.toFixed(digits === undefined ? 1 : digits);
  }

  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    if (seconds < 120) return seconds.toFixed(0) + " s";
    if (seconds < 7200) return (seconds / 60).toFixed(0) + " min";
    return (seconds / 3600).toFixed(1) + " h";
  }

  function hhmm(ms) {
    const d = new Date(ms);
    return String(d.getUTCHours()).padStart(2, "0") + ":" + String(d.getUTCMinutes()).padStart(2, "0");
  }

  function hhmmss(ms) {
    return hhmm(ms) + ":" + String(new Date(ms).getUTCSeconds()).padStart(2, "0");
  }

  // Round value ticks (1, 2 or 5 x 10^k apart) covering [lo, hi], about `target` of them.
  function niceTicks(lo, hi, target) {
    const raw = (hi - lo) / Math.max(1, target);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
    const first = Math.floor(lo / step + 1e-9) * step, last = Math.ceil(hi / step - 1e-9) * step;
    const ticks = [];
    for (let v = first; v <= last + step / 2; v += step) ticks.push(Math.abs(v) < step / 1e6 ? 0 : v);
    return { ticks, step };
  }

  // Time ticks at round UTC instants (5 s ... 1 day apart), at most `target` + 1 of them, each
  // label distinct: seconds shown when the step is under a minute, the date when a day or more.
  const TIME_STEPS_S = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  function timeTicks(t0, t1, target) {
    const spanS = (t1 - t0) / 1000;
    const stepS = TIME_STEPS_S.find((s) => spanS / s <= target) || Math.ceil(spanS / target / 86400) * 86400;
    const step = stepS * 1000;
    const ticks = [];
    for (let t = Math.ceil(t0 / step) * step; t <= t1; t += step) ticks.push(t);
    const label = stepS < 60 ? hhmmss : stepS >= 86400 ? (t) => new Date(t).toISOString().slice(5, 10) : hhmm;
    return { ticks, label };
  }

  // series: [{label, color, dashed, step, points: [[tMs, value|null], ...]}]
  function lineChart(container, series, opts) {
    container.textContent = "";
    const W = 560, H = 200, L = 52, R = 10, T = 10, B = 24;
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img" }, container);
    const all = series.flatMap((s) => s.points.filter((p) => p[1] !== null));
    if (all.length === 0) {
      el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, svg).textContent = "no data yet";
      return;
    }
    let t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
    if (t1 === t0) t1 = t0 + 1000;
    let v0 = Math.min(...all.map((p) => p[1])), v1 = Math.max(...all.map((p) => p[1]));
    if (opts && opts.zero) { v0 = Math.min(0, v0); v1 = Math.max(0, v1); }
    if (v1 === v0) { v1 = v0 + 1; v0 = v0 - 1; }
    const yt = niceTicks(v0, v1, 4);  // the axis spans whole ticks: 0, 100, 200, ...
    v0 = yt.ticks[0]; v1 = yt.ticks[yt.ticks.length - 1];
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (v) => T + (1 - (v - v0) / (v1 - v0)) * (H - T - B);
    const digits = yt.step >= 1 ? 0 : Math.min(3, Math.ceil(-Math.log10(yt.step) - 1e-9));
    for (const v of yt.ticks) {
      el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "gridline" }, svg);
      el("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end", class: "axis", "data-tick": v }, svg).textContent = fmt(v, digits);
    }
    const xt = timeTicks(t0, t1, 4);
    for (const t of xt.ticks) {
      const px = x(t);
      const anchor = px < L + 20 ? "start" : px > W - R - 20 ? "end" : "middle";
      el("text", { x: px, y: H - 6, "text-anchor": anchor, class: "axis xtick" }, svg).textContent = xt.label(t);
    }
    for (const s of series) {
      let d = "", pen = false, prevY = null;
      for (const [t, v] of s.points) {
        if (v === null) { pen = false; continue; }
        const px = x(t).toFixed(1), py = y(v).toFixed(1);
        if (!pen) d += `M${px},${py}`;
        else if (s.step) d += `H${px}V${py}`;
        else d += `L${px},${py}`;
        pen = true; prevY = py;
      }
      if (d) el("path", { d, stroke: s.color, class: "series" + (s.dashed ? " dashed" : "") + (s.dotted ? " dotted" : ""), "data-label": s.label }, svg);
    }
  }

  function legend(container, items) {
    container.textContent = "";
    for (const it of items) {
      const span = document.createElement("span");
      const sw = document.createElement("span");
      sw.className = "sw";
      sw.style.background = it.color;
      if (it.dashed) sw.style.background = `repeating-linear-gradient(90deg, ${it.color} 0 4px, transparent 4px 7px)`;
      if (it.dotted) sw.style.background = `repeating-linear-gradient(90deg, ${it.color} 0 2px, transparent 2px 5px)`;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(it.label + " "));
      const num = document.createElement("span");
      num.className = "num";
      num.textContent = it.value;
      span.appendChild(num);
      container.appendChild(span);
    }
  }

  function renderCarbon(points) {
    const regions = [...new Set(points.flatMap((p) => Object.keys(p.regions)))].sort();
    const series = [], items = [];
    regions.forEach((r, i) => {
      const color = PALETTE[i % PALETTE.length];
      const now = points.map((p) => [p.t, p.regions[r] ? p.regions[r].intensity_g_per_kwh : null]);
      const fc = points.map((p) => [p.t, p.regions[r] ? p.regions[r].forecast_window_g_per_kwh : null]);
      series.push({ label: r, color, points: now }, { label: r + " forecast", color, dashed: true, points: fc });
      const last = points[points.length - 1].regions[r] || {};
      items.push({ label: r, color, value: fmt(last.intensity_g_per_kwh, 0) });
      items.push({ label: r + " forecast", color, dashed: true, value: fmt(last.forecast_window_g_per_kwh, 0) });
    });
    lineChart($("chart-carbon"), series);
    legend($("legend-carbon"), items);
  }

  // desired (solid), actual from the cluster (dashed) and counterfactual (dotted) per workload
  function renderReplicas(points, actual) {
    const names = [...new Set(points.flatMap((p) => Object.keys(p.workloads)))].sort();
    const series = [], items = [];
    const reported = Boolean(actual && actual.reported);
    const unknown = (actual && actual.unknown) || {};
    const pick = (n, key) => points.map((p) => [p.t, p.workloads[n] && p.workloads[n][key] !== undefined ? p.workloads[n][key] : null]);
    names.forEach((n, i) => {
      const color = PALETTE[i % PALETTE.length];
      const last = points[points.length - 1].workloads[n] || {};
      series.push({ label: n + " desired", color, step: true, points: pick(n, "desired_replicas") });
      items.push({ label: n + " desired", color, value: fmt(last.desired_replicas, 0) });
      if (reported) {
        series.push({ label: n + " actual", color, step: true, dashed: true, points: pick(n, "actual_replicas") });
        items.push({ label: n + " actual", color, dashed: true, value: n in unknown ? "unknown" : fmt(last.actual_replicas, 0) });
      }
      series.push({ label: n + " counterfactual", color, step: true, dotted: true, points: pick(n, "counterfactual_replicas") });
      items.push({ label: n + " counterfactual", color, dotted: true, value: fmt(last.counterfactual_replicas, 0) });
    });
    $("replicas-hint").textContent = reported
      ? "solid: desired · dashed: actual (cluster) · dotted: counterfactual"
      : "solid: desired · dotted: counterfactual";
    const note = $("replicas-note");
    note.textContent = actual && actual.note ? actual.note : "";
    note.className = "note" + (actual && actual.note ? " warn" : "");
    lineChart($("chart-replicas"), series, { zero: true });
    legend($("legend-replicas"), items);
  }

  // cumulative gCO2: saved, emitted and the counterfactual (what permanent performance mode
  // would have emitted); every legend entry is a drawn line
  function renderSaved(points) {
    const pick = (key) => points.map((p) => [p.t, Number.isFinite(p[key]) ? p[key] : null]);
    const lines = [
      { label: "saved", key: "saved_g", color: "#2e9e5b", legend: "saved gCO₂" },
      { label: "emitted", key: "emitted_g", color: "#555", legend: "emitted" },
      { label: "counterfactual", key: "counterfactual_g", color: "#999", dotted: true, legend: "counterfactual" },
    ];
    lineChart($("chart-saved"), lines.map((l) => ({ label: l.label, color: l.color, dotted: l.dotted, points: pick(l.key) })), { zero: true });
    const last = points[points.length - 1];
    legend($("legend-saved"), lines.map((l) => ({ label: l.legend, color: l.color, dotted: l.dotted, value: fmt(last[l.key]) })));
  }

  function renderModes(points) {
    const box = $("modes");
    box.textContent = "";
    const names = [...new Set(points.flatMap((p) => Object.keys(p.workloads)))].sort();
    const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
    for (const n of names) {
      const row = document.createElement("div");
      row.className = "moderow";
      const name = document.createElement("div");
      name.className = "name"; name.textContent = n; name.title = n;
      row.appendChild(name);
      const svg = el("svg", { viewBox: "0 0 1000 18", preserveAspectRatio: "none" }, row);
      for (let i = 0; i < points.length; i++) {
        const w = points[i].workloads[n];
        if (!w) continue;
        const a = points[i].t, b = i + 1 < points.length ? points[i + 1].t : t1;
        const x = ((a - t0) / (t1 - t0)) * 1000, width = Math.max(((b - a) / (t1 - t0)) * 1000, 2);
        el("rect", { x: x.toFixed(1), y: 1, width: width.toFixed(1), height: 16, fill: w.mode === "eco" ? "#2e9e5b" : "#e8833a", "data-mode": w.mode }, svg);
      }
      const last = points[points.length - 1].workloads[n];
      const now = document.createElement("div");
      now.className = "now " + (last ? last.mode : "");
      now.textContent = last ? last.mode : "–";
      row.appendChild(now);
      box.appendChild(row);
    }
    const ul = $("reasons");
    ul.textContent = "";
    const lastPoint = points[points.length - 1];
    for (const n of names) {
      const w = lastPoint.workloads[n];
      if (!w) continue;
      for (const r of w.reasons.filter((x) => !x.startsWith("mode ")).slice(0, 1)) {
        const li = document.createElement("li");
        const b = document.createElement("b");
        b.textContent = n + ": ";
        li.appendChild(b);
        li.appendChild(document.createTextNode(r));
        ul.appendChild(li);
      }
    }
  }

  function renderFreshness(status) {
    const tbody = $("freshness").querySelector("tbody");
    tbody.textContent = "";
    const row = (cells, stale) => {
      const tr = document.createElement("tr");
      cells.forEach((c, i) => {
        const td = document.createElement("td");
        td.textContent = c;
        if (i === 2) td.className = "num";
        if (i === 3) td.className = stale ? "stale" : "ok";
        tr.appendChild(td);
      });
      tbody.appendChild(tr);
    };
    for (const [name, r] of Object.entries(status.regions || {}).sort()) {
      row(["carbon " + name, r.provider || "–", fmtAge(r.age_seconds), r.stale ? "stale" : "fresh"], r.stale);
    }
    for (const [name, w] of Object.entries(status.workloads || {}).sort()) {
      const stale = (w.stale_inputs || []).length > 0;
      row(["inputs of " + name, w.carbon_provenance || "–", "this tick", stale ? "stale: " + w.stale_inputs.join(", ") : "fresh"], stale);
    }
  }

  function renderRegionPolicy(box, policy) {
    if (!policy) return;
    const list = (xs) => (xs && xs.length ? xs.join(", ") : "none");
    const line = document.createElement("div");
    line.className = "region-policy";
    line.textContent = "Region policy: threshold " +
      (policy.max_intensity_g_per_kwh == null ? "off" : policy.max_intensity_g_per_kwh + " gCO₂/kWh") +
      " · prefer " + list(policy.prefer_regions) + " · avoid " + list(policy.avoid_regions) +
      " (per pod: " + (policy.pod_annotations || []).join(", ") + ")";
    box.appendChild(line);
  }

  function renderExtender(ext) {
    const box = $("extender");
    box.textContent = "";
    renderRegionPolicy(box, ext && ext.region_policy);
    if (!ext || !ext.configured) {
      box.appendChild(document.createTextNode((ext && ext.note) || "no extender configured"));
      return;
    }
    if (!ext.reachable) {
      box.appendChild(document.createTextNode(ext.note || "extender metrics unreachable"));
      return;
    }
    const head = document.createElement("div");
    head.textContent = "from " + ext.url + " at " + ext.polled_at;
    box.appendChild(head);
    const table = document.createElement("table");
    for (const [key, value] of Object.entries(ext.figures || {})) {
      // latencies arrive in seconds; sub-millisecond ones read better in ms
      const inMs = key.endsWith(" s") && typeof value === "number";
      const k = inMs ? key.slice(0, -2) + " ms" : key;
      const v = inMs ? value * 1000 : value;
      const tr = document.createElement("tr");
      const a = document.createElement("td"); a.textContent = k;
      const b = document.createElement("td"); b.className = "num"; b.textContent = typeof v === "number" ? fmt(v, Number.isInteger(v) ? 0 : 3) : String(v);
      tr.appendChild(a); tr.appendChild(b); table.appendChild(tr);
    }
    box.appendChild(table);
  }

  function renderKpis(status, points) {
    const last = points[points.length - 1];
    $("kpi-saved").textContent = fmt(last.saved_g);
    $("kpi-emitted").textContent = fmt(last.emitted_g);
    $("kpi-cf").textContent = fmt(last.counterfactual_g);
    const ws = Object.values(last.workloads);
    $("kpi-eco").textContent = ws.filter((w) => w.mode === "eco").length + " / " + ws.length;
    $("meta").textContent = `scaler time ${status.taken_at} · ticks ${status.ticks_total} · history ${points.length} points`;
    const note = $("data-note");
    if (status.data_note) { note.hidden = false; note.textContent = status.data_note; } else { note.hidden = true; }
  }

  async function getJson(path) {
    const res = await fetch(path, { cache: "no-store" });
    if (res.status === 503) return null;
    if (!res.ok) throw new Error(path + ": HTTP " + res.status);
    return res.json();
  }

  async function poll() {
    try {
      const [history, status, ext] = await Promise.all([getJson("/status/history"), getJson("/status"), getJson("/status/extender")]);
      renderExtender(ext);
      if (history && status && history.points.length > 0) {
        const points = history.points.map((p) => Object.assign({ t: Date.parse(p.taken_at) }, p));
        renderKpis(status, points);
        renderCarbon(points);
        renderReplicas(points, history.actual_replicas);
        renderSaved(points);
        renderModes(points);
        renderFreshness(status);
        document.body.dataset.points = String(points.length);
      }
    } catch (err) {
      $("meta").textContent = "status API unreachable: " + err.message;
    } finally {
      setTimeout(poll, POLL_MS);
    }
  }

  poll();
})();
