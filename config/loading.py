"""Loading the configuration: every layer, every problem at once, and where each value came from.

Layers, lowest first (a later layer wins, mappings merge key by key, anything else replaces):

1. ``default``      the defaults declared in `config.settings`.
2. ``file:PATH``    one YAML file: ``--config PATH`` or ``$GRIDSHIFT_CONFIG``.
3. ``env:VAR``      ``GRIDSHIFT_<GROUP>__<FIELD>`` (``__`` nests; names are case-insensitive;
                    nested values such as lists are JSON).
4. ``flag:...``     command-line flags: ``--set group.field=VALUE`` (nested values are YAML) and
                    the specific flags a command declares.

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

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml
from pydantic import BaseModel, SecretBytes, SecretStr, ValidationError
from pydantic_core import to_jsonable_python

from config.errors import (
    MASK,
    ConfigError,
    Problem,
    display_value,
    format_path,
    looks_secret,
    problems_from_validation_error,
    scrub,
    unknown_key,
)
from config.files import (
    MAX_CONFIG_BYTES,
    MAX_SECRET_BYTES,
    parse_yaml_document,
    read_text_file,
)
from config.schema import (
    SECRET_FILE_SUFFIX,
    Node,
    child,
    field_name,
    field_names,
    is_complex,
    is_secret,
    node_at,
    root_node,
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

CONFIG_ENV = "GRIDSHIFT_CONFIG"
DEBUG_ENV = "GRIDSHIFT_DEBUG"
RESERVED_ENV = frozenset({CONFIG_ENV, DEBUG_ENV, "GRIDSHIFT_SHARED_DATA"})
DEFAULT_SOURCE = "default"

# Variables kubelet injects for a Service named gridshift / gridshift-<x> (enableServiceLinks).
_SERVICE_LINK = re.compile(
    r"^(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$"
)

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Override:
    """One command-line value: `path` is dotted (`scaler.tick_interval_seconds`), `value` the
    text as typed, `label` how the provenance names it (`flag:--set`, `flag:--tick-interval`)."""

    path: str
    value: str
    label: str = "flag:--set"


@dataclass(frozen=True, slots=True)
class Leaf:
    """One effective value (secrets masked) and the layer it came from."""

    path: str
    value: Any
    source: str


@dataclass(frozen=True, slots=True)
class LoadedConfig(Generic[M]):
    """The validated settings plus, for every leaf, which layer set it."""

    settings: M
    leaves: tuple[Leaf, ...]
    layers: tuple[str, ...]
    secrets: frozenset[str] = field(repr=False, default=frozenset())

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
    """Merge the layers into `model` (a `Settings`-like class), or raise `ConfigError` listing
    every problem found in every layer. `config_file` falls back to `$GRIDSHIFT_CONFIG`."""
    loader = _Loader(model)
    path = config_file if config_file not in (None, "") else environ.get(CONFIG_ENV) or None
    if path is not None:
        named_by = None if config_file not in (None, "") else CONFIG_ENV
        loader.load_file(Path(path), label=f"file:{path}", named_by=named_by)
    loader.load_env(environ)
    for override in overrides:
        loader.load_override(override)
    return loader.finish()


class _Loader(Generic[M]):
    def __init__(self, model: type[M]) -> None:
        self.model = model
        self.root = root_node(model)
        cfg: Mapping[str, Any] = model.model_config
        self.env_prefix = str(cfg.get("env_prefix") or "GRIDSHIFT_")
        self.env_delimiter = str(cfg.get("env_nested_delimiter") or "__")
        self.merged: dict[str, Any] = {}
        self.prov: dict[Loc, str] = {}
        self.marks: dict[Loc, tuple[int, int]] = {}
        self.secret_files: dict[Loc, str] = {}
        self.pending_secret_files: dict[Loc, str] = {}
        self.problems: list[Problem] = []
        self.layers: list[str] = [DEFAULT_SOURCE]

    # ------------------------------------------------------------------ layers
    def load_file(self, path: Path, *, label: str, named_by: str | None = None) -> None:
        self.layers.append(label)
        why = f" (named by ${named_by})" if named_by else ""
        try:
            text = read_text_file(path, max_bytes=MAX_CONFIG_BYTES)
        except FileNotFoundError:
            return self._problem("", f"config file not found{why}", source=label)
        except IsADirectoryError:
            return self._problem("", f"config path is a directory, not a file{why}", source=label)
        except UnicodeDecodeError as exc:
            return self._problem("", f"config file is not UTF-8 text ({exc.reason})", source=label)
        except OSError as exc:
            return self._problem("", f"cannot read config file{why}: {exc.strerror}", source=label)
        try:
            node, data = _parse_yaml_document(text)
        except yaml.MarkedYAMLError as exc:
            return self._problem("", _yaml_message(exc), source=label)
        except yaml.YAMLError as exc:  # an alias bomb (config.files)
            return self._problem("", f"YAML error: {exc}", source=label)
        if data is None:
            return None  # an empty file (or only comments) sets nothing
        if not isinstance(data, dict):
            groups = ", ".join(field_names(self.model))
            return self._problem(
                "",
                f"the top level must be a mapping of setting groups ({groups}), "
                f"got {_kind_of_value(data)}",
                value=display_value(data),
                source=label,
            )
        if node is not None:
            self._collect_marks(node, (), label)
        data = self._normalise(_str_keys(data), self.root, (), label)
        self._apply((), data, label)
        return None

    def load_env(self, environ: Mapping[str, str]) -> None:
        prefix = self.env_prefix.upper()
        roots = {n.upper() for n in field_names(self.model)}
        for name in sorted(environ):
            upper = name.upper()
            if not upper.startswith(prefix) or upper in RESERVED_ENV:
                continue
            rest = name[len(prefix) :]
            segments = rest.split(self.env_delimiter)
            bare = upper[len(prefix) :]
            if len(segments) == 1 and bare not in roots and _SERVICE_LINK.match(bare):
                continue
            label = f"env:{name}"
            self.layers.append(label)
            self._assign(segments, environ[name], label, fold_case=True, parse=_parse_json)

    def load_override(self, override: Override) -> None:
        self.layers.append(override.label)
        self._assign(
            override.path.split("."),
            override.value,
            override.label,
            fold_case=False,
            parse=_parse_yaml,
        )

    # ------------------------------------------------------------------ result
    def finish(self) -> LoadedConfig[M]:
        secrets = frozenset(_secrets_in(self.merged, self.root))
        try:
            settings = self.model.model_validate(self.merged, by_name=True)
        except ValidationError as exc:
            self.problems.extend(
                problems_from_validation_error(exc, model=self.model, source_of=self._source_of)
            )
            settings = None
        if self.problems or settings is None:
            raise ConfigError(
                [_scrubbed(p, secrets) for p in self.problems], title="configuration error"
            )
        leaves = tuple(
            Leaf(format_path(loc), value, self._leaf_source(loc))
            for loc, value in _leaves(_masked_data(settings.model_dump(mode="python")), ())
        )
        return LoadedConfig(settings, leaves, tuple(dict.fromkeys(self.layers)), secrets)

    # ------------------------------------------------------------------ helpers
    def _problem(
        self, path: str, message: str, *, value: str | None = None, source: str | None = None
    ) -> None:
        self.problems.append(Problem(path, message, value, source))

    def _assign(
        self,
        segments: Sequence[str],
        raw: str,
        label: str,
        *,
        fold_case: bool,
        parse: Callable[[str], Any],
    ) -> None:
        resolved = self._resolve(segments, fold_case=fold_case)
        if isinstance(resolved, Problem):
            shown = resolved.value or display_value(raw)
            self.problems.append(Problem(resolved.path, resolved.message, shown, label))
            return
        loc, node, from_file = resolved
        if from_file:
            secret = self._read_secret(raw, (*loc[:-1], f"{loc[-1]}{SECRET_FILE_SUFFIX}"), label)
            if secret is not None:
                self.pending_secret_files[loc] = raw
                self._apply(loc, secret, label)
            return
        value: Any = raw
        if is_complex(node):
            try:
                value = parse(raw)
            except ValueError as exc:
                shown = MASK if is_secret(node) else display_value(raw)
                self._problem(format_path(loc), str(exc), value=shown, source=label)
                return
            value = self._normalise(_str_keys(value), node, loc, label)
        self._apply(loc, value, label)

    def _resolve(
        self, segments: Sequence[str], *, fold_case: bool
    ) -> tuple[Loc, Node, bool] | Problem:
        node = self.root
        loc: list[str | int] = []
        if not segments or any(s == "" for s in segments):
            return Problem(".".join(segments), "empty key segment (check the dots / '__')")
        for i, segment in enumerate(segments):
            last = i == len(segments) - 1
            if node.kind == "dict":
                loc.append(segment)
                nxt = child(node, segment)
            elif node.kind == "model" and node.model is not None:
                key = segment.lower() if fold_case else segment
                name = field_name(node.model, key)
                nxt = None if name is None else child(node, name)
                if nxt is None:
                    base = field_name(node.model, key.removesuffix(SECRET_FILE_SUFFIX))
                    if last and base is not None and base != key and is_secret(child(node, base)):
                        loc.append(base)
                        return tuple(loc), node, True
                    message, secretish = unknown_key(node, key)
                    # A typo of a secret's name still carries the secret: never echo it.
                    secretish = secretish or any(looks_secret(s) for s in segments)
                    return Problem(format_path((*loc, key)), message, MASK if secretish else None)
                loc.append(name or key)
            else:
                where = format_path(loc)
                return Problem(
                    format_path((*loc, segment)),
                    f"unknown key ({where} is set as a whole, it has no sub-keys)",
                )
            node = nxt if nxt is not None else node
        return tuple(loc), node, False

    def _normalise(self, value: Any, node: Node, loc: Loc, label: str) -> Any:
        """Canonical field names for aliases, and `<secret>_file: PATH` entries replaced by
        the file's contents, everywhere under `value`. Unknown keys stay (pydantic names them)."""
        if node.kind == "model" and node.model is not None and isinstance(value, dict):
            model = node.model
            out: dict[str, Any] = {}
            for key, item in value.items():
                name = field_name(model, key)
                if name is not None:
                    if name != key:
                        self.marks.setdefault((*loc, name), self.marks.get((*loc, key), (0, 0)))
                    if name in out:
                        self._both(loc, name, key, label)
                        continue
                    sub = child(node, name)
                    assert sub is not None
                    out[name] = self._normalise(item, sub, (*loc, name), label)
                    continue
                base = field_name(model, key.removesuffix(SECRET_FILE_SUFFIX))
                if base is None or key == base or not is_secret(child(node, base)):
                    out[key] = item
                    continue
                if base in out or any(field_name(model, k) == base for k in value):
                    self._both(loc, base, key, label)
                    continue
                secret = self._read_secret(item, (*loc, key), label)
                if secret is not None:
                    out[base] = secret
                    self.pending_secret_files[(*loc, base)] = str(item)
                    self.marks.setdefault((*loc, base), self.marks.get((*loc, key), (0, 0)))
            return out
        if node.kind == "dict" and isinstance(value, dict):
            sub = child(node, "")
            assert sub is not None
            return {k: self._normalise(v, sub, (*loc, k), label) for k, v in value.items()}
        if node.kind == "list" and isinstance(value, list):
            sub = child(node, 0)
            assert sub is not None
            return [self._normalise(v, sub, (*loc, i), label) for i, v in enumerate(value)]
        return value

    def _both(self, loc: Loc, name: str, key: str, label: str) -> None:
        self._problem(
            format_path((*loc, name)),
            f"set twice in one layer ('{name}' and '{key}'); use one",
            source=self._with_mark(label, (*loc, key)),
        )

    def _read_secret(self, path: Any, loc: Loc, label: str) -> str | None:
        where = format_path(loc)
        source = self._with_mark(label, loc)
        if not isinstance(path, str) or not path:
            self._problem(where, "expected the path of a secret file", source=source)
            return None
        try:
            text = read_text_file(path, max_bytes=MAX_SECRET_BYTES)
        except UnicodeDecodeError:
            self._problem(where, f"secret file {path} is not UTF-8 text", source=source)
            return None
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            self._problem(where, f"cannot read secret file {path}: {reason}", source=source)
            return None
        secret = text.rstrip("\r\n")
        if not secret:
            self._problem(where, f"secret file {path} is empty", source=source)
            return None
        return secret

    def _apply(self, loc: Loc, value: Any, label: str) -> None:
        """Merge `value` at `loc`: mappings merge key by key, anything else replaces."""
        self._merge(loc, value, label)
        self._commit_secret_files()

    def _commit_secret_files(self) -> None:
        self.secret_files.update(self.pending_secret_files)
        self.pending_secret_files.clear()

    def _merge(self, loc: Loc, value: Any, label: str) -> None:
        if isinstance(value, dict):
            if not value and loc and getattr(node_at(self.model, loc), "kind", None) == "dict":
                # `regions: {}` replaces a map's default: that is this layer's doing.
                self._container(loc[:-1])[str(loc[-1])] = {}
                self._drop_below(loc)
                self.prov[loc] = label
                return
            self._container(loc)
            for key, item in value.items():
                self._merge((*loc, key), item, label)
            return
        self._container(loc[:-1])[str(loc[-1])] = value
        self._drop_below(loc)
        self.prov[loc] = label

    def _drop_below(self, loc: Loc) -> None:
        """Forget provenance (and secret-file notes) at and below `loc`: it was replaced."""
        for known in [p for p in self.prov if p[: len(loc)] == loc]:
            del self.prov[known]
        for known in [p for p in self.secret_files if p[: len(loc)] == loc]:
            del self.secret_files[known]

    def _container(self, loc: Loc) -> dict[str, Any]:
        here = self.merged
        for i, key in enumerate(loc):
            nxt = here.get(str(key))
            if not isinstance(nxt, dict):
                nxt = here[str(key)] = {}
                self.prov.pop(loc[: i + 1], None)
            here = nxt
        return here

    def _collect_marks(self, node: yaml.Node, loc: Loc, label: str) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    self._problem(
                        format_path((*loc, key)),
                        f"duplicate key (also on line {seen[key]}); YAML would keep only the last",
                        source=f"{label}, line {line}, column {key_node.start_mark.column + 1}",
                    )
                seen[key] = line
                self.marks[(*loc, key)] = (line, key_node.start_mark.column + 1)
                self._collect_marks(value_node, (*loc, key), label)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.marks[(*loc, i)] = (item.start_mark.line + 1, item.start_mark.column + 1)
                self._collect_marks(item, (*loc, i), label)

    def _with_mark(self, label: str, loc: Loc) -> str:
        if not label.startswith("file:"):
            return label
        for end in range(len(loc), 0, -1):
            mark = self.marks.get(loc[:end])
            if mark is not None and mark != (0, 0):
                return f"{label}, line {mark[0]}, column {mark[1]}"
        return label

    def _label_for(self, loc: Loc) -> str | None:
        for end in range(len(loc), -1, -1):
            label = self.prov.get(loc[:end])
            if label is not None:
                return label
        return None

    def _source_of(self, loc: Loc) -> str | None:
        label = self._label_for(loc)
        if label is not None:
            return self._with_mark(label, loc)
        below = [p for p in self.prov if p[: len(loc)] == loc]
        labels = dict.fromkeys(self._with_mark(self.prov[p], p) for p in below)
        return ", ".join(labels) or None

    def _leaf_source(self, loc: Loc) -> str:
        label = self._label_for(loc) or DEFAULT_SOURCE
        secret_file = self.secret_files.get(loc)
        return f"{label} (secret file {secret_file})" if secret_file else label


# ---------------------------------------------------------------------- pure helpers
class _Yaml12Loader(yaml.SafeLoader):
    """Safe YAML with YAML 1.2 scalars: only true/false are booleans (so `NO`, Norway's code,
    and `on`/`off` stay strings) and no base-60 or leading-zero-octal integers (`22:30` and
    `0777` stay strings)."""

    yaml_implicit_resolvers = {  # noqa: RUF012 - PyYAML's class-level table
        first: [(tag, rx) for tag, rx in resolvers if not tag.endswith((":bool", ":int"))]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)


def _parse_yaml_document(text: str) -> tuple[yaml.Node | None, Any]:
    """Parse once, YAML 1.2 scalars: the node tree (line/column of every key) and the data."""
    return parse_yaml_document(text, loader=_Yaml12Loader)


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    what = " ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    return f"YAML syntax error: {what}{where}"


def _kind_of_value(value: Any) -> str:
    return {
        list: "a list",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)


def _str_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _str_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_str_keys(v) for v in value]
    return value


def _parse_json(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"a nested value from the environment must be JSON: {exc.msg}") from exc


def _parse_yaml(raw: str) -> Any:
    try:
        return _parse_yaml_document(raw)[1]
    except yaml.YAMLError as exc:
        detail = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
        raise ValueError(f"a nested value on the command line must be YAML: {detail}") from exc


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
