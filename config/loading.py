"""Loading the configuration: every layer, every problem at once, and where each value came from.

Layers, lowest first (a later layer wins, mappings merge key by key, anything else replaces):

1. ``default``      the defaults declared in `config.settings`.
2. ``file:PATH``    one YAML file: ``--config PATH`` or ``$GRIDSHIFT_CONFIG``.
3. ``env:VAR``      ``GRIDSHIFT_<GROUP>__<FIELD>`` (``__`` nests; names are case-insensitive;
                    nested values such as lists are JSON).
4. ``flag:...``     command-line flags: ``--set group.field=VALUE`` (nested values are YAML) and
                    the specific flags a command declares.

Each layer is a pydantic-settings source (`config.sources`) that `Settings` lists in
`settings_customise_sources`; `load_config` activates them for one load, lets pydantic-settings
merge and validate, then lists the problems of every layer at once (`ConfigError`) or returns the
settings with the layer of every value.

Unknown keys in any layer are errors (with a "did you mean"), never silently ignored. The only
``GRIDSHIFT_*`` variables that are not settings are ``GRIDSHIFT_CONFIG``, ``GRIDSHIFT_DEBUG``,
``GRIDSHIFT_SHARED_DATA`` (the test suite's data folder) and the service-link variables
Kubernetes injects for a Service named ``gridshift*`` (``GRIDSHIFT_SERVICE_HOST``,
``GRIDSHIFT_PORT_8080_TCP``, ...).

Secrets (``SecretStr`` fields) can be read from a file in every layer by adding ``_file`` to
the field's name — ``token_file: /var/run/secrets/gridshift/token`` in YAML,
``GRIDSHIFT_CARBON__WATTTIME__PASSWORD_FILE=...`` or ``--set carbon.watttime.password_file=...``
— the way Kubernetes Secret volumes are mounted. The file's contents, less trailing newlines,
become the value. Setting both ``token`` and ``token_file`` in the same layer is an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import SecretBytes, SecretStr, ValidationError
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings

from config.errors import (
    MASK,
    ConfigError,
    Problem,
    SourceOf,
    format_path,
    looks_secret,
    problems_from_validation_error,
    scrub,
)
from config.schema import Node, child, is_secret, root_node
from config.sources import (
    CONFIG_ENV,
    DEBUG_ENV,
    RESERVED_ENV,
    LayerSource,
    Ledger,
    Override,
    SourceInputs,
    with_mark,
)

__all__ = [
    "CONFIG_ENV",
    "DEBUG_ENV",
    "DEFAULT_SOURCE",
    "RESERVED_ENV",
    "Leaf",
    "LoadedConfig",
    "Override",
    "load_config",
]

DEFAULT_SOURCE = "default"

M = TypeVar("M", bound=BaseSettings)
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Leaf:
    """One effective value (secrets masked) and the layer it came from."""

    path: str
    value: Any
    source: str


@dataclass(frozen=True, slots=True)
class LoadedConfig(Generic[M]):
    """The validated settings plus, for every leaf, which layer set it; `source_of(loc)` says
    it for any path as the loader's problems do (a file's line and column too)."""

    settings: M
    leaves: tuple[Leaf, ...]
    layers: tuple[str, ...]
    secrets: frozenset[str] = field(repr=False, default=frozenset())
    source_of: SourceOf = field(repr=False, compare=False, default=lambda loc: None)

    @property
    def provenance(self) -> dict[str, str]:
        return {leaf.path: leaf.source for leaf in self.leaves}

    def masked_dict(self) -> dict[str, Any]:
        """The effective configuration as plain data, every secret replaced by `***`."""
        data: dict[str, Any] = _masked_data(self.settings.model_dump(mode="python"))
        return data


def load_config(
    *,
    model: type[M],
    environ: Mapping[str, str],
    config_file: str | Path | None = None,
    overrides: Sequence[Override] = (),
) -> LoadedConfig[M]:
    """Build `model` (a `Settings`-like class) from its layer sources, or raise `ConfigError`
    listing every problem found in every layer. `config_file` falls back to `$GRIDSHIFT_CONFIG`."""
    inputs = SourceInputs(environ=environ, config_file=config_file, overrides=overrides)
    settings: M | None
    error: ValidationError | None = None
    with inputs.active():
        try:
            settings = model()
        except ValidationError as exc:
            settings, error = None, exc
    layers = list(reversed(inputs.sources))  # lowest first
    history = _History(model, layers)
    problems = [p for layer in layers for p in layer.record.problems]
    if error is not None:
        problems.extend(
            problems_from_validation_error(error, model=model, source_of=history.source_of)
        )
    secrets = frozenset(_secrets_in(history.ledger.data, root_node(model)))
    if problems or settings is None:
        raise ConfigError([_scrubbed(p, secrets) for p in problems], title="configuration error")
    leaves = tuple(
        Leaf(format_path(loc), value, history.leaf_source(loc))
        for loc, value in _leaves(_masked_data(settings.model_dump(mode="python")), ())
    )
    labels = [DEFAULT_SOURCE, *(label for layer in layers for label in layer.record.labels)]
    return LoadedConfig(
        settings, leaves, tuple(dict.fromkeys(labels)), secrets, source_of=history.source_of
    )


class _History:
    """Every layer's writes replayed lowest first: the layer of each effective value."""

    def __init__(self, model: type[BaseSettings], layers: Sequence[LayerSource]) -> None:
        self.ledger = Ledger(model)
        self.marks: dict[Loc, tuple[int, int]] = {}
        for layer in layers:
            self.marks.update(layer.record.marks)
            for loc, value, label, notes in layer.record.writes:
                self.ledger.apply(loc, value, label, notes)

    def source_of(self, loc: Loc) -> str | None:
        label = self.ledger.label_for(loc)
        if label is not None:
            return with_mark(label, loc, self.marks)
        prov = self.ledger.prov
        below = [p for p in prov if p[: len(loc)] == loc]
        labels = dict.fromkeys(with_mark(prov[p], p, self.marks) for p in below)
        return ", ".join(labels) or None

    def leaf_source(self, loc: Loc) -> str:
        label = self.ledger.label_for(loc) or DEFAULT_SOURCE
        secret_file = self.ledger.secret_files.get(loc)
        return f"{label} (secret file {secret_file})" if secret_file else label


# ---------------------------------------------------------------------- pure helpers
def _secrets_in(value: Any, node: Node | None) -> list[str]:
    """Every secret string in the merged input (for scrubbing error text)."""
    if isinstance(value, str):
        return [value] if is_secret(node) else []
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            sub = child(node, key) if node is not None else None
            if sub is None and looks_secret(key) and isinstance(item, str):
                found.append(item)
            found.extend(_secrets_in(item, sub))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found.extend(_secrets_in(item, child(node, i) if node is not None else None))
    return found


def _masked_data(value: Any) -> Any:
    if isinstance(value, SecretStr | SecretBytes):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {str(k): _masked_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked_data(v) for v in value]
    return to_jsonable_python(value)


def _leaves(value: Any, loc: Loc) -> list[tuple[Loc, Any]]:
    if isinstance(value, dict) and value:
        out: list[tuple[Loc, Any]] = []
        for key, item in value.items():
            out.extend(_leaves(item, (*loc, key)))
        return out
    return [(loc, value)]


def _scrubbed(problem: Problem, secrets: frozenset[str]) -> Problem:
    return Problem(
        scrub(problem.path, secrets),
        scrub(problem.message, secrets),
        None if problem.value is None else scrub(problem.value, secrets),
        None if problem.source is None else scrub(problem.source, secrets),
    )
