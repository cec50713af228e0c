"""Delegated authentication/authorization for the metrics API: TokenReview, SubjectAccessReview
(small TTL caches) and the extension-apiserver-authentication ConfigMap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import cachetools
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from scaler.apiauth import AuthenticationConfig, Authenticator, RequestAttributes, UserInfo
from scaler.kube.api import DEFAULT_REQUEST_TIMEOUT_SECONDS, TRANSPORT_ERRORS, as_dict

log = logging.getLogger(__name__)


class DelegatedTokenReviewer:
    """`TokenReview` (authentication.k8s.io/v1) with a TTL cache of answers."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        cache_ttl_seconds: float = 10.0,
        audiences: tuple[str, ...] = (),
        timer: Callable[[], float] = time.monotonic,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._api = k8s.CustomObjectsApi(api_client)
        self._request_timeout = request_timeout_seconds
        self._audiences = audiences
        self._cache: cachetools.TTLCache[str, UserInfo | None] = cachetools.TTLCache(
            maxsize=4096, ttl=cache_ttl_seconds, timer=timer
        )
        self._lock = threading.Lock()

    def review(self, token: str) -> UserInfo | None:
        with self._lock:
            if token in self._cache:
                return self._cache[token]
        spec: dict[str, Any] = {"token": token}
        if self._audiences:
            spec["audiences"] = list(self._audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        result = as_dict(
            self._api.create_cluster_custom_object(
                "authentication.k8s.io",
                "v1",
                "tokenreviews",
                body,
                _request_timeout=self._request_timeout,
            )
        )
        status = result.get("status") or {}
        user = None
        if status.get("authenticated"):
            info = status.get("user") or {}
            user = UserInfo(
                name=info.get("username", ""),
                groups=tuple(info.get("groups") or ()),
                extra={k: tuple(v) for k, v in (info.get("extra") or {}).items()},
                uid=info.get("uid", ""),
                via="token",
            )
        with self._lock:
            self._cache[token] = user
        return user


class DelegatedAccessReviewer:
    """`SubjectAccessReview` (authorization.k8s.io/v1) with a TTL cache of decisions."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        cache_ttl_seconds: float = 10.0,
        timer: Callable[[], float] = time.monotonic,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self._api = k8s.CustomObjectsApi(api_client)
        self._request_timeout = request_timeout_seconds
        self._cache: cachetools.TTLCache[tuple[Any, ...], bool] = cachetools.TTLCache(
            maxsize=4096, ttl=cache_ttl_seconds, timer=timer
        )
        self._lock = threading.Lock()

    def allowed(self, user: UserInfo, attributes: RequestAttributes) -> bool:
        key = (user.name, user.groups, user.uid, tuple(sorted(user.extra.items())), attributes)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        if attributes.resource_request:
            spec["resourceAttributes"] = {
                "namespace": attributes.namespace,
                "verb": attributes.verb,
                "group": attributes.api_group,
                "version": attributes.api_version,
                "resource": attributes.resource,
                **({"name": attributes.name} if attributes.name else {}),
            }
        else:
            spec["nonResourceAttributes"] = {"path": attributes.path, "verb": attributes.verb}
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        result = as_dict(
            self._api.create_cluster_custom_object(
                "authorization.k8s.io",
                "v1",
                "subjectaccessreviews",
                body,
                _request_timeout=self._request_timeout,
            )
        )
        allowed = bool((result.get("status") or {}).get("allowed"))
        with self._lock:
            self._cache[key] = allowed
        return allowed


class AuthenticationConfigRefresher:
    """Re-reads `extension-apiserver-authentication` so CA rotations need no restart.

    A changed, valid ConfigMap swaps the authenticator's trust and calls `on_change`
    (the TLS context rebuilds its client-CA list); an invalid one keeps the old trust.
    """

    def __init__(
        self,
        core_api: k8s.CoreV1Api,
        authenticator: Authenticator,
        *,
        on_change: Callable[[], None] = lambda: None,
        interval_seconds: float = 60.0,
        stop: threading.Event | None = None,
    ) -> None:
        self._core = core_api
        self._authenticator = authenticator
        self._on_change = on_change
        self._interval = interval_seconds
        self._stop = stop or threading.Event()

    def refresh_once(self) -> bool:
        """True when new trust was installed; ValueError/ApiException propagate."""
        config = AuthenticationConfig.from_config_map(load_authentication_config_map(self._core))
        if config == self._authenticator.config:
            return False
        self._authenticator.update(config)
        self._on_change()
        log.info("front-proxy/client CA trust reloaded from extension-apiserver-authentication")
        return True

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.refresh_once()
            except (ApiException, ValueError, *TRANSPORT_ERRORS) as exc:
                log.warning("keeping the current authentication config: %s", exc)

    def stop(self) -> None:
        self._stop.set()


def load_authentication_config_map(core_api: k8s.CoreV1Api) -> dict[str, str]:
    """`kube-system/extension-apiserver-authentication` data (for `AuthenticationConfig`)."""
    config_map = core_api.read_namespaced_config_map(
        "extension-apiserver-authentication",
        "kube-system",
        _request_timeout=DEFAULT_REQUEST_TIMEOUT_SECONDS,
    )
    return dict(config_map.data or {})
