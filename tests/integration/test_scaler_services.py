"""`config.wiring.start_scaler_services` end to end on 127.0.0.1: settings -> HTTPS metrics
API trusting the front-proxy CA read from the extension-apiserver-authentication ConfigMap
(fake API server), SubjectAccessReview, KEDA gRPC, and the Kubernetes runtime (leader
election, CR watch, status written for the published decision), then graceful shutdown
releasing the Lease."""

from __future__ import annotations

import http.client
import json
import ssl
import time

import grpc
import pytest
import trustme
from prometheus_client import CollectorRegistry

from config.settings import Settings
from config.wiring import start_scaler_services
from forecasts.time import FrozenClock
from scaler.keda_pb import externalscaler_pb2 as pb
from scaler.keda_pb import externalscaler_pb2_grpc as pb_grpc
from scaler.snapshot import SnapshotHolder
from tests.apiserver import FakeApiServer
from tests.snapshots import TAKEN_AT, sample_snapshot

pytestmark = pytest.mark.integration


def test_everything_from_settings(tmp_path):
    serving_ca, proxy_ca = trustme.CA(), trustme.CA()
    leaf = serving_ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "tls.crt"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    proxy = proxy_ca.issue_cert("front-proxy-client", common_name="front-proxy-client")
    proxy.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "proxy.pem"))
    settings = Settings(
        metrics_api={
            "listen": "127.0.0.1:0",
            "tls_cert_file": tmp_path / "tls.crt",
            "tls_key_file": tmp_path / "tls.key",
            "authentication_from_cluster": True,
            "delegated_authorization": True,
        },
        keda={"listen": "127.0.0.1:0", "stream_poll_interval_seconds": 0.05},
        kube={
            "enabled": True,
            "identity": "replica-a",
            "lease_duration_seconds": 3,
            "renew_deadline_seconds": 2,
            "retry_period_seconds": 0.1,
            "watch_timeout_seconds": 1,
        },
    )
    holder = SnapshotHolder(sample_snapshot())
    reviews = []
    with FakeApiServer() as api:

        def allow(body):
            reviews.append(body["spec"])
            return {"status": {"allowed": True}}

        api.handlers["subjectaccessreviews"] = allow
        api.put_object(
            "/api/v1/namespaces/kube-system/configmaps",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "extension-apiserver-authentication"},
                "data": {
                    "requestheader-client-ca-file": proxy_ca.cert_pem.bytes().decode(),
                    "requestheader-allowed-names": '["front-proxy-client"]',
                    "requestheader-username-headers": '["X-Remote-User"]',
                    "requestheader-group-headers": '["X-Remote-Group"]',
                    "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
                },
            },
        )
        api.put_object(
            "/apis/gridshift.io/v1alpha1/namespaces/shop/carbonawarescalers",
            {
                "apiVersion": "gridshift.io/v1alpha1",
                "kind": "CarbonAwareScaler",
                "metadata": {"name": "web"},
                "spec": {
                    "scaleTargetRef": {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": "web",
                    },
                    "maxReplicas": 10,
                },
            },
        )
        registry = CollectorRegistry()
        with start_scaler_services(
            settings,
            holder=holder,
            clock=FrozenClock(TAKEN_AT),
            api_client=api.client(),
            registry=registry,
        ) as services:
            assert services.metrics_api is not None
            assert services.keda is not None
            host, port = services.metrics_api.address
            context = ssl.create_default_context()
            serving_ca.configure_trust(context)
            context.load_cert_chain(str(tmp_path / "proxy.pem"))
            conn = http.client.HTTPSConnection(host, port, context=context, timeout=5)
            conn.request(
                "GET",
                "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/"
                "gridshift_desired_replicas?labelSelector=workload%3Dweb",
                headers={
                    "X-Remote-User": "hpa",
                    "X-Remote-Group": "g",
                    "Accept": "application/vnd.kubernetes.protobuf, */*",
                },
            )
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["items"][0]["value"] == "4"
            conn.close()
            assert reviews[0]["user"] == "hpa"
            with grpc.insecure_channel(f"127.0.0.1:{services.keda.port}") as channel:
                stub = pb_grpc.ExternalScalerStub(channel)
                ref = pb.ScaledObjectRef(name="web", namespace="shop")
                assert stub.IsActive(ref, timeout=5).result is True
            deadline = time.monotonic() + 10
            status = None
            while time.monotonic() < deadline:
                obj = api.get_object(
                    "/apis/gridshift.io/v1alpha1/namespaces/shop/carbonawarescalers/web"
                )
                status = obj.get("status") if obj else None
                if status:
                    break
                time.sleep(0.05)
            assert status is not None, "the leader wrote the decision into the CR status"
            assert (status["desiredReplicas"], status["mode"]) == (4, "eco")
            leader = registry.get_sample_value("gridshift_kube_leader", {"identity": "replica-a"})
            assert leader == 1.0, "the Kubernetes side's metrics are on the registry passed in"
        lease = api.get_object(
            "/apis/coordination.k8s.io/v1/namespaces/carbon-system/leases/gridshift-scaler"
        )
        assert lease is not None
        assert lease["spec"]["holderIdentity"] == "", "released on shutdown"
