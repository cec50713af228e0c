"""GPU power per node from Prometheus, as an alternative to the gridshift agent.

Two exporters are understood:

* **DCGM exporter**: `DCGM_FI_DEV_POWER_USAGE` (watts per GPU). The node is the `Hostname`
  label, spelled `hostname` on newer exporters (both are read), else `node`/`kubernetes_node`.
  MIG rows repeat their physical GPU's power, so each GPU (by `UUID`/`uuid`/`gpu`) counts once.
* **Kepler** (v0.11+ with experimental GPU support): `kepler_node_gpu_watts`, node in the
  constant `node_name` label (else `instance`), GPUs by `gpu_uuid`/`gpu`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from extender.core.energy import GpuEnergy
from forecasts.platform.errors import SourceDataError
from forecasts.platform.http import HttpSource
from forecasts.time import from_epoch_s, to_epoch_s

__all__ = ["GpuExporter", "PrometheusGpuPower"]


class GpuExporter(StrEnum):
    DCGM = "dcgm"
    KEPLER = "kepler"


_QUERY = {
    GpuExporter.DCGM: "DCGM_FI_DEV_POWER_USAGE",
    GpuExporter.KEPLER: "kepler_node_gpu_watts",
}
_NODE_LABELS = {
    GpuExporter.DCGM: ("Hostname", "hostname", "node", "kubernetes_node", "node_name"),
    GpuExporter.KEPLER: ("node_name", "node", "instance"),
}
_GPU_LABELS = {
    GpuExporter.DCGM: ("UUID", "uuid", "gpu", "device"),
    GpuExporter.KEPLER: ("gpu_uuid", "gpu"),
}


class PrometheusGpuPower:
    """Reads per-node GPU power (W per GPU) from a Prometheus that scrapes an exporter."""

    def __init__(self, http: HttpSource, *, exporter: GpuExporter) -> None:
        self._http = http
        self.exporter = exporter

    @property
    def name(self) -> str:
        return f"prometheus-{self.exporter.value}"

    def close(self) -> None:
        """Close the HTTP client and its connections (the extender's stop)."""
        self._http.close()

    def node_power(self, *, at: datetime) -> dict[str, GpuEnergy]:
        """Per node: mean watts per GPU at `at`, and the number of GPUs that reported."""
        body = self._http.get_json(
            "/api/v1/query", params={"query": _QUERY[self.exporter], "time": f"{to_epoch_s(at)}"}
        )
        rows = _vector(body, source=self.name)
        per_node: dict[str, dict[str, tuple[float, float]]] = {}
        for row in rows:
            metric = row.get("metric")
            value = row.get("value")
            if not isinstance(metric, Mapping) or not isinstance(value, list) or len(value) != 2:
                raise SourceDataError(f"malformed vector sample: {row!r:.200}", source=self.name)
            node = _first(metric, _NODE_LABELS[self.exporter])
            if node is None:
                continue
            gpu = _first(metric, _GPU_LABELS[self.exporter]) or f"#{len(per_node.get(node, {}))}"
            try:
                ts, watts = float(value[0]), float(value[1])
            except (TypeError, ValueError):
                raise SourceDataError(
                    f"non-numeric sample for node {node}: {value!r:.100}", source=self.name
                ) from None
            if not math.isfinite(watts) or watts < 0:
                continue
            per_node.setdefault(node, {})[gpu] = (ts, watts)
        out: dict[str, GpuEnergy] = {}
        for node, gpus in per_node.items():
            watts_list = [w for _, w in gpus.values()]
            newest = max(ts for ts, _ in gpus.values())
            out[node] = GpuEnergy(
                power_watts=sum(watts_list) / len(watts_list),
                idle_power_watts=None,
                joules_per_work=None,
                gpu_count=len(watts_list),
                measured_at=from_epoch_s(newest),
                window_seconds=0.0,
                source=self.name,
            )
        return out


def _first(labels: Mapping[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = labels.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _vector(body: Any, *, source: str) -> list[Mapping[str, Any]]:
    if not isinstance(body, Mapping) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, Mapping) else None
        raise SourceDataError(f"query failed: {error or 'not a Prometheus answer'}", source=source)
    data = body.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        raise SourceDataError("expected data.resultType 'vector'", source=source)
    result = data.get("result")
    if not isinstance(result, list):
        raise SourceDataError("data.result is not a list", source=source)
    return [r for r in result if isinstance(r, Mapping)]
