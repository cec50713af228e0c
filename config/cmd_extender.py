"""`gridshift extender` (the scheduler extender webhook) and `gridshift agent` (GPU power)."""

from __future__ import annotations

import contextlib
import logging

import click
from kubernetes.client import CoreV1Api
from prometheus_client import CollectorRegistry

from config.options import setting_option, settings_from_context, settings_options
from config.settings import Settings
from config.wiring import (
    build_agent,
    build_carbon_source,
    build_extender,
    carbon_provider_status,
    kube_core_api,
    region_rules,
)
from extender.agent import create_agent_app
from extender.server import webhook_error_body
from extender.static_nodes import (
    NodeFileError,
    StaticNodeInventory,
    read_node_file,
    sample_inventory,
)
from forecasts.platform.listener import (
    ThreadedServer,
    bind_socket,
)
from forecasts.platform.listener import build_server as build_listener
from forecasts.platform.serving import export_listener, parse_listen, serve
from forecasts.platform.signals import stop_on_signals
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.clock import SystemClock
from forecasts.sources.routing import RegionRoutedCarbonSource
from forecasts.sources.sample import SAMPLE_REGIONS, SampleCarbonSource

__all__ = ["agent_command", "extender_command"]

log = logging.getLogger(__name__)


def _carbon_source(settings: Settings, *, closing: contextlib.ExitStack) -> CarbonSource:
    """The carbon provider chain for the extender's snapshot job (the same fallback chain as
    `gridshift carbon`; its providers' clients closed with `closing`); with no provider
    configured the extender scores by GPU energy only and says so (carbon scores neutral)."""
    clock = SystemClock()
    sample = {region: SampleCarbonSource() for region in SAMPLE_REGIONS}
    configured, missing = carbon_provider_status(settings)
    if not configured:
        log.warning(
            "no carbon source configured (%s): carbon scores stay neutral, except in the "
            "SAMPLE DATA regions",
            "; ".join(f"{name}: {why}" for name, why in sorted(missing.items())),
        )
        return RegionRoutedCarbonSource(by_region=sample)
    chain = build_carbon_source(settings, clock=clock)
    closing.callback(chain.close)
    # SAMPLE DATA regions (the sample nodes') answered offline by the sample generator
    return RegionRoutedCarbonSource(by_region=sample, default=chain)


def _nodes(settings: Settings) -> tuple[StaticNodeInventory | None, CoreV1Api | None]:
    """Where the nodes come from, said in one log line: `extender.nodes_file`, else the
    cluster (list + watch; credentials as `kube_core_api` finds them), else -- no Kubernetes
    credentials and no `kube.kubeconfig` named -- the SAMPLE DATA nodes."""
    rules = region_rules(settings)
    path = settings.extender.nodes_file
    if path is not None:
        try:
            inventory = read_node_file(path, rules=rules)
        except NodeFileError as exc:
            raise click.BadParameter(str(exc), param_hint="--nodes") from None
        log.info("nodes: %s (no cluster watch)", inventory.describe())
        return inventory, None
    try:
        return None, kube_core_api(settings.kube)
    except RuntimeError as exc:
        if settings.kube.kubeconfig is not None:  # asked for by name: never the sample nodes
            raise click.ClickException(str(exc)) from exc
        inventory = sample_inventory(rules=rules)
        log.warning(
            "%s: serving %s (SAMPLE DATA, offline); pass --nodes FILE for your own nodes",
            exc,
            inventory.describe(),
        )
        return inventory, None


def _kube_api(settings: Settings) -> CoreV1Api:
    try:
        return kube_core_api(settings.kube)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("extender")
@settings_options
@setting_option(
    "--listen", path="extender.listen", metavar="HOST:PORT", help="Address to serve on."
)
@setting_option(
    "--tls-cert",
    path="extender.tls_cert_file",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate; serve HTTPS, TLS 1.2+ (needs --tls-key); re-read when it changes.",
)
@setting_option(
    "--tls-key",
    path="extender.tls_key_file",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM private key.",
)
@setting_option(
    "--nodes",
    path="extender.nodes_file",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="Serve these nodes (a NodeList, YAML or JSON: kubectl get nodes -o yaml) instead of "
    "watching a cluster.",
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def extender_command(ctx: click.Context, log_level: str) -> None:
    """Serve the kube-scheduler extender: POST /scheduler/filter, /scheduler/prioritize;
    GET /regions/rank, /healthz, /readyz, /metrics."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = settings_from_context(ctx)
    s = settings.extender
    try:
        parse_listen(s.listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    registry = CollectorRegistry()
    nodes, kube_api = _nodes(settings)
    # the carbon providers' clients close last, after the runtime's jobs have stopped
    with contextlib.ExitStack() as closing:
        runtime = build_extender(
            settings,
            clock=SystemClock(),
            registry=registry,
            carbon=_carbon_source(settings, closing=closing),
            kube_api=kube_api,
            nodes=nodes,
        )
        runtime.start()
        try:
            serve(
                runtime.app,
                listen=s.listen,
                tls_cert=s.tls_cert_file,
                tls_key=s.tls_key_file,
                tls_reload_check_interval_seconds=s.tls_reload_check_interval_seconds,
                log_level=log_level,
                registry=registry,
                error_body=webhook_error_body,
            )
        finally:
            runtime.stop()  # a refresh in progress finishes first
            log.info(
                "extender stopped after %d ticks (snapshot refreshes)",
                runtime.refresher.refreshes,
            )


@click.command("agent")
@click.option(
    "--node-name",
    envvar="NODE_NAME",
    help="This node's name (downward API); without it no annotation is written.",
)
@settings_options
@setting_option(
    "--listen", path="extender.agent_listen", metavar="HOST:PORT", help="Metrics address."
)
@click.option("--no-annotate", is_flag=True, help="Only export metrics; never PATCH the node.")
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def agent_command(
    ctx: click.Context, node_name: str | None, no_annotate: bool, log_level: str
) -> None:
    """Report GPU power (NVML) as Prometheus metrics and a node annotation for the extender."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    settings = settings_from_context(ctx)
    s = settings.extender
    try:
        host, port = parse_listen(s.agent_listen)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from exc
    registry = CollectorRegistry()
    annotate = bool(node_name) and not no_annotate
    agent = build_agent(
        settings,
        clock=SystemClock(),
        registry=registry,
        node_name=node_name if annotate else None,
        kube_api=_kube_api(settings) if annotate else None,
    )
    listener = export_listener(registry, "agent")
    server = ThreadedServer(
        build_listener(create_agent_app(registry), stats=listener, loop="asyncio"),
        bind_socket(host, port),
        name="agent-metrics",
    )
    server.start()
    log.info("agent metrics on http://%s:%d/metrics", host, port)
    agent.start()
    with stop_on_signals() as stop:
        try:
            if agent.nvml.available:
                agent.run(stop, interval_seconds=s.agent_sample_interval_seconds)
            else:
                stop.wait()  # keep serving gridshift_nvml_available 0
        finally:
            agent.nvml.close()
            server.stop()
    log.info("agent stopped after %d ticks (NVML samples)", agent.ticks)
