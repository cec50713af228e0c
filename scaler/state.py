"""Crash safety: the scaler's decisions and savings counters, persisted and restored.

`LoopCheckpoint` is what survives a restart: the tick count, and per workload the replicas
decided (actual and counterfactual), elastic work left, the instant of the last decision and
the cumulative energy/emission totals. `StateStore` is the role that keeps it; two stores:

- `FileStateStore`: a local JSON file for `gridshift run` without a cluster. Writes are atomic
  (temp file in the same folder + fsync + rename + fsync of the folder), so a kill -9 in the
  middle of a tick leaves the previous checkpoint intact: at most that tick is lost.
- `ConfigMapStateStore`: the same JSON, gzip-compressed, in one `binaryData` key of a ConfigMap
  through the kubernetes client (an update replaces the object whole, so it is atomic on the API
  server: a reader never sees parts of two saves; optimistic concurrency on `resourceVersion`,
  bounded size before and after decompression, a deadline per call). Compressed, a workload
  costs about 75-85 bytes (about 400 as the indented JSON the store wrote before): one
  ConfigMap holds about 10,000 workloads; past that, `kube.shards` spreads them over more
  (one ConfigMap per shard). Checkpoints in the older plain-JSON `data` key are still read.
- `ShardStateStore`: the sharded scaler's, one `ConfigMapStateStore` per shard
  (`<name>-shard-<i>`), each holding the checkpoints of its shard's workloads and written only
  by the replica that holds the shard's Lease; a replica that acquires a shard continues its
  workloads (elastic work left, counters) from the previous holder's last save.

A checkpoint that cannot be read (corrupt, another version) is reported and ignored: the
scaler then starts fresh rather than crash-looping.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import gzip
import json
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from scaler.kube import DEFAULT_REQUEST_TIMEOUT_SECONDS, TRANSPORT_ERRORS

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "ConfigMapStateStore",
    "FileStateStore",
    "LoopCheckpoint",
    "ShardStateStore",
    "StateStore",
    "StateStoreError",
    "WorkloadCheckpoint",
    "checkpoint_from_config_map",
    "checkpoint_from_gzip",
    "checkpoint_from_json",
    "checkpoint_to_gzip",
    "checkpoint_to_json",
]

CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A stored checkpoint that cannot be used (names the field and the problem)."""


@dataclass(frozen=True, slots=True)
class WorkloadCheckpoint:
    replicas: int
    counterfactual_replicas: int
    last_at: datetime | None
    remaining_work: float = 0.0
    counterfactual_remaining_work: float = 0.0
    energy_joules: float = 0.0
    counterfactual_energy_joules: float = 0.0
    emitted_g: float = 0.0
    counterfactual_g: float = 0.0
    namespace: str = ""  # with the name, the workload's shard (checkpoints before it: "")


@dataclass(frozen=True, slots=True)
class LoopCheckpoint:
    """`partial`: the checkpoint names only the workloads handed to this replica (the shards
    it took over, `ShardStateStore`): those continue from it, every other workload keeps its
    own state and counters, and the tick count stays; else it is the whole loop's state."""

    saved_at: datetime
    ticks_total: int
    workloads: Mapping[str, WorkloadCheckpoint] = field(default_factory=dict)
    partial: bool = False


class StateStore(Protocol):
    """Keeps the newest `LoopCheckpoint`; `load()` is None when there is none yet.

    `takeover()` is asked at the start of every tick: a checkpoint to continue from when this
    replica has just become the store's writer (another replica may have saved since this
    one started), else None."""

    def load(self) -> LoopCheckpoint | None: ...

    def save(self, checkpoint: LoopCheckpoint) -> None: ...

    def takeover(self) -> LoopCheckpoint | None: ...


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _checkpoint_document(cp: LoopCheckpoint) -> dict[str, Any]:
    return {
        "version": CHECKPOINT_VERSION,
        "saved_at": cp.saved_at.isoformat(),
        "ticks_total": cp.ticks_total,
        "workloads": {
            name: {
                "replicas": w.replicas,
                "counterfactual_replicas": w.counterfactual_replicas,
                "last_at": _iso(w.last_at),
                "remaining_work": w.remaining_work,
                "counterfactual_remaining_work": w.counterfactual_remaining_work,
                "energy_joules": w.energy_joules,
                "counterfactual_energy_joules": w.counterfactual_energy_joules,
                "emitted_g": w.emitted_g,
                "counterfactual_g": w.counterfactual_g,
                "namespace": w.namespace,
            }
            for name, w in sorted(cp.workloads.items())
        },
    }


def checkpoint_to_json(cp: LoopCheckpoint) -> str:
    return json.dumps(_checkpoint_document(cp), indent=1, allow_nan=False)


def checkpoint_to_gzip(cp: LoopCheckpoint) -> tuple[bytes, int]:
    """The checkpoint as compact JSON, gzip-compressed (no timestamp in the header, so the same
    checkpoint gives the same bytes), and the JSON's own size."""
    text = json.dumps(_checkpoint_document(cp), separators=(",", ":"), allow_nan=False).encode()
    return gzip.compress(text, compresslevel=6, mtime=0), len(text)


def checkpoint_from_gzip(blob: bytes, *, max_bytes: int) -> LoopCheckpoint:
    """`checkpoint_to_gzip`'s bytes back, decompressing at most `max_bytes` (a checkpoint that
    would inflate past them is refused, never held in memory whole); a stream cut short (a
    partial write) or damaged (gzip's CRC-32 and length trailer) is a `CheckpointError`."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip header and trailer
    try:
        text = inflater.decompress(blob, max_bytes + 1)
    except zlib.error as exc:
        raise CheckpointError(f"checkpoint is not intact gzip: {exc}") from None
    if len(text) > max_bytes:
        raise CheckpointError(f"checkpoint decompresses to more than {max_bytes} bytes")
    if not inflater.eof:
        raise CheckpointError(
            f"checkpoint is cut short: its gzip stream ends after {len(blob)} bytes "
            "without its trailer (a partial write)"
        )
    if inflater.unused_data:
        raise CheckpointError(
            f"checkpoint has {len(inflater.unused_data)} bytes after its gzip stream"
        )
    return checkpoint_from_json(text)


def _field(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise CheckpointError(f"{where}.{key}: missing")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CheckpointError(f"{where}.{key}: expected {kind}, got {type(value).__name__}")
    return value


def _instant(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise CheckpointError(f"{where}: expected an ISO 8601 instant")
    try:
        at = datetime.fromisoformat(text)
    except ValueError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if at.tzinfo is None:
        raise CheckpointError(f"{where}: instant has no time zone")
    return at


def _number(obj: Mapping[str, Any], key: str, where: str) -> float:
    value = float(_field(obj, key, (int, float), where))
    if value != value or value in (float("inf"), float("-inf")):
        raise CheckpointError(f"{where}.{key}: not finite")
    return value


def checkpoint_from_json(text: str | bytes) -> LoopCheckpoint:
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"checkpoint is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError("checkpoint: expected a JSON object")
    version = _field(raw, "version", int, "checkpoint")
    if version != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint.version: {version} is not {CHECKPOINT_VERSION}")
    ticks = _field(raw, "ticks_total", int, "checkpoint")
    if ticks < 0:
        raise CheckpointError("checkpoint.ticks_total: negative")
    workloads: dict[str, WorkloadCheckpoint] = {}
    for name, w in _field(raw, "workloads", dict, "checkpoint").items():
        where = f"checkpoint.workloads.{name}"
        if not isinstance(w, dict):
            raise CheckpointError(f"{where}: expected an object")
        replicas = _field(w, "replicas", int, where)
        cf = _field(w, "counterfactual_replicas", int, where)
        if replicas < 0 or cf < 0:
            raise CheckpointError(f"{where}: replica counts must be >= 0")
        last = w.get("last_at")
        namespace = w.get("namespace", "")
        if not isinstance(namespace, str):
            raise CheckpointError(f"{where}.namespace: expected a string")
        workloads[name] = WorkloadCheckpoint(
            namespace=namespace,
            replicas=replicas,
            counterfactual_replicas=cf,
            last_at=None if last is None else _instant(last, f"{where}.last_at"),
            **{
                k: _number(w, k, where)
                for k in (
                    "remaining_work",
                    "counterfactual_remaining_work",
                    "energy_joules",
                    "counterfactual_energy_joules",
                    "emitted_g",
                    "counterfactual_g",
                )
            },
        )
    return LoopCheckpoint(
        saved_at=_instant(raw.get("saved_at"), "checkpoint.saved_at"),
        ticks_total=ticks,
        workloads=workloads,
    )


class FileStateStore:
    """A JSON checkpoint file, replaced atomically on every save."""

    def __init__(self, path: Path, *, logger: logging.Logger | None = None) -> None:
        self.path = path
        self._log = logger or logging.getLogger("gridshift.scaler.state")

    def load(self) -> LoopCheckpoint | None:
        try:
            text = self.path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return checkpoint_from_json(text)
        except CheckpointError as exc:
            self._log.error("state file %s unusable, starting fresh: %s", self.path, exc)
            return None

    def takeover(self) -> LoopCheckpoint | None:
        """None: one process owns a state file, so nobody else writes it meanwhile."""
        return None

    def save(self, checkpoint: LoopCheckpoint) -> None:
        data = checkpoint_to_json(checkpoint).encode()
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class StateStoreError(RuntimeError):
    """The store could not be read or written (names the store and the cause)."""


# A ConfigMap's data and binaryData may hold 1 MiB in all (kube-apiserver answers 422 above
# it); leave room for metadata and a workload list that grows between two saves.
CONFIGMAP_MAX_BYTES = 900_000
# The JSON a stored checkpoint may inflate to (about 350 bytes a workload: some 90,000); a
# ConfigMap under CONFIGMAP_MAX_BYTES holds far fewer, so only a crafted one comes near it.
CHECKPOINT_MAX_JSON_BYTES = 32 * 1024 * 1024


def checkpoint_from_config_map(
    data: Mapping[str, str] | None,
    binary_data: Mapping[str, str | bytes] | None,
    *,
    key: str = "checkpoint.json",
    max_json_bytes: int = CHECKPOINT_MAX_JSON_BYTES,
) -> LoopCheckpoint | None:
    """The checkpoint a ConfigMap holds: `binaryData[<key>.gz]` (base64 of
    `checkpoint_to_gzip`, as the API server returns it), else the older plain JSON in
    `data[<key>]`; None when it holds neither. Raises `CheckpointError` when it is unusable."""
    blob = (binary_data or {}).get(f"{key}.gz")
    if blob is not None:
        try:
            raw = base64.b64decode(blob, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CheckpointError(f"binaryData.{key}.gz: not base64: {exc}") from None
        return checkpoint_from_gzip(raw, max_bytes=max_json_bytes)
    text = (data or {}).get(key)
    if text is None:
        return None
    if len(text) > max_json_bytes:
        raise CheckpointError(f"data.{key}: more than {max_json_bytes} bytes")
    return checkpoint_from_json(text)


class ConfigMapStateStore:
    """The checkpoint, gzip-compressed, in `binaryData[<key>.gz]` of one ConfigMap, through the
    real kubernetes client (`checkpoint_from_config_map`: an older plain-JSON `data[<key>]` is
    read too, and the next save replaces it with the compressed form).

    * Optimistic concurrency: every update carries the `resourceVersion` last seen; a 409
      re-reads the object and retries (at most `max_attempts` writes), and a checkpoint
      already stored that is as new as ours or newer (another scaler replica saved it) is
      left alone, so counters never go back. A 404 on update (someone deleted it) creates it.
    * Bounded: a checkpoint whose compressed form is over `max_bytes`, or whose JSON is over
      `max_json_bytes`, is refused with a `StateStoreError` (naming `kube.shards`, which
      spreads workloads over more ConfigMaps); reading inflates at most `max_json_bytes`.
    * Every call has a `request_timeout_seconds` budget, so a hung API server costs a tick at
      most that long; `ScalerLoop` logs and counts a failed save and keeps ticking.
    * `load()` raises on anything but "not found" or an unusable checkpoint: starting fresh
      because the API server was briefly unreachable would overwrite the saved counters.
    * `write_only_when(gate)`: with several replicas, only the one `gate()` approves (the
      leader) writes; the others skip saving (and still restore at start).
    * Handover: a replica that becomes the writer has counters of its own (restored at its
      start, then its follower ticks) while the previous leader saved on. `takeover()`, asked
      at the start of each tick, re-reads the ConfigMap on the first tick of a new term (the
      gate turned true) and hands the stored checkpoint to the loop, remembering the
      resourceVersion it read; `save()` writes nothing until that re-read succeeded, so the
      first write of a term continues from the previous leader's last checkpoint. A 409 on
      a gated save means another replica wrote since (a term this one missed between two
      ticks): nothing is written and the next tick takes over again.
    """

    def __init__(
        self,
        core_v1: k8s.CoreV1Api,
        *,
        namespace: str,
        name: str,
        key: str = "checkpoint.json",
        max_bytes: int = CONFIGMAP_MAX_BYTES,
        max_json_bytes: int = CHECKPOINT_MAX_JSON_BYTES,
        max_attempts: int = 4,
        request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS,
        logger: logging.Logger | None = None,
    ) -> None:
        self._api = core_v1
        self.namespace = namespace
        self.name = name
        self.key = key
        self.max_bytes = max_bytes
        self.max_json_bytes = max_json_bytes
        self._attempts = max_attempts
        self.request_timeout_seconds = request_timeout_seconds
        self._rv: str | None = None
        self._log = logger or logging.getLogger("gridshift.scaler.state")
        self._gate: Callable[[], bool] | None = None
        self._writing = False  # re-read since the gate last turned true
        self.conflicts = 0
        self.skipped = 0
        self.takeovers = 0

    def write_only_when(self, gate: Callable[[], bool]) -> None:
        """Save only while `gate()` is true (e.g. while this replica holds the Lease)."""
        self._gate = gate

    @property
    def where(self) -> str:
        return f"ConfigMap {self.namespace}/{self.name}"

    def _call(
        self, what: str, call: Callable[[], k8s.V1ConfigMap], *, tolerate: frozenset[int]
    ) -> k8s.V1ConfigMap | int:
        """The object `call()` answered (its resourceVersion remembered), or a tolerated
        error status; anything else is a `StateStoreError`."""
        try:
            cm = call()
        except ApiException as exc:
            if exc.status in tolerate:
                return int(exc.status)
            raise StateStoreError(f"{self.where}: {what} failed: {_reason(exc)}") from None
        except TRANSPORT_ERRORS as exc:
            raise StateStoreError(f"{self.where}: API server unreachable: {exc}") from None
        self._rv = cm.metadata.resource_version if cm.metadata else None
        return cm

    def _read(self) -> k8s.V1ConfigMap | None:
        """The object (remembering its resourceVersion), or None when there is none."""
        result = self._call(
            "read",
            lambda: self._api.read_namespaced_config_map(
                self.name, self.namespace, _request_timeout=self.request_timeout_seconds
            ),
            tolerate=frozenset({404}),
        )
        if isinstance(result, int):
            self._rv = None
            return None
        return result

    def _stored(self, cm: k8s.V1ConfigMap | None) -> LoopCheckpoint | None:
        if cm is None:
            return None
        try:
            return checkpoint_from_config_map(
                cm.data, cm.binary_data, key=self.key, max_json_bytes=self.max_json_bytes
            )
        except CheckpointError as exc:
            self._log.error("%s unusable, starting fresh: %s", self.where, exc)
            return None

    def load(self) -> LoopCheckpoint | None:
        return self._stored(self._read())

    def takeover(self) -> LoopCheckpoint | None:
        """On the first call of a new term (the gate turned true): the checkpoint stored now,
        or None when there is none; None on every other call. Raises `StateStoreError` when
        the re-read fails (then `save()` keeps skipping and the next call retries)."""
        if self._gate is None:
            return None
        if not self._gate():
            self._writing = False
            return None
        if self._writing:
            return None
        stored = self._stored(self._read())
        self._writing = True
        self.takeovers += 1
        what = "nothing stored yet"
        if stored is not None:
            what = f"continuing from tick {stored.ticks_total} saved at {stored.saved_at}"
        self._log.info("took over %s at resourceVersion %s: %s", self.where, self._rv, what)
        return stored

    def save(self, checkpoint: LoopCheckpoint) -> None:
        if self._gate is not None:
            if not self._gate():
                self._writing = False
            if not self._writing:  # a follower, or leading since `takeover()`: re-read first
                self.skipped += 1
                return
        blob, json_bytes = checkpoint_to_gzip(checkpoint)
        if len(blob) > self.max_bytes or json_bytes > self.max_json_bytes:
            raise StateStoreError(
                f"{self.where}: checkpoint of {len(blob)} bytes compressed ({json_bytes} as "
                f"JSON) is over the {self.max_bytes}-byte limit ({self.max_json_bytes} as "
                f"JSON) with {len(checkpoint.workloads)} workloads; not saved (raise "
                "kube.shards to spread the workloads over more ConfigMaps)"
            )
        text = base64.b64encode(blob).decode("ascii")
        for _ in range(self._attempts):
            if self._rv is None and self._read() is None:
                if self._write(text, create=True):
                    return
                continue
            conflicts = self.conflicts
            if self._write(text, create=False):
                return
            if self._gate is not None and self.conflicts > conflicts:
                # one writer per term: a 409 means another replica led (and wrote) since
                # our last save, a term this one missed between two ticks; take over again
                self._writing = False
                self.skipped += 1
                self._log.warning(
                    "%s was written by another replica since our last save; not replaced, "
                    "continuing from it on the next tick",
                    self.where,
                )
                return
            stored = self._stored(self._read())  # 409: someone else wrote; look first
            if stored is not None and (stored.saved_at, stored.ticks_total) >= (
                checkpoint.saved_at,
                checkpoint.ticks_total,
            ):
                self._log.info("%s already holds a checkpoint as new; not replaced", self.where)
                return
        raise StateStoreError(f"{self.where}: still conflicting after {self._attempts} tries")

    def _write(self, text: str, *, create: bool) -> bool:
        """Store `text` (the checkpoint's gzip, base64) as the object's only key: an older
        plain-JSON `data` goes with the replace. True when written; False on 409 (conflict,
        or it was created meanwhile)."""
        body = k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(
                name=self.name,
                namespace=self.namespace,
                labels={"app.kubernetes.io/name": "gridshift"},
                resource_version=None if create else self._rv,
            ),
            binary_data={f"{self.key}.gz": text},
        )
        if create:
            result = self._call(
                "create",
                lambda: self._api.create_namespaced_config_map(
                    self.namespace, body, _request_timeout=self.request_timeout_seconds
                ),
                tolerate=frozenset({409}),  # AlreadyExists: created meanwhile, read it
            )
        else:
            result = self._call(
                "write",
                lambda: self._api.replace_namespaced_config_map(
                    self.name, self.namespace, body, _request_timeout=self.request_timeout_seconds
                ),
                tolerate=frozenset({404, 409}),  # deleted under us / Conflict
            )
        if result == 409:
            self.conflicts += 1
        if isinstance(result, int):
            self._rv = None if create or result == 404 else self._rv
            return False
        return True


class ShardStateStore:
    """The sharded scaler's checkpoints: `stores[i]` keeps shard i's workloads (a
    `ConfigMapStateStore`, `<name>-shard-<i>`), a workload's shard being `shard_of` its
    namespace and name, as the shard Leases place it.

    * `write_only_when(holds)`: store i saves and takes over only while `holds(i)` (this
      replica holds shard i's Lease), so each shard has one writer, and each store's own term
      logic applies per shard: on acquiring a shard, the first `takeover()` re-reads that
      shard's checkpoint and `save()` writes it only after that re-read succeeded.
    * `takeover()`: the checkpoints of the shards acquired since the last call, merged, as a
      `partial` checkpoint (the loop continues those workloads, elastic work left and
      counters included, and keeps the others); None when no shard was acquired. A shard whose
      re-read fails is logged and retried on the next call (the others are handed over); when
      every acquired shard failed, the first error is raised (the loop counts it).
    * `save(checkpoint)`: each held shard's share of it to that shard's store; every store is
      tried, then the first error is raised.
    * `load()`: None: a replica holds no shard when it starts; each comes with `takeover()`.
    """

    def __init__(
        self,
        stores: Sequence[ConfigMapStateStore],
        *,
        shard_of: Callable[[str, str], int],
        logger: logging.Logger | None = None,
    ) -> None:
        if not stores:
            raise ValueError("a ShardStateStore needs one store per shard, got none")
        self._stores = tuple(stores)
        self._shard_of = shard_of
        self._log = logger or logging.getLogger("gridshift.scaler.state")

    @property
    def stores(self) -> tuple[ConfigMapStateStore, ...]:
        return self._stores

    def write_only_when(self, holds: Callable[[int], bool]) -> None:
        for i, store in enumerate(self._stores):
            store.write_only_when(functools.partial(holds, i))

    def load(self) -> LoopCheckpoint | None:
        return None

    def takeover(self) -> LoopCheckpoint | None:
        taken: list[LoopCheckpoint] = []
        errors: list[StateStoreError] = []
        for store in self._stores:
            try:
                stored = store.takeover()
            except StateStoreError as exc:
                errors.append(exc)
                continue
            if stored is not None:
                taken.append(stored)
        for error in errors:
            self._log.warning("shard checkpoint not re-read: %s; retried next tick", error)
        if errors and not taken:
            raise errors[0]
        if not taken:
            return None
        return LoopCheckpoint(
            saved_at=max(cp.saved_at for cp in taken),
            ticks_total=max(cp.ticks_total for cp in taken),
            workloads={k: v for cp in taken for k, v in cp.workloads.items()},
            partial=True,
        )

    def save(self, checkpoint: LoopCheckpoint) -> None:
        shares: list[dict[str, WorkloadCheckpoint]] = [{} for _ in self._stores]
        for name, w in checkpoint.workloads.items():
            shares[self._shard_of(w.namespace, name)][name] = w
        errors: list[StateStoreError] = []
        for store, share in zip(self._stores, shares, strict=True):
            try:
                store.save(replace(checkpoint, workloads=share))
            except StateStoreError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]


def _reason(exc: ApiException) -> str:
    """`<code> <reason>: <message>` from a metav1.Status body (never the whole response)."""
    try:
        status = json.loads(exc.body or "{}")
    except ValueError:
        status = {}
    message = status.get("message") if isinstance(status, dict) else None
    return f"{exc.status} {exc.reason}" + (f": {message}" if message else "")
