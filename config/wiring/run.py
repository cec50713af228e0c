"""`gridshift run`'s sources: configured providers, or the bundled SAMPLE DATA where none is
configured.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field

from config.settings import (
    Settings,
)
from config.wiring.carbon import HttpClientFactory, build_carbon_source, default_http_client
from config.wiring.prometheus import build_prometheus_source
from forecasts.sources.carbon.base import CarbonSource
from forecasts.sources.load import LoadSource
from forecasts.sources.routing import PrefixRoutedLoadSource, RegionRoutedCarbonSource
from forecasts.sources.sample import (
    SAMPLE_NOTE,
    SAMPLE_REGIONS,
    SampleCarbonSource,
    SampleLoadSource,
)
from forecasts.time import Clock

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunSources:
    """The adapters `gridshift run`/`replay` feed the scaler loop, and the data note to show.
    `close()` closes the clients of the real adapters built for them (the carbon providers'
    fallback chain, Prometheus) once the loop has stopped."""

    carbon: CarbonSource
    load: LoadSource
    note: str
    closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)

    def close(self) -> None:
        self.closing.close()


def build_run_sources(
    settings: Settings,
    *,
    clock: Clock,
    seed: int = 0,
    http_client_factory: HttpClientFactory = default_http_client,
) -> RunSources:
    """Carbon routed by region (SAMPLE DATA regions to the sample generator, the rest to the
    configured providers with fallback) and load routed by query (`sample:` traces to the
    sample generator, PromQL to Prometheus). Real adapters are built only when used."""
    workloads = settings.scaler.workloads
    sample_regions = {w.region for w in workloads if w.region in SAMPLE_REGIONS}
    real_regions = {w.region for w in workloads} - sample_regions
    sample_loads = [
        w.name for w in workloads if w.load.trace is not None and w.load.trace.startswith("sample:")
    ]
    csv_traces = [
        w.name for w in workloads if w.load.trace is not None and w.name not in sample_loads
    ]
    if csv_traces:
        raise ValueError(
            "workloads "
            + ", ".join(csv_traces)
            + " load CSV traces, which `gridshift run` does not play against the wall clock; "
            "use `gridshift replay --scenario FILE`, a `sample:<profile>` trace or PromQL"
        )
    needs_prometheus = any(w.load.promql is not None for w in workloads) or any(
        w.power.measured_promql is not None for w in workloads
    )
    # on a cluster, CarbonAwareScalers add workloads at any time: any region, any PromQL
    cluster = settings.kube.enabled
    needs_prometheus = needs_prometheus or cluster
    closing = contextlib.ExitStack()
    sample_carbon = SampleCarbonSource(seed=seed)
    carbon: CarbonSource
    if real_regions or cluster:
        real = build_carbon_source(settings, clock=clock, http_client_factory=http_client_factory)
        closing.callback(real.close)
        carbon = RegionRoutedCarbonSource(
            by_region={r: sample_carbon for r in SAMPLE_REGIONS}, default=real
        )
    else:
        carbon = sample_carbon
    load: LoadSource
    sample_load = SampleLoadSource(seed=seed)
    if needs_prometheus:
        prometheus = build_prometheus_source(settings.prometheus, clock=clock)
        closing.callback(prometheus.close)
        load = PrefixRoutedLoadSource(routes=[("sample:", sample_load)], default=prometheus)
    else:
        load = sample_load
    note = SAMPLE_NOTE if (sample_regions or sample_loads) else ""
    return RunSources(carbon=carbon, load=load, note=note, closing=closing)
