"""scaler.state and the loop's checkpoints: crash safety without a process.

Aspects: JSON round trip; corrupt/unknown-version files are reported naming the field and
ignored (fresh start, no crash); the file store writes atomically (no temp files left, the old
checkpoint survives a failed write); a restarted loop continues ticks and savings counters
from the checkpoint; restored replicas are clamped to current bounds; a store that fails is
counted, never stops a tick. The ConfigMap form (gzip in binaryData): round trip, deterministic
bytes, about 80 bytes a workload so 10,000 fit one ConfigMap; a stream cut short, damaged, with
bytes after it, not base64, or inflating past the bound is a `CheckpointError` naming it; the
older plain JSON in `data` is still read (the ConfigMap store on the real API server:
tests/cluster/test_state_configmap.py).
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scaler.state import (
    CheckpointError,
    FileStateStore,
    LoopCheckpoint,
    WorkloadCheckpoint,
    checkpoint_from_config_map,
    checkpoint_from_gzip,
    checkpoint_from_json,
    checkpoint_to_gzip,
    checkpoint_to_json,
)
from tests.unit.test_loop import T0, make_loop, train_job, web

CP = LoopCheckpoint(
    saved_at=T0,
    ticks_total=7,
    workloads={
        "web": WorkloadCheckpoint(
            replicas=12,
            counterfactual_replicas=13,
            last_at=T0,
            energy_joules=1.5e6,
            counterfactual_energy_joules=1.6e6,
            emitted_g=100.0,
            counterfactual_g=120.0,
        )
    },
)


def test_round_trip() -> None:
    assert checkpoint_from_json(checkpoint_to_json(CP)) == CP


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        pytest.param(lambda d: d.pop("ticks_total"), "checkpoint.ticks_total", id="missing"),
        pytest.param(lambda d: d.update(version=99), "checkpoint.version", id="version"),
        pytest.param(
            lambda d: d["workloads"]["web"].update(replicas="x"),
            "checkpoint.workloads.web.replicas",
            id="wrong type",
        ),
        pytest.param(
            lambda d: d["workloads"]["web"].update(replicas=-1),
            "checkpoint.workloads.web",
            id="negative",
        ),
        pytest.param(
            lambda d: d["workloads"]["web"].update(last_at="2026-01-01T00:00:00"),
            "checkpoint.workloads.web.last_at",
            id="naive instant",
        ),
    ],
)
def test_bad_checkpoint_names_the_field(mutate, field: str) -> None:
    raw = json.loads(checkpoint_to_json(CP))
    mutate(raw)
    with pytest.raises(CheckpointError, match=field.replace(".", r"\.")):
        checkpoint_from_json(json.dumps(raw))


def test_file_store_is_atomic_and_ignores_garbage(tmp_path: Path, caplog) -> None:
    path = tmp_path / "sub" / "state.json"
    store = FileStateStore(path)
    assert store.load() is None
    store.save(CP)
    assert store.load() == CP
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]  # no temp files left

    bad = LoopCheckpoint(T0, 8, {"web": WorkloadCheckpoint(1, 1, T0, emitted_g=float("nan"))})
    with pytest.raises(ValueError):
        store.save(bad)  # NaN is refused before anything is written
    assert store.load() == CP  # the previous checkpoint survives
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]

    path.write_text('{"version": 1, "ticks_')  # a torn write from some other tool
    with caplog.at_level(logging.ERROR):
        assert store.load() is None
    assert "unusable, starting fresh" in caplog.text


def test_restarted_loop_continues_counters(tmp_path: Path) -> None:
    store = FileStateStore(tmp_path / "state.json")
    loop, clock, _ = make_loop([web()])
    loop._store = store
    loop.refit()
    for _ in range(4):
        loop.tick()
        clock.advance(timedelta(minutes=5))
    before = loop.checkpoint()
    assert before.ticks_total == 4
    assert before.workloads["web"].emitted_g > 0

    again, _clock2, _ = make_loop([web()], clock=clock)
    assert again.checkpoint().ticks_total == 0
    again = type(again)(
        again.workloads,
        carbon=again._carbon,
        load=again._load,
        clock=clock,
        holder=again._holder,
        params=again._params,
        settings=again._settings,
        state_store=store,
    )
    again.refit()
    snap = again.tick()
    assert snap.ticks_total == 5
    ws = snap.workloads["web"]
    assert ws.emitted_g > before.workloads["web"].emitted_g  # continued, not restarted
    assert again.ledger.total.emitted_g == pytest.approx(ws.emitted_g)


def test_restore_clamps_replicas_to_current_bounds() -> None:
    loop, _, _ = make_loop([web(max_replicas=5)])
    loop.restore(CP)
    cp = loop.checkpoint()
    assert cp.workloads["web"].replicas == 5
    assert cp.workloads["web"].counterfactual_replicas == 5
    assert cp.ticks_total == 7


def test_failing_store_is_counted_not_fatal(caplog) -> None:
    class Full:
        def load(self) -> None:
            return None

        def save(self, checkpoint: LoopCheckpoint) -> None:
            raise OSError(28, "No space left on device")

        def takeover(self) -> None:
            return None

    loop, _, _ = make_loop([web()])
    loop._store = Full()
    with caplog.at_level(logging.WARNING):
        snap = loop.tick()
    assert "web" in snap.workloads
    assert loop.tick().source_errors_total["state"] == 2
    assert "state not persisted" in caplog.text


def test_saved_at_is_utc() -> None:
    assert CP.saved_at.tzinfo is not None
    assert checkpoint_from_json(checkpoint_to_json(CP)).saved_at == datetime(
        2026, 3, 2, 9, tzinfo=UTC
    )


def test_checkpoint_carries_the_namespace_and_reads_older_ones_without() -> None:
    loop, _, _ = make_loop([web(namespace="shop")])
    loop.tick()
    cp = loop.checkpoint()
    assert cp.workloads["web"].namespace == "shop"
    assert checkpoint_from_json(checkpoint_to_json(cp)).workloads["web"].namespace == "shop"
    older = json.loads(checkpoint_to_json(CP))
    del older["workloads"]["web"]["namespace"]
    assert checkpoint_from_json(json.dumps(older)).workloads["web"].namespace == ""
    older["workloads"]["web"]["namespace"] = 3
    with pytest.raises(CheckpointError, match=r"checkpoint.workloads.web.namespace: expected"):
        checkpoint_from_json(json.dumps(older))


def test_partial_checkpoint_continues_only_the_workloads_taken_over() -> None:
    """A shard taken over: the job it names continues with the previous owner's work left and
    counters; the workload this replica decided all along keeps its own."""
    job = train_job(max_replicas=4, work=10 * 3600.0, hours=10)
    loop, clock, _ = make_loop([web(), job])
    loop.refit()
    for _ in range(3):
        loop.tick()
        clock.advance(timedelta(minutes=5))
    own = loop.checkpoint()
    fresh_work = own.workloads["train"].remaining_work
    web_totals = loop.ledger.by_workload["web"]
    handed = WorkloadCheckpoint(
        replicas=3,
        counterfactual_replicas=4,
        last_at=clock.now() - timedelta(minutes=5),
        remaining_work=1_000.0,
        counterfactual_remaining_work=500.0,
        energy_joules=9e6,
        counterfactual_energy_joules=1e7,
        emitted_g=321.0,
        counterfactual_g=400.0,
        namespace="ml",
    )
    loop.continue_from(
        LoopCheckpoint(saved_at=T0, ticks_total=99, workloads={"train": handed}, partial=True)
    )
    after = loop.checkpoint()
    assert after.ticks_total == own.ticks_total == 3  # the tick count stays this replica's
    assert after.workloads["web"] == own.workloads["web"]
    assert after.workloads["train"] == handed
    assert fresh_work > handed.remaining_work
    led = loop.ledger
    assert led.by_workload["web"] == web_totals
    assert led.total.emitted_g == pytest.approx(web_totals.emitted_g + 321.0)
    assert led.by_region["r1"].emitted_g == pytest.approx(
        sum(t.emitted_g for t in led.by_workload.values())
    )
    snap = loop.tick()  # five minutes at 3 replicas since the handed-over last save
    ws = snap.workloads["train"]
    assert ws.remaining_work == pytest.approx(1_000.0 - 3 * 300.0)
    assert ws.emitted_g > 321.0
    assert snap.ticks_total == 4


def test_partial_checkpoint_from_the_store_on_taking_over() -> None:
    """The loop asks the store every tick; a partial answer is continued, not restored whole
    (a whole restore would reset the ledger and the tick count)."""
    job = train_job(max_replicas=4, work=10 * 3600.0, hours=10)
    handed = WorkloadCheckpoint(
        replicas=2, counterfactual_replicas=4, last_at=T0, remaining_work=5_000.0, emitted_g=5.0
    )

    class TakenOver:
        def __init__(self) -> None:
            self.answers = [LoopCheckpoint(T0, 50, {"train": handed}, partial=True)]

        def load(self) -> None:
            return None

        def save(self, checkpoint: LoopCheckpoint) -> None:
            pass

        def takeover(self) -> LoopCheckpoint | None:
            return self.answers.pop() if self.answers else None

    loop, clock, _ = make_loop([web(), job])
    loop.refit()
    for _ in range(2):
        loop.tick()
        clock.advance(timedelta(minutes=5))
    web_before = loop.ledger.by_workload["web"]
    loop._store = TakenOver()
    snap = loop.tick()
    assert snap.ticks_total == 3
    # from the handed-over last save (T0) to now (T0 + 10 min) at its 2 replicas
    assert snap.workloads["train"].remaining_work == pytest.approx(5_000.0 - 2 * 600.0)
    assert snap.workloads["train"].emitted_g > 5.0
    assert loop.ledger.by_workload["web"].emitted_g > web_before.emitted_g


def fleet_checkpoint(n: int, *, seed: int = 1) -> LoopCheckpoint:
    """`n` workloads with full-precision counters (the hardest case for compression)."""
    rng = random.Random(seed)
    return LoopCheckpoint(
        saved_at=T0,
        ticks_total=100,
        workloads={
            f"w{i:05d}": WorkloadCheckpoint(
                replicas=rng.randint(0, 20),
                counterfactual_replicas=rng.randint(0, 20),
                last_at=T0,
                remaining_work=rng.uniform(0, 1e5),
                counterfactual_remaining_work=rng.uniform(0, 1e5),
                energy_joules=rng.uniform(0, 1e9),
                counterfactual_energy_joules=rng.uniform(0, 1e9),
                emitted_g=rng.uniform(0, 1e5),
                counterfactual_g=rng.uniform(0, 1e5),
                namespace="fleet",
            )
            for i in range(n)
        },
    )


def test_gzip_round_trip_is_deterministic_and_small() -> None:
    cp = fleet_checkpoint(2000)
    blob, json_bytes = checkpoint_to_gzip(cp)
    assert checkpoint_from_gzip(blob, max_bytes=json_bytes) == cp
    assert checkpoint_to_gzip(cp)[0] == blob  # no timestamp in the gzip header
    assert len(blob) / 2000 < 85  # ~77 bytes a workload: 10,000 in 900 kB
    assert len(checkpoint_to_json(cp)) / 2000 > 400  # what the ConfigMap held before


def gz(cp: LoopCheckpoint = CP) -> bytes:
    return checkpoint_to_gzip(cp)[0]


@pytest.mark.parametrize(
    ("blob", "problem"),
    [
        pytest.param(gz()[:-6], "cut short", id="truncated trailer"),
        pytest.param(gz()[: len(gz()) // 2], "cut short", id="half written"),
        pytest.param(gz()[:-8] + bytes(8), "not intact gzip: .*(check|length)", id="bad crc"),
        pytest.param(gz() + gz(), "bytes after its gzip stream", id="two streams"),
        pytest.param(b"{}", "not intact gzip", id="not gzip"),
        pytest.param(b"", "cut short", id="empty"),
    ],
)
def test_damaged_gzip_is_refused_naming_the_problem(blob: bytes, problem: str) -> None:
    with pytest.raises(CheckpointError, match=problem):
        checkpoint_from_gzip(blob, max_bytes=10**6)


def test_decompression_is_bounded() -> None:
    blob, json_bytes = checkpoint_to_gzip(fleet_checkpoint(50))
    assert checkpoint_from_gzip(blob, max_bytes=json_bytes).ticks_total == 100
    with pytest.raises(CheckpointError, match=f"more than {json_bytes - 1} bytes"):
        checkpoint_from_gzip(blob, max_bytes=json_bytes - 1)
    bomb = gzip.compress(b" " * 10**7)  # 10 MB of JSON whitespace in ~10 kB
    with pytest.raises(CheckpointError, match="more than 1000000 bytes"):
        checkpoint_from_gzip(bomb, max_bytes=10**6)


def test_config_map_form_and_the_older_plain_json() -> None:
    encoded = base64.b64encode(gz()).decode()
    assert checkpoint_from_config_map(None, {"checkpoint.json.gz": encoded}) == CP
    # binaryData wins over a leftover data key (never both after a save, but be sure)
    assert (
        checkpoint_from_config_map({"checkpoint.json": "junk"}, {"checkpoint.json.gz": encoded})
        == CP
    )
    assert checkpoint_from_config_map({"checkpoint.json": checkpoint_to_json(CP)}, None) == CP
    assert checkpoint_from_config_map({}, {}) is None
    assert checkpoint_from_config_map(None, None) is None
    with pytest.raises(CheckpointError, match=r"binaryData.checkpoint.json.gz: not base64"):
        checkpoint_from_config_map(None, {"checkpoint.json.gz": "%%%"})
    with pytest.raises(CheckpointError, match=r"data.checkpoint.json: more than 10 bytes"):
        checkpoint_from_config_map(
            {"checkpoint.json": checkpoint_to_json(CP)}, None, max_json_bytes=10
        )
