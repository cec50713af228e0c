"""Which shard a CarbonAwareScaler belongs to, and which replica owns which shard (pure).

Two rendezvous (highest random weight) hashes, both deterministic from names alone, so every
replica computes the same answer from the same inputs and no coordination is needed beyond
agreeing on the inputs (the live members, read from their Leases):

* `shard_of(namespace, name, shards)`: the workload's shard among `shards` fixed shards.
  Rendezvous over shard ids rather than `hash % shards`, so changing the shard count moves only
  the workloads of the shards added or removed (about 1/shards of them), as consistent hashing
  does (kube-state-metrics' `--total-shards` uses `fnv32a(uid) % total`, which moves most of
  them).
* `assign_shards(shards, members)`: each shard to one live member, balanced (no member gets more
  than `ceil(shards / len(members))`) and stable: a shard goes to its highest-weight member
  unless that member is full, so when a member dies its shards move, spread over the others by
  their weights (with a few shards per member, usually only those: tests/unit/test_shards.py),
  and when it comes back it gets back what it had.

The hash is BLAKE2b (64 bits) of the UTF-8 names: stable across processes, Python versions and
hosts (Python's `hash` of a str is salted per process).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

__all__ = ["assign_shards", "shard_of", "shard_weight"]


def shard_weight(key: str, candidate: str) -> int:
    """The rendezvous weight of `candidate` for `key` (64-bit, deterministic)."""
    digest = hashlib.blake2b(
        key.encode("utf-8") + b"\x00" + candidate.encode("utf-8"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big")


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard (0..shards-1) of the workload `namespace/name`."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    key = f"{namespace}/{name}"
    return max(range(shards), key=lambda shard: (shard_weight(key, str(shard)), -shard))


def assign_shards(shards: int, members: Iterable[str]) -> Mapping[int, str]:
    """Each shard's owner among `members` (empty mapping when there are none).

    Shards are placed in a fixed order (by their own name), each with its highest-weight
    member that still has room; members' room is `ceil(shards / len(members))`."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    live = sorted(set(members))
    if not live:
        return {}
    room = math.ceil(shards / len(live))
    held = dict.fromkeys(live, 0)
    owners: dict[int, str] = {}
    for shard in range(shards):
        key = f"shard-{shard}"
        for member in sorted(live, key=lambda m: (-shard_weight(key, m), m)):
            if held[member] < room:
                owners[shard] = member
                held[member] += 1
                break
    return owners
