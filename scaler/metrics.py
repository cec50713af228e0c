"""The scaler's Prometheus metrics: a custom `Collector` that reads the current snapshot.

Registered on a `CollectorRegistry` passed in by the composition root (never the global
one). Names carry the `gridshift_` prefix and base units (grams, joules, seconds); counters end
in `_total`. Every scrape reads one snapshot reference, so a scrape never mixes two ticks.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from forecasts.time import to_epoch_s
from scaler.snapshot import Mode, Snapshot, SnapshotHolder

__all__ = ["ScalerCollector", "register_scaler_metrics"]

_W = ["workload", "namespace", "region"]


_Family = GaugeMetricFamily | CounterMetricFamily
# (key, kind, name, help, labels after workload/namespace/region), in exposition order.
_WORKLOAD_FAMILIES: tuple[tuple[str, type[_Family], str, str, tuple[str, ...]], ...] = (
    ("desired", GaugeMetricFamily, "gridshift_desired_replicas",
     "Replicas the scaler wants now.", ()),
    ("actual", GaugeMetricFamily, "gridshift_actual_replicas",
     "Replicas the workload's target runs now (its scale subresource); absent when "
     "unknown (no cluster connection or the read failed).", ()),
    ("bounds", GaugeMetricFamily, "gridshift_replicas_bound",
     "The workload's configured replica bounds; `bound` is min or max.", ("bound",)),
    ("capacity", GaugeMetricFamily, "gridshift_capacity",
     "Load the desired replicas serve at target utilisation (load unit), vs gridshift_load.",
     ()),
    ("cf", GaugeMetricFamily, "gridshift_counterfactual_replicas",
     "Replicas the same policy would want in permanent performance mode.", ()),
    ("mode", GaugeMetricFamily, "gridshift_mode",
     "1 for the workload's current mode, 0 otherwise.", ("mode",)),
    ("load", GaugeMetricFamily, "gridshift_load",
     "Newest observed load, in the workload's load unit.", ()),
    ("load_fc", GaugeMetricFamily, "gridshift_load_forecast",
     "Load forecast for the current step; `quantile` is mean or a level.", ("quantile",)),
    ("stale", GaugeMetricFamily, "gridshift_input_stale",
     "1 when an input (load, carbon) of the workload is stale or missing.", ("input",)),
    ("emitted", CounterMetricFamily, "gridshift_emitted_grams",
     "gCO2eq emitted by the workload's replicas since start.", ("signal",)),
    ("saved", CounterMetricFamily, "gridshift_saved_grams",
     "gCO2eq saved against permanent performance mode since start (may be negative).",
     ("signal",)),
    ("cf_g", CounterMetricFamily, "gridshift_counterfactual_grams",
     "gCO2eq permanent performance mode would have emitted since start.", ("signal",)),
    ("energy", CounterMetricFamily, "gridshift_energy_joules",
     "Energy used by the workload's replicas since start.", ()),
    ("remaining", GaugeMetricFamily, "gridshift_elastic_remaining_work",
     "Work left for an elastic workload.", ()),
    ("feasible", GaugeMetricFamily, "gridshift_elastic_deadline_feasible",
     "1 when an elastic workload's deadline can still be met at max replicas.", ()),
)  # fmt: skip
_RL = ["region", "provider", "signal"]
_REGION_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("intensity", "gridshift_carbon_intensity_grams_per_kwh",
     "Newest grid carbon intensity (gCO2eq/kWh) of the region."),
    ("intensity_fc", "gridshift_carbon_forecast_grams_per_kwh",
     "Mean forecast intensity (gCO2eq/kWh) over the coming mode window."),
    ("pct", "gridshift_carbon_forecast_percentile",
     "Percentile (0-100) of the coming window among the region's own forecast."),
    ("age", "gridshift_carbon_age_seconds", "Age of the newest carbon value."),
    ("cstale", "gridshift_carbon_stale", "1 when the region's carbon input is stale."),
)  # fmt: skip


class ScalerCollector(Collector):
    def __init__(self, holder: SnapshotHolder) -> None:
        self._holder = holder

    def collect(self) -> Iterator[Metric]:
        snap = self._holder.current()
        info = GaugeMetricFamily(
            "gridshift_scaler_data_info",
            "1; data=sample when running on SAMPLE DATA (synthetic, not a real grid).",
            labels=["data", "note"],
        )
        if snap is None:
            info.add_metric(["none", "no tick yet"], 1.0)
            yield info
            return
        info.add_metric(["sample" if snap.data_note else "live", snap.data_note], 1.0)
        yield info
        yield from _workload_metrics(snap)
        yield from _region_metrics(snap)
        yield from _loop_metrics(snap)


def _workload_metrics(snap: Snapshot) -> Iterator[Metric]:
    """Per workload: replicas, mode, load and its forecast, stale inputs, grams, energy."""
    f = {
        key: kind(name, doc, labels=[*_W, *extra])
        for key, kind, name, doc, extra in _WORKLOAD_FAMILIES
    }
    for ws in snap.workloads.values():
        lv = [ws.name, ws.namespace, ws.region]
        f["desired"].add_metric(lv, float(ws.desired_replicas))
        if ws.actual_replicas is not None:
            f["actual"].add_metric(lv, float(ws.actual_replicas))
        if ws.min_replicas is not None and ws.max_replicas is not None:
            f["bounds"].add_metric([*lv, "min"], float(ws.min_replicas))
            f["bounds"].add_metric([*lv, "max"], float(ws.max_replicas))
        if ws.capacity_per_replica is not None:
            f["capacity"].add_metric(lv, ws.desired_replicas * ws.capacity_per_replica)
        if ws.counterfactual_replicas is not None:
            f["cf"].add_metric(lv, float(ws.counterfactual_replicas))
        for m in Mode:
            f["mode"].add_metric([*lv, str(m)], 1.0 if ws.mode is m else 0.0)
        if ws.load_now is not None:
            f["load"].add_metric(lv, ws.load_now)
        for q, v in ws.load_forecast.items():
            f["load_fc"].add_metric([*lv, q], v)
        for kind in ("load", "carbon", "power"):
            f["stale"].add_metric([*lv, kind], 1.0 if kind in ws.stale_inputs else 0.0)
        signal = ws.carbon_provenance.partition("/")[2] or "unknown"
        f["emitted"].add_metric([*lv, signal], ws.emitted_g)
        f["saved"].add_metric([*lv, signal], ws.saved_g)
        f["cf_g"].add_metric([*lv, signal], ws.counterfactual_g)
        f["energy"].add_metric(lv, ws.energy_joules)
        if ws.remaining_work is not None:
            f["remaining"].add_metric(lv, ws.remaining_work)
        if ws.deadline_feasible is not None:
            f["feasible"].add_metric(lv, 1.0 if ws.deadline_feasible else 0.0)
    yield from f.values()


def _region_metrics(snap: Snapshot) -> Iterator[Metric]:
    """Per region: intensity now and forecast, its percentile, age, staleness."""
    f = {key: GaugeMetricFamily(name, doc, labels=_RL) for key, name, doc in _REGION_FAMILIES}
    for rc in snap.regions.values():
        lv = [rc.region, rc.provider, rc.signal or "unknown"]
        f["cstale"].add_metric(lv, 1.0 if rc.stale else 0.0)
        if rc.intensity_g_per_kwh is not None:
            f["intensity"].add_metric(lv, rc.intensity_g_per_kwh)
        if rc.forecast_window_g_per_kwh is not None:
            f["intensity_fc"].add_metric(lv, rc.forecast_window_g_per_kwh)
        if rc.forecast_percentile is not None:
            f["pct"].add_metric(lv, rc.forecast_percentile)
        if rc.age_seconds is not None:
            f["age"].add_metric(lv, rc.age_seconds)
    yield from f.values()


def _loop_metrics(snap: Snapshot) -> Iterator[Metric]:
    """The loop itself: last tick's duration and time, ticks, refits, source errors."""
    yield GaugeMetricFamily(
        "gridshift_tick_duration_seconds",
        "Wall time of the last tick.",
        value=snap.tick_seconds,
    )
    yield GaugeMetricFamily(
        "gridshift_last_tick_timestamp_seconds",
        "Scaler time of the last tick (Unix seconds).",
        value=to_epoch_s(snap.taken_at),
    )
    yield CounterMetricFamily("gridshift_ticks", "Ticks since start.", value=snap.ticks_total)
    yield CounterMetricFamily(
        "gridshift_model_refits", "Model refit rounds since start.", value=snap.refits_total
    )
    errors = CounterMetricFamily(
        "gridshift_source_errors",
        "Adapter errors (the input was marked stale), by source.",
        labels=["source"],
    )
    for source, n in sorted(snap.source_errors_total.items()):
        errors.add_metric([source], float(n))
    yield errors


def register_scaler_metrics(registry: CollectorRegistry, holder: SnapshotHolder) -> ScalerCollector:
    collector = ScalerCollector(holder)
    registry.register(collector)
    return collector
