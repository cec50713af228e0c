"""The `gridshift` command (config.cli, config.cmd_config, config.options) through CliRunner.

Aspects: `config check` on good/bad files (every problem listed, exit 2, no traceback);
`config show` in yaml and json with the layer of each value; secrets masked in all output;
`--set` and command-specific setting flags; `--version`/`--help` on every command of the
tree; `main()`: config errors exit 2, unexpected errors one line + hint (exit 1), `--debug` and
`GRIDSHIFT_DEBUG=1` show the traceback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel, ValidationError

import config.cmd_config
from config.cli import LAZY_COMMANDS, GridshiftGroup, cli, main
from config.options import (
    RunState,
    loaded_settings_from_context,
    setting_option,
    settings_from_context,
    settings_options,
)
from config.settings import Settings
from config.version import __version__
from tests.unit.demo_settings import DemoSettings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "config"
BAD = str(FIXTURES / "bad.yaml")
GOOD = str(FIXTURES / "good.yaml")


def invoke(args, **kwargs):
    return CliRunner().invoke(cli, args, **kwargs)


def test_check_good_file() -> None:
    result = invoke(["config", "check", "--config", GOOD])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("configuration OK:")
    assert f"file:{GOOD}" in result.stdout


def test_check_bad_file_lists_all_three_mistakes_and_exits_2() -> None:
    result = invoke(["config", "check", "--config", BAD])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "gridshift: configuration error (3 problems)"
    text = result.stderr
    assert "prometheus.timeout_seconds: Input should be greater than 0" in text
    assert "value: -5  (from file:" in text
    assert "carbon.stale_after_seconds: Input should be a valid number" in text
    assert 'value: "two hours"' in text
    assert (
        "scaler.tick_interval_secnds: unknown key (did you mean 'tick_interval_seconds'?)" in text
    )
    assert "line 11, column 3" in text
    assert "Traceback" not in text


def test_check_uses_gridshift_config_and_env_errors() -> None:
    result = invoke(
        ["config", "check"],
        env={"GRIDSHIFT_CONFIG": GOOD, "GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS": "0"},
    )
    assert result.exit_code == 2
    assert "scaler.tick_interval_seconds: Input should be greater than 0" in result.stderr
    assert "(from env:GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS)" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["--config", "/nonexistent/gridshift.yaml"], id="missing file"),
        pytest.param(["--set", "scaler.nope=1"], id="unknown flag key"),
    ],
)
def test_check_failures_exit_2(args) -> None:
    result = invoke(["config", "check", *args])
    assert result.exit_code == 2
    assert result.stderr.startswith("gridshift: configuration error (1 problem)")


def test_set_needs_key_equals_value() -> None:
    result = invoke(["config", "check", "--set", "scaler.tick_interval_seconds"])
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.stderr


def test_show_yaml_is_valid_yaml_with_sources() -> None:
    result = invoke(
        ["config", "show", "--config", GOOD, "--set", "server.listen=0.0.0.0:1"],
        env={"GRIDSHIFT_FORECAST__REFIT_INTERVAL_SECONDS": "60"},
    )
    assert result.exit_code == 0, result.output
    data = yaml.safe_load(result.stdout)
    assert data["scaler"]["tick_interval_seconds"] == 30.0
    assert data["server"]["listen"] == "0.0.0.0:1"
    lines = result.stdout.splitlines()
    assert f"  tick_interval_seconds: 30.0  # file:{GOOD}" in lines
    assert (
        "  refit_interval_seconds: 60.0  # env:GRIDSHIFT_FORECAST__REFIT_INTERVAL_SECONDS" in lines
    )
    assert '  listen: "0.0.0.0:1"  # flag:--set' in lines
    assert '  listen: "127.0.0.1:8888"  # default' in lines


def test_show_json_and_no_sources() -> None:
    result = invoke(["config", "show", "--format", "json", "--config", GOOD])
    payload = json.loads(result.stdout)
    assert payload["settings"]["prometheus"]["timeout_seconds"] == 20.0
    assert payload["sources"]["prometheus.timeout_seconds"] == f"file:{GOOD}"
    assert payload["sources"]["server.listen"] == "default"
    bare = json.loads(invoke(["config", "show", "--format", "json", "--no-sources"]).stdout)
    assert set(bare) == set(Settings.model_fields)
    plain = invoke(["config", "show", "--no-sources"]).stdout
    assert "# default" not in plain


def test_show_bad_config_exits_2() -> None:
    result = invoke(["config", "show", "--config", BAD])
    assert result.exit_code == 2
    assert "(3 problems)" in result.stderr


def test_secrets_are_masked_in_every_output(tmp_path) -> None:
    token = tmp_path / "token"
    token.write_text("file-secret-123\n", encoding="utf-8")
    state = RunState(
        settings_model=DemoSettings,
        environ={
            "GRIDSHIFT_VAULT__TOKEN_FILE": str(token),
            "GRIDSHIFT_VAULT__PASSWORD": "env-secret-456",
        },
    )
    outputs = []
    for args in (
        ["config", "show"],
        ["config", "show", "--format", "json"],
        ["config", "check"],
        ["config", "check", "--set", "vault.max_replicas=env-secret-456"],
        ["config", "check", "--set", "vault.pasword=flag-secret-789"],
    ):
        result = CliRunner().invoke(cli, args, obj=state)
        outputs.append(result.output)
        assert result.exit_code in (0, 2)
    text = "\n".join(outputs)
    for secret in ("file-secret-123", "env-secret-456", "flag-secret-789"):
        assert secret not in text
    assert f'  token: "***"  # env:GRIDSHIFT_VAULT__TOKEN_FILE (secret file {token})' in outputs[0]
    assert json.loads(outputs[1])["settings"]["vault"]["password"] == "***"
    assert "vault.pasword: unknown key (did you mean 'password'?)" in outputs[4]


def test_command_specific_setting_flags() -> None:
    @click.command()
    @settings_options
    @setting_option("--tick", path="scaler.tick_interval_seconds", type=float)
    @setting_option("--listen", path="server.listen")
    @click.pass_context
    def probe(ctx: click.Context) -> None:
        loaded = loaded_settings_from_context(ctx)
        settings = settings_from_context(ctx)
        click.echo(json.dumps([settings.scaler.tick_interval_seconds, loaded.provenance]))

    root = GridshiftGroup("root")
    root.add_command(probe)
    runner = CliRunner()
    result = runner.invoke(
        root, ["probe", "--set", "scaler.tick_interval_seconds=9", "--tick", "5"]
    )
    tick, prov = json.loads(result.stdout)
    assert tick == 5.0
    assert prov["scaler.tick_interval_seconds"] == "flag:--tick"
    assert prov["server.listen"] == "default"  # an unused flag sets nothing
    bad = runner.invoke(root, ["probe", "--tick", "0"])
    assert bad.exit_code == 2
    assert "(from flag:--tick)" in bad.stderr
    assert "--version" in runner.invoke(root, ["probe", "--help"]).stdout


def all_command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            paths.extend(all_command_paths(command, (*prefix, name)))
        else:
            paths.append((*prefix, name))
    return paths


@pytest.mark.parametrize("path", all_command_paths(cli), ids=lambda p: " ".join(p) or "gridshift")
def test_version_and_help_on_every_level(path) -> None:
    version = invoke([*path, "--version"])
    assert version.exit_code == 0
    assert version.stdout == f"gridshift {__version__}\n"
    for flag in ("--help", "-h"):
        helped = invoke([*path, flag])
        assert helped.exit_code == 0
        assert helped.stdout.startswith("Usage: ")
        assert "--version" in helped.stdout


# ---------------------------------------------------------------------- main()
def run_main(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    captured = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def test_main_ok_and_config_error(capsys) -> None:
    assert run_main(["config", "check", "--config", GOOD], capsys)[0] == 0
    code, _, err = run_main(["config", "check", "--config", BAD], capsys)
    assert code == 2
    assert "(3 problems)" in err
    assert run_main(["--version"], capsys)[:2] == (0, f"gridshift {__version__}\n")
    code, _, err = run_main(["config", "nope"], capsys)
    assert code == 2
    assert "No such command" in err


def boom(_ctx):
    raise RuntimeError("kaboom\nsecond line")


def invalid(_ctx):
    class Wire(BaseModel):
        count: int

    Wire.model_validate({"count": "many"})


def test_main_validation_error_from_a_command(capsys, monkeypatch) -> None:
    monkeypatch.setattr(config.cmd_config, "loaded_settings_from_context", invalid)
    code, _, err = run_main(["config", "check"], capsys)
    assert code == 2
    assert "count: Input should be a valid integer" in err
    with pytest.raises(ValidationError):
        invalid(None)


def test_main_unexpected_error_is_one_line_with_hint(capsys, monkeypatch) -> None:
    monkeypatch.setattr(config.cmd_config, "loaded_settings_from_context", boom)
    code, _, err = run_main(["config", "check"], capsys)
    assert code == 1
    assert err.splitlines() == [
        "gridshift: unexpected error: RuntimeError: kaboom",
        "(run with --debug or GRIDSHIFT_DEBUG=1 to see the traceback)",
    ]


@pytest.mark.parametrize(
    ("args", "env"),
    [
        pytest.param(["--debug", "config", "check"], None, id="--debug"),
        pytest.param(["config", "check"], "1", id="GRIDSHIFT_DEBUG=1"),
    ],
)
def test_main_debug_shows_traceback(capsys, monkeypatch, args, env) -> None:
    monkeypatch.setattr(config.cmd_config, "loaded_settings_from_context", boom)
    if env:
        monkeypatch.setenv("GRIDSHIFT_DEBUG", env)
    code, _, err = run_main(args, capsys)
    assert code == 1
    assert "Traceback (most recent call last)" in err
    assert "RuntimeError: kaboom" in err


def test_setting_option_refuses_a_default() -> None:
    with pytest.raises(TypeError, match=r"default belongs in config/settings\.py"):
        setting_option("--tick", path="scaler.tick_interval_seconds", default=3)


def test_fields_lists_every_setting_with_env_bounds_and_secret_file_form() -> None:
    state = RunState(settings_model=DemoSettings, environ={})
    text = CliRunner().invoke(cli, ["config", "fields"], obj=state).stdout
    assert (
        "vault.min_replicas: int (>= 0), default 1\n    env GRIDSHIFT_VAULT__MIN_REPLICAS\n" in text
    )
    assert (
        "scaler.tick_interval_seconds: float (> 0), default 60.0\n"
        "    env GRIDSHIFT_SCALER__TICK_INTERVAL_SECONDS\n"
        "    One decision a minute" in text
    )
    assert (
        "vault.token: secret | None, default null\n"
        "    env GRIDSHIFT_VAULT__TOKEN\n"
        "    or from a file: vault.token_file / GRIDSHIFT_VAULT__TOKEN_FILE" in text
    )
    rows = json.loads(
        CliRunner().invoke(cli, ["config", "fields", "--format", "json"], obj=state).stdout
    )
    shown = json.loads(
        CliRunner().invoke(cli, ["config", "show", "--format", "json"], obj=state).stdout
    )
    fields = [r["path"] for r in rows]
    sources = list(shown["sources"])
    # every declared field shows up in `show`, itself or (a mapping with defaults) as its entries
    for path in fields:
        assert any(src == path or src.startswith(path + ".") for src in sources), path
    for src in sources:
        assert any(src == path or src.startswith(path + ".") for path in fields), src
    regions = next(r for r in rows if r["path"] == "vault.regions")
    assert regions["type"] == "dict[str, RegionDemo]"
    assert regions["default"] == {}


def test_root_help_lists_every_command_with_its_own_first_words() -> None:
    """The lazily loaded commands' one-line help in `gridshift --help` matches each
    command's own help text (so the table cannot drift)."""
    ctx = click.Context(cli)
    for name, (_module, _attr, line) in LAZY_COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None
        assert (command.help or "").startswith(line.removesuffix("...").rstrip(".")), name
    fresh = GridshiftGroup("gridshift", lazy=LAZY_COMMANDS)
    helped = CliRunner().invoke(fresh, ["--help"]).stdout
    for name, (_module, _attr, line) in LAZY_COMMANDS.items():
        assert f"  {name:<12}{line}" in helped
    assert not fresh.commands  # listing them imported none


@pytest.mark.integration  # a fresh interpreter (a subprocess)
def test_root_help_imports_no_heavy_library() -> None:
    """`gridshift --help` loads no command module, nor numpy/pydantic/kubernetes/uvicorn."""
    code = (
        "import sys\n"
        "from config.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ['numpy', 'pandas', 'pydantic', 'kubernetes', 'uvicorn', 'statsmodels',"
        " 'matplotlib', 'httpx', 'starlette', 'config.cmd_run', 'config.settings']\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=20
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
