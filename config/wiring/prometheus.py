"""Prometheus: the load source the scaler queries."""

from __future__ import annotations

import logging

import httpx

from config.settings import (
    PrometheusSettings,
)
from forecasts.platform.http import RetryPolicy
from forecasts.sources.prometheus import PrometheusLoadSource
from forecasts.time import Clock

log = logging.getLogger(__name__)


def build_prometheus_source(
    settings: PrometheusSettings,
    *,
    clock: Clock,
    retry: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
) -> PrometheusLoadSource:
    """The Prometheus `LoadSource` (history, instant queries) from the `prometheus` group.

    Close it (`.close()`) when done; it owns one `httpx.Client`."""
    return PrometheusLoadSource.connect(
        settings.connection(),
        clock=clock,
        retry=retry,
        max_points_per_request=settings.max_points_per_request,
        batch_size=settings.batch_size,
        short_gap_steps=settings.short_gap_steps,
        transport=transport,
    )
