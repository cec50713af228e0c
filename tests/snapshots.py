"""A small, deterministic scaler `Snapshot` the server tests share (two namespaces, three
workloads, three regions of which one has no intensity)."""

from __future__ import annotations

from datetime import UTC, datetime

from scaler.snapshot import Mode, RegionCarbon, Snapshot, SnapshotHolder, WorkloadStatus

TAKEN_AT = datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=UTC)


def sample_snapshot(*, taken_at: datetime = TAKEN_AT, web_replicas: int = 4) -> Snapshot:
    workloads = {
        "shop/web": WorkloadStatus(
            name="web",
            namespace="shop",
            region="eu-west-1",
            desired_replicas=web_replicas,
            mode=Mode.ECO,
            reasons=("carbon 312.5 g/kWh above eco threshold 250",),
            decided_at=taken_at,
        ),
        "shop/worker": WorkloadStatus(
            name="worker",
            namespace="shop",
            region="us-east-1",
            desired_replicas=0,
            mode=Mode.PERFORMANCE,
            reasons=("queue empty",),
            decided_at=taken_at,
        ),
        "ml/train": WorkloadStatus(
            name="train",
            namespace="ml",
            region="eu-west-1",
            desired_replicas=12,
            mode=Mode.PERFORMANCE,
            reasons=("deadline",),
            decided_at=taken_at,
        ),
    }
    regions = {
        "eu-west-1": RegionCarbon("eu-west-1", 312.5, taken_at, "electricitymaps", False, 60.0),
        "us-east-1": RegionCarbon("us-east-1", 0.0001, taken_at, "watttime", False, 60.0),
        "ap-south-1": RegionCarbon("ap-south-1", None, None, "watttime", True, None),
    }
    return Snapshot(taken_at=taken_at, workloads=workloads, regions=regions, tick_seconds=60.0)


def sample_holder() -> SnapshotHolder:
    return SnapshotHolder(sample_snapshot())
