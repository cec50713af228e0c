"""The metrics-API grants, what a scaler container from deploy/ serves (read from its own
environment through the real settings loader) and what the real server code answers to its
probes.

Shared by tests/unit/test_deploy_manifests.py (the files) and
tests/integration/test_kustomize_overlays.py (what `kubectl kustomize` renders): a probe must hit
a port the container really listens on with the settings it has, with the scheme that
listener speaks, on a path that listener answers 200 once the scaler has ticked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from config.loading import load_config
from config.settings import Settings
from forecasts.platform.serving import parse_listen
from forecasts.time import FrozenClock
from scaler.metrics_api import ApiRequest, ExternalMetricsApi
from scaler.status_api import create_status_app
from tests.snapshots import TAKEN_AT, sample_holder
from tests.unit.test_scaler_outputs import AsgiClient

# (kind, name) of the grants only the External Metrics API path needs: scaler-hpa ships them
# (deploy/overlays/scaler-hpa/metrics-api-rbac.yaml), scaler-keda must not
METRICS_API_RBAC = frozenset(
    {
        ("ClusterRoleBinding", "gridshift-scaler:system:auth-delegator"),
        ("RoleBinding", "gridshift-scaler-auth-reader"),
        ("ClusterRole", "gridshift-external-metrics-reader"),
        ("ClusterRoleBinding", "gridshift-hpa-external-metrics"),
    }
)

# what a fieldRef/secretKeyRef resolves to in the pod; the tests only need a string
FROM_THE_POD = "from-the-pod"


@dataclass(frozen=True, slots=True)
class Listener:
    server: str  # "status", "metrics_api" or "keda"
    scheme: str  # "HTTP", "HTTPS" or "gRPC"


def container_settings(container: dict[str, Any]) -> Settings:
    """The settings `gridshift run` reads from this container's env (no file, no flags)."""
    environ = {e["name"]: str(e.get("value", FROM_THE_POD)) for e in container.get("env", [])}
    return load_config(model=Settings, environ=environ).settings


def listeners(settings: Settings) -> dict[int, Listener]:
    """Port -> what `gridshift run` serves there with `settings`."""
    served = {parse_listen(settings.server.listen)[1]: Listener("status", "HTTP")}
    api = settings.metrics_api
    if api.enabled:
        scheme = "HTTPS" if api.tls_cert_file is not None else "HTTP"
        served[parse_listen(api.listen)[1]] = Listener("metrics_api", scheme)
    if settings.keda.enabled:
        served[parse_listen(settings.keda.listen)[1]] = Listener("keda", "gRPC")
    return served


def probe_answer(container: dict[str, Any], probe_name: str) -> tuple[Listener, int]:
    """The listener `probe_name` (readinessProbe/livenessProbe) reaches and the HTTP status
    the real server code there answers on its path; AssertionError naming the problem when
    the probe reaches no listener or speaks the wrong scheme."""
    get = container[probe_name]["httpGet"]
    named = {p["name"]: p["containerPort"] for p in container.get("ports", []) if "name" in p}
    port = get["port"]
    if isinstance(port, str):
        assert port in named, f"{probe_name}: no container port named {port!r} ({named})"
        port = named[port]
    served = listeners(container_settings(container))
    assert port in served, f"{probe_name}: nothing listens on {port} (serving {served})"
    listener = served[port]
    scheme = get.get("scheme", "HTTP")
    assert scheme == listener.scheme, f"{probe_name}: {scheme} to a {listener} listener"
    holder = sample_holder()
    if listener.server == "status":
        app = create_status_app(holder, registry=CollectorRegistry())
        return listener, AsgiClient(app).get(get["path"]).status_code
    api = ExternalMetricsApi(holder, clock=FrozenClock(TAKEN_AT))
    return listener, api.handle(ApiRequest(method="GET", path=get["path"])).status
