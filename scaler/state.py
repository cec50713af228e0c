"""Crash safety: the scaler's decisions and savings counters, persisted and restored.

`LoopCheckpoint` is what survives a restart: the tick count, and per workload the replicas
decided (actual and counterfactual), elastic work left, the instant of the last decision and
the cumulative energy/emission totals. `StateStore` is the role that keeps it; two stores:

- `FileStateStore`: a local JSON file for `gridshift run` without a cluster. Writes are atomic
  (temp file in the same folder + fsync + rename + fsync of the folder), so a kill -9 in the
  middle of a tick leaves the previous checkpoint intact: at most that tick is lost.
- `ConfigMapStateStore`: the same JSON in one key of a ConfigMap through the kubernetes client
  (an update replaces the object whole, so it is atomic on the API server).

A checkpoint that cannot be read (corrupt, another version) is reported and ignored: the
scaler then starts fresh rather than crash-looping.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "ConfigMapStateStore",
    "FileStateStore",
    "LoopCheckpoint",
    "StateStore",
    "WorkloadCheckpoint",
    "checkpoint_from_json",
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


@dataclass(frozen=True, slots=True)
class LoopCheckpoint:
    saved_at: datetime
    ticks_total: int
    workloads: Mapping[str, WorkloadCheckpoint] = field(default_factory=dict)


class StateStore(Protocol):
    """Keeps the newest `LoopCheckpoint`; `load()` is None when there is none yet."""

    def load(self) -> LoopCheckpoint | None: ...

    def save(self, checkpoint: LoopCheckpoint) -> None: ...


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def checkpoint_to_json(cp: LoopCheckpoint) -> str:
    return json.dumps(
        {
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
                }
                for name, w in sorted(cp.workloads.items())
            },
        },
        indent=1,
        allow_nan=False,
    )


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
        workloads[name] = WorkloadCheckpoint(
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


class ConfigMapStateStore:
    """The checkpoint in `data[key]` of one ConfigMap (created on the first save).

    `core_v1` is a `kubernetes.client.CoreV1Api` (or anything with the same three methods)."""

    def __init__(
        self,
        core_v1: Any,
        *,
        namespace: str,
        name: str,
        key: str = "checkpoint.json",
        logger: logging.Logger | None = None,
    ) -> None:
        self._api = core_v1
        self.namespace = namespace
        self.name = name
        self.key = key
        self._log = logger or logging.getLogger("gridshift.scaler.state")

    @staticmethod
    def _status(exc: BaseException) -> int | None:
        status = getattr(exc, "status", None)
        return status if isinstance(status, int) else None

    def load(self) -> LoopCheckpoint | None:
        try:
            cm = self._api.read_namespaced_config_map(self.name, self.namespace)
        except Exception as exc:
            if self._status(exc) == 404:
                return None
            raise
        data = (cm.data if not isinstance(cm, dict) else cm.get("data")) or {}
        text = data.get(self.key)
        if text is None:
            return None
        try:
            return checkpoint_from_json(text)
        except CheckpointError as exc:
            self._log.error(
                "ConfigMap %s/%s unusable, starting fresh: %s", self.namespace, self.name, exc
            )
            return None

    def save(self, checkpoint: LoopCheckpoint) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {"app.kubernetes.io/name": "gridshift"},
            },
            "data": {self.key: checkpoint_to_json(checkpoint)},
        }
        try:
            self._api.replace_namespaced_config_map(self.name, self.namespace, body)
        except Exception as exc:
            if self._status(exc) != 404:
                raise
            self._api.create_namespaced_config_map(self.namespace, body)
