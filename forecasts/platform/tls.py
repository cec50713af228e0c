"""Serving certificates re-read from files without a restart, for every TLS listener.

Shared by the metrics API (`scaler.metrics_api`), the KEDA gRPC scaler (`scaler.keda`) and
the extender (`extender.server`); it lives here because scaler and extender never import
each other.

* `FileReloader[T]`: builds a value (an `ssl.SSLContext`, a gRPC certificate configuration)
  from files and rebuilds it when any file's (mtime, size, inode) changes or an extra input
  does, checking at most every `check_interval_seconds`. A failed rebuild (a half-written pair,
  a key that does not match) keeps the previous value and is logged and counted: a bad
  rotation never takes a listener down.
* `ReloadingTlsContext`: the `ssl.SSLContext` flavour, TLS 1.2 or later only. Listeners that
  wrap each accepted socket themselves call `current()`; listeners that fix one context when
  they bind (asyncio/uvicorn) use `listener_context()`, whose SNI callback (OpenSSL runs it
  for every ClientHello, with or without a server name) swaps in the current context, so
  each new handshake presents the newest certificate.
* `TlsCollector`: per listener, reloads and failed reloads (counters) and the served
  certificate's expiry (`gridshift_tls_certificate_expiry_timestamp_seconds`, for alerts
  when rotation stopped working).
* `read_pem_pair`: a certificate chain and its key as PEM bytes, checked to belong together
  (for listeners that take bytes, e.g. gRPC).
* `write_atomically`: what a certificate rotator should do (tests use it too).
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "FileReloader",
    "ReloadStats",
    "ReloadingTlsContext",
    "TlsCollector",
    "not_after_epoch_s",
    "read_pem_pair",
    "write_atomically",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_RELOAD_ERRORS = (OSError, ssl.SSLError, ValueError, RuntimeError)


@dataclass(frozen=True, slots=True)
class _FileStamp:
    mtime_ns: int
    size: int
    inode: int


def _stamp(path: Path) -> _FileStamp:
    st = os.stat(path)
    return _FileStamp(st.st_mtime_ns, st.st_size, st.st_ino)


class FileReloader(Generic[T]):
    """`build()` re-run when `files` (or `extra()`) change; the first build fails loudly."""

    def __init__(
        self,
        *,
        files: Sequence[Path],
        build: Callable[[str], T],
        extra: Callable[[], str] = lambda: "",
        check_interval_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        what: str = "serving certificate",
    ) -> None:
        self._files = tuple(Path(f) for f in files)
        self._build = build
        self._extra = extra
        self._interval = check_interval_seconds
        self._monotonic = monotonic
        self._what = what
        self._lock = threading.Lock()
        self._stamps = tuple(_stamp(f) for f in self._files)
        self._extra_value = extra()
        self._value = build(self._extra_value)  # fails loudly at start-up
        self._checked_at = monotonic()
        self.reloads = 0
        self.reload_failures = 0

    def invalidate(self) -> None:
        """Force a change check on the next `current()` (e.g. after a CA update)."""
        with self._lock:
            self._checked_at = float("-inf")

    def current(self) -> T:
        now = self._monotonic()
        if now - self._checked_at < self._interval:
            return self._value
        with self._lock:
            if now - self._checked_at < self._interval:
                return self._value
            self._checked_at = now
            try:
                stamps = tuple(_stamp(f) for f in self._files)
            except OSError as exc:
                log.warning("%s files unreadable, keeping the current one: %s", self._what, exc)
                return self._value
            extra = self._extra()
            if stamps == self._stamps and extra == self._extra_value:
                return self._value
            try:
                value = self._build(extra)
            except _RELOAD_ERRORS as exc:
                self.reload_failures += 1
                log.warning("%s reload failed, keeping the current one: %s", self._what, exc)
                return self._value
            self._value, self._stamps, self._extra_value = value, stamps, extra
            self.reloads += 1
            log.info("reloaded %s from %s", self._what, ", ".join(map(str, self._files)))
            return self._value


@dataclass(frozen=True, slots=True)
class _Served:
    context: ssl.SSLContext
    not_after_epoch_s: float


class ReloadingTlsContext:
    """An `ssl.SSLContext` (TLS 1.2+) rebuilt when the cert/key files or the client CAs change.

    With client CAs, client certificates are *requested*, not required, and must chain to one
    of them when sent (the metrics API authenticates per request)."""

    def __init__(
        self,
        *,
        cert_file: Path,
        key_file: Path,
        client_ca_pem: Callable[[], str] = lambda: "",
        check_interval_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        alpn_protocols: Sequence[str] = ("http/1.1",),
    ) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self._client_ca_pem = client_ca_pem
        self._alpn = list(alpn_protocols)
        self._reloader = FileReloader(
            files=(self.cert_file, self.key_file),
            build=self._build,
            extra=client_ca_pem,
            check_interval_seconds=check_interval_seconds,
            monotonic=monotonic,
        )

    def _build(self, ca_pem: str) -> _Served:
        return _Served(self._context(ca_pem), not_after_epoch_s(self.cert_file.read_bytes()))

    def _context(self, ca_pem: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        if ca_pem.strip():
            context.load_verify_locations(cadata=ca_pem)
            context.verify_mode = ssl.CERT_OPTIONAL
        if self._alpn:
            context.set_alpn_protocols(self._alpn)
        return context

    @property
    def reloads(self) -> int:
        return self._reloader.reloads

    @property
    def reload_failures(self) -> int:
        return self._reloader.reload_failures

    @property
    def not_after_epoch_s(self) -> float:
        return self._reloader.current().not_after_epoch_s

    def invalidate(self) -> None:
        self._reloader.invalidate()

    def current(self) -> ssl.SSLContext:
        return self._reloader.current().context

    def listener_context(self) -> ssl.SSLContext:
        """A context to bind once: each handshake switches to `current()` (SNI callback).
        OpenSSL keeps the verify mode of the context bound first, so the front one asks for
        client certificates whenever client CAs are configured."""
        front = self._context(self._client_ca_pem())

        def switch(
            conn: ssl.SSLSocket | ssl.SSLObject, server_name: str | None, _: ssl.SSLContext
        ) -> None:
            conn.context = self.current()

        front.sni_callback = switch
        return front


def not_after_epoch_s(chain_pem: bytes) -> float:
    """When the first (leaf) certificate of a PEM chain expires, in epoch seconds."""
    try:
        leaf = x509.load_pem_x509_certificates(chain_pem)[0]
    except ValueError as exc:
        raise ValueError(f"not a PEM certificate chain ({exc})") from None
    return leaf.not_valid_after_utc.timestamp()


class ReloadStats(Protocol):
    """What a reloading listener reports (`ReloadingTlsContext`, the KEDA credentials)."""

    @property
    def reloads(self) -> int: ...

    @property
    def reload_failures(self) -> int: ...

    @property
    def not_after_epoch_s(self) -> float: ...


class TlsCollector(Collector):
    """Certificate reloads, failed reloads and expiry per TLS listener."""

    def __init__(self, listeners: Mapping[str, ReloadStats]) -> None:
        self._listeners = dict(listeners)

    def collect(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "gridshift_tls_certificate_reloads",
            "Serving certificates re-read after their files changed.",
            labels=["listener"],
        )
        failures = CounterMetricFamily(
            "gridshift_tls_certificate_reload_failures",
            "Changed certificate files that could not be used (the previous pair is kept).",
            labels=["listener"],
        )
        expiry = GaugeMetricFamily(
            "gridshift_tls_certificate_expiry_timestamp_seconds",
            "When the certificate now served expires (epoch seconds).",
            labels=["listener"],
        )
        for name, stats in sorted(self._listeners.items()):
            reloads.add_metric([name], float(stats.reloads))
            failures.add_metric([name], float(stats.reload_failures))
            expiry.add_metric([name], stats.not_after_epoch_s)
        yield reloads
        yield failures
        yield expiry


def read_pem_pair(cert_file: Path, key_file: Path) -> tuple[bytes, bytes]:
    """(chain PEM, key PEM); `ValueError` names the file when unparsable or mismatched."""
    chain, key = Path(cert_file).read_bytes(), Path(key_file).read_bytes()
    try:
        leaf = x509.load_pem_x509_certificates(chain)[0]
    except ValueError as exc:
        raise ValueError(f"{cert_file}: not a PEM certificate chain ({exc})") from None
    try:
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{key_file}: not an unencrypted PEM private key ({exc})") from None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    if leaf.public_key().public_bytes(
        serialization.Encoding.DER, spki
    ) != private.public_key().public_bytes(serialization.Encoding.DER, spki):
        raise ValueError(f"{key_file}: private key does not match the certificate in {cert_file}")
    return chain, key


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` in one rename, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
