"""The scaler on Kubernetes: the API client, External Metrics API server, KEDA external scaler,
CRD/lease runtime; `start_scaler_services` starts what the settings enable and returns a context
manager whose `close()` shuts it all down gracefully (servers stop accepting, the Lease is
released).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from prometheus_client.registry import CollectorRegistry

from config.settings import (
    KedaSettings,
    KubeSettings,
    MetricsApiSettings,
    Settings,
)
from config.version import __version__
from config.wiring.carbon import build_workload_region
from forecasts.platform.kubeclient import BoundedApiClient
from forecasts.platform.serving import parse_listen
from forecasts.platform.tls import ReloadStats, TlsCollector
from forecasts.time import Clock
from scaler.apiauth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    ReloadingTlsContext,
)
from scaler.core.workload import Workload
from scaler.keda import KedaExternalScaler, KedaScalerServer, ReloadingServerCredentials
from scaler.kube import (
    Actuator,
    AuthenticationConfigRefresher,
    DelegatedAccessReviewer,
    DelegatedTokenReviewer,
    KubeController,
    KubeReplicaReader,
    KubeRuntime,
    LeaderElector,
    LeaseLock,
    ScalerResourceCache,
    ScalerResourceWatcher,
    StatusWriter,
    load_authentication_config_map,
    register_kube_metrics,
)
from scaler.kube.api import RequestCounts
from scaler.kube.events import EventRecorder
from scaler.kube.replicas import ScaleTargetCache, scale_target_watchers
from scaler.kube.shards import ServingSnapshots, ShardElector
from scaler.kube.workloads import ClusterWorkloads
from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer
from scaler.snapshot import SnapshotHolder, SnapshotSource

log = logging.getLogger(__name__)


#: The name gridshift's writes carry in managedFields (`fieldManager`). No version in it: a
#: manager name that changed on every upgrade would leave one managedFields entry per release.
FIELD_MANAGER = "gridshift"
#: What audit logs and the API server's metrics see; `gridshift/<version>`, as kubectl's
#: `kubectl/<version>`.
USER_AGENT = f"gridshift/{__version__}"
_WRITES = frozenset({"POST", "PUT", "PATCH"})


class GridshiftApiClient(BoundedApiClient):
    """An ApiClient that names gridshift on every call: `User-Agent: gridshift/<version>`
    (instead of `OpenAPI-Generator/<client version>/python`) and, on every write (POST, PUT,
    PATCH) that does not name one itself, `?fieldManager=gridshift`, so managedFields and
    audit logs say who wrote. Every generated API method goes through `param_serialize`, which
    also counts each request by verb and resource (`request_counts`). Every answer is read
    within a byte cap and a whole-call deadline (`BoundedApiClient`)."""

    def __init__(self, configuration: k8s.Configuration) -> None:
        super().__init__(configuration)
        self.user_agent = USER_AGENT
        #: every request sent, by verb and resource (gridshift_kube_api_requests_total)
        self.request_counts = RequestCounts()

    def param_serialize(  # type: ignore[no-untyped-def]
        self, method, resource_path, path_params=None, query_params=None, *args, **kwargs
    ):
        self.request_counts.count(
            str(method), str(resource_path), path_params, list(query_params or [])
        )
        if str(method).upper() in _WRITES:
            params = list(query_params or [])
            if not any(key == "fieldManager" for key, _ in params):
                params.append(("fieldManager", FIELD_MANAGER))
            query_params = params
        return super().param_serialize(
            method, resource_path, path_params, query_params, *args, **kwargs
        )


def kube_api_client(configuration: k8s.Configuration) -> k8s.ApiClient:
    """An ApiClient whose transport never sleeps out a `Retry-After` by itself.

    urllib3's default retry policy honours `Retry-After` on 429/503 three times, sleeping
    outside any request timeout: a 429 storm with `Retry-After: 60` would park the leader
    election, a sync or a tick for minutes. Here a 429/503 comes back at once as an
    ApiException and the caller's own loop (election rounds, sync retries, relists, the next
    tick) paces the retry. Connection errors are retried three times as by default, a read
    error (timeout, dropped connection) once: a hung API server costs an idempotent call
    twice its timeout, not four times. It identifies itself (`GridshiftApiClient`)."""
    configuration.retries = urllib3.Retry(3, read=1, respect_retry_after_header=False)
    return GridshiftApiClient(configuration)


def build_kube_api_client(settings: KubeSettings) -> k8s.ApiClient:
    """A client from the in-cluster service account, else the kubeconfig (no globals)."""
    configuration = k8s.Configuration()
    if settings.kubeconfig is None:
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            return kube_api_client(configuration)
        except k8s_config.ConfigException:
            log.info("not in a cluster; using ~/.kube/config")
            k8s_config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(settings.kubeconfig), client_configuration=configuration
        )
    return kube_api_client(configuration)


def build_metrics_api_server(
    settings: MetricsApiSettings,
    *,
    holder: SnapshotSource,
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
        log.warning(
            "metrics API without TLS: only anonymous requests can arrive, all refused (401); "
            "for local reads on loopback set metrics_api.allow_anonymous=true "
            "(--set metrics_api.allow_anonymous=true), in a cluster metrics_api.tls_cert_file "
            "and metrics_api.tls_key_file"
        )
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
    holder: SnapshotSource,
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
        max_streams=settings.max_streams,
    )
    tls = None
    if settings.tls_cert_file is not None and settings.tls_key_file is not None:
        tls = ReloadingServerCredentials(
            cert_file=settings.tls_cert_file,
            key_file=settings.tls_key_file,
            client_ca_file=settings.tls_client_ca_file,
            check_interval_seconds=settings.tls_reload_check_interval_seconds,
        )
    return KedaScalerServer(
        scaler,
        address=settings.listen,
        stop=stop,
        server_credentials=tls.credentials if tls is not None else None,
        tls_stats=tls,
    )


def build_kube_runtime(
    settings: KubeSettings,
    *,
    holder: SnapshotHolder,
    clock: Clock,
    api_client: k8s.ApiClient,
    wall_clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    configured: Sequence[Workload] = (),
    resolve_region: Callable[[str], str | None] | None = None,
) -> KubeRuntime:
    """`clock` is scaler time (actuation records); leases are timed on `wall_clock` (default
    `clock`), since other replicas and the API server count real seconds even when
    `gridshift run --speed` accelerates scaler time.

    In steps: the election (one leader, or shard Leases), the workloads and the controller that
    writes status, scales and records Events, the actual replicas (read per tick, or from a
    list + watch of the scale targets), the CarbonAwareScaler watch."""
    stop = threading.Event()
    custom = k8s.CustomObjectsApi(api_client)
    cache = ScalerResourceCache()
    elector, owns = _build_elector(settings, custom, clock=wall_clock or clock, stop=stop)
    workloads = ClusterWorkloads(
        configured,
        resources=cache.items,
        resolve_region=resolve_region or (lambda name: name),
        owns=owns,
    )
    controller = _build_controller(
        settings,
        api_client,
        custom,
        cache=cache,
        elector=elector,
        workloads=workloads,
        owns=owns,
        clock=clock,
        wall_clock=wall_clock or clock,
    )
    timeout_s = settings.request_timeout_seconds
    targets = ScaleTargetCache() if settings.watch_scale_targets else None
    runtime = KubeRuntime(
        watcher=ScalerResourceWatcher(
            custom,
            cache,
            namespace=settings.watch_namespace,
            watch_timeout_seconds=settings.watch_timeout_seconds,
            request_timeout_seconds=timeout_s,
            stop=stop,
        ),
        elector=elector,
        controller=controller,
        current_snapshot=holder.current,
        stop=stop,
        replicas=KubeReplicaReader(
            api_client, resources=cache.items, request_timeout_seconds=timeout_s, targets=targets
        ),
        target_watchers=(
            []
            if targets is None
            else scale_target_watchers(
                api_client,
                targets,
                namespace=settings.watch_namespace,
                request_timeout_seconds=timeout_s,
                watch_timeout_seconds=settings.watch_timeout_seconds,
                stop=stop,
            )
        ),
        workloads=workloads,
        poll_interval_seconds=min(1.0, settings.retry_period_seconds),
        request_counts=getattr(api_client, "request_counts", None),
    )
    if registry is not None:
        register_kube_metrics(registry, runtime)
    return runtime


def _build_elector(
    settings: KubeSettings,
    custom: k8s.CustomObjectsApi,
    *,
    clock: Clock,
    stop: threading.Event,
) -> tuple[LeaderElector, Callable[[str, str], bool] | None]:
    """The election and, for the sharded scaler, which workloads this replica owns (None: all
    of them, while it leads). `clock` is wall time: other replicas count real seconds."""
    identity = settings.identity or socket.gethostname()
    if settings.shards > 0:  # the sharded scaler: shard and member Leases, no single leader
        sharded = ShardElector(
            custom,
            namespace=settings.lease_namespace,
            group=settings.lease_name,
            identity=identity,
            shards=settings.shards,
            clock=clock,
            lease_duration_seconds=settings.lease_duration_seconds,
            renew_deadline_seconds=settings.renew_deadline_seconds,
            retry_period_seconds=settings.retry_period_seconds,
            request_timeout_seconds=settings.request_timeout_seconds,
            stop=stop,
        )
        return sharded, sharded.owns
    lock = LeaseLock(
        custom,
        namespace=settings.lease_namespace,
        name=settings.lease_name,
        identity=identity,
        clock=clock,
        lease_duration_seconds=settings.lease_duration_seconds,
        renew_deadline_seconds=settings.renew_deadline_seconds,
        request_timeout_seconds=settings.request_timeout_seconds,
    )
    elector = LeaderElector(lock, retry_period_seconds=settings.retry_period_seconds, stop=stop)
    return elector, None


def _build_controller(
    settings: KubeSettings,
    api_client: k8s.ApiClient,
    custom: k8s.CustomObjectsApi,
    *,
    cache: ScalerResourceCache,
    elector: LeaderElector,
    workloads: ClusterWorkloads,
    owns: Callable[[str, str], bool] | None,
    clock: Clock,
    wall_clock: Clock,
) -> KubeController:
    """The controller: status writes, actuation (on scaler time `clock`) and Events (on
    `wall_clock`), acting only while `elector` leads (on the workloads `owns` says, when
    sharded); the CRs `workloads` could not use get their problem as status."""
    timeout_s = settings.request_timeout_seconds
    return KubeController(
        cache=cache,
        status_writer=StatusWriter(custom, request_timeout_seconds=timeout_s),
        actuator=Actuator(api_client, clock=clock, request_timeout_seconds=timeout_s),
        is_leader=lambda: elector.leading,
        clock=clock,
        events=EventRecorder(
            k8s.CoreV1Api(api_client),
            clock=wall_clock,
            instance=elector.lock.identity,
            request_timeout_seconds=timeout_s,
        ),
        problems=workloads.problems,
        owns=owns,
        status_refresh_seconds=settings.status_refresh_seconds,
        status_write_concurrency=settings.status_write_concurrency,
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

    def describe(self) -> list[str]:
        """One line per running service, for the start-up banner."""
        lines: list[str] = []
        if self.metrics_api is not None:
            lines.append(
                f"external metrics API: {self.metrics_api.url}/apis/external.metrics.k8s.io"
            )
        if self.keda is not None:
            scheme = "TLS" if self.keda.secure else "plaintext"
            lines.append(f"KEDA external scaler (gRPC, {scheme}): port {self.keda.port}")
        if self.kube is not None:
            elector = self.kube.elector
            election = (
                f"sharded ({elector.shards} shards, member {elector.identity})"
                if isinstance(elector, ShardElector)
                else "leader election on"
            )
            lines.append(
                f"Kubernetes: watching CarbonAwareScalers, {election}, "
                "reading actual replicas each tick"
            )
        return lines

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
    wall_clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    workloads: Sequence[Workload] = (),
) -> ScalerServices:
    """Start the metrics API, the KEDA scaler and the Kubernetes runtime per `settings`;
    their TLS listeners' certificate metrics and the Kubernetes side's `gridshift_kube_*`
    metrics go to `registry` when given. `workloads` are the config-file workloads; on a
    cluster, `services.kube.workloads.current` adds the CarbonAwareScalers to them.

    The one hook for `gridshift run`:
    `stack.enter_context(start_scaler_services(settings, holder=holder, clock=clock))`.
    """
    services = ScalerServices()
    serving: SnapshotSource = holder
    # the metrics API's cluster authentication matters only while it serves: disabled (the
    # KEDA install), nothing reads extension-apiserver-authentication or reviews tokens
    metrics_api = settings.metrics_api
    metrics_api_needs_cluster = metrics_api.enabled and (
        metrics_api.authentication_from_cluster
        or metrics_api.delegated_authentication
        or metrics_api.delegated_authorization
    )
    try:
        if api_client is None and (settings.kube.enabled or metrics_api_needs_cluster):
            api_client = build_kube_api_client(settings.kube)
        if settings.kube.enabled:  # built first: a sharded replica serves from its cache too
            assert api_client is not None
            services.kube = build_kube_runtime(
                settings.kube,
                holder=holder,
                clock=clock,
                api_client=api_client,
                wall_clock=wall_clock,
                registry=registry,
                configured=workloads,
                resolve_region=build_workload_region(settings),
            )
            if settings.kube.shards > 0:  # any replica answers for any workload
                serving = ServingSnapshots(holder, cache=services.kube.watcher.cache)
        if settings.metrics_api.enabled:
            services.metrics_api = build_metrics_api_server(
                settings.metrics_api, holder=serving, clock=clock, api_client=api_client
            )
            services.metrics_api.start()
            services._exit.callback(services.metrics_api.stop)
            log.info("External Metrics API on %s", services.metrics_api.url)
        if settings.keda.enabled:
            services.keda = build_keda_server(
                settings.keda,
                holder=serving,
                clock=clock,
                max_snapshot_age_seconds=settings.metrics_api.max_snapshot_age_seconds,
            )
            services.keda.start()
            services._exit.callback(services.keda.stop)
            log.info("KEDA external scaler on %s", settings.keda.listen)
        listeners: dict[str, ReloadStats] = {}
        if services.metrics_api is not None and services.metrics_api.tls is not None:
            listeners["metrics_api"] = services.metrics_api.tls
        if services.keda is not None and services.keda.tls_stats is not None:
            listeners["keda"] = services.keda.tls_stats
        if registry is not None and listeners:
            registry.register(TlsCollector(listeners))
        if services.kube is not None:
            services.kube.start()
            services._exit.callback(services.kube.close)
    except BaseException:
        services.close()
        raise
    return services
