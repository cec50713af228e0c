"""Configuration, scenario and secret files are read bounded (`config.files`).

Aspects: a FIFO named as a secret file or as the config file is refused at once (never
blocks), so is a device (`/dev/null` here; `/dev/zero` was read until memory ran out); a
config file over the size limit (10 MB) and a secret file over its limit are refused
before they are read; a 338-byte YAML alias bomb is refused after composing, without
expanding it; each refusal is a configuration error naming the file, which
`gridshift config check` reports with exit status 2, in under a second; ordinary files and
ordinary aliases still load.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import config.cmd_config  # noqa: F401 - imported at collection, not inside a timed test
from config.cli import cli
from config.errors import ConfigError
from config.files import (
    MAX_CONFIG_BYTES,
    FileRefused,
    YamlTooLarge,
    load_yaml,
    read_text_file,
)
from config.loading import load_config
from config.settings import Settings

BOMB = (
    'a: &a ["x","x","x","x","x","x","x","x","x"]\n'
    "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
    "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
    "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
    "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
    "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
    "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
    "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
    "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n"
)


def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def big_config(tmp_path: Path) -> Path:
    path = tmp_path / "big.yaml"
    with path.open("w") as out:
        out.write("scaler:\n  workloads:\n")
        line = "  - name: w\n    min_replicas: 1\n"
        out.write(line * (10_000_000 // len(line)))
    return path


def bomb(tmp_path: Path) -> Path:
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    return path


def secret_config(secret: Callable[[Path], Path]) -> Callable[[Path], Path]:
    def make(tmp_path: Path) -> Path:
        path = tmp_path / "gridshift.yaml"
        path.write_text(f"prometheus:\n  bearer_token_file: {secret(tmp_path)}\n")
        return path

    return make


def big_secret(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("t" * 100_000)
    return path


CASES = [
    pytest.param(fifo, "a FIFO, not a regular file", id="FIFO as config"),
    pytest.param(lambda tmp: Path("/dev/null"), "a character device", id="a device as config"),
    pytest.param(big_config, "over the 524,288-byte limit", id="10 MB config"),
    pytest.param(bomb, "alias bomb", id="338-byte alias bomb"),
    pytest.param(secret_config(fifo), "a FIFO, not a regular file", id="FIFO as secret file"),
    pytest.param(secret_config(big_secret), "over the 65,536-byte limit", id="100 KB secret"),
]


@pytest.mark.parametrize(("make", "message"), CASES)
def test_refused_fast_as_a_configuration_error(tmp_path, make, message) -> None:
    path = make(tmp_path)
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        load_config(model=Settings, environ={}, config_file=path)
    assert time.monotonic() - started < 1.0
    assert message in str(info.value)


@pytest.mark.parametrize(("make", "message"), CASES[:1] + CASES[3:5])
def test_config_check_exits_2(tmp_path, make, message) -> None:
    result = CliRunner().invoke(cli, ["config", "check", "--config", str(make(tmp_path))])
    assert result.exit_code == 2
    assert "configuration error" in result.stderr
    assert message in result.stderr


def test_bomb_size_is_what_the_issue_measured() -> None:
    assert len(BOMB.encode()) <= 338


def test_read_text_file_refuses_before_reading(tmp_path) -> None:
    with pytest.raises(FileRefused, match="FIFO"):
        read_text_file(fifo(tmp_path), max_bytes=10)
    path = tmp_path / "eleven"
    path.write_text("x" * 11)
    with pytest.raises(FileRefused, match="over the 10-byte limit"):
        read_text_file(path, max_bytes=10)
    with pytest.raises(IsADirectoryError):
        read_text_file(tmp_path, max_bytes=10)
    ok = tmp_path / "ok"
    ok.write_text("héllo")
    assert read_text_file(ok, max_bytes=MAX_CONFIG_BYTES) == "héllo"


def test_load_yaml_bounds_aliases_but_keeps_ordinary_ones() -> None:
    with pytest.raises(YamlTooLarge):
        load_yaml(BOMB)
    assert load_yaml("base: &b {x: 1}\nother: *b\n") == {"base": {"x": 1}, "other": {"x": 1}}
    assert isinstance(YamlTooLarge("x"), yaml.YAMLError)
