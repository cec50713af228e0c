"""The metrics API server over real sockets on 127.0.0.1, with throwaway CAs (trustme):

* the HPA's request as client-go sends it through the aggregator (front-proxy certificate,
  X-Remote-User/Group, protobuf-first Accept, `+`-encoded set-based selector);
* a front-proxy certificate whose CN is not allowed: X-Remote-* ignored -> 401;
* a client certificate from an unknown CA: the TLS handshake is refused;
* a client-CA certificate authenticates as its CN/O; no certificate: 401, health still 200;
* authorization denial (403) and system:masters bypass;
* serving certificate rotation picked up without restart; plain HTTP with anonymous allowed;
* the aggregator's OpenAPI download (/openapi/v2, /openapi/v3): authorized, ETag and 304.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import trustme

from forecasts.time import FrozenClock
from scaler.apiauth import (
    AuthenticationConfig,
    Authenticator,
    Authorizer,
    ReloadingTlsContext,
    RequestHeaderConfig,
    write_atomically,
)
from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer
from tests.snapshots import TAKEN_AT, sample_holder

pytestmark = pytest.mark.integration

HPA_PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/gridshift_desired_replicas"
HPA_USER = "system:serviceaccount:kube-system:horizontal-pod-autoscaler"


class RecordingReviewer:
    def __init__(self, allow=True):
        self.allow = allow
        self.calls = []

    def allowed(self, user, attributes):
        self.calls.append((user, attributes))
        return self.allow


class Pki:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.serving_ca = trustme.CA()
        self.front_proxy_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.rogue_ca = trustme.CA()
        self.cert_file = tmp / "tls.crt"
        self.key_file = tmp / "tls.key"
        self.serve_with(self.serving_ca)

    def serve_with(self, ca):
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        write_atomically(self.cert_file, b"".join(b.bytes() for b in leaf.cert_chain_pems))
        write_atomically(self.key_file, leaf.private_key_pem.bytes())

    def client_files(self, ca, common_name, org=None):
        leaf = ca.issue_cert(common_name, common_name=common_name, organization_name=org)
        path = self.tmp / f"client-{common_name}-{id(ca)}.pem"
        leaf.private_key_and_cert_chain_pem.write_to_path(str(path))
        return path

    def client_context(self, *, client_cert=None, trust=None):
        context = ssl.create_default_context()
        (trust or self.serving_ca).configure_trust(context)
        if client_cert is not None:
            context.load_cert_chain(client_cert)
        return context


@pytest.fixture
def pki(tmp_path):
    return Pki(tmp_path)


def make_server(
    pki, *, reviewer=None, allow_anonymous=False, allowed_names=("front-proxy-client",)
):
    config = AuthenticationConfig(
        requestheader=RequestHeaderConfig(
            client_ca_pem=pki.front_proxy_ca.cert_pem.bytes().decode(),
            allowed_names=tuple(allowed_names),
        ),
        client_ca_pem=pki.client_ca.cert_pem.bytes().decode(),
    )
    authenticator = Authenticator(config)
    tls = ReloadingTlsContext(
        cert_file=pki.cert_file,
        key_file=pki.key_file,
        client_ca_pem=authenticator.config.trusted_ca_pem,
        check_interval_seconds=0.0,
    )
    api = ExternalMetricsApi(sample_holder(), clock=FrozenClock(TAKEN_AT))
    return MetricsApiServer(
        api,
        host="127.0.0.1",
        port=0,
        authenticator=authenticator,
        authorizer=Authorizer(access_reviewer=reviewer, allow_anonymous=allow_anonymous),
        tls=tls,
    )


def request(server, context, path, headers=None):
    host, port = server.address
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def hpa_headers(user=HPA_USER):
    # what kube-aggregator forwards for the HPA controller (client-go defaults)
    return {
        "Accept": "application/vnd.kubernetes.protobuf, */*",
        "User-Agent": "kube-controller-manager/v1.31.0 (linux/amd64) kubernetes/abcdef/"
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        "X-Remote-User": user,
        "X-Remote-Group": "system:serviceaccounts",
        "X-Remote-Extra-Authentication.kubernetes.io%2fpod-Name": "kcm-0",
    }


def test_hpa_request_through_the_aggregator(pki):
    reviewer = RecordingReviewer()
    proxy_cert = pki.client_files(pki.front_proxy_ca, "front-proxy-client")
    with make_server(pki, reviewer=reviewer) as server:
        query = urlencode({"labelSelector": "workload in (web),region notin (us-east-1)"})
        assert "+in+%28web%29" in query
        headers = hpa_headers()
        status, content_type, body = request(
            server, pki.client_context(client_cert=proxy_cert), f"{HPA_PATH}?{query}", headers
        )
    assert status == 200, body
    assert content_type == "application/json"
    doc = json.loads(body)
    assert [(i["metricLabels"]["workload"], i["value"]) for i in doc["items"]] == [("web", "4")]
    (user, attrs), *_ = reviewer.calls
    assert user.name == HPA_USER
    assert user.via == "front-proxy"
    assert set(user.groups) == {"system:serviceaccounts", "system:authenticated"}
    assert user.extra == {"authentication.kubernetes.io/pod-name": ("kcm-0",)}
    assert (attrs.verb, attrs.resource, attrs.namespace) == (
        "list",
        "gridshift_desired_replicas",
        "shop",
    )


def test_aggregator_availability_probe_gets_200(pki):
    proxy_cert = pki.client_files(pki.front_proxy_ca, "front-proxy-client")
    with make_server(pki) as server:
        status, _, body = request(
            server,
            pki.client_context(client_cert=proxy_cert),
            "/apis/external.metrics.k8s.io/v1beta1",
            {"X-Remote-User": "system:kube-aggregator", "X-Remote-Group": "system:masters"},
        )
    assert status == 200
    assert json.loads(body)["kind"] == "APIResourceList"


def test_aggregator_openapi_download_is_authorized_and_cached_by_etag(pki):
    """kube-aggregator's OpenAPI controllers GET /openapi/v2 (Accept: application/json) and
    /openapi/v3 as system:kube-aggregator with no group; the request is authorized like any
    non-resource path, and the ETag it keeps makes the next download a 304."""
    reviewer = RecordingReviewer()
    proxy_cert = pki.client_files(pki.front_proxy_ca, "front-proxy-client")
    context = pki.client_context(client_cert=proxy_cert)
    aggregator = {"X-Remote-User": "system:kube-aggregator", "Accept": "application/json"}
    with make_server(pki, reviewer=reviewer) as server:
        host, port = server.address
        conn = http.client.HTTPSConnection(host, port, context=context, timeout=5)
        try:
            conn.request("GET", "/openapi/v2", headers=aggregator)
            first = conn.getresponse()
            spec = json.loads(first.read())
            etag = first.getheader("Etag") or ""
            conn.request("GET", "/openapi/v2", headers={**aggregator, "If-None-Match": etag})
            again = conn.getresponse()
            again.read()
            conn.request("GET", "/openapi/v3", headers=aggregator)
            discovery = json.loads(conn.getresponse().read())
        finally:
            conn.close()
    assert first.status == 200
    assert spec["swagger"] == "2.0"
    assert etag.startswith('"')
    assert len(etag) == 130  # quoted SHA-512 hex
    assert again.status == 304
    assert list(discovery["paths"]) == ["apis/external.metrics.k8s.io/v1beta1"]
    user, attrs = reviewer.calls[0]
    assert (user.name, set(user.groups)) == ("system:kube-aggregator", {"system:authenticated"})
    assert (attrs.verb, attrs.path, attrs.resource_request) == ("get", "/openapi/v2", False)


def test_disallowed_common_name_makes_x_remote_headers_ignored(pki):
    reviewer = RecordingReviewer()
    evil = pki.client_files(pki.front_proxy_ca, "not-the-aggregator")
    with make_server(pki, reviewer=reviewer) as server:
        headers = hpa_headers(user="admin") | {"X-Remote-Group": "system:masters"}
        status, _, body = request(server, pki.client_context(client_cert=evil), HPA_PATH, headers)
    assert status == 401, body
    assert json.loads(body)["reason"] == "Unauthorized"
    assert reviewer.calls == [], "an ignored identity never reaches authorization"


def test_empty_allowed_names_accepts_any_cn_from_the_requestheader_ca(pki):
    cert = pki.client_files(pki.front_proxy_ca, "some-proxy")
    with make_server(pki, allowed_names=()) as server:
        status, _, _ = request(
            server, pki.client_context(client_cert=cert), HPA_PATH, hpa_headers()
        )
    assert status == 200


def test_client_certificate_from_an_unknown_ca_is_rejected(pki):
    rogue = pki.client_files(pki.rogue_ca, "front-proxy-client")
    with make_server(pki) as server:
        with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
            request(server, pki.client_context(client_cert=rogue), HPA_PATH, hpa_headers())
        deadline = time.monotonic() + 2
        while server.handshake_failures == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.handshake_failures >= 1


def test_front_proxy_ca_cert_is_not_a_user_cert_and_client_ca_cert_cannot_proxy(pki):
    reviewer = RecordingReviewer()
    alice = pki.client_files(pki.client_ca, "alice", org="devs")
    with make_server(pki, reviewer=reviewer) as server:
        status, _, _ = request(
            server, pki.client_context(client_cert=alice), HPA_PATH, hpa_headers(user="mallory")
        )
    assert status == 200
    user = reviewer.calls[0][0]
    assert (user.name, user.via) == ("alice", "x509"), "X-Remote-User from a user cert ignored"
    assert "devs" in user.groups


def test_no_client_certificate_is_401_but_health_is_open(pki):
    with make_server(pki) as server:
        status, _, body = request(server, pki.client_context(), HPA_PATH, hpa_headers())
        assert status == 401
        assert json.loads(body)["kind"] == "Status"
        status, _, body = request(server, pki.client_context(), "/healthz")
        assert (status, body) == (200, b"ok")


def test_denied_by_access_review_is_403_and_masters_bypass(pki):
    reviewer = RecordingReviewer(allow=False)
    proxy_cert = pki.client_files(pki.front_proxy_ca, "front-proxy-client")
    with make_server(pki, reviewer=reviewer) as server:
        context = pki.client_context(client_cert=proxy_cert)
        status, _, body = request(server, context, HPA_PATH, hpa_headers())
        assert status == 403
        doc = json.loads(body)
        assert doc["reason"] == "Forbidden"
        assert HPA_USER in doc["message"]
        masters = hpa_headers(user="kubernetes-admin") | {"X-Remote-Group": "system:masters"}
        status, _, _ = request(server, context, HPA_PATH, masters)
        assert status == 200


def test_serving_certificate_rotation_without_restart(pki):
    with make_server(pki, allow_anonymous=True) as server:
        status, _, _ = request(server, pki.client_context(), HPA_PATH)
        assert status == 200
        new_ca = trustme.CA()
        pki.serve_with(new_ca)
        status, _, _ = request(server, pki.client_context(trust=new_ca), HPA_PATH)
        assert status == 200
        with pytest.raises(ssl.SSLCertVerificationError):
            request(server, pki.client_context(), HPA_PATH)
        assert server.tls is not None
        assert server.tls.reloads == 1


def test_half_written_certificate_keeps_the_old_one(pki):
    with make_server(pki, allow_anonymous=True) as server:
        write_atomically(pki.cert_file, b"-----BEGIN CERTIFICATE-----\ngarbage\n")
        status, _, _ = request(server, pki.client_context(), HPA_PATH)
        assert status == 200


def test_plain_http_with_anonymous_allowed():
    api = ExternalMetricsApi(sample_holder(), clock=FrozenClock(TAKEN_AT))
    server = MetricsApiServer(
        api,
        host="127.0.0.1",
        port=0,
        authenticator=None,
        authorizer=Authorizer(allow_anonymous=True),
    )
    with server:
        host, port = server.address
        conn = http.client.HTTPConnection(host, port, timeout=5)
        # keep-alive: two requests on one connection, like client-go's transport
        for _ in range(2):
            conn.request("GET", HPA_PATH + "?labelSelector=workload%3Dweb")
            response = conn.getresponse()
            assert response.status == 200
            assert json.loads(response.read())["items"][0]["value"] == "4"
        conn.request("POST", HPA_PATH, body=b"{}")
        response = conn.getresponse()
        assert response.status == 405
        response.read()
        conn.close()


def test_garbage_never_takes_the_server_down(pki):
    import socket

    with make_server(pki, allow_anonymous=True) as server:
        host, port = server.address
        for junk in (b"\x00\x01garbage\r\n\r\n", b"GET / HTTP/1.1\r\n" + b"X" * 70000):
            with socket.create_connection((host, port), timeout=5) as raw:
                try:
                    raw.sendall(junk)
                    raw.shutdown(socket.SHUT_WR)
                    while raw.recv(4096):
                        pass
                except ConnectionResetError:
                    pass  # the server dropped the connection: what it should do
        deadline = time.monotonic() + 2
        while server.handshake_failures < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.handshake_failures >= 2
        context = pki.client_context()
        status, _, _ = request(server, context, HPA_PATH + "?labelSelector=%ZZ%%")
        assert status == 400
        status, _, _ = request(server, context, HPA_PATH)
        assert status == 200
