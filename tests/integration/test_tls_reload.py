"""Certificate rotation without restart on every TLS listener, over real sockets.

Aspects: `gridshift extender` as a process serves HTTPS from PEM files; after the files are
replaced (a new CA's leaf, written atomically as cert-manager does), new handshakes present
the new certificate while the same process (same PID, never exited) keeps serving and a
connection opened before the rotation keeps working; a half-written pair keeps the old
certificate; TLS 1.1 is refused before and after. The KEDA gRPC listener (`scaler.keda`)
with TLS refuses a plaintext client, serves a TLS client, refuses a client without a
certificate when a client CA is set (mTLS, KEDA's `tlsClientCert`/`tlsClientKey`), picks up
rotated server files without restart, and refuses TLS 1.1. Both export certificate
reloads, failed reloads and the served certificate's expiry as metrics.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import trustme
from cryptography import x509
from prometheus_client import CollectorRegistry

from config.settings import KedaSettings, Settings
from config.wiring import build_keda_server, start_scaler_services
from forecasts.platform.tls import write_atomically
from forecasts.time import FrozenClock
from scaler.keda import KedaScalerServer
from scaler.keda_pb import externalscaler_pb2 as pb
from scaler.keda_pb import externalscaler_pb2_grpc as pb_grpc
from tests.apiserver import FakeApiServer
from tests.integration.prom_fixture import free_port
from tests.snapshots import TAKEN_AT, sample_holder

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


def issue(ca: trustme.CA, cert_file: Path, key_file: Path) -> bytes:
    """Write a fresh 127.0.0.1 leaf of `ca` to the files; return its DER."""
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    write_atomically(key_file, leaf.private_key_pem.bytes())
    write_atomically(cert_file, b"".join(b.bytes() for b in leaf.cert_chain_pems))
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


def client_context(*cas: trustme.CA) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for ca in cas:
        ca.configure_trust(context)
    return context


def peer_certificate(port: int, context: ssl.SSLContext) -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def tls_1_1_refused(port: int, ca: trustme.CA) -> None:
    old = client_context(ca)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    with (
        pytest.raises((ssl.SSLError, ConnectionResetError)),
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        old.wrap_socket(raw, server_hostname="127.0.0.1"),
    ):
        pass


def eventually(check: Callable[[], bool], *, timeout_s: float = 10.0) -> float:
    """Seconds until `check()` held."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, "condition never held"
        time.sleep(0.05)
    return time.monotonic() - start


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_extender_process_picks_up_rotated_certificate(tmp_path: Path) -> None:
    first_ca, second_ca = trustme.CA(), trustme.CA()
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    first = issue(first_ca, cert_file, key_file)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRIDSHIFT_")}
    with FakeApiServer() as api:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(api.kubeconfig())
        env.update(
            KUBECONFIG=str(kubeconfig),
            GRIDSHIFT_CARBON__UK__ENABLED="false",
            GRIDSHIFT_EXTENDER__TLS_RELOAD_CHECK_INTERVAL_SECONDS="0.1",
        )
        command = [sys.executable, "-m", "config", "extender", "--listen", f"127.0.0.1:{port}"]
        command += ["--tls-cert", str(cert_file), "--tls-key", str(key_file)]
        log = tmp_path / "extender.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out)
        try:
            both = client_context(first_ca, second_ca)
            with httpx.Client(verify=both, timeout=5) as keepalive:

                def healthy() -> bool:
                    assert proc.poll() is None, log.read_text()[-2000:]
                    try:
                        return keepalive.get(f"https://127.0.0.1:{port}/healthz").is_success
                    except httpx.TransportError:
                        return False

                eventually(healthy, timeout_s=30)
                assert peer_certificate(port, both) == first
                tls_1_1_refused(port, first_ca)

                second = issue(second_ca, cert_file, key_file)
                seconds = eventually(lambda: peer_certificate(port, both) == second)
                # only the new CA is needed from now on; the old connection still serves
                assert peer_certificate(port, client_context(second_ca)) == second
                assert keepalive.get(f"https://127.0.0.1:{port}/healthz").is_success
                tls_1_1_refused(port, second_ca)

                write_atomically(cert_file, b"-----BEGIN CERTIFICATE-----\ntorn\n")
                time.sleep(0.3)  # a bad rotation keeps the last good certificate
                assert peer_certificate(port, both) == second
                assert proc.poll() is None  # never restarted: the same process throughout
                metrics = keepalive.get(f"https://127.0.0.1:{port}/metrics").text
                assert 'gridshift_tls_certificate_reloads_total{listener="extender"} 1.0' in metrics
                assert (
                    'gridshift_tls_certificate_reload_failures_total{listener="extender"} 1.0'
                    in metrics
                )
                expiry = x509.load_der_x509_certificate(second).not_valid_after_utc.timestamp()
                served = re.search(
                    r"gridshift_tls_certificate_expiry_timestamp_seconds"
                    r'\{listener="extender"\} (\S+)',
                    metrics,
                )
                assert served is not None
                assert float(served.group(1)) == expiry
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
    text = log.read_text()
    assert proc.returncode == 0, text[-2000:]
    assert "reloaded serving certificate" in text
    assert "reload failed, keeping the current one" in text
    print(f"extender: rotated certificate served after {seconds:.2f} s (check interval 0.1 s)")


# ---------------------------------------------------------------------------- KEDA gRPC
def keda_server(tmp_path: Path, **tls: Path) -> KedaScalerServer:
    settings = KedaSettings(listen="127.0.0.1:0", tls_reload_check_interval_seconds=0.1, **tls)
    return build_keda_server(settings, holder=sample_holder(), clock=FrozenClock(TAKEN_AT))


def spec_call(port: int, credentials: grpc.ChannelCredentials | None) -> grpc.Channel:
    """A channel that has answered one GetMetricSpec (raises grpc.RpcError otherwise)."""
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.insecure_channel(target)
        if credentials is None
        else grpc.secure_channel(
            target, credentials, options=[("grpc.ssl_target_name_override", "localhost")]
        )
    )
    stub = pb_grpc.ExternalScalerStub(channel)
    ref = pb.ScaledObjectRef(name="web", namespace="shop")
    try:
        assert stub.GetMetricSpec(ref, timeout=5).metricSpecs[0].targetSize == 1
    except BaseException:
        channel.close()
        raise
    return channel


def refused(port: int, credentials: grpc.ChannelCredentials | None) -> None:
    with pytest.raises(grpc.RpcError) as err:
        spec_call(port, credentials).close()
    assert err.value.code() is grpc.StatusCode.UNAVAILABLE


def client_files(ca: trustme.CA, tmp_path: Path, name: str) -> tuple[bytes, bytes]:
    leaf = ca.issue_cert(f"{name}.keda.svc", common_name=name)
    return leaf.private_key_pem.bytes(), b"".join(b.bytes() for b in leaf.cert_chain_pems)


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_keda_grpc_mutual_tls_and_rotation(tmp_path: Path) -> None:
    first_ca, second_ca, client_ca, rogue_ca = (trustme.CA() for _ in range(4))
    cert_file, key_file, ca_file = tmp_path / "tls.crt", tmp_path / "tls.key", tmp_path / "ca.crt"
    first = issue(first_ca, cert_file, key_file)
    client_ca.cert_pem.write_to_path(str(ca_file))
    key, chain = client_files(client_ca, tmp_path, "keda-operator")
    rogue_key, rogue_chain = client_files(rogue_ca, tmp_path, "keda-operator")

    def creds(ca: trustme.CA, *, key: bytes | None = key, chain: bytes | None = chain) -> Any:
        return grpc.ssl_channel_credentials(ca.cert_pem.bytes(), key, chain)

    server = keda_server(
        tmp_path, tls_cert_file=cert_file, tls_key_file=key_file, tls_client_ca_file=ca_file
    )
    with server:
        assert server.secure
        kept = spec_call(server.port, creds(first_ca))  # mTLS: served
        refused(server.port, None)  # plaintext
        refused(server.port, creds(first_ca, key=None, chain=None))  # no client certificate
        refused(server.port, creds(first_ca, key=rogue_key, chain=rogue_chain))  # wrong CA
        refused(server.port, creds(second_ca))  # the server is not (yet) the second CA's

        mutual = client_context(first_ca, second_ca)
        mutual.load_cert_chain(write_pem(tmp_path / "client.pem", key + chain))
        mutual.set_alpn_protocols(["h2"])
        assert peer_certificate(server.port, mutual) == first
        tls_1_1_refused(server.port, first_ca)

        second = issue(second_ca, cert_file, key_file)
        seconds = eventually(lambda: peer_certificate(server.port, mutual) == second)
        spec_call(server.port, creds(second_ca)).close()  # a new channel, only the new CA
        refused(server.port, creds(first_ca))
        assert server.tls_stats is not None
        assert server.tls_stats.reloads == 1
        stub = pb_grpc.ExternalScalerStub(kept)  # the channel from before still answers
        assert stub.GetMetricSpec(pb.ScaledObjectRef(name="web", namespace="shop"), timeout=5)
        kept.close()
    print(f"KEDA gRPC: rotated certificate served after {seconds:.2f} s (check interval 0.1 s)")


def test_keda_grpc_tls_without_client_ca_serves_any_tls_client(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert_file, key_file = tmp_path / "tls.crt", tmp_path / "tls.key"
    der = issue(ca, cert_file, key_file)
    settings = Settings.model_validate(
        {
            "metrics_api": {"enabled": False},
            "keda": {
                "listen": "127.0.0.1:0",
                "tls_cert_file": str(cert_file),
                "tls_key_file": str(key_file),
            },
        }
    )
    registry = CollectorRegistry()
    with start_scaler_services(
        settings, holder=sample_holder(), clock=FrozenClock(TAKEN_AT), registry=registry
    ) as services:
        assert services.keda is not None
        assert "KEDA external scaler (gRPC, TLS)" in services.describe()[0]
        spec_call(services.keda.port, grpc.ssl_channel_credentials(ca.cert_pem.bytes())).close()
        refused(services.keda.port, None)
    expiry = x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()
    labels = {"listener": "keda"}
    metric = "gridshift_tls_certificate_expiry_timestamp_seconds"
    assert registry.get_sample_value(metric, labels) == expiry
    assert registry.get_sample_value("gridshift_tls_certificate_reloads_total", labels) == 0


def write_pem(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
