"""`scaler.state_store` settings and the store the wiring builds from them.

Aspects: `state_file` alone still means the file store; combinations that cannot work are
rejected naming the fields (file without a path, a path with another store, bad ConfigMap
names); the wiring builds no store, a `FileStateStore` or a `ConfigMapStateStore` on the
ConfigMap named in the settings (without any request until used).
"""

from __future__ import annotations

from pathlib import Path

import kubernetes.client as k8s
import pytest
from pydantic import ValidationError

from config.settings import ScalerSettings, Settings
from config.wiring import build_state_store
from scaler.state import ConfigMapStateStore, FileStateStore


def test_state_file_alone_implies_the_file_store() -> None:
    assert ScalerSettings(state_file=Path("s.json")).state_store == "file"
    assert ScalerSettings().state_store == "none"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"state_store": "file"}, "needs state_file", id="file without path"),
        pytest.param(
            {"state_store": "configmap", "state_file": "s.json"},
            "state_file is only used with state_store 'file', not 'configmap'",
            id="path with configmap",
        ),
        pytest.param(
            {"state_store": "none", "state_file": "s.json"}, "not 'none'", id="path with none"
        ),
        pytest.param({"state_store": "etcd"}, "'none', 'file' or 'configmap'", id="unknown"),
        pytest.param({"state_configmap_name": "Not_A_Name"}, "state_configmap_name", id="name"),
        pytest.param({"state_configmap_namespace": ""}, "state_configmap_namespace", id="ns"),
    ],
)
def test_invalid_state_store_settings(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ScalerSettings.model_validate(fields)


def settings(**scaler: object) -> Settings:
    return Settings.model_validate({"scaler": scaler})


def test_wiring_builds_the_named_store(tmp_path: Path) -> None:
    assert build_state_store(settings()) is None
    file_store = build_state_store(settings(state_file=str(tmp_path / "s.json")))
    assert isinstance(file_store, FileStateStore)
    assert file_store.path == tmp_path / "s.json"
    client = k8s.ApiClient(k8s.Configuration())
    cm = build_state_store(
        settings(
            state_store="configmap",
            state_configmap_name="state",
            state_configmap_namespace="ops",
        ),
        api_client=client,
    )
    assert isinstance(cm, ConfigMapStateStore)
    assert (cm.namespace, cm.name, cm.where) == ("ops", "state", "ConfigMap ops/state")
    assert cm.request_timeout_seconds == 5.0  # kube.request_timeout_seconds, like every kube call
    slow = Settings.model_validate(
        {"scaler": {"state_store": "configmap"}, "kube": {"request_timeout_seconds": 2.5}}
    )
    slow_cm = build_state_store(slow, api_client=client)
    assert isinstance(slow_cm, ConfigMapStateStore)
    assert slow_cm.request_timeout_seconds == 2.5
