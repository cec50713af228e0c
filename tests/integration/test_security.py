"""Security checks over real sockets and processes.

Aspects: the extender's TLS listener refuses a TLS 1.1 client and serves TLS 1.2; the
metrics API's TLS listener refuses a TLS 1.1 client and serves TLS 1.2+; in its
secure mode a caller without a front-proxy/client certificate gets 401; no secret (tokens
for every provider and Prometheus) ever appears in the output of `gridshift run` with DEBUG
logging while its dependencies fail, nor in `config show`; manifests run containers as
non-root (skips cleanly where there are none); the metrics API answers a huge declared body
with 413 without reading it and a bad Content-Length with 400, and keeps serving.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trustme
import yaml

from forecasts.time import FrozenClock
from scaler.apiauth import Authorizer
from scaler.metrics_api import ExternalMetricsApi, MetricsApiServer
from tests.integration.prom_fixture import free_port
from tests.integration.test_extender_http import running
from tests.integration.test_metrics_api_server import HPA_PATH, Pki, make_server, request
from tests.snapshots import TAKEN_AT, sample_holder

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

SECRETS = {
    "GRIDSHIFT_PROMETHEUS__BEARER_TOKEN": "s3cret-prometheus-bearer-token",
    "GRIDSHIFT_CARBON__ELECTRICITYMAPS__TOKEN": "s3cret-electricitymaps-token",
    "GRIDSHIFT_CARBON__WATTTIME__USERNAME": "gridshift-user",
    "GRIDSHIFT_CARBON__WATTTIME__PASSWORD": "s3cret-watttime-password",
}


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_refused_tls_1_2_served_and_unauthenticated_is_401(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    with make_server(pki) as server:
        host, port = server.address
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        pki.serving_ca.configure_trust(old)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            request(server, old, HPA_PATH)
        modern = pki.client_context()
        modern.minimum_version = ssl.TLSVersion.TLSv1_2
        modern.maximum_version = ssl.TLSVersion.TLSv1_2
        status, _, _ = request(server, modern, HPA_PATH)
        assert status == 401  # TLS 1.2 handshake fine; no client certificate: unauthenticated
        assert (host, port) == server.address


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_extender_tls_refuses_tls_1_1(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    gen = running(tls_cert=str(cert_file), tls_key=str(key_file))
    url = next(gen)
    host, port = url.removeprefix("https://").rsplit(":", 1)
    try:
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(old)
        old.set_ciphers("DEFAULT:@SECLEVEL=0")
        old.minimum_version = ssl.TLSVersion.TLSv1_1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        with (
            pytest.raises((ssl.SSLError, ConnectionResetError)),
            socket.create_connection((host, int(port)), timeout=5) as raw,
            old.wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass
        modern = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ca.configure_trust(modern)
        modern.minimum_version = modern.maximum_version = ssl.TLSVersion.TLSv1_2
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            modern.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.version() == "TLSv1.2"
    finally:
        gen.close()


def test_metrics_api_body_limit_413_and_bad_length_400() -> None:
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

        def raw(head: bytes) -> bytes:
            with socket.create_connection((host, port), timeout=5) as sock:
                sock.sendall(head)  # the declared body never comes: it must not be awaited
                answer = b""
                while chunk := sock.recv(65536):  # the refusal closes the connection
                    answer += chunk
                return answer

        big = raw(
            f"POST {HPA_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {10**10}\r\n\r\n".encode()
        )
        assert big.startswith(b"HTTP/1.1 413 "), big[:80]
        assert b"RequestEntityTooLarge" in big
        bad = raw(f"GET {HPA_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n".encode())
        assert bad.startswith(b"HTTP/1.1 400 "), bad[:80]
        conn = http.client.HTTPConnection(host, port, timeout=5)
        conn.request("GET", "/healthz")  # still serving
        assert conn.getresponse().status == 200
        conn.close()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}


def test_no_secret_in_any_output_with_debug_logging(tmp_path: Path) -> None:
    dead = free_port()  # nothing listens: every Prometheus call fails and is logged
    env = {
        **_clean_env(),
        **SECRETS,
        "GRIDSHIFT_PROMETHEUS__URL": f"http://127.0.0.1:{dead}",
        "GRIDSHIFT_CONFIG_DEBUG": "1",
    }
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "config",
                "run",
                "--log-level",
                "debug",
                "--listen",
                "127.0.0.1:0",
                "--tick-seconds",
                "0.2",
            ],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            time.sleep(6)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    show = subprocess.run(
        [sys.executable, "-m", "config", "config", "show"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    text = log.read_text() + show.stdout + show.stderr
    assert "DEBUG" in text or "debug" in text.lower()
    assert len(text) > 200  # it really ran and logged
    for name, value in SECRETS.items():
        if "USERNAME" in name:
            continue
        assert value not in text, f"{name} leaked into the output"


def test_manifests_run_as_non_root() -> None:
    # Kustomize patches are partial objects merged into a base that carries the context;
    # the rendered overlays are checked as a whole in tests/integration/test_kustomize_overlays.py.
    deploy = REPO / "deploy"
    patches = {
        (k.parent / patch).resolve()
        for k in deploy.rglob("kustomization.yaml")
        for patch in yaml.safe_load(k.read_text()).get("patchesStrategicMerge", [])
    }
    docs = []
    for path in sorted(deploy.rglob("*.yaml")):
        if path.resolve() in patches:
            continue
        docs += [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]
    pods = [
        d["spec"]["template"]["spec"]
        for d in docs
        if d.get("kind") in {"Deployment", "DaemonSet", "StatefulSet"}
    ]
    if not pods:
        pytest.skip("no workload manifests in deploy/")
    for spec in pods:
        pod_ctx = spec.get("securityContext") or {}
        for c in spec["containers"]:
            ctx = {**pod_ctx, **(c.get("securityContext") or {})}
            assert ctx.get("runAsNonRoot") is True, c["name"]
    dockerfile = REPO / "Dockerfile"
    if dockerfile.exists():
        users = [ln for ln in dockerfile.read_text().splitlines() if ln.startswith("USER ")]
        assert users, "Dockerfile sets no USER"
        assert users[-1].split()[1] not in {"root", "0"}
