"""TLS settings of the listeners and the shared certificate reloader, without sockets.

Aspects: KEDA TLS files come as a pair and a client CA needs them (errors name the fields);
the extender's reload interval is bounded; `read_pem_pair` names the file that is not PEM or
a key that does not match its certificate; `FileReloader` rebuilds only when a file changes,
at most once per interval, keeps the last good value when a rebuild fails, and follows a
Kubernetes Secret volume's update (kubelet swaps a `..data` symlink to a new folder);
`TlsCollector` exports reloads, failed reloads and the served certificate's expiry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from config.settings import ExtenderSettings, KedaSettings
from forecasts.platform.tls import (
    FileReloader,
    ReloadingTlsContext,
    TlsCollector,
    not_after_epoch_s,
    read_pem_pair,
    write_atomically,
)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"tls_cert_file": "a.crt"}, "must be set together", id="cert without key"),
        pytest.param({"tls_key_file": "a.key"}, "must be set together", id="key without cert"),
        pytest.param({"tls_client_ca_file": "ca.crt"}, "tls_client_ca_file needs", id="ca alone"),
        pytest.param(
            {"tls_reload_check_interval_seconds": 0}, "greater than 0", id="zero interval"
        ),
    ],
)
def test_keda_tls_settings_rejected(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        KedaSettings.model_validate(fields)


def test_keda_mutual_tls_settings_accepted() -> None:
    s = KedaSettings.model_validate(
        {"tls_cert_file": "a.crt", "tls_key_file": "a.key", "tls_client_ca_file": "ca.crt"}
    )
    assert s.tls_client_ca_file == Path("ca.crt")


def test_extender_reload_interval_bounded() -> None:
    with pytest.raises(ValidationError, match="tls_reload_check_interval_seconds"):
        ExtenderSettings(tls_reload_check_interval_seconds=-1)


def pair(tmp_path: Path, ca: trustme.CA) -> tuple[Path, Path]:
    leaf = ca.issue_cert("localhost")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_atomically(cert, leaf.cert_chain_pems[0].bytes())
    write_atomically(key, leaf.private_key_pem.bytes())
    return cert, key


def test_read_pem_pair_names_the_problem(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = pair(tmp_path, ca)
    chain, private = read_pem_pair(cert, key)
    assert chain.startswith(b"-----BEGIN CERTIFICATE-----")
    other = ca.issue_cert("other").private_key_pem.bytes()
    write_atomically(key, other)
    with pytest.raises(ValueError, match="does not match the certificate"):
        read_pem_pair(cert, key)
    write_atomically(key, private)
    write_atomically(cert, b"garbage")
    with pytest.raises(ValueError, match=r"tls\.crt: not a PEM certificate"):
        read_pem_pair(cert, key)


def test_file_reloader_rebuilds_on_change_only_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "value.txt"
    path.write_text("1")
    now = [0.0]

    def build(_: str) -> int:
        return int(path.read_text())  # ValueError on a torn write

    reloader = FileReloader(
        files=[path], build=build, check_interval_seconds=5.0, monotonic=lambda: now[0]
    )
    assert reloader.current() == 1
    write_atomically(path, b"2")
    assert reloader.current() == 1  # not yet: checked at most every 5 s
    now[0] = 5.0
    assert (reloader.current(), reloader.reloads) == (2, 1)
    now[0] = 10.0
    assert (reloader.current(), reloader.reloads) == (2, 1)  # unchanged files: no rebuild
    write_atomically(path, b"torn")
    now[0] = 15.0
    assert (reloader.current(), reloader.reload_failures) == (2, 1)
    path.unlink()
    now[0] = 20.0
    assert reloader.current() == 2  # unreadable: keep serving
    write_atomically(path, b"3")
    reloader.invalidate()
    assert reloader.current() == 3


def test_file_reloader_follows_a_secret_volume_symlink_swap(tmp_path: Path) -> None:
    mount = tmp_path / "tls"
    mount.mkdir()
    for version, value in (("..v1", "1"), ("..v2", "2")):
        (mount / version).mkdir()
        (mount / version / "tls.crt").write_text(value)
    (mount / "..data").symlink_to("..v1")
    (mount / "tls.crt").symlink_to("..data/tls.crt")
    reloader = FileReloader(
        files=[mount / "tls.crt"],
        build=lambda _: (mount / "tls.crt").read_text(),
        check_interval_seconds=0.0,
    )
    assert reloader.current() == "1"
    (mount / "..data_tmp").symlink_to("..v2")
    (mount / "..data_tmp").replace(mount / "..data")  # kubelet's atomic swap
    assert reloader.current() == "2"


def test_tls_collector_reports_reloads_failures_and_expiry(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert, key = pair(tmp_path, ca)
    tls = ReloadingTlsContext(cert_file=cert, key_file=key, check_interval_seconds=0.0)
    registry = CollectorRegistry()
    registry.register(TlsCollector({"metrics_api": tls}))
    labels = {"listener": "metrics_api"}

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, labels)

    first = not_after_epoch_s(cert.read_bytes())
    assert value("gridshift_tls_certificate_expiry_timestamp_seconds") == first
    assert value("gridshift_tls_certificate_reloads_total") == 0
    leaf = ca.issue_cert("localhost", not_after=datetime(2031, 1, 1, tzinfo=UTC))
    write_atomically(key, leaf.private_key_pem.bytes())
    write_atomically(cert, leaf.cert_chain_pems[0].bytes())
    assert (
        value("gridshift_tls_certificate_expiry_timestamp_seconds")
        == datetime(2031, 1, 1, tzinfo=UTC).timestamp()
    )
    assert value("gridshift_tls_certificate_reloads_total") == 1
    write_atomically(key, ca.issue_cert("other").private_key_pem.bytes())  # mismatched pair
    tls.current()
    assert value("gridshift_tls_certificate_reload_failures_total") == 1
