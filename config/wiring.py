"""The composition root: builds every long-lived object from `Settings`.

Each component owner keeps its builders in its own section; `gridshift run` calls them.

Scaler on Kubernetes (External Metrics API, KEDA external scaler, CRD/lease runtime):
`start_scaler_services(settings, holder=..., clock=...)` starts whatever the settings
enable and returns a context manager whose `close()` shuts all of it down gracefully
(servers stop accepting, the Lease is released).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass, field
from types import TracebackType

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from config.settings import KedaSettings, KubeSettings, MetricsApiSettings, Settings
from forecasts.time import Clock
from scaler.apiauth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    ReloadingTlsContext,
)
from scaler.keda import KedaExternalScaler, KedaScalerServer
from scaler.kube import (
    Actuator,
    AuthenticationConfigRefresher,
    DelegatedAccessReviewer,
    DelegatedTokenReviewer,
    KubeController,
    KubeRuntime,
    LeaderElector,
    LeaseLock,
    ScalerResourceCache,
    ScalerResourceWatcher,
    StatusWriter,
    load_authentication_config_map,
)
from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer
from scaler.snapshot import SnapshotHolder

__all__ = [
    "ScalerServices",
    "build_keda_server",
    "build_kube_api_client",
    "build_kube_runtime",
    "build_metrics_api_server",
    "parse_listen",
    "start_scaler_services",
]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- scaler on Kubernetes
def parse_listen(listen: str, *, field_name: str = "listen") -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError names the setting."""
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or not host:
        raise ValueError(f"{field_name}: expected host:port, got {listen!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"{field_name}: port {port} out of range 0..65535")
    return host.strip("[]"), port


def build_kube_api_client(settings: KubeSettings) -> k8s.ApiClient:
    """A client from the in-cluster service account, else the kubeconfig (no globals)."""
    configuration = k8s.Configuration()
    if settings.kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return k8s.ApiClient(configuration)
        except k8s_config.ConfigException:
            log.info("not in a cluster; using ~/.kube/config")
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubeconfig), client_configuration=configuration
        )
    return k8s.ApiClient(configuration)


def build_metrics_api_server(
    settings: MetricsApiSettings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    api_client: k8s.ApiClient | None = None,
) -> MetricsApiServer:
    needs_cluster = (
        settings.authentication_from_cluster
        or settings.delegated_authentication
        or settings.delegated_authorization
    )
    if needs_cluster and api_client is None:
        raise ValueError(
            "metrics_api: authentication_from_cluster / delegated_* need Kubernetes access "
            "(pass api_client or enable kube)"
        )
    if settings.authentication_from_cluster:
        assert api_client is not None
        auth_config = AuthenticationConfig.from_config_map(
            load_authentication_config_map(k8s.CoreV1Api(api_client))
        )
    else:
        auth_config = AuthenticationConfig.from_files(
            requestheader_client_ca_file=settings.requestheader_client_ca_file,
            requestheader_allowed_names=settings.requestheader_allowed_names,
            client_ca_file=settings.client_ca_file,
        )
    token_reviewer = (
        DelegatedTokenReviewer(api_client, cache_ttl_seconds=settings.review_cache_ttl_seconds)
        if settings.delegated_authentication and api_client is not None
        else None
    )
    access_reviewer = (
        DelegatedAccessReviewer(api_client, cache_ttl_seconds=settings.review_cache_ttl_seconds)
        if settings.delegated_authorization and api_client is not None
        else None
    )
    authenticator = Authenticator(auth_config, token_reviewer=token_reviewer)
    tls = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        tls = ReloadingTlsContext(
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            client_ca_pem=lambda: authenticator.config.trusted_ca_pem(),
            check_interval_seconds=settings.tls_reload_check_interval_seconds,
        )
    elif not settings.allow_anonymous:
        log.warning("metrics API without TLS: only anonymous requests can arrive, all refused")
    host, port = parse_listen(settings.listen, field_name="metrics_api.listen")
    api = ExternalMetricsApi(
        holder, clock=clock, max_snapshot_age_seconds=settings.max_snapshot_age_seconds
    )
    server = MetricsApiServer(
        api,
        host=host,
        port=port,
        authenticator=authenticator,
        authorizer=Authorizer(
            access_reviewer=access_reviewer, allow_anonymous=settings.allow_anonymous
        ),
        tls=tls,
    )
    if settings.authentication_from_cluster:
        assert api_client is not None
        server.add_background(
            AuthenticationConfigRefresher(
                k8s.CoreV1Api(api_client),
                authenticator,
                on_change=tls.invalidate if tls is not None else lambda: None,
                interval_seconds=settings.authentication_refresh_interval_seconds,
            )
        )
    return server


def build_keda_server(
    settings: KedaSettings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    max_snapshot_age_seconds: float | None = None,
    stop: threading.Event | None = None,
) -> KedaScalerServer:
    stop = stop or threading.Event()
    parse_listen(settings.listen, field_name="keda.listen")
    scaler = KedaExternalScaler(
        holder,
        stream_poll_interval_seconds=settings.stream_poll_interval_seconds,
        stop=stop,
        clock=clock,
        max_snapshot_age_seconds=max_snapshot_age_seconds,
    )
    return KedaScalerServer(scaler, address=settings.listen, stop=stop)


def build_kube_runtime(
    settings: KubeSettings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    api_client: k8s.ApiClient,
) -> KubeRuntime:
    stop = threading.Event()
    custom = k8s.CustomObjectsApi(api_client)
    cache = ScalerResourceCache()
    lock = LeaseLock(
        custom,
        namespace=settings.lease_namespace,
        name=settings.lease_name,
        identity=settings.identity or socket.gethostname(),
        clock=clock,
        lease_duration_seconds=settings.lease_duration_seconds,
        renew_deadline_seconds=settings.renew_deadline_seconds,
    )
    elector = LeaderElector(lock, retry_period_seconds=settings.retry_period_seconds, stop=stop)
    controller = KubeController(
        cache=cache,
        status_writer=StatusWriter(custom),
        actuator=Actuator(api_client, clock=clock),
        is_leader=lambda: elector.leading,
        clock=clock,
    )
    watcher = ScalerResourceWatcher(
        custom,
        cache,
        namespace=settings.watch_namespace,
        watch_timeout_seconds=settings.watch_timeout_seconds,
        stop=stop,
    )
    return KubeRuntime(
        watcher=watcher,
        elector=elector,
        controller=controller,
        current_snapshot=holder.current,
        stop=stop,
        poll_interval_seconds=min(1.0, settings.retry_period_seconds),
    )


@dataclass
class ScalerServices:
    """What `start_scaler_services` started; closing stops it all, newest first."""

    metrics_api: MetricsApiServer | None = None
    keda: KedaScalerServer | None = None
    kube: KubeRuntime | None = None
    _exit: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    def close(self) -> None:
        self._exit.close()

    def __enter__(self) -> ScalerServices:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def start_scaler_services(
    settings: Settings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    api_client: k8s.ApiClient | None = None,
) -> ScalerServices:
    """Start the metrics API, the KEDA scaler and the Kubernetes runtime per `settings`.

    The one hook for `gridshift run`:
    `stack.enter_context(start_scaler_services(settings, holder=holder, clock=clock))`.
    """
    services = ScalerServices()
    try:
        if api_client is None and (
            settings.kube.enabled
            or settings.metrics_api.authentication_from_cluster
            or settings.metrics_api.delegated_authentication
            or settings.metrics_api.delegated_authorization
        ):
            api_client = build_kube_api_client(settings.kube)
        if settings.metrics_api.enabled:
            services.metrics_api = build_metrics_api_server(
                settings.metrics_api, holder=holder, clock=clock, api_client=api_client
            )
            services.metrics_api.start()
            services._exit.callback(services.metrics_api.stop)
            log.info("External Metrics API on %s", services.metrics_api.url)
        if settings.keda.enabled:
            services.keda = build_keda_server(
                settings.keda,
                holder=holder,
                clock=clock,
                max_snapshot_age_seconds=settings.metrics_api.max_snapshot_age_seconds,
            )
            services.keda.start()
            services._exit.callback(services.keda.stop)
            log.info("KEDA external scaler on %s", settings.keda.listen)
        if settings.kube.enabled:
            assert api_client is not None
            services.kube = build_kube_runtime(
                settings.kube, holder=holder, clock=clock, api_client=api_client
            )
            services.kube.start()
            services._exit.callback(services.kube.close)
    except BaseException:
        services.close()
        raise
    return services
