"""What the dashboard shows of a scheduler extender: its /metrics, polled in the background.

`summarise_extender_metrics(text)` turns the extender's Prometheus exposition into the figures
the dashboard's extender panel lists (requests and errors by verb, mean latency, decisions by
outcome, nodes, regions with fresh carbon). `ExtenderWatch` polls the URL on its own thread
and keeps the newest summary in memory; `view()` (what the status API calls) never touches
the network. Without a URL nothing is polled and the panel says "no extender configured".
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from forecasts.platform.errors import SourceError
from forecasts.platform.http import read_bounded
from forecasts.time import Clock

__all__ = ["ExtenderWatch", "summarise_extender_metrics"]

_MAX_METRICS_BYTES = 4 * 1024 * 1024  # an extender's /metrics is tens of KB


def summarise_extender_metrics(text: str) -> dict[str, float]:
    """Figures for the panel, named for people; raises ValueError on unparsable text."""
    requests: dict[str, float] = defaultdict(float)
    errors: dict[str, float] = defaultdict(float)
    latency_sum: dict[str, float] = defaultdict(float)
    latency_count: dict[str, float] = defaultdict(float)
    figures: dict[str, float] = {}
    fresh_regions = 0.0
    regions = 0.0
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises bare ValueError/TypeError/IndexError
        raise ValueError(f"extender /metrics is not Prometheus text: {exc}") from exc
    for fam in families:
        for s in fam.samples:
            verb = s.labels.get("verb", "")
            if s.name == "gridshift_extender_requests_total":
                requests[verb] += s.value
                if not s.labels.get("code", "").startswith("2"):
                    errors[verb] += s.value
            elif s.name == "gridshift_extender_request_duration_seconds_sum":
                latency_sum[verb] += s.value
            elif s.name == "gridshift_extender_request_duration_seconds_count":
                latency_count[verb] += s.value
            elif s.name == "gridshift_extender_decisions_total":
                figures[f"{verb} {s.labels.get('outcome', '?')} decisions"] = s.value
            elif s.name == "gridshift_extender_nodes":
                figures["nodes known"] = s.value
            elif s.name == "gridshift_extender_carbon_fresh":
                regions += 1
                fresh_regions += s.value
    for verb in sorted(requests):
        figures[f"{verb} requests"] = requests[verb]
        figures[f"{verb} errors"] = errors[verb]
    for verb in sorted(latency_count):
        if latency_count[verb] > 0:
            figures[f"{verb} mean latency s"] = latency_sum[verb] / latency_count[verb]
    if regions:
        figures["regions with fresh carbon"] = fresh_regions
        figures["regions"] = regions
    if not figures:
        raise ValueError("no gridshift_extender_* metrics at that URL")
    return dict(sorted(figures.items()))


class ExtenderWatch:
    """Polls an extender's /metrics every `interval_seconds` on a daemon thread."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.Client,
        clock: Clock,
        interval_seconds: float,
        logger: logging.Logger | None = None,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError(f"interval_seconds must be > 0, got {interval_seconds}")
        self.url = url
        self._client = client
        self._clock = clock
        self._interval_seconds = interval_seconds
        self._log = logger or logging.getLogger("gridshift.dashboard")
        self._state: Mapping[str, Any] = {
            "configured": True,
            "reachable": False,
            "url": url,
            "note": f"waiting for the first poll of {url}",
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def view(self) -> Mapping[str, Any]:
        return self._state

    def poll_once(self) -> None:
        polled_at = self._clock.now().isoformat().replace("+00:00", "Z")
        try:
            response, body = read_bounded(
                self._client,
                self._client.build_request("GET", self.url),
                source="extender",
                max_bytes=_MAX_METRICS_BYTES,
            )
            response.raise_for_status()
            figures = summarise_extender_metrics(body.decode("utf-8", "replace"))
        except (httpx.HTTPError, ValueError, SourceError) as exc:
            if self._state.get("reachable", True):
                self._log.warning("extender metrics at %s: %s", self.url, exc)
            self._state = {
                "configured": True,
                "reachable": False,
                "url": self.url,
                "polled_at": polled_at,
                "note": f"extender metrics unreachable: {exc}",
            }
            return
        self._state = {
            "configured": True,
            "reachable": True,
            "url": self.url,
            "polled_at": polled_at,
            "figures": figures,
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self._interval_seconds)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="gridshift-extender-watch", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._client.close()
