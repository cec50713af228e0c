"""Listener bootstrap: `HOST:PORT` parsing and a bounded uvicorn server for a Starlette app.

One parser for every listen setting (`server.listen`, `metrics_api.listen`, `keda.listen`,
`extender.listen`, `extender.agent_listen`, `--listen`); `build_server`/`serve` run an ASGI
app on the bounded listener (`forecasts.platform.listener`: header bytes, head and body
deadlines, keep-alive, connection cap, strict framing), optionally over TLS with
certificate reload.
"""

from __future__ import annotations

from pathlib import Path

import uvicorn
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from forecasts.platform.listener import (
    ErrorBody,
    ListenerCollector,
    ListenerLimits,
    ListenerStats,
    json_error_body,
)
from forecasts.platform.listener import build_server as build_listener
from forecasts.platform.signals import stop_on_signals
from forecasts.platform.tls import ReloadingTlsContext, TlsCollector

__all__ = ["build_server", "export_listener", "parse_listen", "serve"]


def parse_listen(listen: str, *, field_name: str = "listen") -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::]:8888`) -> (host, port); `ValueError` names the setting."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{field_name}: expected HOST:PORT, got {listen!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{field_name}: port {port} out of range 0..65535")
    return host.strip("[]"), port


def export_listener(
    registry: CollectorRegistry | None, name: str, stats: ListenerStats | None = None
) -> ListenerStats:
    """`stats` (default: new) for a listener, its refusals and open connections exported
    on `registry` (when given) labelled `listener=name`."""
    stats = stats or ListenerStats()
    if registry is not None:
        registry.register(ListenerCollector({name: stats}))
    return stats


def build_server(
    app: Starlette,
    *,
    listen: str,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_reload_check_interval_seconds: float = 10.0,
    log_level: str = "info",
    registry: CollectorRegistry | None = None,
    name: str = "extender",
    limits: ListenerLimits | None = None,
    stats: ListenerStats | None = None,
    error_body: ErrorBody = json_error_body,
) -> uvicorn.Server:
    """A bounded uvicorn server for `app`; `.run()` serves until stopped.

    With `tls_cert`/`tls_key` it serves HTTPS, TLS 1.2 or later only, and re-reads the
    files when they change (checked at most every `tls_reload_check_interval_seconds`), so a
    rotated certificate is presented on new connections without a restart; its reloads,
    expiry and the listener's refusals are exported on `registry` when given, labelled
    `name`. `error_body` shapes the JSON of what the listener refuses itself."""
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("TLS needs both a certificate and a key file")
    host, port = parse_listen(listen)
    tls = None
    if tls_cert is not None and tls_key is not None:
        tls = ReloadingTlsContext(
            cert_file=Path(tls_cert),
            key_file=Path(tls_key),
            check_interval_seconds=tls_reload_check_interval_seconds,
        )
        if registry is not None:
            registry.register(TlsCollector({name: tls}))
    stats = export_listener(registry, name, stats)
    return build_listener(
        app,
        host=host,
        port=port,
        limits=limits or ListenerLimits(),
        stats=stats,
        tls_context=tls.listener_context if tls is not None else None,
        error_body=error_body,
        log_level=log_level,
    )


def serve(
    app: Starlette,
    *,
    listen: str,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    tls_reload_check_interval_seconds: float = 10.0,
    log_level: str = "info",
    registry: CollectorRegistry | None = None,
    name: str = "extender",
    error_body: ErrorBody = json_error_body,
) -> None:
    """Serve `app` until SIGINT/SIGTERM, then return (so callers can stop their jobs).

    uvicorn re-raises the signal it caught after its graceful shutdown; `stop_on_signals`
    turns that into a normal return (exit status 0), for Ctrl-C as for SIGTERM."""
    server = build_server(
        app,
        listen=listen,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_reload_check_interval_seconds=tls_reload_check_interval_seconds,
        log_level=log_level,
        registry=registry,
        name=name,
        error_body=error_body,
    )
    with stop_on_signals():
        server.run()
