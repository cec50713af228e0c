"""The settings layers as pydantic-settings sources (config.sources, Settings).

Aspects: `settings_customise_sources` returns the layer sources in precedence order (keyword
arguments, command line, environment, YAML file), and none outside a load (`Settings()` is the
defaults); pydantic-settings' own machinery (`Settings()` inside an active `SourceInputs`)
builds the settings from them; precedence --set > env > YAML > defaults for one field and a
secret read from a file at each layer, with the provenance of each; each source keeps its own
record (labels, problems) and never raises; a map replaced with `{}` by a higher layer is not
merged into by pydantic-settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic_settings import InitSettingsSource

from config.loading import load_config
from config.settings import Settings
from config.sources import (
    CommandLineSource,
    EnvSource,
    Override,
    SourceInputs,
    YamlFileSource,
)
from tests.unit.demo_settings import DemoSettings

TICK = "scaler.tick_interval_seconds"


def _customised(model: type[Settings]) -> tuple[object, ...]:
    init = InitSettingsSource(model, init_kwargs={})
    return model.settings_customise_sources(model, init, init, init, init)


def test_customise_sources_returns_the_layers_in_precedence_order(tmp_path: Path) -> None:
    path = tmp_path / "gridshift.yaml"
    inputs = SourceInputs(
        environ={"GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "20"},
        config_file=path,
        overrides=[Override(TICK, "10")],
    )
    with inputs.active():
        sources = _customised(Settings)
    assert [type(s) for s in sources] == [
        InitSettingsSource,
        CommandLineSource,
        EnvSource,
        YamlFileSource,
    ]
    assert inputs.sources == list(sources[1:])


def test_no_layer_sources_outside_a_load(monkeypatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS", "5")
    assert [type(s) for s in _customised(Settings)] == [InitSettingsSource]
    assert Settings().scaler.tick_interval_seconds == 60.0


def test_file_layer_only_when_a_file_is_named(tmp_path: Path) -> None:
    with SourceInputs(environ={}).active():
        assert [type(s) for s in _customised(Settings)][1:] == [CommandLineSource, EnvSource]
    named = tmp_path / "from-env.yaml"
    with SourceInputs(environ={"GRIDSHIFT_CONFIG": str(named)}).active():
        file_source = _customised(Settings)[-1]
    assert isinstance(file_source, YamlFileSource)
    assert file_source.path == named
    assert file_source.named_by == "GRIDSHIFT_CONFIG"


def test_pydantic_settings_builds_the_settings_from_the_sources(tmp_path: Path) -> None:
    path = tmp_path / "gridshift.yaml"
    path.write_text("scaler: {tick_interval_seconds: 30, load_step_seconds: 600}\n")
    inputs = SourceInputs(
        environ={"GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "20"}, config_file=path
    )
    with inputs.active():
        settings = Settings()
        kwargs = Settings(server={"listen": "0.0.0.0:1"})
    assert settings.scaler.tick_interval_seconds == 20.0  # env over file
    assert settings.scaler.load_step_seconds == 600.0  # file over default, merged key by key
    assert kwargs.server.listen == "0.0.0.0:1"  # keyword arguments: the highest precedence
    assert kwargs.scaler.tick_interval_seconds == 20.0


def _layers(
    tmp_path: Path, *, file: bool, env: bool, flag: bool
) -> tuple[dict[str, Any], dict[str, Path]]:
    """A tick interval and a secret-file token set in the chosen layers."""
    tokens = {}
    for layer in ("file", "env", "flag"):
        tokens[layer] = tmp_path / f"{layer}-token"
        tokens[layer].write_text(f"{layer}-secret\n")
    path = tmp_path / "gridshift.yaml"
    path.write_text(
        f"scaler: {{tick_interval_seconds: 30}}\nvault: {{token_file: {tokens['file']}}}\n"
        if file
        else ""
    )
    environ = (
        {
            "GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "20",
            "GRIDSHIFT_VAULT__TOKEN_FILE": str(tokens["env"]),
        }
        if env
        else {}
    )
    overrides = (
        [Override(TICK, "10"), Override("vault.token_file", str(tokens["flag"]))] if flag else []
    )
    return {"config_file": path, "environ": environ, "overrides": overrides}, tokens


@pytest.mark.parametrize(
    ("file", "env", "flag", "tick", "layer"),
    [
        pytest.param(False, False, False, 60.0, None, id="defaults"),
        pytest.param(True, False, False, 30.0, "file", id="YAML over defaults"),
        pytest.param(True, True, False, 20.0, "env", id="env over YAML"),
        pytest.param(True, True, True, 10.0, "flag", id="--set over env"),
        pytest.param(False, False, True, 10.0, "flag", id="--set over defaults"),
        pytest.param(True, False, True, 10.0, "flag", id="--set over YAML"),
    ],
)
def test_precedence_with_provenance(tmp_path: Path, file, env, flag, tick, layer) -> None:
    inputs, tokens = _layers(tmp_path, file=file, env=env, flag=flag)
    loaded = load_config(model=DemoSettings, **inputs)
    prov = loaded.provenance
    assert loaded.settings.scaler.tick_interval_seconds == tick
    token = loaded.settings.vault.token
    if layer is None:
        assert prov[TICK] == "default"
        assert token is None
        return
    label = {
        "file": f"file:{inputs['config_file']}",
        "env": "env:GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS",
        "flag": "flag:--set",
    }[layer]
    assert prov[TICK] == label
    assert token is not None
    assert token.get_secret_value() == f"{layer}-secret"
    token_label = label if layer != "env" else "env:GRIDSHIFT_VAULT__TOKEN_FILE"
    assert prov["vault.token"] == f"{token_label} (secret file {tokens[layer]})"


def test_a_later_layer_value_beats_an_earlier_secret_file(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("from-file\n")
    path = tmp_path / "gridshift.yaml"
    path.write_text(f"vault: {{token_file: {token}}}\n")
    loaded = load_config(
        model=DemoSettings,
        environ={"GRIDSHIFT_VAULT__TOKEN": "from-env"},
        config_file=path,
    )
    assert loaded.settings.vault.token is not None
    assert loaded.settings.vault.token.get_secret_value() == "from-env"
    assert loaded.provenance["vault.token"] == "env:GRIDSHIFT_VAULT__TOKEN"
    flagged = load_config(
        model=DemoSettings,
        environ={"GRIDSHIFT_VAULT__TOKEN": "from-env"},
        overrides=[Override("vault.token_file", str(token))],
    )
    assert flagged.settings.vault.token is not None
    assert flagged.settings.vault.token.get_secret_value() == "from-file"
    assert flagged.provenance["vault.token"] == f"flag:--set (secret file {token})"


def test_sources_record_problems_instead_of_raising(tmp_path: Path) -> None:
    inputs = SourceInputs(
        environ={"GRIDSHIFT_SCALR__X": "1", "GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "5"},
        config_file=tmp_path / "missing.yaml",
        overrides=[Override("scaler.tick_intervall_seconds", "3")],
    )
    with inputs.active():
        settings = Settings()
    assert settings.scaler.tick_interval_seconds == 5.0  # the good value still applies
    flags, env, file = inputs.sources
    assert [p.message for p in file.record.problems] == ["config file not found"]
    assert [p.path for p in env.record.problems] == ["scalr"]
    assert "did you mean 'scaler'" in env.record.problems[0].message
    assert [p.path for p in flags.record.problems] == ["scaler.tick_intervall_seconds"]
    assert env.record.labels == [
        "env:GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS",
        "env:GRIDSHIFT_SCALR__X",
    ]


def test_a_map_replaced_by_a_higher_layer_is_not_merged_into(tmp_path: Path) -> None:
    path = tmp_path / "gridshift.yaml"
    path.write_text("vault:\n  regions: {GB: {zone: GB}}\n")
    inputs = SourceInputs(
        environ={"GRIDSHIFT_VAULT__REGIONS__IE__ZONE": "IE"},
        config_file=path,
        overrides=[Override("vault.regions", "{}"), Override("vault.regions.FR.zone", "FR")],
    )
    with inputs.active():
        settings = DemoSettings()
    assert set(settings.vault.regions) == {"FR"}
    flags, env, file = inputs.sources
    assert flags() == {"vault": {"regions": {"FR": {"zone": "FR"}}}}
    assert env() == {"vault": {}}  # its IE entry is under the map --set replaced
    assert file() == {"vault": {}}
