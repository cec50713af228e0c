"""Settings loading (config.loading, config.wiring).

Aspects: layer order (defaults < file < env < flags) as a table; provenance of every leaf;
deep merge of mappings; unknown keys from each layer (with suggestions); `GRIDSHIFT_CONFIG`;
reserved and Kubernetes service-link variables; env/flag value parsing (JSON/YAML for nested
values, bad scalars); YAML errors (syntax with line/col, top-level type, duplicates, unreadable
file); secrets from files in every layer, masked everywhere; every problem reported at once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from config.errors import MASK, ConfigError
from config.loading import Leaf, LoadedConfig, Override, load_config
from config.settings import Settings
from config.wiring import load_settings, load_settings_with_sources
from tests.unit.demo_settings import DemoSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "config"
TICK = "scaler.tick_interval_seconds"


def write(tmp_path: Path, text: str, name: str = "gridshift.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(
    tmp_path: Path | None = None, *, file: str | None = None, env=None, sets=(), model=Settings
):
    config_file = write(tmp_path, file) if (file is not None and tmp_path is not None) else None
    overrides = [Override(k, v) for k, v in sets]
    return load_config(model=model, environ=env or {}, config_file=config_file, overrides=overrides)


def problems(exc: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.path: p.message for p in exc.value.problems}


@pytest.mark.parametrize(
    ("file", "env", "sets", "expected", "source"),
    [
        pytest.param(None, {}, [], 60.0, "default", id="defaults only"),
        pytest.param("scaler: {tick_interval_seconds: 30}", {}, [], 30.0, "file:", id="file"),
        pytest.param(
            "scaler: {tick_interval_seconds: 30}",
            {"GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "20"},
            [],
            20.0,
            "env:GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS",
            id="env beats file",
        ),
        pytest.param(
            "scaler: {tick_interval_seconds: 30}",
            {"GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "20"},
            [(TICK, "10")],
            10.0,
            "flag:--set",
            id="flag beats env and file",
        ),
        pytest.param(None, {}, [(TICK, "10")], 10.0, "flag:--set", id="flag over default"),
        pytest.param(
            None, {}, [(TICK, "10"), (TICK, "5")], 5.0, "flag:--set", id="repeated flag: last wins"
        ),
        pytest.param(
            None,
            {"gridshift_scaler__tick_interval_seconds": "7"},
            [],
            7.0,
            "env:gridshift_scaler__tick_interval_seconds",
            id="env names are case-insensitive",
        ),
        pytest.param(
            None,
            {"GRIDSHIFT_SCALER": '{"tick_interval_seconds": 15}'},
            [],
            15.0,
            "env:GRIDSHIFT_SCALER",
            id="env JSON for a whole group",
        ),
        pytest.param(
            None,
            {},
            [("scaler", "{tick_interval_seconds: 9}")],
            9.0,
            "flag:--set",
            id="flag YAML for a whole group",
        ),
    ],
)
def test_layer_order(tmp_path, file, env, sets, expected, source) -> None:
    loaded = load(tmp_path, file=file, env=env, sets=sets)
    assert loaded.settings.scaler.tick_interval_seconds == expected
    assert loaded.provenance[TICK].startswith(source)


def _leaves(doc: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in doc.items():
        path = f"{prefix}{key}"
        out |= _leaves(value, f"{path}.") if isinstance(value, dict) and value else {path}
    return out


def test_every_leaf_has_provenance_and_mappings_merge(tmp_path) -> None:
    loaded = load(
        tmp_path,
        file="prometheus: {url: 'http://prom:9090', timeout_seconds: 20}\n",
        env={"GRIDSHIFT_PROMETHEUS__TIMEOUT_SECONDS": "30"},
        sets=[("server.listen", "0.0.0.0:8080")],
    )
    prov = loaded.provenance
    path = str(tmp_path / "gridshift.yaml")
    assert prov["prometheus.url"] == f"file:{path}"  # kept: env set a sibling only
    assert prov["prometheus.timeout_seconds"] == "env:GRIDSHIFT_PROMETHEUS__TIMEOUT_SECONDS"
    assert prov["server.listen"] == "flag:--set"
    assert prov["extender.listen"] == "default"
    assert loaded.settings.prometheus.url == "http://prom:9090"
    assert loaded.settings.prometheus.timeout_seconds == 30.0
    # one entry per leaf of the effective settings (nested groups and mappings flattened)
    assert set(prov) == _leaves(loaded.settings.model_dump())
    assert loaded.layers == (
        "default",
        f"file:{path}",
        "env:GRIDSHIFT_PROMETHEUS__TIMEOUT_SECONDS",
        "flag:--set",
    )


def test_config_file_from_environment_variable_and_flag_wins(tmp_path) -> None:
    first = write(tmp_path, "scaler: {tick_interval_seconds: 11}", "a.yaml")
    second = write(tmp_path, "scaler: {tick_interval_seconds: 22}", "b.yaml")
    env = {"GRIDSHIFT_CONFIG": str(first)}
    assert load_config(model=Settings, environ=env).settings.scaler.tick_interval_seconds == 11
    chosen = load_config(model=Settings, environ=env, config_file=second)
    assert chosen.settings.scaler.tick_interval_seconds == 22
    assert chosen.provenance[TICK] == f"file:{second}"


def test_good_fixture_and_wiring_entry(monkeypatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_SERVER__LISTEN", "0.0.0.0:9000")
    settings = load_settings(config_file=FIXTURES / "good.yaml")
    assert settings.scaler.tick_interval_seconds == 30.0
    assert settings.server.listen == "0.0.0.0:9000"  # wiring reads os.environ by default
    isolated = load_settings_with_sources(config_file=FIXTURES / "good.yaml", environ={})
    assert isinstance(isolated, LoadedConfig)
    assert isolated.settings.server.listen == "127.0.0.1:8080"


def test_settings_alone_never_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS", "5")
    assert Settings().scaler.tick_interval_seconds == 60.0
    assert Settings.model_validate({}).scaler.tick_interval_seconds == 60.0


# ---------------------------------------------------------------------- unknown keys
@pytest.mark.parametrize(
    ("file", "env", "sets", "path", "hint"),
    [
        pytest.param(
            "scaler: {tick_interval_secnds: 3}",
            {},
            [],
            "scaler.tick_interval_secnds",
            "did you mean 'tick_interval_seconds'",
            id="file typo",
        ),
        pytest.param("sclaer: {}", {}, [], "sclaer", "did you mean 'scaler'", id="file group"),
        pytest.param(
            None,
            {"GRIDSHIFT_SCALER__TICK": "3"},
            [],
            "scaler.tick",
            "unknown key",
            id="env field",
        ),
        pytest.param(
            None,
            {"GRIDSHIFT_SCALR__TICK_INTERVAL_SECONDS": "3"},
            [],
            "scalr",
            "did you mean 'scaler'",
            id="env group",
        ),
        pytest.param(
            None,
            {"GRIDSHIFT_SCALER": '{"tick": 1}'},
            [],
            "scaler.tick",
            "unknown key",
            id="env JSON member",
        ),
        pytest.param(
            None,
            {"GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS__X": "1"},
            [],
            "scaler.tick_interval_seconds.X",
            "set as a whole",
            id="env below a leaf",
        ),
        pytest.param(
            None,
            {},
            [("scaler.tick_interval", "3")],
            "scaler.tick_interval",
            "did you mean 'tick_interval_seconds'",
            id="flag field",
        ),
        pytest.param(
            None, {}, [("nope", "3")], "nope", "valid keys here: prometheus", id="flag group"
        ),
        pytest.param(None, {}, [("scaler..x", "3")], "scaler..x", "empty key", id="flag empty"),
    ],
)
def test_unknown_keys_are_errors_in_every_layer(tmp_path, file, env, sets, path, hint) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, file=file, env=env, sets=sets)
    found = problems(exc)
    assert path in found, found
    assert hint in found[path]


@pytest.mark.parametrize(
    "name",
    [
        "GRIDSHIFT_CONFIG",
        "GRIDSHIFT_DEBUG",
        "GRIDSHIFT_SHARED_DATA",
        "GRIDSHIFT_SERVICE_HOST",
        "GRIDSHIFT_SERVICE_PORT",
        "GRIDSHIFT_SERVICE_PORT_HTTP",
        "GRIDSHIFT_PORT",
        "GRIDSHIFT_PORT_8080_TCP",
        "GRIDSHIFT_PORT_8080_TCP_ADDR",
        "GRIDSHIFT_EXTENDER_SERVICE_HOST",
        "GRIDSHIFT_EXTENDER_PORT_8888_TCP_PROTO",
    ],
)
def test_reserved_and_service_link_variables_are_not_settings(tmp_path, name) -> None:
    value = "" if name == "GRIDSHIFT_CONFIG" else "10.0.0.1"
    loaded = load(env={name: value, "OTHER_APP_SETTING": "x"})
    assert all(not src.startswith("env:") for src in loaded.provenance.values())


# ---------------------------------------------------------------------- value parsing
@pytest.mark.parametrize(
    ("env", "sets", "path", "message"),
    [
        pytest.param(
            {"GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "soon"},
            [],
            TICK,
            "valid number",
            id="env not a number",
        ),
        pytest.param(
            {"GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "-1"},
            [],
            TICK,
            "greater than 0",
            id="env out of bounds",
        ),
        pytest.param({"GRIDSHIFT_SCALER": "{nope"}, [], "scaler", "must be JSON", id="env JSON"),
        pytest.param({}, [(TICK, "x")], TICK, "valid number", id="flag not a number"),
        pytest.param({}, [("scaler", "{a: [}")], "scaler", "must be YAML", id="flag YAML"),
    ],
)
def test_bad_values_name_field_and_layer(env, sets, path, message) -> None:
    with pytest.raises(ConfigError) as exc:
        load(env=env, sets=sets)
    (problem,) = exc.value.problems
    assert problem.path == path
    assert message in problem.message
    assert problem.source in {f"env:{next(iter(env), '')}", "flag:--set"}


def test_flags_reach_into_maps_and_lists() -> None:
    # `--set` parsing (KEY=VALUE) is covered in test_cli; here: a dotted path below a map works.
    loaded = load(
        model=DemoSettings, sets=[("vault.regions.GB.zone", "GB"), ("vault.zones", "[a, b]")]
    )
    assert loaded.settings.vault.regions["GB"].zone == "GB"
    assert loaded.settings.vault.zones == ["a", "b"]
    assert loaded.provenance["vault.regions.GB.zone"] == "flag:--set"
    assert loaded.provenance["vault.zones"] == "flag:--set"


def test_every_problem_from_every_layer_at_once(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(
            tmp_path,
            file="prometheus: {timeout_seconds: 0}\nscaler: {tick: 1}\n",
            env={
                "GRIDSHIFT_SERVER__LISTEN_ADDR": "x",
                "GRIDSHIFT_CARBON__STALE_AFTER_SECONDS": "y",
            },
            sets=[("forecast.refit_interval_seconds", "-3")],
        )
    assert set(problems(exc)) == {
        "prometheus.timeout_seconds",
        "scaler.tick",
        "server.listen_addr",
        "carbon.stale_after_seconds",
        "forecast.refit_interval_seconds",
    }


def test_cross_field_rule_lists_the_layers_involved(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(
            tmp_path,
            file="vault: {min_replicas: 5}\n",
            env={"GRIDSHIFT_VAULT__MAX_REPLICAS": "2"},
            model=DemoSettings,
        )
    (problem,) = exc.value.problems
    assert problem.path == "vault"
    assert problem.message == "min_replicas must be <= max_replicas"
    assert problem.source is not None
    assert "file:" in problem.source
    assert "env:GRIDSHIFT_VAULT__MAX_REPLICAS" in problem.source


# ---------------------------------------------------------------------- YAML file problems
@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("scaler:\n  tick_interval_seconds: [1\n", "line 3", id="unclosed flow"),
        pytest.param("scaler: {a: 1\nb: 2", "YAML syntax error", id="syntax"),
        pytest.param("a: 1\n  b: 2\n", "line 2, column", id="bad indentation"),
        pytest.param("- scaler\n- server\n", "got a list", id="top-level list"),
        pytest.param("just text\n", "got a string", id="top-level scalar"),
        pytest.param("a: 1\n---\nb: 2\n", "single document", id="two documents"),
        pytest.param(
            "scaler:\n  tick_interval_seconds: 1\n  tick_interval_seconds: 2\n",
            "duplicate key (also on line 2)",
            id="duplicate key",
        ),
    ],
)
def test_yaml_problems_are_readable(tmp_path, text, message) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, file=text)
    rendered = str(exc.value)
    assert message in rendered
    assert "Traceback" not in rendered


def test_empty_file_sets_nothing(tmp_path) -> None:
    loaded = load(tmp_path, file="# only a comment\n")
    assert set(loaded.provenance.values()) == {"default"}


def test_yaml_problem_positions(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, file="# comment\nscaler:\n  tick_interval_seconds: 0\n")
    (problem,) = exc.value.problems
    assert problem.source is not None
    assert problem.source.endswith("line 3, column 3")


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda p: p / "missing.yaml", "config file not found", id="missing"),
        pytest.param(lambda p: p, "is a directory", id="directory"),
        pytest.param(
            lambda p: (p / "latin1.yaml", (p / "latin1.yaml").write_bytes(b"a: \xe9\xff\n"))[0],
            "not UTF-8",
            id="not utf-8",
        ),
    ],
)
def test_unreadable_files(tmp_path, make, message) -> None:
    path = make(tmp_path)
    with pytest.raises(ConfigError) as exc:
        load_config(model=Settings, environ={}, config_file=path)
    (problem,) = exc.value.problems
    assert message in problem.message
    assert problem.source == f"file:{path}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_permissions(tmp_path) -> None:  # pragma: no cover - CI runs as root
    path = write(tmp_path, "scaler: {}")
    path.chmod(0)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(model=Settings, environ={}, config_file=path)


# ---------------------------------------------------------------------- secrets
def secret_file(tmp_path: Path, text: str, name: str = "token") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("layer", ["file", "env", "flag"])
def test_secret_from_file_in_every_layer(tmp_path, layer) -> None:
    token = secret_file(tmp_path, "s3cr3t-token\n")  # kubectl --from-file keeps the newline
    file = env = None
    sets = []
    if layer == "file":
        file = f"vault:\n  token_file: {token}\n"
    elif layer == "env":
        env = {"GRIDSHIFT_VAULT__TOKEN_FILE": str(token)}
    else:
        sets = [("vault.token_file", str(token))]
    loaded = load(tmp_path, file=file, env=env, sets=sets, model=DemoSettings)
    assert loaded.settings.vault.token is not None
    assert loaded.settings.vault.token.get_secret_value() == "s3cr3t-token"
    assert f"(secret file {token})" in loaded.provenance["vault.token"]
    assert loaded.masked_dict()["vault"]["token"] == MASK
    assert "s3cr3t" not in repr(loaded) + repr(loaded.settings) + str(loaded.leaves)


def test_secret_file_inside_a_map_and_override_by_later_layer(tmp_path) -> None:
    key = secret_file(tmp_path, "gb-key", "gb")
    loaded = load(
        tmp_path,
        file=(
            f"vault:\n  regions:\n    GB: {{zone: GB, api_key_file: {key}}}\n  token_file: {key}\n"
        ),
        env={"GRIDSHIFT_VAULT__TOKEN": "direct-from-env"},
        model=DemoSettings,
    )
    region = loaded.settings.vault.regions["GB"]
    assert region.api_key is not None
    assert region.api_key.get_secret_value() == "gb-key"
    assert loaded.provenance["vault.token"] == "env:GRIDSHIFT_VAULT__TOKEN"  # no stale file note


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(None, "cannot read secret file", id="missing"),
        pytest.param(b"\n", "is empty", id="empty"),
        pytest.param(b"\xff\xfe", "is not UTF-8 text", id="binary"),
    ],
)
def test_secret_file_problems(tmp_path, content, message) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as exc:
        load(env={"GRIDSHIFT_VAULT__TOKEN_FILE": str(path)}, model=DemoSettings)
    (problem,) = exc.value.problems
    assert problem.path == "vault.token_file"
    assert message in problem.message
    assert problem.source == "env:GRIDSHIFT_VAULT__TOKEN_FILE"


def test_secret_and_secret_file_together_is_an_error(tmp_path) -> None:
    token = secret_file(tmp_path, "abcd")
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, file=f"vault: {{token: x1y2, token_file: {token}}}\n", model=DemoSettings)
    assert problems(exc) == {
        "vault.token": "set twice in one layer ('token' and 'token_file'); use one"
    }


def test_secret_file_path_must_be_a_string(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, file="vault: {token_file: [a]}\n", model=DemoSettings)
    assert problems(exc) == {"vault.token_file": "expected the path of a secret file"}


def test_file_suffix_only_for_secret_fields(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(env={"GRIDSHIFT_VAULT__URL_FILE": "/etc/hostname"}, model=DemoSettings)
    assert "vault.url_file" in problems(exc)


def test_secrets_never_appear_in_errors(tmp_path) -> None:
    with pytest.raises(ConfigError) as exc:
        load(
            tmp_path,
            file=(
                "vault:\n  token: [hunter2-secret]\n  pasword: typo-secret-1\n"
                "  api_token: named-secret-2\n  min_replicas: named-secret-2\n"
            ),
            env={
                "GRIDSHIFT_VAULT__PASSWORD": "env-secret-9",
                # the secret pasted into the wrong variable: scrubbed as a known secret
                "GRIDSHIFT_VAULT__MAX_REPLICAS": "env-secret-9",
                "GRIDSHIFT_VAULT__API_TOKEN": "unknown-secret",
            },
            model=DemoSettings,
        )
    text = str(exc.value) + repr(exc.value)
    for secret in (
        "hunter2-secret",
        "typo-secret-1",
        "named-secret-2",
        "env-secret-9",
        "unknown-secret",
    ):
        assert secret not in text
    assert "vault.token" in text
    assert "vault.pasword: unknown key (did you mean 'password'?)" in text
    assert "vault.max_replicas" in text
    assert MASK in text


def test_leaf_type() -> None:
    loaded = load()
    assert all(isinstance(leaf, Leaf) for leaf in loaded.leaves)
    assert loaded.secrets == frozenset()


def test_missing_file_named_by_environment_says_so(tmp_path) -> None:
    env = {"GRIDSHIFT_CONFIG": str(tmp_path / "gone.yaml")}
    with pytest.raises(ConfigError) as exc:
        load_config(model=Settings, environ=env)
    (problem,) = exc.value.problems
    assert problem.message == "config file not found (named by $GRIDSHIFT_CONFIG)"


def test_empty_map_replaces_a_map_and_is_attributed(tmp_path) -> None:
    loaded = load(
        tmp_path,
        file="vault:\n  regions: {GB: {zone: GB}}\n",
        sets=[("vault.regions", "{}")],
        model=DemoSettings,
    )
    assert loaded.settings.vault.regions == {}
    assert loaded.provenance["vault.regions"] == "flag:--set"
    untouched = load(tmp_path, file="scaler: {}\n")
    assert untouched.provenance[TICK] == "default"


def test_alias_and_name_are_one_key(tmp_path) -> None:
    loaded = load(
        tmp_path,
        file="vault:\n  regions:\n    GB: {zone: GB, region_class: premium}\n",
        env={"GRIDSHIFT_VAULT__REGIONS__GB__CLASS": "spot"},
        model=DemoSettings,
    )
    assert loaded.settings.vault.regions["GB"].region_class == "spot"
    assert loaded.provenance["vault.regions.GB.region_class"] == (
        "env:GRIDSHIFT_VAULT__REGIONS__GB__CLASS"
    )
    with pytest.raises(ConfigError) as exc:
        load(
            tmp_path,
            file="vault: {regions: {GB: {zone: a, class: b, region_class: c}}}",
            model=DemoSettings,
        )
    assert "set twice in one layer" in problems(exc)["vault.regions.GB.region_class"]
    with pytest.raises(ConfigError) as exc:
        load(
            sets=[("vault.regions.GB.clas", "x"), ("vault.regions.GB.zone", "GB")],
            model=DemoSettings,
        )
    assert "did you mean 'class'" in problems(exc)["vault.regions.GB.clas"]


def test_yaml_1_2_scalars_keep_country_codes_and_times_as_strings(tmp_path) -> None:
    loaded = load(
        tmp_path,
        file="vault:\n  zones: [NO, on, '22:30', 22:30, 0777]\n  regions: {NO: {zone: NO-NO1}}\n",
        sets=[("vault.url", "off")],
        model=DemoSettings,
    )
    assert loaded.settings.vault.zones == ["NO", "on", "22:30", "22:30", "0777"]
    assert set(loaded.settings.vault.regions) == {"NO"}
    assert loaded.settings.vault.url == "off"
    flags = load(sets=[("vault.zones", "[yes, No]")], model=DemoSettings)
    assert flags.settings.vault.zones == ["yes", "No"]
