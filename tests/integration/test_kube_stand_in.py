"""What the real control plane cannot stage, on the one API-server stand-in (tests/apiserver.py);
everything else of scaler.kube runs on the real plane (tests/cluster/test_kube.py).

Aspects: `extension-apiserver-authentication` rotated to a new front-proxy CA is picked up
by the refresher and a malformed one keeps the old trust (kube-apiserver owns that ConfigMap
and rewrites it, so a test cannot rotate it on the real plane); a ScaledObject without
`scaleTargetRef` is a per-workload SourceDataError (KEDA's CRD refuses to store one, but one
stored before the CRD required it, or with a CRD not installed by KEDA, can still be met)."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from forecasts.platform.errors import SourceDataError
from scaler.core.workload import LoadSourceKind, LoadSpec, PowerModel, TargetKind, Workload
from scaler.core.workload import TargetRef as WorkloadTarget
from scaler.kube import KubeReplicaReader
from tests.apiserver import FakeApiServer

pytestmark = pytest.mark.integration


@pytest.fixture
def api():
    with FakeApiServer() as server:
        yield server


def test_authentication_config_refresh_picks_up_a_rotated_ca(api):
    import trustme

    from scaler.apiauth import AuthenticationConfig, Authenticator
    from scaler.kube import AuthenticationConfigRefresher

    old_ca, new_ca = trustme.CA(), trustme.CA()
    path = "/api/v1/namespaces/kube-system/configmaps"

    def publish(ca, names='["front-proxy-client"]'):
        api.put_object(
            path,
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "extension-apiserver-authentication"},
                "data": {
                    "requestheader-client-ca-file": ca.cert_pem.bytes().decode(),
                    "requestheader-allowed-names": names,
                },
            },
        )

    publish(old_ca)
    core = k8s.CoreV1Api(api.client())
    from scaler.kube import load_authentication_config_map

    authenticator = Authenticator(
        AuthenticationConfig.from_config_map(load_authentication_config_map(core))
    )
    changes = []
    refresher = AuthenticationConfigRefresher(
        core, authenticator, on_change=lambda: changes.append(1)
    )
    assert refresher.refresh_once() is False
    publish(new_ca)
    assert refresher.refresh_once() is True
    assert changes == [1]
    assert authenticator.config.requestheader is not None
    assert "BEGIN CERTIFICATE" in authenticator.config.requestheader.client_ca_pem
    assert authenticator.config.requestheader.client_ca_pem == new_ca.cert_pem.bytes().decode()
    publish(new_ca, names="not json")
    with pytest.raises(ValueError, match="requestheader-allowed-names"):
        refresher.refresh_once()
    assert authenticator.config.requestheader.client_ca_pem == new_ca.cert_pem.bytes().decode()


def test_a_scaled_object_without_scale_target_is_a_data_error(api):
    api.put_object(
        "/apis/keda.sh/v1alpha1/namespaces/shop/scaledobjects",
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "bad"},
            "spec": {"triggers": []},
        },
    )
    workload = Workload(
        name="bad",
        namespace="shop",
        target=WorkloadTarget(TargetKind.SCALED_OBJECT, "bad"),
        load=LoadSpec(LoadSourceKind.PROMQL, "bad_rps"),
        capacity_per_replica=10.0,
        min_replicas=1,
        max_replicas=10,
        power=PowerModel(10.0, 30.0),
        region="eu-west-1",
    )
    got = KubeReplicaReader(api.client()).read([workload])
    assert isinstance(got["bad"], SourceDataError)
    assert "scaleTargetRef" in str(got["bad"])
