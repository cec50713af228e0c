"""Benchmark: the sharded scaler on the real control plane of the tests (tests/cluster/plane.py).

N CarbonAwareScalers (default 10,000; GRIDSHIFT_BENCH_SHARD_CRS scales it down for iteration),
4 `gridshift run` replicas with kube.shards=8, the deploy/overlays/scaler-sharded RBAC (each
replica runs as the scaler's service account, as the StatefulSet's pods would), ticking every
GRIDSHIFT_BENCH_SHARD_TICK_S seconds (default 60, the product default).

Figures, printed with their targets:
* every workload decided every tick: for each replica and measured tick, every workload of the
  shards it holds has `decided_at == taken_at`, and the replicas' sets are disjoint and cover
  all N CRs;
* tick p99 (each replica's `gridshift_tick_duration_seconds` per tick) against the interval;
* status writes per tick per replica (PATCH carbonawarescalers/status, counted by the client)
  after the first decisions, against the workloads decided: written only on change;
* API requests per second per replica, by verb and resource (`gridshift_kube_api_requests_total`),
  the per-shard checkpoint writes included (the state store shares the replica's API client):
  they are also shown on their own (`update configmaps`, per tick and per second), with the
  shard ConfigMaps' compressed sizes;
* failover: one replica SIGKILLed; seconds until the survivors' snapshots have decided all its
  workloads again, against Lease duration + retry period (a replica ticks when its shards
  change), and how many of them continued their work left from the per-shard checkpoints
  (`scaler.state_store: configmap`, as the overlay sets it) rather than restarting it.

Inputs: each CR is a whole workload of its own (CRD-first, no config-file workloads: 10,000 of
those would not fit the 512 KiB config file), elastic (work due in two days, planned on the
SAMPLE DATA carbon forecast of sample-wind), so no Prometheus is needed and the figures
measure sharding, the API server and the tick; the interactive path's load queries are
benchmarked on their own (test_prometheus_batch_bench.py). The CRs' targets (Deployments) do
not exist: their replicas come from the Deployment watch (unknown, no request). Each status
write comes with a decision Event (ScalingDecision/ModeChanged), so `create events` beside
`patch carbonawarescalers/status` in the request rates shows the writes are decision changes.
The run writes tests/artifacts/bench-sharded-scaler.txt.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from scaler.state import checkpoint_from_config_map
from tests.cluster.install import (
    SCALER_NAMESPACE,
    create_scalers,
    install_overlay,
    running_scaler,
    scaler_config,
)
from tests.cluster.plane import KubePlane, require_plane_binaries, running_plane, wait_until
from tests.gridshift_process import RunningGridshift

pytestmark = pytest.mark.slow

N_CRS = int(os.environ.get("GRIDSHIFT_BENCH_SHARD_CRS", "10000"))
TICK_S = float(os.environ.get("GRIDSHIFT_BENCH_SHARD_TICK_S", "60"))
MEASURED_TICKS = int(os.environ.get("GRIDSHIFT_BENCH_SHARD_TICKS", "3"))
REPLICAS, SHARDS = 4, 8
LEASE_S, RETRY_S = 15, 2.0  # the product defaults (client-go's)
NAMESPACE = "fleet"
STATE = "gridshift-scaler-state"  # the overlay's shard ConfigMaps: <STATE>-shard-<i>
ARTIFACT = Path(__file__).resolve().parents[1] / "artifacts" / "bench-sharded-scaler.txt"


def names() -> list[str]:
    return [f"w{i:05d}" for i in range(N_CRS)]


def total_work(name: str) -> float:
    return 36_000.0 + int(name[1:]) % 97 * 1_000.0


def create_crs(plane: KubePlane) -> float:
    started = time.perf_counter()
    deadline = (datetime.now(UTC) + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: TID251
    create_scalers(
        plane,
        NAMESPACE,
        names(),
        lambda name: {
            "minReplicas": 0,
            "maxReplicas": 20,
            "region": "sample-wind",
            "workloadClass": "elastic",
            "elastic": {
                "totalWork": total_work(name),
                "deadline": deadline,
                "throughputPerReplica": [1.0],
            },
        },
        threads=8,
    )
    return time.perf_counter() - started


def metrics(replica: RunningGridshift) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = httpx.get(f"{replica.base_url}/metrics", timeout=30).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
    return out


def value(m: dict[str, list[tuple[dict[str, str], float]]], name: str, **labels: str) -> float:
    return sum(v for lab, v in m.get(name, []) if labels.items() <= lab.items())


def status(replica: RunningGridshift) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{replica.base_url}/status", timeout=60).json()
    return body


@contextlib.contextmanager
def fleet(plane: KubePlane, tmp_path: Path) -> Iterator[list[tuple[str, RunningGridshift]]]:
    with contextlib.ExitStack() as stack:
        running = []
        for i in range(REPLICAS):
            identity = f"gridshift-scaler-{i}"
            config = scaler_config(
                plane,
                tmp_path,
                workloads=[],
                identity=identity,
                extra={
                    "kube": {
                        "shards": SHARDS,
                        "lease_duration_seconds": LEASE_S,
                        "renew_deadline_seconds": 10.0,
                        "retry_period_seconds": RETRY_S,
                    },
                    "scaler": {"state_store": "configmap"},
                },
            )
            running.append(
                (identity, stack.enter_context(running_scaler(plane, config, tick_seconds=TICK_S)))
            )
        yield running


def test_sharded_scaler_on_the_real_plane(tmp_path: Path) -> None:
    require_plane_binaries()  # skips where `make kube-plane` has not built the plane
    lines: list[str] = [f"sharded scaler: {N_CRS} CRs, {REPLICAS} replicas, {SHARDS} shards"]
    with running_plane(tmp_path / "plane") as plane:
        install_overlay(plane, "scaler-sharded")
        plane.create_namespace(NAMESPACE)
        created_s = create_crs(plane)
        lines.append(f"  created {N_CRS} CRs in {created_s:.1f} s ({N_CRS / created_s:.0f}/s)")
        with fleet(plane, tmp_path) as running:
            lines += measure(plane, running)
    text = "\n".join(lines)
    print("\n[bench sharded scaler]\n" + text)
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(text + "\n")


def measure(plane: KubePlane, running: list[tuple[str, RunningGridshift]]) -> list[str]:
    lines: list[str] = []
    everyone = set(names())
    started = time.monotonic()

    def covered() -> dict[str, set[str]] | None:
        own = {identity: set(status(p).get("workloads", {})) for identity, p in running}
        union = set().union(*own.values())
        return own if union == everyone and sum(map(len, own.values())) == N_CRS else None

    wait_until(covered, timeout_s=max(600, 6 * TICK_S), what="every CR decided", every_s=5)
    lines.append(f"  first full coverage {time.monotonic() - started:.0f} s after start")
    # warm-up: the tick after coverage writes the first statuses; measure from the next one
    first = {identity: value(metrics(p), "gridshift_ticks_total") for identity, p in running}
    wait_until(
        lambda: all(value(metrics(p), "gridshift_ticks_total") >= first[i] + 1 for i, p in running),
        timeout_s=6 * TICK_S,
        what="one more tick",
        every_s=2,
    )
    before = {identity: metrics(p) for identity, p in running}
    window_started = time.monotonic()
    seen_ticks: dict[str, float] = {
        identity: value(before[identity], "gridshift_ticks_total") for identity, _ in running
    }
    tick_seconds: dict[str, list[float]] = {identity: [] for identity, _ in running}
    decided_all: dict[str, list[bool]] = {identity: [] for identity, _ in running}
    owned_last: dict[str, set[str]] = {}
    while min(len(v) for v in tick_seconds.values()) < MEASURED_TICKS:
        for identity, process in running:
            m = metrics(process)
            ticks = value(m, "gridshift_ticks_total")
            if ticks > seen_ticks[identity]:
                seen_ticks[identity] = ticks
                tick_seconds[identity].append(value(m, "gridshift_tick_duration_seconds"))
                snap = status(process)
                workloads = snap["workloads"]
                decided_all[identity].append(
                    all(w["decided_at"] == snap["taken_at"] for w in workloads.values())
                )
                owned_last[identity] = set(workloads)
        time.sleep(1)
        if time.monotonic() - window_started > (MEASURED_TICKS + 4) * TICK_S * 3:
            break
    window_s = time.monotonic() - window_started
    after = {identity: metrics(p) for identity, p in running}
    union = set().union(*owned_last.values())
    disjoint = sum(map(len, owned_last.values())) == len(union)
    all_ticks = [t for ts in tick_seconds.values() for t in ts]
    p99 = statistics.quantiles(all_ticks, n=100)[98] if len(all_ticks) > 1 else all_ticks[0]
    lines.append(
        f"  every workload decided every tick: "
        f"{all(all(v) for v in decided_all.values()) and union == everyone and disjoint} "
        f"({sum(len(v) for v in decided_all.values())} replica-ticks; union {len(union)}/"
        f"{N_CRS}, disjoint {disjoint})"
    )
    lines.append(
        f"  tick p99 {p99:.2f} s vs interval {TICK_S:.0f} s (ratio {p99 / TICK_S:.2f}); "
        f"median {statistics.median(all_ticks):.2f} s, max {max(all_ticks):.2f} s"
    )
    for identity, _ in running:
        b, a = before[identity], after[identity]
        ticks = len(tick_seconds[identity])
        writes = value(
            a,
            "gridshift_kube_api_requests_total",
            verb="patch",
            resource="carbonawarescalers/status",
        ) - value(
            b,
            "gridshift_kube_api_requests_total",
            verb="patch",
            resource="carbonawarescalers/status",
        )
        total = value(a, "gridshift_kube_api_requests_total") - value(
            b, "gridshift_kube_api_requests_total"
        )
        by: dict[tuple[str, str], float] = {}
        for lab, v in a.get("gridshift_kube_api_requests_total", []):
            key = (lab["verb"], lab["resource"])
            old = sum(w for lb, w in b.get("gridshift_kube_api_requests_total", []) if lb == lab)
            by[key] = by.get(key, 0.0) + v - old
        top = ", ".join(
            f"{verb} {res} {n / window_s:.2f}/s"
            for (verb, res), n in sorted(by.items(), key=lambda kv: -kv[1])[:4]
            if n
        )
        why = {
            w: value(a, "gridshift_kube_status_writes_total", why=w)
            - value(b, "gridshift_kube_status_writes_total", why=w)
            for w in ("first", "change", "refresh")
        }
        checkpoint_writes = by.get(("update", "configmaps"), 0.0) + by.get(
            ("create", "configmaps"), 0.0
        )
        lines.append(
            f"  {identity}: {len(owned_last.get(identity, ()))} workloads, "
            f"shards {int(value(a, 'gridshift_kube_shard_owned'))}; "
            f"status writes {writes / max(ticks, 1):.1f}/tick over {ticks} ticks "
            f"(change {why['change']:.0f}, refresh {why['refresh']:.0f}, first "
            f"{why['first']:.0f}); "
            f"API {total / window_s:.2f} req/s ({top}); of them checkpoint writes "
            f"{checkpoint_writes / max(ticks, 1):.1f}/tick ({checkpoint_writes / window_s:.2f}/s)"
        )
    lines.append(checkpoint_sizes(plane))
    lines += failover(running, owned_last)
    return lines


def checkpoint_sizes(plane: KubePlane) -> str:
    """The shard ConfigMaps' checkpoints: workloads and compressed bytes each."""
    sizes: list[tuple[int, int]] = []
    for i in range(SHARDS):
        cm = plane.core.read_namespaced_config_map(f"{STATE}-shard-{i}", SCALER_NAMESPACE)
        blob = base64.b64decode((cm.binary_data or {}).get("checkpoint.json.gz", ""))
        cp = checkpoint_from_config_map(cm.data, cm.binary_data)
        sizes.append((len(cp.workloads) if cp is not None else 0, len(blob)))
    workloads, size = sum(n for n, _ in sizes), sum(b for _, b in sizes)
    largest = max(b for _, b in sizes)
    return (
        f"  checkpoints: {workloads} workloads in {SHARDS} ConfigMaps, {size / 1e3:.0f} kB gzip "
        f"({size / max(workloads, 1):.0f} bytes a workload; largest {largest / 1e3:.0f} kB of "
        "the 900 kB budget)"
    )


def failover(running: list[tuple[str, RunningGridshift]], owned: dict[str, set[str]]) -> list[str]:
    victim_id, victim = running[0]
    orphans = owned[victim_id]
    survivors = running[1:]
    left_before = {
        name: w["remaining_work"]
        for name, w in status(victim)["workloads"].items()
        if name in orphans
    }
    killed_at = datetime.now(UTC)  # noqa: TID251 (the processes' wall clock)
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=30)

    def decided_again() -> float | None:
        taken: set[str] = set()
        latest = killed_at
        for _, process in survivors:
            snap = status(process)
            at = datetime.fromisoformat(snap["taken_at"])
            mine = orphans & set(snap["workloads"])
            if at > killed_at and mine:
                taken |= mine
                latest = max(latest, at)
        return (latest - killed_at).total_seconds() if taken == orphans else None

    seconds = wait_until(decided_again, timeout_s=LEASE_S + 10 * TICK_S, what="failover", every_s=1)
    bound = LEASE_S + RETRY_S
    left_after: dict[str, float] = {}
    for _, process in survivors:
        for name, w in status(process)["workloads"].items():
            if name in left_before:
                left_after[name] = w["remaining_work"]
    # jobs under way before the kill: restarted, their work left would be back at the total
    moving = [n for n, left in left_before.items() if left < total_work(n) and n in left_after]
    continued = sum(left_after[n] <= left_before[n] for n in moving)
    return [
        f"  failover: {len(orphans)} workloads of {victim_id} decided again {seconds:.1f} s "
        f"after SIGKILL (Lease {LEASE_S} s + retry {RETRY_S:g} s = {bound:g} s, ticks every "
        f"{TICK_S:g} s; ratio {seconds / bound:.2f}); of its {len(moving)} jobs under way, "
        f"{continued} continued their work left from the shard checkpoints, "
        f"{len(moving) - continued} restarted it"
    ]
