"""TLS serving and request authentication for gridshift's aggregated API server.

Owns what k8s.io/apiserver does in Go for an extension API server (reference §2.7):

* `ReloadingTlsContext` (re-exported from `forecasts.platform.tls`, shared with the other
  TLS listeners): the serving certificate and key are re-read when either file changes, so
  cert-manager rotations need no restart. Client certificates are *requested*, not
  required, and must chain to a trusted CA when sent.
* `AuthenticationConfig`: the `kube-system/extension-apiserver-authentication` ConfigMap
  (or the same data from files): front-proxy CA and allowed names, header names, client CA.
* `Authenticator`: `X-Remote-*` headers are trusted only when the TLS client certificate was
  issued by the requestheader CA and its common name is allowed (any name when the list is
  empty); otherwise they are ignored. Then a client certificate from the client CA, then a
  bearer token through an optional `TokenReviewer` (delegated TokenReview lives in
  `scaler.kube`).
* `Authorizer`: health paths and `system:masters` always pass; then an optional
  `AccessReviewer` (delegated SubjectAccessReview), else any authenticated user.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import cachetools
from cryptography import x509
from cryptography.x509.oid import NameOID

from forecasts.platform.tls import ReloadingTlsContext, write_atomically

__all__ = [
    "AccessReviewer",
    "AuthenticationConfig",
    "Authenticator",
    "Authorizer",
    "ReloadingTlsContext",
    "RequestAttributes",
    "RequestHeaderConfig",
    "TokenReviewer",
    "UserInfo",
    "write_atomically",
]

log = logging.getLogger(__name__)

ALWAYS_ALLOWED_PATHS = frozenset({"/healthz", "/readyz", "/livez"})
ALWAYS_ALLOWED_GROUPS = frozenset({"system:masters"})
AUTHENTICATED_GROUP = "system:authenticated"


@dataclass(frozen=True, slots=True)
class UserInfo:
    """Who made a request; `via` says which authenticator vouched for it."""

    name: str
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    uid: str = ""
    via: str = ""


@dataclass(frozen=True, slots=True)
class RequestAttributes:
    """What an authorizer decides on: a resource request or a non-resource path."""

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    namespace: str = ""
    name: str = ""


class TokenReviewer(Protocol):
    def review(self, token: str) -> UserInfo | None: ...


class AccessReviewer(Protocol):
    def allowed(self, user: UserInfo, attributes: RequestAttributes) -> bool: ...


def _json_list(data: Mapping[str, str], key: str, default: Sequence[str]) -> tuple[str, ...]:
    raw = data.get(key)
    if raw is None or raw == "":
        return tuple(default)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{key}: expected a JSON list of strings, got {raw!r}") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: expected a JSON list of strings, got {raw!r}")
    return tuple(value)


def _load_pem_certificates(pem: str, *, what: str) -> tuple[x509.Certificate, ...]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise ValueError(f"{what}: not a PEM certificate bundle ({exc})") from exc
    return tuple(certs)


@dataclass(frozen=True, slots=True)
class RequestHeaderConfig:
    """Front-proxy (aggregator) trust: the CA its client cert must chain to, and more."""

    client_ca_pem: str
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_headers_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    uid_headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _load_pem_certificates(self.client_ca_pem, what="requestheader-client-ca-file")
        if not self.username_headers:
            raise ValueError("requestheader-username-headers: at least one header is needed")


@dataclass(frozen=True, slots=True)
class AuthenticationConfig:
    """What `extension-apiserver-authentication` holds; either part may be absent."""

    requestheader: RequestHeaderConfig | None = None
    client_ca_pem: str | None = None

    @classmethod
    def from_config_map(cls, data: Mapping[str, str]) -> AuthenticationConfig:
        """Parse the ConfigMap's `data` (keys as kube-apiserver writes them)."""
        requestheader = None
        if data.get("requestheader-client-ca-file"):
            requestheader = RequestHeaderConfig(
                client_ca_pem=data["requestheader-client-ca-file"],
                allowed_names=_json_list(data, "requestheader-allowed-names", ()),
                username_headers=_json_list(
                    data, "requestheader-username-headers", ("X-Remote-User",)
                ),
                group_headers=_json_list(data, "requestheader-group-headers", ("X-Remote-Group",)),
                extra_headers_prefixes=_json_list(
                    data, "requestheader-extra-headers-prefix", ("X-Remote-Extra-",)
                ),
                uid_headers=_json_list(data, "requestheader-uid-headers", ()),
            )
        client_ca = data.get("client-ca-file") or None
        if client_ca is not None:
            _load_pem_certificates(client_ca, what="client-ca-file")
        return cls(requestheader=requestheader, client_ca_pem=client_ca)

    @classmethod
    def from_files(
        cls,
        *,
        requestheader_client_ca_file: Path | None = None,
        requestheader_allowed_names: Sequence[str] = (),
        client_ca_file: Path | None = None,
    ) -> AuthenticationConfig:
        requestheader = None
        if requestheader_client_ca_file is not None:
            requestheader = RequestHeaderConfig(
                client_ca_pem=Path(requestheader_client_ca_file).read_text(),
                allowed_names=tuple(requestheader_allowed_names),
            )
        client_ca = Path(client_ca_file).read_text() if client_ca_file is not None else None
        return cls(requestheader=requestheader, client_ca_pem=client_ca)

    def trusted_ca_pem(self) -> str:
        """Every CA a client certificate may chain to (for the TLS handshake)."""
        parts = [self.requestheader.client_ca_pem] if self.requestheader else []
        if self.client_ca_pem:
            parts.append(self.client_ca_pem)
        return "\n".join(parts)


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else ""


def _issued_by_any(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> bool:
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except Exception:  # InvalidSignature, or a key type that cannot have signed it
            continue
        return True
    return False


def _header_values(headers: Mapping[str, Sequence[str]], name: str) -> list[str]:
    return list(headers.get(name.lower(), ()))


class Authenticator:
    """Maps (peer certificate, headers) to a `UserInfo`, or None for anonymous."""

    def __init__(
        self, config: AuthenticationConfig, *, token_reviewer: TokenReviewer | None = None
    ) -> None:
        self._config = config
        self._token_reviewer = token_reviewer
        self._requestheader_cas: tuple[x509.Certificate, ...] = ()
        self._client_cas: tuple[x509.Certificate, ...] = ()
        # DER -> (issued by requestheader CA, issued by client CA, CN, O's): the handshake
        # already verified the chain, so the per-request signature checks can be cached.
        self._classified: cachetools.LRUCache[bytes, tuple[bool, bool, str, tuple[str, ...]]]
        self._classified = cachetools.LRUCache(maxsize=1024)
        self._classify_lock = threading.Lock()
        self.update(config)

    @property
    def config(self) -> AuthenticationConfig:
        return self._config

    def update(self, config: AuthenticationConfig) -> None:
        """Swap in new trust (e.g. the ConfigMap changed); in-flight requests keep the old."""
        rh = config.requestheader
        self._requestheader_cas = (
            _load_pem_certificates(rh.client_ca_pem, what="requestheader CA") if rh else ()
        )
        self._client_cas = (
            _load_pem_certificates(config.client_ca_pem, what="client CA")
            if config.client_ca_pem
            else ()
        )
        self._config = config
        with self._classify_lock:
            self._classified.clear()

    def _classify(self, der: bytes) -> tuple[bool, bool, str, tuple[str, ...]]:
        with self._classify_lock:
            cached = self._classified.get(der)
        if cached is not None:
            return cached
        leaf = x509.load_der_x509_certificate(der)
        orgs = leaf.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        result = (
            _issued_by_any(leaf, self._requestheader_cas),
            _issued_by_any(leaf, self._client_cas),
            _common_name(leaf),
            tuple(str(o.value) for o in orgs),
        )
        with self._classify_lock:
            self._classified[der] = result
        return result

    def authenticate(
        self, *, peer_certificate_der: bytes | None, headers: Mapping[str, Sequence[str]]
    ) -> UserInfo | None:
        """`headers` maps lower-case names to every value sent (repeated headers kept)."""
        config = self._config
        if peer_certificate_der:
            by_requestheader_ca, by_client_ca, common_name, orgs = self._classify(
                peer_certificate_der
            )
            rh = config.requestheader
            if rh is not None and by_requestheader_ca:
                user = self._from_front_proxy(rh, common_name, headers)
                if user is not None:
                    return user
            if by_client_ca:
                return UserInfo(common_name, (*orgs, AUTHENTICATED_GROUP), via="x509")
        for value in _header_values(headers, "authorization"):
            scheme, _, token = value.partition(" ")
            if scheme.lower() == "bearer" and token.strip() and self._token_reviewer is not None:
                user = self._token_reviewer.review(token.strip())
                if user is not None:
                    return user
        return None

    @staticmethod
    def _from_front_proxy(
        rh: RequestHeaderConfig, common_name: str, headers: Mapping[str, Sequence[str]]
    ) -> UserInfo | None:
        if rh.allowed_names and common_name not in rh.allowed_names:
            log.debug("front-proxy CN %r not allowed; ignoring X-Remote-* headers", common_name)
            return None
        name = next((v for h in rh.username_headers for v in _header_values(headers, h) if v), "")
        if not name:
            return None
        groups = [v for h in rh.group_headers for v in _header_values(headers, h) if v]
        extra: dict[str, tuple[str, ...]] = {}
        for prefix in rh.extra_headers_prefixes:
            lower = prefix.lower()
            for key, values in headers.items():
                if key.startswith(lower) and len(key) > len(lower):
                    extra_key = _unescape_extra_key(key[len(lower) :])
                    extra[extra_key] = extra.get(extra_key, ()) + tuple(values)
        uid = next((v for h in rh.uid_headers for v in _header_values(headers, h) if v), "")
        if AUTHENTICATED_GROUP not in groups:
            groups.append(AUTHENTICATED_GROUP)
        return UserInfo(name, tuple(groups), extra, uid, via="front-proxy")


def _unescape_extra_key(key: str) -> str:
    from urllib.parse import unquote

    return unquote(key).lower()


class Authorizer:
    """Decides per request. Without an `AccessReviewer`, any authenticated user passes."""

    def __init__(
        self, *, access_reviewer: AccessReviewer | None = None, allow_anonymous: bool = False
    ) -> None:
        self._access_reviewer = access_reviewer
        self._allow_anonymous = allow_anonymous

    @property
    def allow_anonymous(self) -> bool:
        return self._allow_anonymous

    def allowed(self, user: UserInfo | None, attributes: RequestAttributes) -> bool:
        if attributes.path in ALWAYS_ALLOWED_PATHS:
            return True
        if user is None:
            if not self._allow_anonymous:
                return False
            user = UserInfo("system:anonymous", ("system:unauthenticated",), via="anonymous")
        if ALWAYS_ALLOWED_GROUPS.intersection(user.groups):
            return True
        if self._access_reviewer is None:
            return user.via != "anonymous" or self._allow_anonymous
        return self._access_reviewer.allowed(user, attributes)
