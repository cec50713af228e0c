"""Where `gridshift replay` and `gridshift backtest` run their parts: one process, a local Dask
cluster, or a remote Dask scheduler.

Dask distributed, not Ray, measured on this project's 2-core machine: a local cluster of two
worker processes starts in about 2 s and holds about 130 MB resident, where `ray.init` took
11 s and 1.2 GB (its GCS, raylet and workers) before the first task; Dask's `Client`
also offers the standard `concurrent.futures.Executor`, which is all the replay engine
needs (`scaler.replay.engine.run_replay_parallel`), and Kubernetes runs it with the
dask-kubernetes operator (`DaskCluster`; deploy/README.md).

- `--workers auto` (the default): a local cluster of one single-threaded worker process per
  CPU when the job is big enough to pay for the cluster's start (a few seconds), else one
  process. `--workers 1` is the single-process path; `--workers N` a local cluster of N.
- `--scheduler-address tcp://host:8786` (or `GRIDSHIFT_FLEET_SCHEDULER_ADDRESS`): the parts go
  to that cluster, one per worker thread it has; its workers need the same gridshift version
  installed (the parts are pickled functions and values of this package).

Results are identical to one process (the parts are independent; see
`scaler.replay.fleet`), so the choice only changes wall time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click

__all__ = [
    "AUTO",
    "FleetPlan",
    "fleet_executor",
    "fleet_options",
    "plan_fleet",
]

AUTO = "auto"
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """How a job runs: `workers` local worker processes (1: in this process), or on the
    cluster at `scheduler_address`; `why` says which and why (shown on stderr)."""

    workers: int
    scheduler_address: str | None
    why: str

    @property
    def single_process(self) -> bool:
        return self.scheduler_address is None and self.workers == 1


def _workers_value(text: str) -> str:
    if text == AUTO:
        return text
    try:
        n = int(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected `auto` or a whole number") from None
    if not 1 <= n <= 256:
        raise click.BadParameter(f"{n}: workers must be between 1 and 256")
    return str(n)


def fleet_options(func: F) -> F:
    """`--workers` and `--scheduler-address` (with their GRIDSHIFT_FLEET_* variables)."""
    func = click.option(
        "--scheduler-address",
        envvar="GRIDSHIFT_FLEET_SCHEDULER_ADDRESS",
        default=None,
        metavar="ADDRESS",
        help="Run the parts on this Dask scheduler (tcp://host:8786) instead of locally; "
        "its workers need this gridshift version installed.",
    )(func)
    func = click.option(
        "--workers",
        envvar="GRIDSHIFT_FLEET_WORKERS",
        default=AUTO,
        show_default=True,
        callback=lambda _ctx, _param, value: _workers_value(str(value)),
        help="Local worker processes: `auto` (one per CPU when the job is big enough to pay "
        "for starting a cluster), 1 (this process only) or a number.",
    )(func)
    return func


def plan_fleet(
    workers: str,
    scheduler_address: str | None,
    *,
    parts: int,
    work: int,
    worth_it: int,
    unit: str,
) -> FleetPlan:
    """Resolve `--workers`/`--scheduler-address` for a job of `parts` independent parts and
    `work` units; `auto` starts a local cluster only from `worth_it` units on."""
    if scheduler_address:
        return FleetPlan(0, scheduler_address, f"on the Dask scheduler at {scheduler_address}")
    if workers != AUTO:
        n = min(int(workers), max(1, parts))
        where = "in this process" if n == 1 else f"on a local Dask cluster of {n} workers"
        return FleetPlan(n, None, where)
    cpus = os.cpu_count() or 1
    n = min(cpus, parts)
    if n < 2:
        return FleetPlan(1, None, "in this process (one part or one CPU)")
    if work < worth_it:
        return FleetPlan(
            1,
            None,
            f"in this process ({work:,} {unit} is below the {worth_it:,} where starting a "
            f"local cluster pays; --workers N forces one)",
        )
    return FleetPlan(n, None, f"on a local Dask cluster of {n} workers (one per CPU)")


@contextmanager
def fleet_executor(plan: FleetPlan) -> Iterator[tuple[Executor | None, int]]:
    """(executor, parts) for `plan`: (None, 1) in this process; else a Dask client's
    `concurrent.futures` executor and how many parts to cut (the cluster's worker threads).
    The local cluster listens on loopback only (its scheduler and status pages on free
    ports) and stops on exit."""
    if plan.single_process:
        yield None, 1
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - a core dependency; a broken install
        raise click.ClickException(
            f"the Dask distributed package is missing ({exc}); pip install gridshift again "
            "or pass --workers 1"
        ) from exc
    logging.getLogger("distributed").setLevel(logging.ERROR)
    if plan.scheduler_address is not None:
        try:
            client = Client(plan.scheduler_address, timeout="10s")
        except OSError as exc:
            raise click.ClickException(
                f"cannot reach the Dask scheduler at {plan.scheduler_address}: {exc}"
            ) from exc
        try:
            threads = sum(client.nthreads().values())
            if threads < 1:
                raise click.ClickException(
                    f"the Dask scheduler at {plan.scheduler_address} has no workers"
                )
            yield client.get_executor(), threads
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=plan.workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    try:
        yield client.get_executor(), plan.workers
    finally:
        client.close()
        cluster.close()
