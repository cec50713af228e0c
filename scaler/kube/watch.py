"""`ScalerResourceWatcher`: list + watch of `carbonawarescalers.gridshift.io` into a
`ScalerResourceCache` (the shared reflector, `forecasts.platform.reflector`)."""

from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import client as k8s

from forecasts.platform.reflector import Reflector
from scaler.kube.api import CRD_GROUP, CRD_PLURAL, CRD_VERSION, DEFAULT_REQUEST_TIMEOUT_SECONDS
from scaler.kube.resources import ScalerResourceCache

log = logging.getLogger(__name__)


class ScalerResourceWatcher(Reflector):
    """List + watch CarbonAwareScalers into a cache; relist on 410 Gone and after errors.

    `errors`, `relists` and `bookmarks` feed `gridshift_kube_*` (`scaler.kube.runtime`)."""

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
        # A plain function so Watch finds the `watch` argument name and returns dicts.
        if namespace:

            def list_custom_object(**kw: Any) -> Any:
                return custom_api.list_namespaced_custom_object(
                    CRD_GROUP, CRD_VERSION, namespace, CRD_PLURAL, **kw
                )
        else:

            def list_custom_object(**kw: Any) -> Any:
                return custom_api.list_cluster_custom_object(
                    CRD_GROUP, CRD_VERSION, CRD_PLURAL, **kw
                )

        super().__init__(
            list_custom_object,
            cache,
            name="CarbonAwareScaler",
            log=log,
            request_timeout_seconds=request_timeout_seconds,
            watch_timeout_seconds=watch_timeout_seconds,
            retry_seconds=error_backoff_seconds,
            stop=stop,
        )
        self.cache = cache
