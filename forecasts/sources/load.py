"""The `LoadSource` role, re-exported for the adapters' callers.

The role is defined in the pure kernel (`forecasts.load`), next to `LoadHistory` and the gap
rule, so pure code can name it; this module keeps the imports of `scaler.loop` and
`config.wiring` working. Adapters: `forecasts.sources.prometheus.PrometheusLoadSource`
(PromQL), `forecasts.sources.sample.SampleLoadSource` (SAMPLE DATA).
"""

from __future__ import annotations

from forecasts.load import LoadSource

__all__ = ["LoadSource"]
