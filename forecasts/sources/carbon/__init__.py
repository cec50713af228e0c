"""Carbon-intensity providers: one adapter per provider, all playing `CarbonSource`.

- `electricitymaps`: Electricity Maps v3 (latest, past-range history, forecast).
- `watttime`: WattTime v3 (login/bearer, forecast, historical, signal-index as a percentile).
- `uk`: GB Carbon Intensity API (national and the 17 regions, fw24h/fw48h forecasts).
- `carbon_aware_sdk`: the GSF Carbon Aware SDK WebAPI.
- `trace`: a CSV trace in the layout of `../shared/data` played as live: the replay's
  `forecasts.sources.trace.TraceCarbonSource.from_csv` (one trace source for both).
- `fallback`: a chain per region ending in the last known value (stale, with its age).

`config.wiring.build_carbon_source` assembles them from settings.
"""

__all__: list[str] = []
