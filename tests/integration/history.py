"""A seeded generator of Prometheus history (OpenMetrics text) and the truth behind it.

Four hours from `T0` (an old, fixed instant: queries use fixed times, and the server keeps the
blocks thanks to a long retention):

- `gs_requests_total{job="api"}`: a counter scraped every 15 s, Poisson increments around a
  known rate, reset to zero (a restart) at `RESETS`;
- `gs_queue_depth{instance="a"}` and `{instance="b"}`: gauges every 60 s at :30; "a" has no
  samples inside `SHORT_GAP` (3 five-minute steps go missing) and `LONG_GAP` (11 steps);
- `gs_worker_busy{instance="old"}`: a gauge that stops at `STALE_AFTER` (its target went away);
- `gs_ratio`: a gauge every 60 s at :00 with one `NaN` and one `+Inf` sample;
- `gs_fine`: a gauge every 15 s, for the >11,000-point split at a 1 s step.

Values are multiples of 0.5 so they survive the text round trip exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

T0 = datetime(2024, 1, 15, tzinfo=UTC)
T0_S = int(T0.timestamp())
SPAN_S = 4 * 3600
COUNTER_SCRAPE_S = 15
RESETS = (T0 + timedelta(minutes=61, seconds=30), T0 + timedelta(minutes=152, seconds=15))
SHORT_GAP = (T0 + timedelta(minutes=60, seconds=30), T0 + timedelta(minutes=80, seconds=30))
LONG_GAP = (T0 + timedelta(minutes=150, seconds=30), T0 + timedelta(minutes=210, seconds=30))
STALE_AFTER = T0 + timedelta(minutes=120, seconds=30)
NAN_AT = T0 + timedelta(minutes=10)
INF_AT = T0 + timedelta(minutes=20)

FloatArray = npt.NDArray[np.float64]


@dataclass
class History:
    text: str = ""
    #: (epoch seconds, value) per series key, in time order.
    samples: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    #: the counter's per-scrape increments (after each reset, the counter restarts at 0).
    increments: list[int] = field(default_factory=list)
    true_rate_per_s: float = 0.0

    def values_at(self, key: str, times_s: FloatArray, *, lookback_s: float = 300.0) -> FloatArray:
        """What Prometheus answers at each of `times_s`: the latest sample at or before it
        when it is less than the lookback (5 min) old, else NaN (no point)."""
        ts = np.array([t for t, _ in self.samples[key]], dtype=float)
        vs = np.array([v for _, v in self.samples[key]], dtype=float)
        idx = np.searchsorted(ts, times_s, side="right") - 1
        ok = (idx >= 0) & (times_s - ts[np.maximum(idx, 0)] < lookback_s)
        return np.where(ok, vs[np.maximum(idx, 0)], np.nan)


def _in(ts: int, window: tuple[datetime, datetime]) -> bool:
    return window[0].timestamp() < ts < window[1].timestamp()


def generate(seed: int = 20240115) -> History:
    rng = np.random.default_rng(seed)
    history = History()
    lines: list[str] = []

    def emit(name: str, kind: str, key: str, labels: str, points: list[tuple[int, float]]) -> None:
        history.samples[key] = points
        if kind:
            lines.append(f"# TYPE {name} {kind}")
        for ts, v in points:
            text = "NaN" if np.isnan(v) else ("+Inf" if np.isinf(v) else repr(v))
            lines.append(f"{name}{labels} {text} {ts}")

    # Counter with resets.
    rate = 20.0
    counter = 0
    points: list[tuple[int, float]] = []
    reset_s = [int(r.timestamp()) for r in RESETS]
    for ts in range(T0_S, T0_S + SPAN_S + 1, COUNTER_SCRAPE_S):
        inc = int(rng.poisson(rate * COUNTER_SCRAPE_S)) if points else 0
        if any(points and points[-1][0] < r <= ts for r in reset_s):
            counter = 0
        counter += inc
        history.increments.append(inc)
        points.append((ts, float(counter)))
    history.true_rate_per_s = rate
    emit("gs_requests_total", "counter", "requests", '{job="api"}', points)

    # Gauges at :30, two instances; "a" has the gaps.
    walk = {"a": 50.0, "b": 20.0}
    series: dict[str, list[tuple[int, float]]] = {"a": [], "b": []}
    for ts in range(T0_S + 30, T0_S + SPAN_S, 60):
        for inst in ("a", "b"):
            walk[inst] = max(0.0, walk[inst] + 0.5 * float(rng.integers(-4, 5)))
            if inst == "a" and (_in(ts, SHORT_GAP) or _in(ts, LONG_GAP)):
                continue
            series[inst].append((ts, walk[inst]))
    lines.append("# TYPE gs_queue_depth gauge")
    for inst in ("a", "b"):
        emit("gs_queue_depth", "", f"queue_{inst}", f'{{instance="{inst}"}}', series[inst])

    # A series that went stale.
    stale = [
        (ts, 1.0 + 0.5 * float(rng.integers(0, 6)))
        for ts in range(T0_S + 30, int(STALE_AFTER.timestamp()) + 1, 60)
    ]
    emit("gs_worker_busy", "gauge", "stale", '{instance="old"}', stale)

    # NaN and +Inf samples.
    ratio = []
    for ts in range(T0_S, T0_S + SPAN_S, 60):
        v = 0.5 * float(rng.integers(0, 20))
        if ts == int(NAN_AT.timestamp()):
            v = float("nan")
        if ts == int(INF_AT.timestamp()):
            v = float("inf")
        ratio.append((ts, v))
    emit("gs_ratio", "gauge", "ratio", "", ratio)

    # Fine-grained gauge for the split test.
    fine = [(ts, 0.5 * float(rng.integers(0, 2000))) for ts in range(T0_S, T0_S + SPAN_S, 15)]
    emit("gs_fine", "gauge", "fine", '{job="api"}', fine)

    lines.append("# EOF")
    history.text = "\n".join(lines) + "\n"
    return history
