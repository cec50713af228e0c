"""Settings, read once: `load_settings` / `load_settings_with_sources` (file, env, secret files,
--set).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from config.crossref import cross_reference_problems
from config.errors import ConfigError
from config.loading import LoadedConfig, Override, load_config
from config.settings import (
    Settings,
)

log = logging.getLogger(__name__)


def load_settings_with_sources(
    *,
    config_file: str | Path | None = None,
    overrides: Sequence[Override] = (),
    environ: Mapping[str, str] | None = None,
    model: type[Settings] = Settings,
) -> LoadedConfig[Settings]:
    """Defaults < YAML file (`config_file` or `$GRIDSHIFT_CONFIG`) < `GRIDSHIFT_*` env <
    `overrides`, validated, with the layer of every value. Raises `config.errors.ConfigError`
    listing every problem. `environ` defaults to the process environment (read only here)."""
    loaded = load_config(
        model=model,
        environ=os.environ if environ is None else environ,
        config_file=config_file,
        overrides=overrides,
    )
    # names that point at other settings must exist (a workload's region, aliases, targets)
    problems = (
        cross_reference_problems(loaded.settings, source_of=loaded.source_of)
        if isinstance(loaded.settings, Settings)  # tests load demo models too
        else []
    )
    if problems:
        raise ConfigError(problems)
    return loaded


def load_settings(
    *,
    config_file: str | Path | None = None,
    overrides: Sequence[Override] = (),
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """The effective `Settings` (see `load_settings_with_sources` for the layers)."""
    return load_settings_with_sources(
        config_file=config_file, overrides=overrides, environ=environ
    ).settings
