"""Kubernetes I/O for the scaler: CarbonAwareScaler resources, status, actuation, leases.

One module per seam: `api` (constants, error tuples), `resources`, `watch`, `status`,
`actuation`, `replicas`, `leader`, `controller`, `authz`, `runtime`. The names below are
re-exported here, so `from scaler.kube import X` keeps working.

Everything here talks to the API server through the official `kubernetes` client, built by
`config.wiring` (no import-time `load_kube_config`):

* `ScalerResourceWatcher`: list + watch of `carbonawarescalers.gridshift.io` with
  resourceVersion tracking, bookmarks, and a relist on 410 Gone; it keeps a
  `ScalerResourceCache` of parsed, validated `ScalerResource`s (bad ones are kept aside with
  the field and problem, never crash the loop).
* `StatusWriter`: merge-patches `/status` with the resourceVersion it last saw; on 409 it
  re-reads and retries (bounded); 404 means the resource is gone.
* `Actuator`: opt-in per resource (`spec.actuation.mode`): HPA `minReplicas`/`maxReplicas`,
  KEDA ScaledObject `minReplicaCount`/`maxReplicaCount`, or the target's `scale`
  subresource. `dryRun: true` (shadow mode) records the patch it would send and sends nothing.
* `KubeReplicaReader`: once per tick (`scaler.loop.ReplicaReader`), what each workload's
  target runs now: `status.replicas` of its `scale` subresource (Deployment, StatefulSet or
  any custom kind with one); for a KEDA ScaledObject the scale of its own scaleTargetRef; for
  an HPA its `status.currentReplicas`. A CarbonAwareScaler's scaleTargetRef takes precedence
  over the workload's configured target. Failures become `SourceError`s per workload (a dead
  API server is tried once per tick, not once per workload).
* `LeaseLock` + `LeaderElector`: client-go style leader election on a
  `coordination.k8s.io/v1` Lease (optimistic concurrency; expiry measured on our own clock
  from when we last saw the record change, so clock skew between replicas does not matter);
  only the leader writes status or actuates, and it stops acting once it has failed to renew
  for `renew_deadline_seconds` (< lease duration), before anyone else may take over.
  Release on shutdown.
* `KubeController`: one `sync()` per tick: for each resource, the snapshot's decision ->
  status patch (only when changed) and actuation (only when the bounds change).
* `DelegatedTokenReviewer` / `DelegatedAccessReviewer`: TokenReview and SubjectAccessReview
  for the metrics API (`scaler.apiauth`), with small TTL caches; on the request path, so a
  hung API server costs a request the review timeout, never a parked server thread.
* `KubeCollector`: what degraded on the Kubernetes side, as `gridshift_kube_*` metrics.

Every API call carries a client-side timeout (`request_timeout_seconds`), so an API server
that hangs costs one call its timeout, never a stalled thread: the elector keeps its rounds
(and so stops acting at its renew deadline), a sync round ends, shutdown releases the Lease.
Connection errors, timeouts and truncated answers (urllib3/OS errors) are handled like API
errors: logged, counted, retried on the next round.
"""

from scaler.kube.actuation import ActuationResult, Actuator, replica_bounds
from scaler.kube.api import (
    CRD_GROUP,
    CRD_PLURAL,
    CRD_VERSION,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    GARBLED,
    TRANSPORT_ERRORS,
)
from scaler.kube.authz import (
    AuthenticationConfigRefresher,
    DelegatedAccessReviewer,
    DelegatedTokenReviewer,
    load_authentication_config_map,
)
from scaler.kube.controller import KubeController
from scaler.kube.leader import LeaderElector, LeaseLock
from scaler.kube.replicas import KubeReplicaReader
from scaler.kube.resources import (
    ActuationSpec,
    ScalerResource,
    ScalerResourceCache,
    TargetRef,
    parse_scaler_resource,
)
from scaler.kube.runtime import KubeCollector, KubeRuntime, register_kube_metrics
from scaler.kube.status import StatusWriter, status_for
from scaler.kube.watch import ScalerResourceWatcher

__all__ = [
    "CRD_GROUP",
    "CRD_PLURAL",
    "CRD_VERSION",
    "DEFAULT_REQUEST_TIMEOUT_SECONDS",
    "GARBLED",
    "TRANSPORT_ERRORS",
    "ActuationResult",
    "ActuationSpec",
    "Actuator",
    "AuthenticationConfigRefresher",
    "DelegatedAccessReviewer",
    "DelegatedTokenReviewer",
    "KubeCollector",
    "KubeController",
    "KubeReplicaReader",
    "KubeRuntime",
    "LeaderElector",
    "LeaseLock",
    "ScalerResource",
    "ScalerResourceCache",
    "ScalerResourceWatcher",
    "StatusWriter",
    "TargetRef",
    "load_authentication_config_map",
    "parse_scaler_resource",
    "register_kube_metrics",
    "replica_bounds",
    "status_for",
]
