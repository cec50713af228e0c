"""`ConfigMapStateStore` with the real `kubernetes` client against the real API server
(tests/cluster: kube-apiserver v1.37.2 behind `tests.faultproxy.FaultProxy`, which records the
requests and injects the 5xx/unreachable faults), in a namespace of each test's own.

Aspects: nothing stored loads as None; the first save creates the ConfigMap (POST), later
saves replace it carrying the last resourceVersion (PUT); another writer in between causes a
409, a re-read and a successful retry; a checkpoint already stored that is newer is never
overwritten by an older one; a ConfigMap deleted under us is re-created; a checkpoint over
the size bound is refused before any request, and a replica that does not lead writes
nothing, and the API server's own 1 MiB limit (422)
surfaces as a `StateStoreError` naming it; the checkpoint is gzip in binaryData: 10,000
workloads (full-precision counters) round-trip in one ConfigMap under the budget; one cut short
(a partial write) or damaged is ignored with an error naming why and the store starts fresh
(a torn shard: the other shards are handed over, none of the torn one), its next save whole;
an older plain-JSON checkpoint in `data` is read and the next save rewrites it compressed;
a 500 or an unreachable API server on save raises
`StateStoreError` (the loop logs and counts it and the tick completes, the next tick's save
succeeds); a failing read on start raises instead of starting fresh; the stand-in answers
ConfigMap errors with kube-apiserver's Status bodies. Leader handover (real `LeaseLock` and
`LeaderElector`): a follower that takes the Lease over, after the leader
released it or after it expired (the leader killed), re-reads the ConfigMap before its first
write and saves on from the previous leader's last checkpoint with the resourceVersion it
read; a failed re-read delays its first write rather than writing its own counters; a 409
on a gated save (another replica led in between) is not written over but taken over.
`ShardStateStore` (the sharded scaler's, one ConfigMap per shard): each held shard's ConfigMap
holds exactly that shard's workloads; a replica holding no shard writes nothing; a shard that
moves is taken over by its new holder as a partial checkpoint of that shard's workloads only,
from its previous holder's last save, and from then on only the new holder writes it; a shard
whose re-read fails is retried on the next call while the others are handed over, and when
every acquired shard failed the error is raised.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import kubernetes.client as k8s
import pytest
from prometheus_client import CollectorRegistry

from config.scenario import sample_settings
from config.wiring import ScalerApp, build_scaler
from forecasts.sources.sample import SampleCarbonSource, SampleLoadSource
from forecasts.time import FrozenClock, SteppingClock
from scaler.kube import LeaderElector, LeaseLock
from scaler.state import (
    ConfigMapStateStore,
    LoopCheckpoint,
    ShardStateStore,
    StateStoreError,
    WorkloadCheckpoint,
    checkpoint_from_config_map,
    checkpoint_to_gzip,
    checkpoint_to_json,
)
from tests.cluster.proxied import ProxiedApi
from tests.faultproxy import Fault
from tests.unit.test_state import fleet_checkpoint

pytestmark = pytest.mark.cluster

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
NAME = "gridshift-scaler-state"
PATH = "/api/v1/namespaces/{ns}/configmaps/" + NAME
CP = LoopCheckpoint(
    saved_at=T0,
    ticks_total=7,
    workloads={"web": WorkloadCheckpoint(3, 4, T0, emitted_g=12.5, counterfactual_g=20.0)},
)


def later(cp: LoopCheckpoint, minutes: int) -> LoopCheckpoint:
    return replace(
        cp, saved_at=cp.saved_at + timedelta(minutes=minutes), ticks_total=cp.ticks_total + minutes
    )


def store_for(api: ProxiedApi, **kw) -> ConfigMapStateStore:
    return ConfigMapStateStore(k8s.CoreV1Api(api.client()), namespace=api.ns, name=NAME, **kw)


def writes(api: ProxiedApi) -> list[tuple[str, str | None]]:
    return [
        (r.method, (r.body or {}).get("metadata", {}).get("resourceVersion"))
        for r in api.requests
        if r.method in ("POST", "PUT") and "configmaps" in r.path
    ]


def stored(api: ProxiedApi) -> LoopCheckpoint:
    obj = api.get_object(PATH)
    assert obj is not None
    cp = checkpoint_from_config_map(obj.get("data"), obj.get("binaryData"))
    assert cp is not None
    return cp


def test_create_then_replace_with_resource_version(api) -> None:
    store = store_for(api)
    assert store.load() is None
    store.save(CP)
    rv_after_create = api.get_object(PATH)["metadata"]["resourceVersion"]
    store.save(later(CP, 1))
    assert writes(api) == [("POST", None), ("PUT", rv_after_create)]
    assert store_for(api).load() == later(CP, 1)  # a fresh process reads what was saved
    assert api.get_object(PATH)["metadata"]["labels"] == {"app.kubernetes.io/name": "gridshift"}


def test_conflict_rereads_and_retries(api) -> None:
    store = store_for(api)
    store.save(CP)
    other = store_for(api)  # a second replica writes an older checkpoint in between
    other.load()
    # a changed body: kube-apiserver treats a PUT of identical content as a no-op that keeps
    # the resourceVersion (no conflict would follow)
    other.save(replace(CP, ticks_total=CP.ticks_total - 1))
    store.save(later(CP, 1))
    assert store.conflicts == 1
    assert [m for m, _ in writes(api)] == ["POST", "PUT", "PUT", "PUT"]
    assert stored(api) == later(CP, 1)


def test_newer_checkpoint_already_stored_is_kept(api) -> None:
    store = store_for(api)
    store.save(CP)
    ahead = store_for(api)
    ahead.load()
    ahead.save(later(CP, 5))
    store.save(later(CP, 1))  # 409, re-read: the stored one is newer, leave it
    assert stored(api) == later(CP, 5)


def test_only_the_gated_replica_writes(api) -> None:
    leading = [False]
    store = store_for(api)
    store.write_only_when(lambda: leading[0])
    assert store.takeover() is None
    store.save(CP)
    assert (writes(api), store.skipped) == ([], 1)  # a follower saves nothing
    leading[0] = True
    store.save(CP)  # leading since the tick started: nothing re-read yet, so no write
    assert (writes(api), store.skipped) == ([], 2)
    assert store.takeover() is None  # nothing stored yet
    assert store.takeover() is None  # once per term
    store.save(CP)
    assert stored(api) == CP
    leading[0] = False
    store.save(later(CP, 1))
    assert stored(api) == CP
    leading[0] = True  # a new term re-reads again
    assert store.takeover() == CP
    assert store.takeovers == 2


def test_a_term_missed_between_two_ticks_is_taken_over(api) -> None:
    store = store_for(api)
    store.write_only_when(lambda: True)
    assert store.takeover() is None
    store.save(CP)
    other = store_for(api)  # another replica led meanwhile and saved on
    other.load()
    other.save(later(CP, 1))
    store.save(replace(later(CP, 2), ticks_total=9))  # 409: newer, but not written over
    assert (stored(api), store.conflicts, store.skipped) == (later(CP, 1), 1, 1)
    assert store.takeover() == later(CP, 1)  # the next tick continues from it
    store.save(later(CP, 3))
    assert stored(api) == later(CP, 3)


def test_failed_reread_on_takeover_delays_the_first_write(api) -> None:
    store_for(api).save(CP)
    store = store_for(api)
    store.write_only_when(lambda: True)
    api.fail_next("GET", "configmaps", 503)
    with pytest.raises(StateStoreError, match="read failed: 503"):
        store.takeover()
    store.save(later(CP, 1))  # never its own counters over the stored ones
    assert stored(api) == CP
    assert store.takeover() == CP
    store.save(later(CP, 2))
    assert stored(api) == later(CP, 2)


def test_deleted_under_us_is_recreated(api) -> None:
    store = store_for(api)
    store.save(CP)
    api.delete_object(PATH)
    store.save(later(CP, 1))
    assert stored(api) == later(CP, 1)
    assert [m for m, _ in writes(api)] == ["POST", "PUT", "POST"]


def test_a_10000_workload_shard_round_trips(api) -> None:
    """Everything one replica could own (10,000 workloads in one ConfigMap): saved, read back
    whole by a fresh store, and replaced by the next save, under the 900 kB budget."""
    big = fleet_checkpoint(10_000)
    store = store_for(api)
    store.save(big)
    assert store_for(api).load() == big
    obj = api.get_object(PATH)
    assert obj is not None
    assert set(obj["binaryData"]) == {"checkpoint.json.gz"}
    assert "data" not in obj
    size = len(base64.b64decode(obj["binaryData"]["checkpoint.json.gz"]))
    assert size < 900_000
    store.save(later(big, 1))
    assert stored(api) == later(big, 1)
    print(f"\n10,000 workloads: {size} bytes compressed ({size / 10_000:.0f} per workload)")


def test_size_bound_and_api_server_limit(api) -> None:
    big = fleet_checkpoint(16_000)  # ~1.2 MB compressed
    with pytest.raises(
        StateStoreError,
        match=r"over the 900000-byte limit .* with 16000 workloads; not saved \(raise kube.shards",
    ):
        store_for(api).save(big)
    assert writes(api) == []  # refused before any request
    with pytest.raises(StateStoreError, match=r"over the 900000-byte limit \(1000 as JSON\)"):
        store_for(api, max_json_bytes=1000).save(fleet_checkpoint(10))  # the JSON bound too
    with pytest.raises(
        StateStoreError, match=r"422 .*Too long: may not be more than 1048576 bytes"
    ):
        store_for(api, max_bytes=10**8).save(big)


def put_config_map(api: ProxiedApi, name: str = NAME, **body: object) -> None:
    api.put_object(
        "/api/v1/namespaces/{ns}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, **body},
    )


def test_a_checkpoint_cut_short_is_ignored_with_a_warning_and_replaced(api, caplog) -> None:
    """A partial write (the gzip stream without its end) or a damaged one: never half a
    checkpoint: the store starts fresh, says why, and its next save replaces it whole."""
    blob = checkpoint_to_gzip(fleet_checkpoint(500))[0]
    for damaged, why in [
        (blob[: len(blob) // 2], "cut short"),
        (blob[:-8] + bytes(8), "not intact gzip"),
    ]:
        put_config_map(api, binaryData={"checkpoint.json.gz": base64.b64encode(damaged).decode()})
        caplog.clear()
        store = store_for(api)
        store.write_only_when(lambda: True)
        assert store.load() is None
        assert store.takeover() is None  # a new term: nothing to continue from
        assert any(
            r.levelname == "ERROR" and "unusable, starting fresh" in r.message and why in r.message
            for r in caplog.records
        ), [r.message for r in caplog.records]
        store.save(CP)
        assert stored(api) == CP


def test_a_torn_shard_starts_fresh_and_the_others_are_handed_over(api, caplog) -> None:
    """One shard's ConfigMap cut short, the others whole: the whole ones are handed over, the
    torn shard's workloads start fresh (no part of it is mixed in), and its next save is whole."""
    a = shard_store(api, {0, 1, 2})
    a.takeover()
    a.save(FLEET)
    obj = api.get_object(f"/api/v1/namespaces/{{ns}}/configmaps/{NAME}-shard-1")
    assert obj is not None
    blob = base64.b64decode(obj["binaryData"]["checkpoint.json.gz"])
    put_config_map(
        api,
        f"{NAME}-shard-1",
        binaryData={"checkpoint.json.gz": base64.b64encode(blob[:-4]).decode()},
    )
    b = shard_store(api, {0, 1, 2})
    handed = b.takeover()
    assert handed is not None
    assert set(handed.workloads) == set(share(FLEET, 0)) | set(share(FLEET, 2))
    assert any(f"{NAME}-shard-1 unusable, starting fresh" in r.message for r in caplog.records)
    b.save(later(FLEET, 1))
    assert shard_stored(api, 1) == later(replace(FLEET, workloads=share(FLEET, 1)), 1)


def test_an_older_plain_json_checkpoint_is_read_and_rewritten_compressed(api) -> None:
    """A ConfigMap as gridshift wrote it before (plain JSON in data["checkpoint.json"]): read,
    continued, and the next save leaves only the compressed form."""
    put_config_map(api, data={"checkpoint.json": checkpoint_to_json(CP)})
    store = store_for(api)
    store.write_only_when(lambda: True)
    assert store.load() == CP
    assert store.takeover() == CP
    store.save(later(CP, 1))
    obj = api.get_object(PATH)
    assert obj is not None
    assert "data" not in obj
    assert set(obj["binaryData"]) == {"checkpoint.json.gz"}
    assert stored(api) == later(CP, 1)


def test_api_errors_raise_store_errors(api) -> None:
    store = store_for(api)
    api.fail_next("GET", "configmaps", 500)
    with pytest.raises(StateStoreError, match="read failed: 500"):
        store.load()  # never "start fresh" on a failed read
    store.save(CP)
    api.fail_next("PUT", "configmaps", 500)
    with pytest.raises(StateStoreError, match="write failed: 500"):
        store.save(later(CP, 1))
    store.save(later(CP, 2))
    assert stored(api) == later(CP, 2)
    api.proxy.fault = Fault.RESET
    with pytest.raises(StateStoreError, match="unreachable"):
        store_for(api).save(later(CP, 3))  # a new connection: refused


def test_configmap_errors_the_store_relies_on(api) -> None:
    """kube-apiserver's Status bodies for what the store handles (404, AlreadyExists, 409,
    a renamed PUT): the shapes tests/apiserver.py copies."""
    ns = api.ns
    core = k8s.CoreV1Api(api.client())

    def status_of(exc: k8s.ApiException) -> dict[str, object]:
        body: dict[str, object] = json.loads(str(exc.body))
        return body

    def config_map(name: str = NAME, rv: str | None = None) -> k8s.V1ConfigMap:
        meta = k8s.V1ObjectMeta(name=name, resource_version=rv)
        return k8s.V1ConfigMap(metadata=meta, data={"k": "v"})

    with pytest.raises(k8s.ApiException) as missing:
        core.read_namespaced_config_map(NAME, ns)
    status = status_of(missing.value)
    assert (status["kind"], status["code"], status["reason"]) == ("Status", 404, "NotFound")
    assert status["details"] == {"name": NAME, "kind": "configmaps"}
    core.create_namespaced_config_map(ns, config_map())
    with pytest.raises(k8s.ApiException) as exists:
        core.create_namespaced_config_map(ns, config_map())
    assert status_of(exists.value)["reason"] == "AlreadyExists"
    with pytest.raises(k8s.ApiException) as stale:
        core.replace_namespaced_config_map(NAME, ns, config_map(rv="1"))
    assert (stale.value.status, status_of(stale.value)["reason"]) == (409, "Conflict")
    with pytest.raises(k8s.ApiException) as renamed:
        core.replace_namespaced_config_map(NAME, ns, config_map("other"))
    assert renamed.value.status == 400


def test_loop_keeps_ticking_when_the_configmap_cannot_be_written(api) -> None:
    settings = sample_settings(T0)
    scaler = settings.scaler.model_copy(
        update={"state_store": "configmap", "state_configmap_namespace": api.ns}
    )
    settings = settings.model_copy(update={"scaler": scaler})

    def build():
        return build_scaler(
            settings,
            clock=SteppingClock(T0, timedelta(minutes=1)),
            registry=CollectorRegistry(),
            carbon=SampleCarbonSource(),
            load=SampleLoadSource(),
            api_client=api.client(),
        )

    built = build()
    built.loop.refit()
    built.loop.tick()
    assert stored(api).ticks_total == 1
    api.fail_next("PUT", "configmaps", 503)
    snap = built.loop.tick()  # the save fails; the tick does not
    assert len(snap.workloads) == 5  # published all the same
    assert snap.source_errors_total["state"] == 1
    assert (
        built.registry.get_sample_value("gridshift_source_errors_total", {"source": "state"}) == 1
    )
    built.loop.tick()
    assert stored(api).ticks_total == 3
    emitted = sum(w.emitted_g for w in stored(api).workloads.values())
    restarted = build()  # a new process restores from the ConfigMap
    assert restarted.loop.checkpoint().ticks_total == 3
    assert sum(w.emitted_g for w in restarted.loop.checkpoint().workloads.values()) == emitted


def replica(api: ProxiedApi, identity: str, wall: FrozenClock) -> tuple[ScalerApp, LeaderElector]:
    """One `gridshift run` replica as `cmd_run` wires it: ConfigMap store gated on the Lease."""
    settings = sample_settings(T0)
    scaler = settings.scaler.model_copy(
        update={"state_store": "configmap", "state_configmap_namespace": api.ns}
    )
    built = build_scaler(
        settings.model_copy(update={"scaler": scaler}),
        clock=wall,
        registry=CollectorRegistry(),
        carbon=SampleCarbonSource(),
        load=SampleLoadSource(),
        api_client=api.client(),
    )
    lock = LeaseLock(
        k8s.CustomObjectsApi(api.client()),
        namespace=api.ns,
        name="gridshift-scaler",
        identity=identity,
        clock=wall,
        lease_duration_seconds=15,
        renew_deadline_seconds=10,
    )
    elector = LeaderElector(lock)
    assert built.state_store is not None
    assert isinstance(built.state_store, ConfigMapStateStore)
    built.state_store.write_only_when(lambda: elector.leading)
    built.loop.refit()
    return built, elector


def totals(cp: LoopCheckpoint) -> tuple[float, float]:
    ws = cp.workloads.values()
    return sum(w.emitted_g for w in ws), sum(w.counterfactual_g for w in ws)


@pytest.mark.parametrize("how", ["released", "killed"])
def test_new_leader_continues_from_the_previous_leaders_checkpoint(api, how, caplog) -> None:
    wall = FrozenClock(T0)
    a, a_elector = replica(api, "a", wall)
    assert a_elector.step()  # A leads
    for _ in range(2):  # A ticks alone first: B starts later, with fewer counters
        wall.advance(timedelta(minutes=1))
        a_elector.step()
        a.loop.tick()
    b, b_elector = replica(api, "b", wall)  # restores A's tick 2
    for _ in range(3):  # B misses A's next ticks (a slow start, a pause of its process)
        wall.advance(timedelta(minutes=1))
        a_elector.step()
        a.loop.tick()
    for _ in range(6):  # both tick every minute; only the Lease holder saves
        wall.advance(timedelta(minutes=1))
        for elector, built in ((a_elector, a), (b_elector, b)):
            elector.step()
            built.loop.tick()
    last_a = stored(api)
    rv_a = api.get_object(PATH)["metadata"]["resourceVersion"]
    assert last_a.ticks_total == 11
    assert b.loop.checkpoint().ticks_total == 8  # B's own count lags A's
    assert not b_elector.leading
    if how == "released":  # graceful: SIGTERM ends A's elector, which releases the Lease
        assert a_elector.lock.release()
    else:  # kill -9: A stops renewing; B waits out the lease duration
        wall.advance(timedelta(seconds=5))
        assert not b_elector.step()
    puts_before = len(writes(api))
    with caplog.at_level("INFO", logger="gridshift.scaler"):
        wall.advance(timedelta(minutes=1))
        assert b_elector.step()
        b.loop.tick()
    first_b = stored(api)
    # B's first save continues from A's last checkpoint, not from B's own 8 ticks
    assert first_b.ticks_total == last_a.ticks_total + 1
    emitted_a, cf_a = totals(last_a)
    emitted_b, cf_b = totals(first_b)
    assert emitted_b > emitted_a  # counters never go back
    assert cf_b > cf_a
    assert b.loop.checkpoint() == first_b  # what B holds is what it saved
    for name, w in first_b.workloads.items():
        assert w.emitted_g >= last_a.workloads[name].emitted_g
        before = last_a.workloads[name].last_at
        assert w.last_at is not None
        assert before is not None
        assert w.last_at > before
    # one PUT, carrying the resourceVersion B read on taking over: no conflict
    assert writes(api)[puts_before:] == [("PUT", rv_a)]
    assert (b.state_store.conflicts, b.state_store.takeovers) == (0, 1)  # type: ignore[union-attr]
    assert f"took over ConfigMap {api.ns}/{NAME} at resourceVersion {rv_a}" in caplog.text
    assert "continuing from tick 11" in caplog.text
    print(
        f"handover ({how}): A saved tick {last_a.ticks_total} / {emitted_a:.1f} g emitted, "
        f"B had {8} ticks of its own; B's first save: tick {first_b.ticks_total} / "
        f"{emitted_b:.1f} g"
    )


SHARDS = 3
FLEET = LoopCheckpoint(
    saved_at=T0,
    ticks_total=4,
    workloads={
        f"w{i}": WorkloadCheckpoint(
            2, 3, T0, remaining_work=100.0 * i, emitted_g=1.5 * i, namespace="ml"
        )
        for i in range(6)
    },
)


def shard_store(api: ProxiedApi, held: set[int]) -> ShardStateStore:
    """As `config.wiring` builds it (names <name>-shard-<i>), workload wN in shard N mod 3,
    gated on `held` as `cmd_run` gates it on the shard Leases."""
    core = k8s.CoreV1Api(api.client())
    store = ShardStateStore(
        [
            ConfigMapStateStore(core, namespace=api.ns, name=f"{NAME}-shard-{i}")
            for i in range(SHARDS)
        ],
        shard_of=lambda namespace, name: int(name[1:]) % SHARDS,
    )
    store.write_only_when(lambda shard: shard in held)
    return store


def shard_stored(api: ProxiedApi, shard: int) -> LoopCheckpoint | None:
    obj = api.get_object(f"/api/v1/namespaces/{{ns}}/configmaps/{NAME}-shard-{shard}")
    return (
        None if obj is None else checkpoint_from_config_map(obj.get("data"), obj.get("binaryData"))
    )


def share(cp: LoopCheckpoint, shard: int) -> dict[str, WorkloadCheckpoint]:
    return {k: v for k, v in cp.workloads.items() if int(k[1:]) % SHARDS == shard}


def test_shard_store_keeps_each_shard_apart_and_hands_a_moved_shard_over(api) -> None:
    held_a: set[int] = {0, 1, 2}
    held_b: set[int] = set()
    a, b = shard_store(api, held_a), shard_store(api, held_b)
    assert a.load() is None
    assert a.takeover() is None  # every shard acquired, nothing stored yet
    a.save(FLEET)
    for shard in range(SHARDS):
        got = shard_stored(api, shard)
        assert got is not None
        assert got.workloads == share(FLEET, shard)
        assert not got.partial  # what is stored is read back as a whole checkpoint
    assert b.takeover() is None
    before = len(writes(api))
    b.save(later(FLEET, 1))  # holds nothing: writes nothing
    assert writes(api)[before:] == []

    # shard 1 moves from A to B (A's Lease expired or handed off)
    held_a.discard(1)
    held_b.add(1)
    a.save(later(FLEET, 2))  # A's next save: its two shards only
    handed = b.takeover()
    assert handed is not None
    assert handed.partial
    assert handed.workloads == share(FLEET, 1)  # A's last save of shard 1, nothing else
    assert b.takeover() is None  # once per term
    b_own = replace(
        later(FLEET, 3),
        workloads={k: replace(v, remaining_work=1.0) for k, v in share(FLEET, 1).items()},
    )
    b.save(b_own)
    assert shard_stored(api, 1) == replace(b_own, partial=False)
    assert shard_stored(api, 0) == later(replace(FLEET, workloads=share(FLEET, 0)), 2)
    before = len(api.requests)
    a.save(later(FLEET, 4))  # A still has shard 1's workloads in hand: never written
    assert [p.path for p in api.requests[before:] if "shard-1" in p.path] == []
    assert len(api.requests) - before == 2  # shards 0 and 2
    assert shard_stored(api, 1) == replace(b_own, partial=False)


def test_shard_store_retries_a_failed_reread_and_hands_over_the_others(api) -> None:
    a = shard_store(api, {0, 1, 2})
    assert a.takeover() is None  # a writer saves only after taking its shards over
    a.save(FLEET)
    held: set[int] = {0}
    b = shard_store(api, held)
    api.fail_next("GET", f"{NAME}-shard-0", 503)
    with pytest.raises(StateStoreError, match="read failed: 503"):
        b.takeover()  # the only shard acquired failed: the loop counts it
    held.update({1, 2})
    api.fail_next("GET", f"{NAME}-shard-0", 503)
    handed = b.takeover()  # 0 fails again, 1 and 2 are handed over
    assert handed is not None
    assert set(handed.workloads) == set(share(FLEET, 1)) | set(share(FLEET, 2))
    before = len(api.requests)
    b.save(later(FLEET, 1))  # shard 0 not re-read yet: not written
    assert sorted(p.path.rsplit("-", 1)[1] for p in api.requests[before:] if p.method == "PUT") == [
        "1",
        "2",
    ]
    handed = b.takeover()
    assert handed is not None
    assert handed.workloads == share(FLEET, 0)
