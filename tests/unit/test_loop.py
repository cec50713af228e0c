"""scaler.loop: the tick over fake adapters.

Aspects: a tick publishes one snapshot with decisions and reasons; no model yet -> hold;
SourceError on load or carbon marks the input stale, is counted and logged, and never scales
down; carbon without a provider forecast is forecast from history; refit keeps the previous
model on failure; accounting over ticks equals replicas x watts x time and the ledger matches
the statuses; elastic work is done by its deadline; CI schedules pre-warm; cron overrides;
one failing workload does not stop the others; the workload set is re-read before each tick
(added ones fitted at once and started from their target's actual replicas, changed ones keep
their state, removed ones dropped, a broken source keeps the set, a later-listed workload
continues from the kept checkpoint).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from forecasts.models.profile_persistence import ProfilePersistence
from forecasts.platform.errors import SourceDataError, SourceUnavailable
from forecasts.time import FrozenClock
from scaler.core.policy import PolicyParams
from scaler.core.workload import (
    CiSchedule,
    ElasticSpec,
    LoadSourceKind,
    LoadSpec,
    ModeOverride,
    PowerModel,
    TargetKind,
    TargetRef,
    Workload,
    WorkloadClass,
)
from scaler.loop import LoopSettings, ScalerLoop
from scaler.schedules import WorkloadSchedules
from scaler.snapshot import Mode, SnapshotHolder
from tests.fakes import FakeDailyCarbonSource, FakeLoadSource, FakeReplicaReader
from tests.workloads import promql_workload

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
CLEAN_NIGHT = [400.0] * 8 + [100.0] * 8 + [400.0] * 8  # clean 08:00-16:00


def web(**kw: Any) -> Workload:
    return promql_workload("web", "web_rps", **kw)


def make_loop(workloads, *, carbon=None, load=None, clock=None, params=None, settings=None):
    clock = clock or FrozenClock(T0)
    holder = SnapshotHolder()
    loop = ScalerLoop(
        workloads,
        carbon=carbon or FakeDailyCarbonSource({"r1": CLEAN_NIGHT, "r2": [200.0] * 24}),
        load=load or FakeLoadSource(levels={"web_rps": 100.0, "api_rps": 50.0}),
        clock=clock,
        holder=holder,
        params=params or PolicyParams(max_step_replicas=100),
        settings=settings or LoopSettings(),
    )
    return loop, clock, holder


def test_tick_publishes_decisions_with_reasons() -> None:
    loop, _clock, holder = make_loop([web()])
    loop.refit()
    snap = loop.tick()
    assert holder.current() is snap
    ws = snap.workloads["web"]
    # constant load 100, no spread: 100 * 1.2 / 10 = 12
    assert ws.desired_replicas == 12
    assert ws.mode is Mode.PERFORMANCE  # 09:00 is clean (100 g/kWh)
    assert any("percentile" in r for r in ws.reasons)
    assert ws.reasons[-1] == "target 12 (was 1)"
    assert ws.load_now == 100.0
    assert (ws.target_kind, ws.target_name) == ("Deployment", "web")
    assert ws.load_forecast["0.95"] == pytest.approx(100.0)
    assert snap.regions["r1"].intensity_g_per_kwh == 100.0
    assert snap.regions["r1"].stale is False
    assert snap.ticks_total == 1
    assert snap.refits_total == 1


def test_no_model_yet_holds() -> None:
    loop, _, _ = make_loop([web()])
    ws = loop.tick().workloads["web"]
    assert ws.desired_replicas == 1
    assert "no fitted load model yet" in ws.reasons


def test_load_source_error_marks_stale_and_holds(caplog: pytest.LogCaptureFixture) -> None:
    load = FakeLoadSource(levels={"web_rps": 300.0})
    loop, clock, _ = make_loop([web()], load=load)
    loop.refit()
    assert loop.tick().workloads["web"].desired_replicas == 36
    load.fail_with = SourceUnavailable("connection refused", source="prometheus")
    load.levels["web_rps"] = 1.0
    clock.advance(timedelta(minutes=10))
    with caplog.at_level(logging.WARNING, logger="gridshift.scaler"):
        snap = loop.tick()
    ws = snap.workloads["web"]
    assert ws.desired_replicas == 36
    assert ws.stale_inputs == ("load",)
    assert any("never scale down on missing data" in r for r in ws.reasons)
    assert snap.source_errors_total == {"fake-carbon": 0, "fake-load": 0, "prometheus": 1}
    assert "connection refused" in caplog.text


def test_gap_in_load_history_is_stale() -> None:
    load = FakeLoadSource(levels={"web_rps": 300.0})
    loop, clock, _ = make_loop([web()], load=load)
    loop.refit()
    loop.tick()
    load.missing_after = T0
    load.levels["web_rps"] = 1.0
    clock.advance(timedelta(minutes=30))
    ws = loop.tick().workloads["web"]
    assert ws.stale_inputs == ("load",)
    assert ws.desired_replicas == 36


def test_carbon_error_keeps_last_known_and_mode() -> None:
    carbon = FakeDailyCarbonSource({"r1": [400.0] * 24})
    loop, clock, _ = make_loop([web()], carbon=carbon)
    loop.refit()
    first = loop.tick()
    carbon.fail_with = SourceDataError("HTML instead of JSON", source="fake-carbon")
    clock.advance(timedelta(minutes=1))
    snap = loop.tick()
    region = snap.regions["r1"]
    assert region.stale is True
    assert region.intensity_g_per_kwh == 400.0
    ws = snap.workloads["web"]
    assert ws.mode is first.workloads["web"].mode
    assert "carbon" in ws.stale_inputs
    assert snap.source_errors_total == {"fake-carbon": 2, "fake-load": 0}  # latest + forecast
    assert any("stale: keep" in r for r in ws.reasons)


def test_carbon_without_provider_forecast_is_forecast_from_history() -> None:
    carbon = FakeDailyCarbonSource({"r1": CLEAN_NIGHT}, has_forecast=False)
    loop, _, _ = make_loop([web()], carbon=carbon)
    loop.refit()
    snap = loop.tick()
    region = snap.regions["r1"]
    assert region.forecast_window_g_per_kwh == pytest.approx(100.0)
    assert "forecast by gridshift (seasonal_naive)" in region.note
    assert ("history", "r1") in carbon.calls


def test_refit_failure_keeps_previous_model() -> None:
    load = FakeLoadSource(levels={"web_rps": 100.0})
    loop, _, _ = make_loop([web()], load=load)
    assert loop.refit().fitted == 1
    load.fail_with = SourceUnavailable("down", source="prometheus")
    report = loop.refit()
    assert report.failed == ("web",)
    load.fail_with = None
    assert loop.tick().workloads["web"].desired_replicas == 12


def test_refit_with_too_little_history_is_reported() -> None:
    loop, _, _ = make_loop([web()], settings=LoopSettings(load_history=timedelta(hours=1)))
    report = loop.refit()
    assert report.failed == ("web",)
    assert report.fitted == 0


def test_accounting_over_ticks_and_ledger() -> None:
    loop, clock, _ = make_loop(
        [web(), web(name="api", load=LoadSpec(LoadSourceKind.PROMQL, "api_rps"), region="r2")]
    )
    loop.refit()
    loop.tick()
    for _ in range(60):
        clock.advance(timedelta(minutes=1))
        snap = loop.tick()
    web_s = snap.workloads["web"]
    # 12 replicas at utilisation 100/120 -> 10 + 20 * 0.8333 = 26.67 W each, for 1 h
    assert web_s.energy_joules == pytest.approx(12 * (10 + 20 * 100 / 120) * 3600, rel=1e-6)
    assert web_s.emitted_g == pytest.approx(web_s.energy_joules / 3.6e6 * 100.0, rel=1e-6)
    total = loop.ledger.total
    assert total.emitted_g == pytest.approx(sum(w.emitted_g for w in snap.workloads.values()))
    assert loop.ledger.provenance["r2"] == frozenset({"fake-carbon/average"})


def test_eco_saves_against_the_performance_counterfactual() -> None:
    dirty = FakeDailyCarbonSource({"r1": [100.0] * 9 + [900.0] * 3 + [100.0] * 12})
    load = FakeLoadSource(daily={"web_rps": [100.0 + 40 * (h % 2) for h in range(24)]})
    loop, clock, _ = make_loop([web()], carbon=dirty, load=load)
    loop.refit()
    for _ in range(120):
        snap = loop.tick()
        clock.advance(timedelta(minutes=1))
    ws = snap.workloads["web"]
    assert ws.mode is Mode.ECO
    assert ws.desired_replicas < (ws.counterfactual_replicas or 0)
    assert ws.saved_g > 0


def train_job(*, max_replicas: int, work: float, hours: int) -> Workload:
    return Workload(
        name="train",
        namespace="ml",
        target=TargetRef(TargetKind.STATEFUL_SET, "train"),
        load=LoadSpec(LoadSourceKind.TRACE, "unused"),
        capacity_per_replica=1.0,
        min_replicas=0,
        max_replicas=max_replicas,
        power=PowerModel(50.0, 200.0),
        region="r1",
        workload_class=WorkloadClass.ELASTIC,
        elastic=ElasticSpec(work, T0 + timedelta(hours=hours), (1.0,)),
    )


def test_elastic_work_finishes_by_its_deadline_in_clean_hours() -> None:
    job = train_job(max_replicas=4, work=4 * 3 * 3600.0, hours=10)
    # 09:00-10:00 dirty, cleaner later, cleanest 14:00-17:00
    carbon = FakeDailyCarbonSource({"r1": [500.0] * 10 + [300.0] * 4 + [50.0] * 3 + [500.0] * 7})
    params = PolicyParams(elastic_slot=timedelta(hours=1))
    loop, clock, _ = make_loop([job], carbon=carbon, params=params)
    targets = []
    for _ in range(10 * 4):
        snap = loop.tick()
        targets.append(snap.workloads["train"].desired_replicas)
        clock.advance(timedelta(minutes=15))
    ws = snap.workloads["train"]
    assert ws.remaining_work == 0.0
    assert ws.deadline_feasible is None  # finished: no plan needed
    assert targets[:20] == [0] * 20  # nothing in the dirty hours
    assert ws.saved_g > 0


def test_infeasible_deadline_is_said_early(caplog: pytest.LogCaptureFixture) -> None:
    from prometheus_client.registry import CollectorRegistry

    from scaler.metrics import register_scaler_metrics

    job = train_job(max_replicas=2, work=3 * 2 * 3600.0, hours=2)
    loop, _, holder = make_loop([job])
    registry = CollectorRegistry()
    register_scaler_metrics(registry, holder)
    with caplog.at_level(logging.WARNING, logger="gridshift.scaler"):
        ws = loop.tick().workloads["train"]
        loop.tick()
    assert ws.deadline_feasible is False
    assert ws.desired_replicas == 2
    assert caplog.text.count("infeasible") == 1  # said once, when it became infeasible
    labels = {"workload": "train", "namespace": "ml", "region": "r1"}
    assert registry.get_sample_value("gridshift_elastic_deadline_feasible", labels) == 0.0
    assert registry.get_sample_value("gridshift_elastic_remaining_work", labels) == 6 * 3600.0


def test_ci_schedule_and_cron_override() -> None:
    w = web(
        ci_schedules=(CiSchedule("0 10 * * *", "UTC", timedelta(minutes=20), 100.0),),
        overrides=(ModeOverride("eco", cron="0 9 * * *", duration=timedelta(hours=1), reason="x"),),
    )
    loop, clock, _ = make_loop([w])
    loop.refit()
    ws = loop.tick().workloads["web"]
    assert ws.mode is Mode.ECO
    assert any(r == "override: eco forced until 2026-03-02T10:00:00Z (x)" for r in ws.reasons)
    clock.set(T0 + timedelta(minutes=59))
    ws = loop.tick().workloads["web"]
    assert any("pre-warm for CI load +100" in r for r in ws.reasons)


def test_schedules_reject_bad_cron_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"web.ci_schedules\[0\]: invalid cron 'every day'"):
        WorkloadSchedules.parse("web", [CiSchedule("every day", "UTC", timedelta(1), 1.0)], [])
    with pytest.raises(ValueError, match=r"web.overrides\[0\]"):
        WorkloadSchedules.parse(
            "web",
            [],
            [ModeOverride("eco", cron="0 0 * * *", timezone="Mars/Base", duration=timedelta(1))],
        )


def test_one_failing_workload_does_not_stop_the_others(caplog) -> None:
    class Broken(FakeLoadSource):
        def history(self, query, *, start, end, step):
            if query == "api_rps":
                raise RuntimeError("bug")
            return super().history(query, start=start, end=end, step=step)

    api = web(name="api", load=LoadSpec(LoadSourceKind.PROMQL, "api_rps"))
    loop, _, _ = make_loop([web(), api], load=Broken(levels={"web_rps": 100.0}))
    with caplog.at_level(logging.ERROR, logger="gridshift.scaler"):
        snap = loop.tick()
    assert set(snap.workloads) == {"web"}
    assert snap.source_errors_total == {"fake-carbon": 0, "fake-load": 0, "internal": 1}
    assert "tick api failed" in caplog.text


def test_load_forecasts_are_made_at_once_and_a_broken_batch_falls_back(monkeypatch) -> None:
    """The tick forecasts every workload's load in one `predict_each` call (one
    `predict_many` per model that predicts many fits at once); should that batch raise
    unexpectedly, each workload is predicted on its own: the same decisions."""
    api = web(name="api", load=LoadSpec(LoadSourceKind.PROMQL, "api_rps"))
    model = ProfilePersistence(period=288, seasons=2)

    def decide() -> dict[str, tuple[int, tuple[str, ...], dict[str, float]]]:
        loop = ScalerLoop(
            [web(), api],
            carbon=FakeDailyCarbonSource({"r1": CLEAN_NIGHT}),
            load=FakeLoadSource(levels={"web_rps": 100.0, "api_rps": 50.0}),
            clock=FrozenClock(T0),
            holder=SnapshotHolder(),
            params=PolicyParams(max_step_replicas=100),
            forecaster=model,
        )
        loop.refit()
        snap = loop.tick()
        return {
            n: (ws.desired_replicas, ws.reasons, dict(ws.load_forecast))
            for n, ws in snap.workloads.items()
        }

    batches = []
    predict_many = ProfilePersistence.predict_many

    def counted(self, requests):
        batches.append(len(requests))
        return predict_many(self, requests)

    monkeypatch.setattr(ProfilePersistence, "predict_many", counted)
    batched = decide()
    assert batches == [2]
    assert batched["web"][2]["mean"] > batched["api"][2]["mean"] > 0

    def broken(self, requests):
        raise RuntimeError("bug in the batch")

    monkeypatch.setattr(ProfilePersistence, "predict_many", broken)
    assert decide() == batched


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        make_loop([web(), web()])


def test_measured_power_drives_accounting() -> None:
    load = FakeLoadSource(levels={"web_rps": 100.0, "web_watts": 400.0})
    w = web(power=PowerModel(10.0, 30.0, measured_query="web_watts"))
    loop, clock, _ = make_loop([w], load=load)
    loop.refit()
    loop.tick()
    clock.advance(timedelta(hours=1))
    ws = loop.tick().workloads["web"]
    assert ws.energy_joules == pytest.approx(400.0 * 3600)
    # counterfactual: its own 12 idle replicas + the measured busy part (400 - 12 * 10)
    assert ws.counterfactual_g == pytest.approx((12 * 10 + 280) * 1.0 / 1000 * 100.0)
    load.fail_with = SourceUnavailable("down", source="prometheus")
    clock.advance(timedelta(minutes=1))
    assert "power" in loop.tick().workloads["web"].stale_inputs


def test_budget_behind_is_checked_over_the_window_and_shown() -> None:
    w = web(budget_reduction_percent=30.0)
    loop, clock, _ = make_loop([w], carbon=FakeDailyCarbonSource({"r1": [300.0] * 24}))
    loop.refit()
    loop.tick()
    clock.advance(timedelta(minutes=20))  # past the minimum dwell
    ws = loop.tick().workloads["web"]
    # flat carbon: always percentile 50, performance mode, nothing saved -> behind
    assert any(
        "budget 30% less than performance-only: 0.0% over window, behind" in r for r in ws.reasons
    )
    assert any("carbon budget behind: eco from percentile 40" in r for r in ws.reasons)
    assert ws.mode is Mode.ECO


def test_refit_on_an_executor_matches_in_thread_refit() -> None:
    from concurrent.futures import ThreadPoolExecutor

    short = web(name="short", load=LoadSpec(LoadSourceKind.PROMQL, "api_rps"))
    loop, _, _ = make_loop([web(), short])
    with ThreadPoolExecutor(max_workers=2) as pool:
        report = loop.refit(executor=pool)
    assert (report.fitted, report.failed) == (2, ())
    assert loop.tick().workloads["web"].desired_replicas == 12
    tiny, _, _ = make_loop([web()], settings=LoopSettings(load_history=timedelta(hours=1)))
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert tiny.refit(executor=pool).failed == ("web",)


# ------------------------------------------------------------------ actual replicas
def test_without_a_cluster_actual_replicas_are_unknown_with_the_reason() -> None:
    loop, _clock, _holder = make_loop([web()])
    ws = loop.tick().workloads["web"]
    assert ws.actual_replicas is None
    assert ws.actual_replicas_note == "no cluster connection"


def test_actual_replicas_are_read_every_tick() -> None:
    loop, clock, _holder = make_loop(
        [web(), web(name="api", load=LoadSpec(LoadSourceKind.PROMQL, "api_rps"))]
    )
    reader = FakeReplicaReader(replicas={"web": 7, "api": 3})
    loop.use_replica_reader(reader)
    snap = loop.tick()
    assert snap.workloads["web"].actual_replicas == 7
    assert snap.workloads["web"].actual_replicas_note == ""
    assert snap.workloads["api"].actual_replicas == 3
    assert snap.source_errors_total["fake-kube"] == 0
    reader.replicas["web"] = 9
    clock.advance(timedelta(minutes=1))
    assert loop.tick().workloads["web"].actual_replicas == 9
    assert reader.calls == 2


def test_a_failed_read_is_unknown_logged_and_counted_and_the_tick_goes_on(caplog) -> None:
    loop, _clock, _holder = make_loop(
        [web(), web(name="api", load=LoadSpec(LoadSourceKind.PROMQL, "api_rps"))]
    )
    down = SourceUnavailable("Deployment default/web: 503", source="fake-kube", status=503)
    loop.use_replica_reader(FakeReplicaReader(replicas={"api": 2}, fail={"web": down}))
    loop.refit()
    with caplog.at_level(logging.WARNING, logger="gridshift.scaler"):
        snap = loop.tick()
    web_status = snap.workloads["web"]
    assert web_status.actual_replicas is None
    assert "read failed" in web_status.actual_replicas_note
    assert "503" in web_status.actual_replicas_note
    assert web_status.desired_replicas == 12  # the decision itself is unaffected
    assert snap.workloads["api"].actual_replicas == 2
    assert snap.source_errors_total["fake-kube"] == 1
    assert "actual replicas of web" in caplog.text
    assert "shown as unknown" in caplog.text


def test_a_reader_that_raises_does_not_break_the_tick(caplog) -> None:
    loop, _clock, _holder = make_loop([web()])
    loop.use_replica_reader(FakeReplicaReader(raise_with=RuntimeError("boom")))
    with caplog.at_level(logging.ERROR, logger="gridshift.scaler"):
        snap = loop.tick()
    assert snap.workloads["web"].actual_replicas is None
    assert snap.workloads["web"].actual_replicas_note == "read failed: boom"
    assert snap.source_errors_total["fake-kube"] == 1
    assert "reading actual replicas failed" in caplog.text


def test_a_workload_the_reader_skipped_is_not_read() -> None:
    loop, _clock, _holder = make_loop([web()])
    loop.use_replica_reader(FakeReplicaReader())
    ws = loop.tick().workloads["web"]
    assert (ws.actual_replicas, ws.actual_replicas_note) == (None, "not read")


def test_actuated_workloads_are_accounted_at_the_replicas_that_ran() -> None:
    """gridshift decides 12 replicas for web, but the cluster runs 6 (pods pending): where
    gridshift's decisions are in effect the interval is accounted at the 6 that ran; where
    they are not (dry run, or an HPA of its own) at the decision, as before."""
    api = web(name="api", load=LoadSpec(LoadSourceKind.PROMQL, "web_rps"))
    loop, clock, _ = make_loop([web(), api])
    loop.use_replica_reader(
        FakeReplicaReader(replicas={"web": 6, "api": 6}, actuated=frozenset({"web"}))
    )
    loop.refit()
    loop.tick()
    clock.advance(timedelta(hours=1))
    snap = loop.tick()
    ran, decided = snap.workloads["web"], snap.workloads["api"]
    assert decided.desired_replicas == 12
    # 6 replicas at utilisation 100/60 (capped at busy) vs 12 at 100/120, for one hour
    assert ran.energy_joules == pytest.approx(6 * 30.0 * 3600, rel=1e-6)
    assert decided.energy_joules == pytest.approx(12 * (10 + 20 * 100 / 120) * 3600, rel=1e-6)
    assert any("accounted at the 6 replicas running, not the 12" in r for r in ran.reasons)
    assert not any("accounted at" in r for r in decided.reasons)


def test_an_unknown_actual_count_falls_back_to_the_decision() -> None:
    down = SourceUnavailable("Deployment default/web: 503", source="fake-kube", status=503)
    loop, clock, _ = make_loop([web()])
    loop.use_replica_reader(FakeReplicaReader(fail={"web": down}, actuated=frozenset({"web"})))
    loop.refit()
    loop.tick()
    clock.advance(timedelta(hours=1))
    ws = loop.tick().workloads["web"]
    assert ws.energy_joules == pytest.approx(12 * (10 + 20 * 100 / 120) * 3600, rel=1e-6)


def test_elastic_work_progresses_only_at_the_replicas_that_ran() -> None:
    """The plan asks for 2 replicas; the cluster runs none (unschedulable): no work is done,
    so the remaining work stays and the plan keeps asking."""
    job = train_job(max_replicas=2, work=3 * 2 * 3600.0, hours=3)
    loop, clock, _ = make_loop([job])
    loop.use_replica_reader(FakeReplicaReader(replicas={"train": 0}, actuated=frozenset({"train"})))
    first = loop.tick().workloads["train"]
    assert first.desired_replicas == 2
    clock.advance(timedelta(hours=1))
    stuck = loop.tick().workloads["train"]
    assert stuck.remaining_work == 6 * 3600.0
    assert stuck.energy_joules == 0.0


# ---------------------------------------------------------------- workloads that come and go
def test_workload_source_adds_fits_changes_and_drops_between_ticks() -> None:
    """CarbonAwareScalers come and go: the set is re-read before each tick; a new workload
    gets its load model at once (no 'no fitted load model yet' until the hourly refit), a
    changed one keeps its replicas, a deleted one is dropped."""
    loop, clock, _holder = make_loop([web()])
    loop.refit()
    current = [web()]
    loop.use_workload_source(lambda: current)
    first = loop.tick().workloads["web"]
    current = [
        web(max_replicas=5),
        web(name="api", load=LoadSpec(LoadSourceKind.PROMQL, "api_rps")),
    ]
    clock.advance(timedelta(minutes=1))
    snap = loop.tick()
    assert set(snap.workloads) == {"web", "api"}
    assert "no fitted load model yet" not in " ".join(snap.workloads["api"].reasons)
    assert snap.workloads["api"].desired_replicas > 1
    assert snap.workloads["web"].desired_replicas == 5, f"clamped, from {first.desired_replicas}"
    current = [current[1]]
    clock.advance(timedelta(minutes=1))
    assert set(loop.tick().workloads) == {"api"}


def test_a_broken_workload_source_keeps_the_previous_set() -> None:
    loop, _clock, _holder = make_loop([web()])
    loop.refit()

    def broken() -> list[Workload]:
        raise RuntimeError("cache gone")

    loop.use_workload_source(broken)
    assert set(loop.tick().workloads) == {"web"}
    assert loop.tick().source_errors_total["internal"] == 2


def test_a_new_workload_starts_from_what_its_target_runs() -> None:
    """A new CR that actuates must not scale a running Deployment down to its floor while
    its load is still unknown: its first decision starts from the actual replicas."""
    loop, _clock, _holder = make_loop([], load=FakeLoadSource(levels={}))
    loop.use_replica_reader(FakeReplicaReader(replicas={"web": 6}))
    loop.use_workload_source(lambda: [web(min_replicas=1)])
    status = loop.tick().workloads["web"]
    assert "load" in status.stale_inputs
    assert status.desired_replicas == 6


def test_a_workload_listed_after_a_restore_continues_from_the_checkpoint() -> None:
    """The checkpoint is kept for workloads not listed yet (CRs arrive after the start)."""
    loop, clock, _holder = make_loop([web()])
    loop.refit()
    for _ in range(3):
        loop.tick()
        clock.advance(timedelta(minutes=1))
    saved = loop.checkpoint()
    fresh, _, _ = make_loop([], clock=clock)
    fresh.restore(saved)
    assert fresh.checkpoint().workloads["web"] == saved.workloads["web"], "kept while unlisted"
    fresh.set_workloads([web()])
    assert fresh.ledger.by_workload["web"].emitted_g == pytest.approx(
        saved.workloads["web"].emitted_g
    )
