"""The sharded scaler's pure parts: a workload's shard, the shard -> replica assignment, status
that is the same for the same decision (transition times carried over), the decision read back
from a CR's status, and the snapshot a sharded replica serves (its own decisions plus the
others' from the CRs' status).

Aspects: shard_of is deterministic, spreads 10,000 names evenly over 4 shards, and moves only
about 1/5 of them when a fifth shard is added; assign_shards gives every shard to exactly one
live member, at most ceil(shards/members) each, independent of the members' order, moves
only the dead member's shards when one of 4 dies with 8 shards, and gives nothing without
members; status_for keeps lastDecision.decidedAt and unchanged conditions'
lastTransitionTime from the previous status and moves them when the decision changes;
same_decision ignores reasons and grams only; decision_from_status round-trips status_for and
refuses statuses without a decision; ServingSnapshots adds the other shards' decisions, keeps
its own over the CR status, and rebuilds when the watched resources change."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaler.core.shards import assign_shards, shard_of
from scaler.kube.resources import ScalerResourceCache, parse_scaler_resource
from scaler.kube.shards import ServingSnapshots
from scaler.kube.status import decision_from_status, same_decision, status_for
from scaler.snapshot import Mode, Snapshot, SnapshotHolder, WorkloadStatus

T0 = datetime(2026, 12, 5, 9, tzinfo=UTC)
MEMBERS = [f"gridshift-scaler-{i}" for i in range(4)]


def test_shard_of_is_deterministic_and_even():
    counts = Counter(shard_of("shop", f"w{i}", 4) for i in range(10_000))
    assert sorted(counts) == [0, 1, 2, 3]
    assert min(counts.values()) > 2_300, counts
    assert [shard_of("shop", "web", 4) for _ in range(3)] == [shard_of("shop", "web", 4)] * 3


def test_adding_a_shard_moves_only_its_share():
    moved = sum(shard_of("shop", f"w{i}", 4) != shard_of("shop", f"w{i}", 5) for i in range(10_000))
    assert 1_500 < moved < 2_500, moved  # ~1/5 (hash % n would move ~4/5)


def test_shard_of_refuses_no_shards():
    with pytest.raises(ValueError, match="shards must be >= 1"):
        shard_of("shop", "web", 0)


@given(shards=st.integers(1, 40), members=st.sets(st.text(min_size=1, max_size=8), max_size=9))
def test_every_shard_has_one_owner_and_load_is_bounded(shards, members):
    owners = assign_shards(shards, members)
    if not members:
        assert owners == {}
        return
    assert sorted(owners) == list(range(shards))
    assert set(owners.values()) <= members
    room = -(-shards // len(members))
    assert max(Counter(owners.values()).values()) <= room
    assert assign_shards(shards, sorted(members, reverse=True)) == owners


def test_a_dead_members_shards_move_and_only_those():
    before = assign_shards(8, MEMBERS)
    assert Counter(before.values()) == dict.fromkeys(MEMBERS, 2)
    after = assign_shards(8, [m for m in MEMBERS if m != MEMBERS[2]])
    moved = {s for s in before if before[s] != after[s]}
    assert moved == {s for s, m in before.items() if m == MEMBERS[2]}
    assert len({after[s] for s in moved}) == 2, "spread over two survivors"
    assert assign_shards(8, MEMBERS) == before, "a member that returns gets its shards back"


def cr(name="web", namespace="shop", status=None):
    obj = {
        "metadata": {"name": name, "namespace": namespace, "generation": 3},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": 1,
            "maxReplicas": 9,
            "region": "GB",
        },
    }
    if status is not None:
        obj["status"] = status
    return obj


def decided(replicas=3, mode=Mode.ECO, *, at=T0, reasons=("load 12",), saved=1.5, stale=()):
    return WorkloadStatus(
        name="web",
        namespace="shop",
        region="GB",
        desired_replicas=replicas,
        mode=mode,
        reasons=reasons,
        decided_at=at,
        stale_inputs=stale,
        saved_g=saved,
        emitted_g=4.0,
    )


def test_the_same_decision_later_writes_the_same_status_but_the_figures():
    resource = parse_scaler_resource(cr())
    first = status_for(decided(), resource=resource, now=T0)
    later = decided(at=T0 + timedelta(minutes=5), reasons=("load 13",), saved=2.5)
    again = status_for(later, resource=resource, now=T0, previous=first)
    assert again["lastDecision"]["decidedAt"] == "2026-12-05T09:00:00Z"
    assert [c["lastTransitionTime"] for c in again["conditions"]] == ["2026-12-05T09:00:00Z"] * 2
    assert (again["reasons"], again["savedGrams"]) == (["load 13"], 2.5)
    assert again != first
    assert same_decision(again, first)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"replicas": 4}, id="replicas"),
        pytest.param({"mode": Mode.PERFORMANCE}, id="mode"),
        pytest.param({"stale": ("carbon",)}, id="inputs went stale"),
    ],
)
def test_a_changed_decision_moves_its_times(change):
    resource = parse_scaler_resource(cr())
    first = status_for(decided(), resource=resource, now=T0)
    later_at = T0 + timedelta(minutes=5)
    changed = status_for(decided(at=later_at, **change), resource=resource, now=T0, previous=first)
    assert not same_decision(changed, first)
    times = [c["lastTransitionTime"] for c in changed["conditions"]]
    moved = changed["lastDecision"]["decidedAt"] == "2026-12-05T09:05:00Z"
    assert moved or "2026-12-05T09:05:00Z" in times


def test_decision_round_trips_through_status():
    resource = parse_scaler_resource(cr())
    status = status_for(decided(stale=("carbon", "load")), resource=resource, now=T0)
    back = decision_from_status(parse_scaler_resource(cr(status=status)))
    assert back is not None
    assert (back.name, back.namespace, back.region) == ("web", "shop", "GB")
    assert (back.desired_replicas, back.mode, back.decided_at) == (3, Mode.ECO, T0)
    assert (back.stale_inputs, back.saved_g, back.reasons) == (
        ("carbon", "load"),
        1.5,
        ("load 12",),
    )
    assert (back.min_replicas, back.max_replicas, back.target_name) == (1, 9, "web")


@pytest.mark.parametrize(
    "status",
    [
        pytest.param({}, id="not decided yet"),
        pytest.param({"desiredReplicas": None, "mode": None, "region": None}, id="not acted on"),
        pytest.param(
            {"desiredReplicas": 2, "mode": "turbo", "region": "GB", "lastDecision": {}},
            id="unknown mode",
        ),
        pytest.param(
            {
                "desiredReplicas": 2,
                "mode": "eco",
                "region": "GB",
                "lastDecision": {"decidedAt": "yesterday"},
            },
            id="bad time",
        ),
    ],
)
def test_no_decision_in_status(status):
    assert decision_from_status(parse_scaler_resource(cr(status=status))) is None


def test_a_replica_serves_its_own_decisions_and_the_others_from_status():
    holder = SnapshotHolder()
    serving = ServingSnapshots(holder, cache=ScalerResourceCache(), min_rebuild_interval_seconds=0)
    assert serving.current() is None, "nothing before the first tick"
    cache = ScalerResourceCache()
    theirs = status_for(decided(7), resource=parse_scaler_resource(cr()), now=T0)
    other = cr("api", status={**theirs})
    cache.replace_all([cr("web", status=theirs), other, cr("fresh")])
    holder.publish(Snapshot(taken_at=T0, workloads={"web": decided(2)}))
    serving = ServingSnapshots(holder, cache=cache, min_rebuild_interval_seconds=3600)
    snap = serving.current()
    assert snap is not None
    assert {n: w.desired_replicas for n, w in snap.workloads.items()} == {"web": 2, "api": 7}
    assert serving.current() is snap, "unchanged: not rebuilt"
    cache.apply("DELETED", other)
    holder.publish(Snapshot(taken_at=T0, workloads={"web": decided(2)}))
    rebuilt = serving.current()
    assert rebuilt is not None
    assert set(rebuilt.workloads) == {"web"}
