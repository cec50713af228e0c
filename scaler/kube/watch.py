"""`ScalerResourceWatcher`: list + watch of `carbonawarescalers.gridshift.io` into a
`ScalerResourceCache`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3.exceptions
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException

from scaler.kube.api import (
    CRD_GROUP,
    CRD_PLURAL,
    CRD_VERSION,
    DEFAULT_REQUEST_TIMEOUT_SECONDS,
    GARBLED,
    as_dict,
)
from scaler.kube.resources import ScalerResourceCache

log = logging.getLogger(__name__)


class ScalerResourceWatcher:
    """List + watch CarbonAwareScalers into a cache; relist on 410 Gone and after errors."""

    def __init__(
        self,
        custom_api: k8s.CustomObjectsApi,
        cache: ScalerResourceCache,
        *,
        namespace: str | None = None,
        watch_timeout_seconds: int = 300,
        error_backoff_seconds: float = 2.0,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        stop: threading.Event | None = None,
    ) -> None:
        self._api = custom_api
        self._cache = cache
        self.cache = cache
        self._namespace = namespace
        self._timeout = watch_timeout_seconds
        self._request_timeout = request_timeout_seconds
        self.errors = 0  # failed list/watch requests (gridshift_kube_api_errors_total)
        self._backoff = error_backoff_seconds
        self._stop = stop or threading.Event()
        self._watch: k8s_watch.Watch | None = None
        self.resource_version = ""
        self.relists = 0
        self.bookmarks = 0

    def _list_call(self) -> Callable[..., Any]:
        namespace = self._namespace
        if namespace:
            return lambda **kw: self._api.list_namespaced_custom_object(
                CRD_GROUP, CRD_VERSION, namespace, CRD_PLURAL, **kw
            )
        return lambda **kw: self._api.list_cluster_custom_object(
            CRD_GROUP, CRD_VERSION, CRD_PLURAL, **kw
        )

    def list_once(self) -> str:
        result = as_dict(self._list_call()(_request_timeout=self._request_timeout))
        self._cache.replace_all(result.get("items") or [])
        self.resource_version = str(result["metadata"]["resourceVersion"])
        self.relists += 1
        return self.resource_version

    def watch_once(self) -> None:
        """One watch request from `resource_version`; raises ApiException(410) when expired."""
        self._watch = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        # A plain function so Watch finds the `watch` argument name and returns dicts.
        list_call = self._list_call()

        def list_custom_object(**kwargs: Any) -> Any:
            return list_call(**kwargs)

        try:
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                list_custom_object,
                resource_version=self.resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self._timeout,
                # the server ends the watch at timeout_seconds; a silent one past that hangs
                _request_timeout=(self._request_timeout, self._timeout + self._request_timeout),
            ):
                if not isinstance(event, dict) or not isinstance(event.get("raw_object"), dict):
                    # the client yields None for a line that is not JSON (a cut-off stream)
                    raise urllib3.exceptions.ProtocolError(f"undecodable watch event: {event!r}")
                obj = event["raw_object"]
                rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                if event["type"] == "BOOKMARK":
                    self.bookmarks += 1
                else:
                    self._cache.apply(event["type"], obj)
                if rv:
                    self.resource_version = rv
                if self._stop.is_set():
                    break
        finally:
            self._watch = None

    def run(self) -> None:
        """Loop until `stop` is set: list, then watch; relist on 410 and after errors."""
        need_list = True
        while not self._stop.is_set():
            try:
                if need_list:
                    self.list_once()
                    need_list = False
                self.watch_once()
            except ApiException as exc:
                if exc.status == 410:
                    log.info("watch expired (410 Gone), relisting")
                else:
                    self.errors += 1
                    log.warning("CarbonAwareScaler watch failed: %s %s", exc.status, exc.reason)
                    self._stop.wait(self._backoff)
                need_list = True
            except GARBLED as exc:
                # TypeError/KeyError/ValueError: an answer cut off or garbled on the way
                self.errors += 1
                log.warning("CarbonAwareScaler watch connection failed: %s", exc)
                need_list = True
                self._stop.wait(self._backoff)

    def stop(self) -> None:
        self._stop.set()
        watch = self._watch
        if watch is not None:
            watch.stop()  # type: ignore[no-untyped-call]
