"""Replay scenario files (YAML): parse, validate, read the traces, build the replay inputs.

The format is documented in the README ("Replay scenarios"). Paths: `shared:REL` resolves
under `$GRIDSHIFT_SHARED_DATA` or `<repo>/../shared/data`; other relative paths are relative
to the scenario file. `sample:NAME` uses the bundled SAMPLE DATA generator (no files).
Every problem is reported as `ScenarioError` naming the field and what is wrong.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import yaml
from pydantic import ValidationError

from config.files import read_yaml_file
from config.replay_spec import (
    CsvSource,
    ElasticJobsSpec,
    ForecastSpec,
    RegionSpec,
    SampleSource,
    ScenarioFile,
)
from config.settings import ScalerSettings, Settings
from config.wiring import loop_settings_from, policy_params_from
from forecasts.carbon_forecast import KnownSeries
from forecasts.forecast import Forecaster
from forecasts.models.profile_persistence import ProfilePersistence
from forecasts.models.seasonal_naive import SeasonalNaive
from forecasts.platform.errors import SourceError
from forecasts.series import RegularSeries
from forecasts.sources.carbon.forecasting import ForecastMode
from forecasts.sources.csv_series import read_csv_series
from forecasts.sources.forecast_traces import (
    join_known,
    known_ahead,
    read_generation_forecasts,
    read_provider_forecast,
    read_weather_forecasts,
)
from forecasts.sources.sample import SampleCarbonSource, SampleLoadSource
from forecasts.sources.trace import fill_gaps
from forecasts.time import ensure_utc, floor_to, humanize_duration, parse_duration, to_epoch_s
from scaler.core.policy import PolicyParams
from scaler.core.workload import (
    ElasticSpec,
    LoadSourceKind,
    LoadSpec,
    PowerModel,
    TargetKind,
    TargetRef,
    Workload,
    WorkloadClass,
)
from scaler.loop import LoopSettings
from scaler.replay.engine import CarbonForecastSetup
from scaler.replay.model import (
    HpaParams,
    Job,
    KedaParams,
    PolicyName,
    ReplayScenario,
    ReplayWorkload,
)

__all__ = ["LoadedScenario", "ReplayOptions", "ScenarioError", "load_scenario", "shared_data_root"]

_REPO_ROOT = Path(__file__).resolve().parents[1]


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the field and the problem."""


def shared_data_root(environ: Mapping[str, str] | None = None) -> Path:
    env = (environ if environ is not None else os.environ).get("GRIDSHIFT_SHARED_DATA")
    return Path(env) if env else _REPO_ROOT.parent / "shared" / "data"


def _duration(value: Any, field: str) -> timedelta:
    if isinstance(value, (int, float)):
        return timedelta(seconds=float(value))
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from exc


def _offset(value: str, field: str) -> timedelta:
    """A duration that may be negative (`-7h`: before the instant it is counted from)."""
    text = value.strip()
    if text.startswith("-"):
        return -_duration(text[1:], field)
    return _duration(text, field)


class ReplayOptions(TypedDict):
    """What a scenario file sets of `run_replay`'s (and `run_replay_parallel`'s) keyword
    arguments: `run_replay(loaded.scenario, **loaded.replay_options)`."""

    params: PolicyParams
    loop_settings: LoopSettings
    carbon_forecast: CarbonForecastSetup
    load_forecaster: Forecaster
    refit_every: timedelta


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    scenario: ReplayScenario
    params: PolicyParams
    loop_settings: LoopSettings
    carbon_forecast: CarbonForecastSetup
    load_forecaster: Forecaster
    refit_every: timedelta
    source: Path

    @property
    def replay_options(self) -> ReplayOptions:
        """The replay engine's keyword arguments from this scenario (see `ReplayOptions`)."""
        return ReplayOptions(
            params=self.params,
            loop_settings=self.loop_settings,
            carbon_forecast=self.carbon_forecast,
            load_forecaster=self.load_forecaster,
            refit_every=self.refit_every,
        )


def _load_model(
    step: timedelta, *, profile: str, seasons: int, name: str = "profile_persistence"
) -> Forecaster:
    """The scenario's `forecast.load_model`, labelled as the file names it: a multiplicative
    daily or weekly profile over `seasons`, errors by hour; or a daily/weekly seasonal naive."""
    day = max(2, round(timedelta(days=1) / step))
    if name != "profile_persistence":
        return SeasonalNaive(7 * day if name.endswith("week") else day, label=name)
    period = 7 * day if profile == "week" else day
    return ProfilePersistence(
        period,
        seasons=seasons,
        multiplicative=True,
        group_period=day,
        label="profile_persistence",  # the name the scenario file takes
    )


class _Reader:
    def __init__(self, base: Path, shared: Path, start: datetime, end: datetime, step: timedelta):
        self.base, self.shared, self.start, self.end, self.step = base, shared, start, end, step
        self.gaps: dict[str, int] = {}

    def path(self, text: str, field: str) -> Path:
        if text.startswith("shared:"):
            p = self.shared / text.removeprefix("shared:")
            if not p.exists():
                raise ScenarioError(
                    f"{field}: {p} not found (shared data lives in ../shared/data or "
                    "$GRIDSHIFT_SHARED_DATA)"
                )
            return p
        p = Path(text)
        return p if p.is_absolute() else self.base / p

    def csv(self, src: CsvSource, field: str, column: str | None = None) -> RegularSeries:
        try:
            series = read_csv_series(
                self.path(src.csv, field),
                column=column or src.column,
                step=self.step,
                start=self.start,
                end=self.end,
                time_column=src.time_column,
                region=src.region,
                zero_is_missing=src.zero_is_missing,
                shift=timedelta(weeks=src.shift_weeks),
            )
        except SourceError as exc:
            raise ScenarioError(f"{field}: {exc}") from exc
        values = series.values * src.scale
        missing = int(np.isnan(values).sum())
        if missing == len(values):
            raise ScenarioError(
                f"{field}: no values in {self.start.isoformat()} .. {self.end.isoformat()}"
            )
        self.gaps[field] = missing
        return fill_gaps(RegularSeries(start=self.start, step=self.step, values=values, unit=""))


def _format_validation(exc: ValidationError, path: Path) -> str:
    lines = [f"{path} is not a valid replay scenario:"]
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"  {loc or '(top level)'}: {e['msg']}")
    return "\n".join(lines)


def load_scenario(
    path: Path,
    *,
    environ: Mapping[str, str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    noise_percent: float | None = None,
    seed: int | None = None,
    policies: tuple[PolicyName, ...] | None = None,
    scaler_overrides: Mapping[str, Any] | None = None,
    forecast_overrides: Mapping[str, Any] | None = None,
) -> LoadedScenario:
    """Read `path` into replay inputs; keyword arguments override the file's values
    (`scaler_overrides` / `forecast_overrides` are merged over its `scaler:` / `forecast:`)."""
    try:
        raw = read_yaml_file(path)
    except (OSError, yaml.YAMLError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: the top level must be a mapping")
    try:
        spec = ScenarioFile.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(_format_validation(exc, path)) from exc
    if scaler_overrides:
        spec = spec.model_copy(update={"scaler": {**spec.scaler, **scaler_overrides}})
    if forecast_overrides:
        try:
            forecast = ForecastSpec.model_validate(
                {**spec.forecast.model_dump(exclude_unset=True), **forecast_overrides}
            )
        except ValidationError as exc:
            raise ScenarioError(_format_validation(exc, path).replace("  ", "  forecast.")) from exc
        spec = spec.model_copy(update={"forecast": forecast})
    return build_scenario(
        spec,
        base=path.parent,
        source=path,
        environ=environ,
        start=start,
        end=end,
        noise_percent=noise_percent,
        seed=seed,
        policies=policies,
    )


def _lwa_deadline(finish: datetime) -> datetime:
    """Let's Wait Awhile's `next_workday` rule on the original finish time."""
    nine = finish.replace(hour=9, minute=0, second=0, microsecond=0)
    hour = finish.hour + finish.minute / 60
    if finish.weekday() == 5:
        return nine + timedelta(days=2)
    if finish.weekday() == 6 or hour > 17:
        return nine + timedelta(days=1)
    if hour < 9:
        return nine
    return finish


def _job_times(
    e: ElasticJobsSpec, start: datetime, end: datetime, step: timedelta
) -> list[tuple[datetime, datetime, float]]:
    """(submission, deadline, hours at base scale) per job."""
    hours: list[float] = []
    if e.submit_every is not None:
        every = _duration(e.submit_every, "elastic.submit_every")
        if every <= timedelta(0):
            raise ScenarioError("elastic.submit_every must be positive")
        times = []
        t = start
        while t < end:
            times.append(t)
            t += every
    elif e.generate is not None:
        g = e.generate
        if g.max_hours <= g.min_hours or g.workday_end_hour <= g.workday_start_hour:
            raise ScenarioError("elastic.generate: need min_hours < max_hours, start < end hour")
        rng = np.random.default_rng(g.seed)
        days = [
            d
            for d in (start + timedelta(days=i) for i in range((end - start).days))
            if d.weekday() < 5
        ]
        if not days:
            raise ScenarioError("elastic.generate: the period has no workdays")
        per_day = rng.multinomial(g.jobs, [1 / len(days)] * len(days))
        times = []
        for d, k in zip(days, per_day, strict=True):
            starts = np.sort(rng.integers(g.workday_start_hour, g.workday_end_hour, size=k))
            times += [d.replace(hour=int(h)) for h in starts]
        hours = [float(h) for h in rng.integers(g.min_hours, g.max_hours, size=len(times))]
    else:
        times = [ensure_utc(t) for t in e.submit_at]
    out = []
    for i, t in enumerate(times):
        t = start + ((t - start) // step) * step  # submissions on the step grid
        h = hours[i] if hours else float(e.work_hours_at_base or 0.0)
        if e.deadline_after is not None:
            dl = t + _duration(e.deadline_after, "elastic.deadline_after")
        else:
            dl = _lwa_deadline(t + timedelta(hours=h))
        out.append((t, dl, h))
    return out


@dataclass(frozen=True, slots=True)
class _Period:
    """The replayed period and what it implies: the data to read reaches back to
    `data_start` (history before `start`) and forward to the last job's deadline."""

    step: timedelta
    warmup: timedelta
    carbon_history: timedelta
    carbon_refit: timedelta
    stabilisation: timedelta
    start: datetime
    end: datetime
    jobs: dict[str, list[tuple[datetime, datetime, float]]]
    horizon_end: datetime
    data_start: datetime


def build_scenario(
    spec: ScenarioFile,
    *,
    base: Path,
    source: Path,
    environ: Mapping[str, str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    noise_percent: float | None = None,
    seed: int | None = None,
    policies: tuple[PolicyName, ...] | None = None,
) -> LoadedScenario:
    """The scenario file as a replay, in its steps: the period, the regions' carbon (and
    recorded forecasts and inputs), the workloads, the scaler's settings at the replay step,
    then the scenario and its forecasters."""
    period = _period(spec, start=start, end=end)
    step, p_start, p_end, stab = period.step, period.start, period.end, period.stabilisation
    carbon_refit = period.carbon_refit
    reader = _Reader(base, shared_data_root(environ), period.data_start, period.horizon_end, step)
    notes = list(spec.notes)
    carbon, provider_fc, exog, providers = _region_carbon(spec, period, reader, notes)
    workloads, max_window = _replay_workloads(spec, period, reader)
    for field, n in reader.gaps.items():
        if n:
            notes.append(f"{field}: {n} missing steps filled by linear interpolation")
    settings = _replay_settings(spec, period, max_window, source)
    try:
        scenario = ReplayScenario(
            name=spec.name,
            start=p_start,
            end=p_end,
            step=step,
            workloads=tuple(workloads),
            carbon=carbon,
            policies=policies or spec.policies,
            hpa=HpaParams(
                spec.hpa.target_utilisation, spec.hpa.tolerance, stab, spec.hpa.lag_intervals
            ),
            keda=KedaParams(spec.keda.max_replicas_fractions),
            forecast_noise_percent=(
                spec.forecast.noise_percent if noise_percent is None else noise_percent
            ),
            seed=spec.forecast.seed if seed is None else seed,
            notes=tuple(dict.fromkeys(notes)),
        )
    except ValueError as exc:
        raise ScenarioError(f"{source}: {exc}") from exc
    model = spec.forecast.carbon_model
    if model == "perfect":
        provider_fc = {r: known_ahead(series, ahead=None) for r, series in carbon.items()}
        providers = {r: f"{p} (perfect foresight)" for r, p in providers.items()}
    return LoadedScenario(
        scenario=scenario,
        params=policy_params_from(settings),
        loop_settings=loop_settings_from(settings),
        carbon_forecast=CarbonForecastSetup(
            mode="provider" if model in ("provider", "perfect") else model_mode(model),
            provider_forecasts=provider_fc or None,
            exog=(exog or None) if spec.forecast.day_ahead_inputs else None,
            provider_name=providers,
            refit_every=carbon_refit,
            perfect=model == "perfect",
        ),
        load_forecaster=_load_model(
            step,
            profile=spec.forecast.load_profile,
            seasons=spec.forecast.load_profile_seasons,
            name=spec.forecast.load_model,
        ),
        refit_every=timedelta(seconds=settings.forecast.refit_interval_seconds),
        source=source,
    )


def _period(spec: ScenarioFile, *, start: datetime | None, end: datetime | None) -> _Period:
    """Step 1: durations, the period (a whole number of steps), the regions the workloads
    name, and the elastic jobs first: their deadlines set how far the carbon must reach."""
    try:
        step = _duration(spec.period.step, "period.step")
        warmup = _duration(spec.period.warmup, "period.warmup")
        carbon_history = _duration(spec.forecast.carbon_history, "forecast.carbon_history")
        carbon_refit = _duration(spec.forecast.carbon_refit, "forecast.carbon_refit")
        stab = _duration(spec.hpa.downscale_stabilisation, "hpa.downscale_stabilisation")
    except ValueError as exc:
        raise ScenarioError(str(exc)) from exc
    p_start = start or spec.period.start
    p_end = end or spec.period.end
    if p_end <= p_start:
        raise ScenarioError("period: end must be after start")
    if (p_end - p_start) % step:
        raise ScenarioError(
            f"period: {p_start} .. {p_end} is not a whole number of {humanize_duration(step)} steps"
        )
    region_names = [r.name for r in spec.regions]
    for w in spec.workloads:
        if w.region not in region_names:
            raise ScenarioError(
                f"workloads.{w.name}.region: {w.region!r} is not one of the regions "
                f"({', '.join(region_names)})"
            )
    jobs: dict[str, list[tuple[datetime, datetime, float]]] = {}
    for w in spec.workloads:
        if w.elastic is not None:
            jobs[w.name] = _job_times(w.elastic, p_start, p_end, step)
    last = max([p_end, *(dl for js in jobs.values() for _, dl, _ in js)])
    history = max(warmup, carbon_history) + step
    return _Period(
        step=step,
        warmup=warmup,
        carbon_history=carbon_history,
        carbon_refit=carbon_refit,
        stabilisation=stab,
        start=p_start,
        end=p_end,
        jobs=jobs,
        horizon_end=p_start + step * math.ceil((last - p_start) / step),
        data_start=p_start - history,
    )


def _region_carbon(
    spec: ScenarioFile, period: _Period, reader: _Reader, notes: list[str]
) -> tuple[
    dict[str, RegularSeries], dict[str, KnownSeries], dict[str, KnownSeries], dict[str, str]
]:
    """Step 2: each region's carbon intensity on the replay grid, its recorded provider
    forecast and day-ahead inputs (each as known when), and the provider's name."""
    step, data_start, horizon_end = period.step, period.data_start, period.horizon_end
    sample_carbon = SampleCarbonSource(seed=spec.forecast.seed)
    carbon: dict[str, RegularSeries] = {}
    provider_fc: dict[str, KnownSeries] = {}
    exog: dict[str, KnownSeries] = {}
    providers: dict[str, str] = {}
    for r in spec.regions:
        field = f"regions.{r.name}.carbon"
        if isinstance(r.carbon, SampleSource):
            try:
                hist = sample_carbon.history(r.carbon.sample, start=data_start, end=horizon_end)
            except SourceError as exc:
                raise ScenarioError(f"{field}: {exc}") from exc
            carbon[r.name] = fill_gaps(
                _mean_grid(hist.epoch_s, hist.values, data_start, horizon_end, step)
            )
            providers[r.name] = "sample"
            provider_fc[r.name] = _sample_day_ahead(
                sample_carbon, r.carbon.sample, data_start, horizon_end, step
            )
            notes.append("SAMPLE DATA: synthetic carbon and load generated by gridshift")
        else:
            carbon[r.name] = reader.csv(r.carbon, field)
            providers[r.name] = Path(r.carbon.csv).parent.name or "csv"
            if r.carbon.forecast_column:
                provider_fc[r.name] = known_ahead(
                    reader.csv(r.carbon, field, r.carbon.forecast_column)
                )
        _recorded_inputs(r, reader, provider_fc, exog)
    return carbon, provider_fc, exog, providers


def _replay_workloads(
    spec: ScenarioFile, period: _Period, reader: _Reader
) -> tuple[list[ReplayWorkload], timedelta]:
    """Step 3: each workload with its demand (interactive) or jobs (elastic), and the widest
    job window (how far ahead the scaler must see carbon)."""
    step, data_start, horizon_end = period.step, period.data_start, period.horizon_end
    p_end, jobs = period.end, period.jobs
    sample_load = SampleLoadSource(seed=spec.forecast.seed)
    workloads: list[ReplayWorkload] = []
    max_window = timedelta(0)
    for w in spec.workloads:
        field = f"workloads.{w.name}"
        power = PowerModel(w.power.idle_watts, w.power.busy_watts)
        if w.power.idle_watts > w.power.busy_watts:
            raise ScenarioError(f"{field}.power: idle_watts must not exceed busy_watts")
        elastic_spec: ElasticSpec | None = None
        job_list: tuple[Job, ...] = ()
        base_replicas = 1
        if w.elastic is not None:
            e = w.elastic
            if e.sublinear_factor is not None:
                profile = tuple(e.sublinear_factor**k for k in range(w.max_replicas))
            else:
                profile = e.throughput_per_replica or (1.0,)
            if any(b > a for a, b in itertools.pairwise(profile)) or min(profile) <= 0:
                raise ScenarioError(f"{field}.elastic: throughput must be positive, non-increasing")
            if not w.min_replicas <= e.base_replicas <= w.max_replicas:
                raise ScenarioError(f"{field}.elastic.base_replicas must lie in [min, max]")
            base_replicas = e.base_replicas
            probe = ElasticSpec(1.0, horizon_end, profile)
            rate = probe.throughput(e.base_replicas) * 3600.0
            job_list = tuple(Job(t, dl, rate * h) for t, dl, h in jobs[w.name])
            max_window = max([max_window, *(dl - t for t, dl, _ in jobs[w.name])])
            elastic_spec = ElasticSpec(job_list[0].work, horizon_end, profile)
        workload = Workload(
            name=w.name,
            namespace="replay",
            target=TargetRef(TargetKind.DEPLOYMENT, w.name),
            load=LoadSpec(LoadSourceKind.TRACE, w.name, "load units"),
            capacity_per_replica=w.capacity_per_replica,
            min_replicas=w.min_replicas,
            max_replicas=w.max_replicas,
            power=power,
            region=w.region,
            workload_class=WorkloadClass(w.workload_class),
            headroom=w.headroom,
            elastic=elastic_spec,
        )
        demand: RegularSeries | None = None
        if w.load is not None and w.workload_class == "interactive":
            if isinstance(w.load, SampleSource):
                demand = sample_load.history(w.load.sample, start=data_start, end=p_end, step=step)
                demand = RegularSeries(start=data_start, step=step, values=demand.values, unit="")
            else:
                demand = reader.csv(w.load, f"{field}.load")
        workloads.append(ReplayWorkload(workload, demand, job_list, base_replicas))
    return workloads, max_window


def _replay_settings(
    spec: ScenarioFile, period: _Period, max_window: timedelta, source: Path
) -> Settings:
    """Step 4: the scenario's scaler knobs over the defaults, at the replay step."""
    step, warmup = period.step, period.warmup
    overrides = dict(spec.scaler)
    overrides.update(
        {
            "tick_interval_seconds": step.total_seconds(),
            "load_step_seconds": step.total_seconds(),
            "elastic_slot_seconds": step.total_seconds(),
            "load_history_seconds": warmup.total_seconds(),
            "tick_history_seconds": min(warmup, timedelta(days=8)).total_seconds(),
        }
    )
    overrides.setdefault(
        "carbon_horizon_seconds", max(timedelta(days=1), max_window).total_seconds()
    )
    defaults = Settings().scaler
    # The step limit is per decision; decisions come once a replay step instead of once a
    # tick, so the same replicas-per-second rate allows proportionally more per decision.
    overrides.setdefault(
        "max_step_replicas",
        max(
            defaults.max_step_replicas,
            round(
                defaults.max_step_replicas * step.total_seconds() / defaults.tick_interval_seconds
            ),
        ),
    )
    try:
        scaler = ScalerSettings.model_validate(
            {**Settings().scaler.model_dump(exclude={"workloads"}), **overrides}
        )
    except ValidationError as exc:
        raise ScenarioError(_format_validation(exc, source).replace("  ", "  scaler.")) from exc
    return Settings().model_copy(update={"scaler": scaler})


def model_mode(model: str) -> ForecastMode:
    """The `CarbonForecasting` mode of a scenario's `forecast.carbon_model`."""
    return "own" if model == "own" else "provider" if model in ("provider", "perfect") else "auto"


def _recorded_inputs(
    r: RegionSpec,
    reader: _Reader,
    provider_fc: dict[str, KnownSeries],
    exog: dict[str, KnownSeries],
) -> None:
    """The region's recorded provider forecast and day-ahead inputs, read with issue times."""
    field = f"regions.{r.name}"
    try:
        if r.provider_forecast is not None:
            spec = r.provider_forecast
            provider_fc[r.name] = read_provider_forecast(
                reader.path(spec.csv, f"{field}.provider_forecast"),
                column=spec.column,
                known_after=_offset(spec.known_after, f"{field}.provider_forecast.known_after"),
            )
        parts = []
        if r.weather is not None:
            parts.append(
                read_weather_forecasts(
                    reader.path(r.weather.csv, f"{field}.weather"),
                    known_after=_offset(r.weather.known_after, f"{field}.weather.known_after"),
                )
            )
        if r.generation is not None:
            parts.append(
                read_generation_forecasts(
                    reader.path(r.generation.csv, f"{field}.generation"),
                    known_after=_offset(
                        r.generation.known_after, f"{field}.generation.known_after"
                    ),
                    sources=r.generation.sources,
                )
            )
    except (SourceError, ValueError) as exc:
        raise ScenarioError(f"{field}: {exc}") from exc
    if parts:
        exog[r.name] = join_known(parts)


def _sample_day_ahead(
    source: SampleCarbonSource, region: str, start: datetime, end: datetime, step: timedelta
) -> KnownSeries:
    """The SAMPLE DATA provider forecast as a recorded day-ahead forecast: each day's values
    as forecast at midnight the day before (lead 24-48 h, the sample's largest errors), the
    forecast `gridshift run` plays on the sample, known a day before it is used."""
    day = timedelta(days=1)
    epochs: list[np.ndarray] = []
    values: list[np.ndarray] = []
    at = floor_to(start, day)
    while at < end:
        fc = source.forecast(region, at=at - day, horizon=2 * day)
        keep = fc.epoch_s >= to_epoch_s(at)
        epochs.append(fc.epoch_s[keep])
        values.append(fc.values[keep])
        at += day
    grid = fill_gaps(_mean_grid(np.concatenate(epochs), np.concatenate(values), start, end, step))
    t = grid.epoch_s()
    issued = np.floor(t / day.total_seconds()) * day.total_seconds() - day.total_seconds()
    return KnownSeries(start=grid.start, step=grid.step, values=grid.values, known_s=issued)


def _mean_grid(
    epoch: np.ndarray, values: np.ndarray, start: datetime, end: datetime, step: timedelta
) -> RegularSeries:
    s0 = to_epoch_s(start)
    n = math.ceil((to_epoch_s(end) - s0) / step.total_seconds())
    idx = np.floor((epoch - s0) / step.total_seconds()).astype(int)
    keep = (idx >= 0) & (idx < n)
    sums = np.bincount(idx[keep], weights=values[keep], minlength=n)
    counts = np.bincount(idx[keep], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return RegularSeries(start=start, step=step, values=out, unit="g/kWh")
