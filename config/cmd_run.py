"""`gridshift run` (the main job) and `gridshift replay` (the same tick over history).

`gridshift run` with no config plays the bundled SAMPLE DATA scenario against the wall clock
(`--speed N` runs scaler time N times faster) and serves `/metrics` and the status API on
localhost, printing where. With `--config FILE` it scales the workloads in the file.

`gridshift replay --from --to` runs the same tick over recorded history with a
`SteppingClock`, as fast as it can, and prints gCO2 emitted and saved and replica-hours.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
import msgspec
from kubernetes.config import ConfigException
from prometheus_client.registry import CollectorRegistry

from config.loading import LoadedConfig
from config.options import loaded_settings_from_context, settings_options
from config.scenario import sample_settings
from config.settings import Settings
from config.wiring import (
    RunSources,
    ScalerApp,
    ScalerServices,
    build_kube_api_client,
    build_run_sources,
    build_scaler,
    load_settings,
    start_scaler_services,
)
from forecasts.platform.listener import bind_socket
from forecasts.platform.listener import build_server as build_listener
from forecasts.platform.serving import export_listener, parse_listen
from forecasts.platform.signals import stop_on_signals
from forecasts.sources.clock import AcceleratedClock, SystemClock
from forecasts.time import Clock, SteppingClock, ensure_utc, humanize_duration
from scaler.kube.shards import ShardElector
from scaler.loop import ScalerLoop
from scaler.replay.engine import tick_over
from scaler.snapshot import Mode
from scaler.state import ConfigMapStateStore, ShardStateStore, StateStoreError

__all__ = ["replay_command", "run_command"]

_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _settings_for(config_file: Path | None, *, now: datetime, seed: int) -> Settings:
    if config_file is None:
        return sample_settings(now, seed=seed)
    # the one settings loader (YAML 1.2, bounded, every problem listed, exit 2); the file
    # alone: replay takes no --set and reads no GRIDSHIFT_* variables
    settings = load_settings(config_file=config_file, environ={})
    if not settings.scaler.workloads:
        raise click.BadParameter(
            f"{config_file} defines no scaler.workloads", param_hint="--config"
        )
    return settings


def _explicit_scaler_fields(loaded: LoadedConfig[Settings]) -> dict[str, Any]:
    """Scaler settings the user set (env or flags) that must survive the sample defaults."""
    keys = {
        path.split(".")[1]
        for path, layer in loaded.provenance.items()
        if path.startswith("scaler.") and layer != "default"
    }
    if "state_file" in keys:
        keys.add("state_store")  # implied by state_file (set by the settings' validator)
    return {k: getattr(loaded.settings.scaler, k) for k in keys if k != "workloads"}


def _run_sources(settings: Settings, *, clock: Clock, seed: int) -> RunSources:
    try:
        return build_run_sources(settings, clock=clock, seed=seed)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _bind(listen: str) -> socket.socket:
    try:
        host, port = parse_listen(listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None
    try:
        return bind_socket(host, port)
    except OSError as exc:
        raise click.BadParameter(
            f"cannot listen on {listen}: {exc}", param_hint="--listen"
        ) from exc


@click.command("run")
@settings_options
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True, max=100_000),
    default=1.0,
    show_default=True,
    help="Scaler time runs this many times faster than the wall clock.",
)
@click.option(
    "--tick-seconds",
    type=click.FloatRange(min=0.05),
    default=None,
    help="Wall seconds between ticks (default: scaler.tick_interval_seconds).",
)
@click.option(
    "--listen",
    default=None,
    help="HOST:PORT for /metrics and /status (default: server.listen; port 0 = any free).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Sample data seed.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
    default="info",
    show_default=True,
)
@click.pass_context
def run_command(
    ctx: click.Context,
    speed: float,
    tick_seconds: float | None,
    listen: str | None,
    seed: int,
    log_level: str,
) -> None:
    """Run the scaler: ticks, metrics and the status API."""
    logging.basicConfig(level=log_level.upper(), format=_LOG_FORMAT)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # one line per job run is noise
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per extender poll, too
    log = logging.getLogger("gridshift.scaler")
    wall = SystemClock()
    clock: Clock = AcceleratedClock(wall, speed=speed) if speed != 1.0 else wall
    settings = _run_settings(ctx, now=clock.now(), seed=seed, tick_seconds=tick_seconds)
    sources = _run_sources(settings, clock=clock, seed=seed)
    sock = _bind(listen or settings.server.listen)
    host, port = sock.getsockname()[:2]
    api_client = None
    try:
        if settings.scaler.state_store == "configmap":
            # one client for the checkpoints and the cluster services, so the checkpoint
            # requests count in gridshift_kube_api_requests_total with the rest
            api_client = build_kube_api_client(settings.kube)
        built = build_scaler(
            settings,
            clock=clock,
            wall_clock=wall,
            registry=CollectorRegistry(),
            carbon=sources.carbon,
            load=sources.load,
            speed=speed,
            data_note=sources.note,
            logger=log,
            api_client=api_client,
        )
    except (StateStoreError, ConfigException) as exc:
        # never start fresh when saved counters exist but cannot be read: a save would
        # overwrite them; exit so the pod restarts and tries again
        raise click.ClickException(
            f"scaler.state_store={settings.scaler.state_store}: {exc}"
        ) from None
    if sources.note:
        log.warning("%s", sources.note)
    base = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    _announce(workloads=len(built.loop.workloads), note=sources.note, speed=speed, base=base)
    status_listener = export_listener(built.registry, "status")
    # bounded like every listener: header bytes, head/body deadlines, connection cap
    server = build_listener(built.app, stats=status_listener, lifespan="on")
    with contextlib.ExitStack() as stack:
        # Ctrl-C like SIGTERM: uvicorn stops serving, then (stack unwinding) the tick in
        # progress finishes, "stopped after N ticks" is logged, the Lease released; exit 0
        stack.callback(sources.close)  # last: the providers' clients, after the loop stops
        stack.enter_context(stop_on_signals())
        stack.callback(sock.close)
        stack.callback(built.close)  # the extender watch's client, even if a start fails
        # External Metrics API, KEDA gRPC scaler, CR watch + leader-elected actuation, as the
        # settings enable them; closing releases the Lease and stops the servers.
        services = stack.enter_context(
            start_scaler_services(
                settings,
                holder=built.holder,
                clock=clock,
                api_client=api_client,
                wall_clock=wall,
                registry=built.registry,
                workloads=built.loop.workloads,
            )
        )
        _attach_cluster(built, services)
        for line in services.describe():
            click.echo(f"  {line}")
        sys.stdout.flush()
        built.service.start()
        stack.callback(built.service.shutdown)
        if built.extender_watch is not None:
            built.extender_watch.start()
        server.run(sockets=[sock])


def _run_settings(
    ctx: click.Context, *, now: datetime, seed: int, tick_seconds: float | None
) -> Settings:
    """The settings `gridshift run` runs with: defaults < --config FILE / $GRIDSHIFT_CONFIG <
    GRIDSHIFT_* env < --set (errors: exit 2); with no workloads and no cluster, the embedded
    SAMPLE DATA scenario's workloads (a config file without workloads is an error)."""
    loaded = loaded_settings_from_context(ctx)
    settings = loaded.settings
    if not settings.scaler.workloads and not settings.kube.enabled:
        from_file = [layer for layer in loaded.layers if layer.startswith("file:")]
        if from_file:
            raise click.BadParameter(
                f"{from_file[0].removeprefix('file:')} defines no scaler.workloads",
                param_hint="--config",
            )
        # No configuration: the embedded default, the SAMPLE DATA scenario.
        sample = sample_settings(now, seed=seed).scaler
        settings = settings.model_copy(
            update={"scaler": sample.model_copy(update=_explicit_scaler_fields(loaded))}
        )
    if tick_seconds is not None:
        scaler = settings.scaler.model_copy(update={"tick_interval_seconds": tick_seconds})
        settings = settings.model_copy(update={"scaler": scaler})
    return settings


def _announce(*, workloads: int, note: str, speed: float, base: str) -> None:
    """What runs and where: the first lines `gridshift run` prints."""
    click.echo(
        f"gridshift run: {workloads} workloads"
        + (f" on {note}" if note else "")
        + (f", time x{speed:g}" if speed != 1.0 else "")
        + f"\n  dashboard: {base}/dashboard\n  metrics:   {base}/metrics"
        + f"\n  status:    {base}/status\n  health:    {base}/healthz"
        + "\n  one line per tick below; Ctrl-C stops after the tick in progress"
    )


def _attach_cluster(built: ScalerApp, services: ScalerServices) -> None:
    """With a cluster connection: actual replicas read every tick, CarbonAwareScalers as the
    workload set (CRD-first), and the ConfigMap state written only by the leading replica
    (sharded: each shard's ConfigMap only by the replica holding that shard, and a tick as
    soon as a shard is acquired or handed off)."""
    if services.kube is None:
        return
    built.loop.use_replica_reader(services.kube.replicas)
    if services.kube.workloads is not None:  # CRD-first: each CR is a workload
        built.loop.use_workload_source(services.kube.workloads.current)
    elector = services.kube.elector
    if isinstance(elector, ShardElector):  # shards acquired or handed off: tick at once
        elector.on_change(built.service.tick_now)
    if isinstance(built.state_store, ShardStateStore) and isinstance(elector, ShardElector):
        built.state_store.write_only_when(elector.holds)  # each shard's writer: its holder
    elif isinstance(built.state_store, ConfigMapStateStore):
        built.state_store.write_only_when(lambda: elector.leading)  # one writer: the leader


def _parse_instant(value: str, name: str) -> datetime:
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return ensure_utc(at, name=name)
    except ValueError as exc:
        raise click.BadParameter(
            f"{value!r}: expected an ISO 8601 instant with a zone, e.g. 2026-01-05T00:00:00Z",
            param_hint=name,
        ) from exc


@click.command("replay")
@click.option("--from", "start_text", required=True, help="Start instant (ISO 8601, UTC).")
@click.option("--to", "end_text", required=True, help="End instant (ISO 8601, UTC).")
@click.option(
    "--scenario",
    type=click.Choice(["sample"]),
    default="sample",
    show_default=True,
    help="Recorded history to replay (the bundled SAMPLE DATA traces).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Workloads to replay instead of the scenario's own.",
)
@click.option(
    "--step-seconds",
    type=click.FloatRange(min=1),
    default=None,
    help="Replayed seconds between ticks (default: scaler.tick_interval_seconds).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def replay_command(
    start_text: str,
    end_text: str,
    scenario: str,
    config_file: Path | None,
    step_seconds: float | None,
    seed: int,
    as_json: bool,
) -> None:
    """Replay the scaler tick over [--from, --to) as fast as possible and summarise."""
    logging.basicConfig(level="WARNING", format=_LOG_FORMAT)
    start = _parse_instant(start_text, "--from")
    end = _parse_instant(end_text, "--to")
    if end <= start:
        raise click.BadParameter("--to must be after --from", param_hint="--to")
    settings = _settings_for(config_file, now=start, seed=seed)
    step = timedelta(seconds=step_seconds or settings.scaler.tick_interval_seconds)
    clock = SteppingClock(start, step)
    sources = _run_sources(settings, clock=clock, seed=seed)
    built = build_scaler(
        settings,
        clock=clock,
        registry=CollectorRegistry(),
        carbon=sources.carbon,
        load=sources.load,
        data_note=sources.note,
    )
    # Ctrl-C / SIGTERM: summarise the ticks run so far
    with contextlib.closing(sources), contextlib.closing(built), stop_on_signals() as stop:
        click.echo(
            f"replaying {start.isoformat()} -> {end.isoformat()} "
            f"in steps of {humanize_duration(step)} "
            "(Ctrl-C stops and summarises the ticks run)",
            err=True,
        )
        summary = replay(built.loop, start=start, end=end, step=step, settings=settings, stop=stop)
    summary["scenario"] = scenario if config_file is None else str(config_file)
    summary["data_note"] = sources.note
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(summary), indent=2).decode())
        return
    click.echo(_format_summary(summary))


def replay(
    loop: ScalerLoop,
    *,
    start: datetime,
    end: datetime,
    step: timedelta,
    settings: Settings,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Tick from `start` until `end` (the replay engine's `tick_over`) and summarise; refit on
    the settings' period of replayed time. When `stop` is set (Ctrl-C) the summary covers
    the ticks run so far, and says so."""
    hours = step.total_seconds() / 3600.0
    replica_h: dict[str, float] = {}
    cf_replica_h: dict[str, float] = {}
    eco_ticks: dict[str, int] = {}
    ticks = 0
    at = start
    for snap in tick_over(
        loop,
        start=start,
        step=step,
        intervals=-((start - end) // step),  # ceil: the last tick starts before `end`
        refit_every=timedelta(seconds=settings.forecast.refit_interval_seconds),
    ):
        ticks += 1
        at = snap.taken_at + step
        for name, ws in snap.workloads.items():
            replica_h[name] = replica_h.get(name, 0.0) + ws.desired_replicas * hours
            cf = ws.counterfactual_replicas if ws.counterfactual_replicas is not None else 0
            cf_replica_h[name] = cf_replica_h.get(name, 0.0) + cf * hours
            eco_ticks[name] = eco_ticks.get(name, 0) + (ws.mode is Mode.ECO)
        if stop is not None and stop.is_set():
            break
    ledger = loop.ledger
    workloads = {
        name: {
            "emitted_g": t.emitted_g,
            "counterfactual_g": t.counterfactual_g,
            "saved_g": t.saved_g,
            "energy_kwh": t.energy_joules / 3.6e6,
            "replica_hours": replica_h.get(name, 0.0),
            "counterfactual_replica_hours": cf_replica_h.get(name, 0.0),
            "eco_fraction": eco_ticks.get(name, 0) / ticks if ticks else 0.0,
        }
        for name, t in sorted(ledger.by_workload.items())
    }
    return {
        "from": start.isoformat(),
        "to": min(at, end).isoformat(),
        "interrupted": at < end,
        "step_seconds": step.total_seconds(),
        "ticks": ticks,
        "total": {
            "emitted_g": ledger.total.emitted_g,
            "counterfactual_g": ledger.total.counterfactual_g,
            "saved_g": ledger.total.saved_g,
            "energy_kwh": ledger.total.energy_joules / 3.6e6,
            "replica_hours": sum(replica_h.values()),
            "counterfactual_replica_hours": sum(cf_replica_h.values()),
        },
        "by_region": {
            r: {"emitted_g": t.emitted_g, "saved_g": t.saved_g}
            for r, t in sorted(ledger.by_region.items())
        },
        "provenance": {r: sorted(p) for r, p in sorted(ledger.provenance.items())},
        "workloads": workloads,
    }


def _format_summary(s: dict[str, Any]) -> str:
    t = s["total"]
    lines = []
    if s["data_note"]:
        lines.append(s["data_note"])
    lines += [
        f"replay {s['from']} -> {s['to']}: {s['ticks']} ticks of {s['step_seconds']:g} s"
        + (f" (stopped after {s['ticks']} ticks: interrupted)" if s.get("interrupted") else ""),
        f"emitted {t['emitted_g']:.1f} gCO2eq, performance-only {t['counterfactual_g']:.1f} g, "
        f"saved {t['saved_g']:.1f} g",
        f"replica-hours {t['replica_hours']:.1f} (performance-only "
        f"{t['counterfactual_replica_hours']:.1f}), energy {t['energy_kwh']:.2f} kWh",
        f"{'workload':<20} {'emitted g':>11} {'saved g':>10} {'replica-h':>10} {'eco %':>6}",
    ]
    for name, w in s["workloads"].items():
        lines.append(
            f"{name:<20} {w['emitted_g']:>11.1f} {w['saved_g']:>10.1f} "
            f"{w['replica_hours']:>10.1f} {100 * w['eco_fraction']:>6.1f}"
        )
    for region, r in s["by_region"].items():
        prov = ", ".join(s["provenance"].get(region, []))
        lines.append(
            f"region {region}: emitted {r['emitted_g']:.1f} g, saved {r['saved_g']:.1f} g ({prov})"
        )
    return "\n".join(lines)
