"""Wiring helpers without sockets: the listen-address parser and the cross-field rules of
the metrics API / kube settings groups."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from config.settings import KubeSettings, MetricsApiSettings
from forecasts.platform.serving import parse_listen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:6443", ("127.0.0.1", 6443)),
        ("[::1]:0", ("::1", 0)),
        ("0.0.0.0:9090", ("0.0.0.0", 9090)),
    ],
)
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("bad", ["6443", ":6443", "host:", "host:port", "h:70000"])
def test_parse_listen_rejects_naming_the_field(bad):
    with pytest.raises(ValueError, match=r"metrics_api\.listen"):
        parse_listen(bad, field_name="metrics_api.listen")


def test_settings_cross_field_rules():
    with pytest.raises(pydantic.ValidationError, match="set together"):
        MetricsApiSettings(tls_cert_file="/x")
    with pytest.raises(pydantic.ValidationError, match="renew_deadline_seconds"):
        KubeSettings(lease_duration_seconds=5, renew_deadline_seconds=5)


def test_kube_api_client_never_sleeps_out_a_retry_after():
    from kubernetes import client as k8s

    from config.wiring import kube_api_client

    configuration = k8s.Configuration()
    configuration.host = "http://127.0.0.1:1"
    retries = kube_api_client(configuration).rest_client.pool_manager.connection_pool_kw["retries"]
    assert retries.respect_retry_after_header is False
    assert retries.total == 3, "connection errors are still retried"
    assert retries.read == 1, "a hung API server costs a call twice its timeout, not 4x"


def test_kube_request_timeout_is_bounded():
    assert KubeSettings().request_timeout_seconds == 5.0
    with pytest.raises(pydantic.ValidationError, match="request_timeout_seconds"):
        KubeSettings(request_timeout_seconds=0)


def test_disabled_metrics_api_needs_no_cluster_access(tmp_path):
    """The KEDA install turns the metrics API off: its cluster-authentication flags must
    then not make the scaler load Kubernetes credentials (here: a kubeconfig that does not
    exist, which raises as soon as anything tries) or read extension-apiserver-authentication."""
    from kubernetes.config import ConfigException

    from config.settings import KedaSettings, Settings
    from config.wiring import start_scaler_services
    from forecasts.time import FrozenClock
    from scaler.snapshot import SnapshotHolder

    def settings(*, enabled: bool) -> Settings:
        return Settings(
            metrics_api=MetricsApiSettings(
                enabled=enabled,
                authentication_from_cluster=True,
                delegated_authentication=True,
                delegated_authorization=True,
            ),
            keda=KedaSettings(enabled=False),
            kube=KubeSettings(enabled=False, kubeconfig=tmp_path / "missing-kubeconfig"),
        )

    clock = FrozenClock(datetime(2025, 3, 1, tzinfo=UTC))
    with start_scaler_services(
        settings(enabled=False), holder=SnapshotHolder(), clock=clock
    ) as services:
        assert services.metrics_api is None
        assert services.kube is None
        assert services.describe() == []
    # the same flags with the API on do need the cluster: the kubeconfig is read (and missing)
    with pytest.raises((ConfigException, OSError)):
        start_scaler_services(settings(enabled=True), holder=SnapshotHolder(), clock=clock)


@pytest.mark.parametrize(
    ("method", "query", "expected"),
    [
        pytest.param("PATCH", [], "gridshift", id="patch gets ours"),
        pytest.param("POST", [("dryRun", "All")], "gridshift", id="post beside other params"),
        pytest.param("PUT", [("fieldManager", "mine")], "mine", id="an explicit one wins"),
        pytest.param("GET", [], None, id="reads carry none"),
    ],
)
def test_kube_api_client_names_gridshift_on_every_write(method, query, expected):
    """Every write carries fieldManager=gridshift and every call the gridshift/<version>
    user agent (issue 14: writes showed up as OpenAPI-Generator in managedFields)."""
    from urllib.parse import parse_qs, urlsplit

    from kubernetes import client as k8s

    from config.version import __version__
    from config.wiring import kube_api_client

    configuration = k8s.Configuration()
    configuration.host = "http://127.0.0.1:1"
    client = kube_api_client(configuration)
    _, url, headers, *_ = client.param_serialize(
        method, "/api/v1/nodes/{name}", path_params={"name": "n1"}, query_params=list(query)
    )
    assert headers["User-Agent"] == f"gridshift/{__version__}"
    managers = parse_qs(urlsplit(url).query).get("fieldManager")
    assert managers == ([expected] if expected else None)
