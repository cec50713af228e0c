"""KEDA external scaler: the `externalscaler.ExternalScaler` gRPC service over the snapshot.

A ScaledObject trigger of type `external` (or `external-push`) points at this server:

```yaml
triggers:
- type: external-push          # or external
  metadata:
    scalerAddress: gridshift-scaler.carbon-system.svc:6000
    workload: web              # default: the ScaledObject's name
    metric: desiredReplicas    # or carbonIntensity (then `region:` is required)
```

* `GetMetricSpec`: one spec, target 1 for `desiredReplicas` (KEDA's default `AverageValue`
  metric type then yields exactly the desired replica count), or `targetIntensity` (metadata,
  gCO2eq/kWh) for `carbonIntensity`.
* `GetMetrics`: the current value; both the deprecated int64 and the float field are set.
* `IsActive`: desired replicas > 0 (so KEDA scales to zero when gridshift says 0), or a known
  intensity above `activationIntensity` for `carbonIntensity`.
* `StreamIsActive`: sends the current answer at once, then every change, until cancelled.
* `StreamMetricSpec`: UNIMPLEMENTED on purpose (KEDA then polls `GetMetricSpec`).

TLS (`reloading_server_credentials`): the listener serves the PEM files in the `keda`
settings, re-read without a restart when they change (each new handshake asks for the newest
pair); with a client CA every caller must present a certificate chaining to it (mutual TLS).
KEDA's side: `enableTLS: "true"` in the trigger metadata, and `caCert` (the CA of our serving
certificate), `tlsClientCert`, `tlsClientKey` as TriggerAuthentication parameters.

Bounds: at most `max_streams` StreamIsActive streams (each holds a thread; past it
RESOURCE_EXHAUSTED), with `max_workers` more threads kept for the unary calls, so open
streams never starve GetMetrics/IsActive; intensities in metadata within [0, 100,000].

Errors are gRPC statuses: INVALID_ARGUMENT (bad metadata, names the key), NOT_FOUND
(no such workload/region), UNAVAILABLE (no snapshot yet, or one older than
`max_snapshot_age_seconds`: KEDA keeps its last state / applies its fallback).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc

from forecasts.platform.tls import FileReloader, ReloadStats, not_after_epoch_s, read_pem_pair
from forecasts.time import Clock
from scaler.keda_pb import externalscaler_pb2 as pb
from scaler.keda_pb import externalscaler_pb2_grpc as pb_grpc
from scaler.snapshot import Snapshot, SnapshotSource, WorkloadStatus

__all__ = [
    "KedaExternalScaler",
    "KedaScalerServer",
    "ReloadingServerCredentials",
    "ScalerQuery",
    "parse_metadata",
]

log = logging.getLogger(__name__)

DESIRED_REPLICAS = "desiredReplicas"
CARBON_INTENSITY = "carbonIntensity"


class _QueryError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ScalerQuery:
    """What one ScaledObject trigger asks for, parsed from `scalerMetadata`."""

    namespace: str
    workload: str
    metric: str = DESIRED_REPLICAS
    region: str = ""
    target_intensity_g_per_kwh: float = 100.0
    activation_intensity_g_per_kwh: float = 0.0

    @property
    def metric_name(self) -> str:
        if self.metric == CARBON_INTENSITY:
            return f"gridshift-carbon-intensity-{self.region}"
        return f"gridshift-desired-replicas-{self.workload}"


_MAX_INTENSITY_G_PER_KWH = 100_000.0  # 50x the dirtiest grid; past it a typo, not a target


def _positive_float(metadata: Mapping[str, str], key: str, default: float) -> float:
    raw = metadata.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _QueryError(
            grpc.StatusCode.INVALID_ARGUMENT, f"scalerMetadata.{key}: {raw!r} is not a number"
        ) from None
    if not math.isfinite(value) or not 0 <= value <= _MAX_INTENSITY_G_PER_KWH:
        raise _QueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"scalerMetadata.{key}: must be a number in [0, {_MAX_INTENSITY_G_PER_KWH:g}] "
            f"gCO2eq/kWh, got {raw[:40]!r}",
        )
    return value


def parse_metadata(ref: Any) -> ScalerQuery:
    """Translate a `ScaledObjectRef` into a `ScalerQuery`; raises with a named field."""
    metadata = dict(ref.scalerMetadata)
    metric = metadata.get("metric", DESIRED_REPLICAS) or DESIRED_REPLICAS
    if metric not in (DESIRED_REPLICAS, CARBON_INTENSITY):
        raise _QueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"scalerMetadata.metric: {metric!r} is not one of "
            f"{DESIRED_REPLICAS!r}, {CARBON_INTENSITY!r}",
        )
    region = metadata.get("region", "")
    if metric == CARBON_INTENSITY and not region:
        raise _QueryError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "scalerMetadata.region: required when metric is carbonIntensity",
        )
    target = _positive_float(metadata, "targetIntensity", 100.0)
    if target == 0:
        raise _QueryError(
            grpc.StatusCode.INVALID_ARGUMENT, "scalerMetadata.targetIntensity: must be > 0"
        )
    return ScalerQuery(
        namespace=ref.namespace,
        workload=metadata.get("workload") or ref.name,
        metric=metric,
        region=region,
        target_intensity_g_per_kwh=target,
        activation_intensity_g_per_kwh=_positive_float(metadata, "activationIntensity", 0.0),
    )


def _find_workload(snapshot: Snapshot, namespace: str, name: str) -> WorkloadStatus | None:
    for key in (f"{namespace}/{name}", name):
        status = snapshot.workloads.get(key)
        if status is not None and status.namespace == namespace and status.name == name:
            return status
    for status in snapshot.workloads.values():
        if status.namespace == namespace and status.name == name:
            return status
    return None


class KedaExternalScaler(pb_grpc.ExternalScalerServicer):  # type: ignore[misc]
    """The servicer; reads only `holder.current()`."""

    def __init__(
        self,
        holder: SnapshotSource,
        *,
        stream_poll_interval_seconds: float = 1.0,
        stop: threading.Event | None = None,
        clock: Clock | None = None,
        max_snapshot_age_seconds: float | None = None,
        max_streams: int = 256,
    ) -> None:
        if max_snapshot_age_seconds is not None and clock is None:
            raise ValueError("max_snapshot_age_seconds needs a clock")
        self._clock = clock
        self._max_age = (
            timedelta(seconds=max_snapshot_age_seconds) if max_snapshot_age_seconds else None
        )
        self._holder = holder
        self._poll = stream_poll_interval_seconds
        self._stop = stop or threading.Event()
        #: open StreamIsActive calls at most; each holds a server thread for its lifetime,
        #: so the server sizes its pool to this plus the unary workers (streams never starve
        #: GetMetrics/IsActive), and a stream past it is refused RESOURCE_EXHAUSTED
        self.max_streams = max_streams
        self._streams = threading.BoundedSemaphore(max_streams)

    # ---------------------------------------------------------------- core
    def _value(self, query: ScalerQuery) -> float:
        snapshot = self._holder.current()
        if snapshot is None:
            raise _QueryError(
                grpc.StatusCode.UNAVAILABLE, "no scaler decision has been published yet"
            )
        if self._max_age is not None and self._clock is not None:
            age = self._clock.now() - snapshot.taken_at
            if age > self._max_age:
                raise _QueryError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the scaler snapshot is {age.total_seconds():.0f}s old "
                    f"(max_snapshot_age_seconds={self._max_age.total_seconds():.0f})",
                )
        if query.metric == CARBON_INTENSITY:
            region = snapshot.regions.get(query.region)
            if region is None:
                raise _QueryError(grpc.StatusCode.NOT_FOUND, f"unknown region {query.region!r}")
            if region.intensity_g_per_kwh is None:
                raise _QueryError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"no carbon intensity known for region {query.region!r}",
                )
            return float(region.intensity_g_per_kwh)
        status = _find_workload(snapshot, query.namespace, query.workload)
        if status is None:
            raise _QueryError(
                grpc.StatusCode.NOT_FOUND,
                f"gridshift has no workload {query.namespace}/{query.workload} "
                "(set scalerMetadata.workload or name the ScaledObject after it)",
            )
        return float(status.desired_replicas)

    def _active(self, query: ScalerQuery) -> bool:
        value = self._value(query)
        if query.metric == CARBON_INTENSITY:
            return value > query.activation_intensity_g_per_kwh
        return value > 0

    @staticmethod
    def _abort(context: grpc.ServicerContext, error: _QueryError) -> None:
        context.abort(error.code, error.message)

    # ---------------------------------------------------------------- RPCs
    def IsActive(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return pb.IsActiveResponse(result=self._active(parse_metadata(request)))
        except _QueryError as error:
            self._abort(context, error)
            raise  # pragma: no cover - abort raises

    def StreamIsActive(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            query = parse_metadata(request)
        except _QueryError as error:
            self._abort(context, error)
            return
        if not self._streams.acquire(blocking=False):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{self.max_streams} StreamIsActive streams already open; poll with IsActive "
                "(trigger type external) or raise keda.max_streams",
            )
            return
        try:
            yield from self._stream(query, context)
        finally:
            self._streams.release()

    def _stream(self, query: ScalerQuery, context: grpc.ServicerContext) -> Iterator[Any]:
        last: bool | None = None
        while context.is_active() and not self._stop.is_set():
            active: bool | None
            try:
                active = self._active(query)
            except _QueryError as error:
                if error.code is not grpc.StatusCode.UNAVAILABLE:
                    self._abort(context, error)
                    return
                active = None
            if active is not None and active != last:
                last = active
                yield pb.IsActiveResponse(result=active)
            self._stop.wait(self._poll)

    def GetMetricSpec(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            query = parse_metadata(request)
        except _QueryError as error:
            self._abort(context, error)
            raise  # pragma: no cover
        target = 1.0 if query.metric == DESIRED_REPLICAS else query.target_intensity_g_per_kwh
        spec = pb.MetricSpec(
            metricName=query.metric_name,
            targetSize=max(1, math.ceil(target)),
            targetSizeFloat=target,
        )
        return pb.GetMetricSpecResponse(metricSpecs=[spec])

    def GetMetrics(self, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            query = parse_metadata(request.scaledObjectRef)
            value = self._value(query)
        except _QueryError as error:
            self._abort(context, error)
            raise  # pragma: no cover
        name = request.metricName or query.metric_name
        metric = pb.MetricValue(
            metricName=name, metricValue=math.ceil(value), metricValueFloat=value
        )
        return pb.GetMetricsResponse(metricValues=[metric])


class ReloadingServerCredentials:
    """gRPC server credentials from PEM files, re-read when they change (TLS 1.2+, gRPC's
    floor). gRPC asks `fetch()` on every new handshake; it answers a new configuration only
    when the files changed, and a bad rotation keeps the last good pair."""

    def __init__(
        self,
        *,
        cert_file: Path,
        key_file: Path,
        client_ca_file: Path | None = None,
        check_interval_seconds: float = 10.0,
    ) -> None:
        self._cert_file, self._key_file, self._ca_file = cert_file, key_file, client_ca_file
        files = [cert_file, key_file] + ([client_ca_file] if client_ca_file else [])
        self._reloader = FileReloader(
            files=files,
            build=self._build,
            check_interval_seconds=check_interval_seconds,
            what="KEDA gRPC serving certificate",
        )
        self._lock = threading.Lock()
        self._served = self._reloader.current()
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._served[0], self.fetch, require_client_authentication=client_ca_file is not None
        )

    def _build(self, _: str) -> tuple[Any, float]:
        chain, key = read_pem_pair(self._cert_file, self._key_file)
        roots = None
        if self._ca_file is not None:
            roots = self._ca_file.read_bytes()
            if b"-----BEGIN CERTIFICATE-----" not in roots:
                raise ValueError(f"{self._ca_file}: no PEM certificate in the client CA file")
        configuration = grpc.ssl_server_certificate_configuration(
            [(key, chain)], root_certificates=roots
        )
        return configuration, not_after_epoch_s(chain)

    @property
    def reloads(self) -> int:
        return self._reloader.reloads

    @property
    def reload_failures(self) -> int:
        return self._reloader.reload_failures

    @property
    def not_after_epoch_s(self) -> float:
        return self._reloader.current()[1]

    def fetch(self) -> Any:
        """gRPC's certificate_configuration_fetcher: a new configuration, or None."""
        current = self._reloader.current()
        with self._lock:
            if current is self._served:
                return None
            self._served = current
            return current[0]


class KedaScalerServer:
    """A grpc.server running `KedaExternalScaler` (plaintext or TLS from PEM files)."""

    def __init__(
        self,
        scaler: KedaExternalScaler,
        *,
        address: str,
        max_workers: int = 8,
        max_queued_calls: int = 64,
        server_credentials: grpc.ServerCredentials | None = None,
        tls_stats: ReloadStats | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.tls_stats = tls_stats  # reloads/expiry of the credentials, for metrics
        self._stop = stop or threading.Event()
        # `max_workers` threads for unary calls on top of one per allowed stream; calls past
        # the pool wait in a queue of `max_queued_calls`, and past that get RESOURCE_EXHAUSTED
        threads = max_workers + scaler.max_streams
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="keda"),
            maximum_concurrent_rpcs=threads + max_queued_calls,
        )
        pb_grpc.add_ExternalScalerServicer_to_server(scaler, self._server)
        self.secure = server_credentials is not None
        if server_credentials is None:
            self.port = self._server.add_insecure_port(address)
        else:
            self.port = self._server.add_secure_port(address, server_credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {address!r}")

    def start(self) -> None:
        self._server.start()

    def stop(self, grace_seconds: float = 2.0) -> None:
        self._stop.set()
        self._server.stop(grace_seconds).wait()

    def __enter__(self) -> KedaScalerServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
