"""The settings sources: one pydantic-settings source per layer, each keeping its own record.

`Settings.settings_customise_sources` returns, highest precedence first,

1. `CommandLineSource`  ``--set group.field=VALUE`` (nested values are YAML) and the specific
                        flags a command declares, labelled ``flag:--set``, ``flag:--tick-interval``;
2. `EnvSource`          ``GRIDSHIFT_<GROUP>__<FIELD>`` (``__`` nests; names are case-insensitive;
                        nested values such as lists are JSON), labelled ``env:VAR``;
3. `YamlFileSource`     one YAML file, ``--config PATH`` or ``$GRIDSHIFT_CONFIG`` (YAML 1.2
                        scalars, line and column of every key), labelled ``file:PATH``;

and pydantic-settings merges what they return (mappings key by key, anything else replaces) over
the declared defaults. Secrets (``SecretStr`` fields) can be read from a file in every layer by
adding ``_file`` to the field's name (``token_file: /var/run/secrets/...``,
``GRIDSHIFT_CARBON__WATTTIME__PASSWORD_FILE=...``); each source reads its own layer's secret
files (`read_secret_file`), so a later layer's ``token`` beats an earlier layer's
``token_file`` and the other way round.

pydantic-settings' built-in env and YAML sources silently ignore unknown names and record no
provenance, so these sources are written here. None of them raises: each keeps a `LayerRecord`
(its problems — unknown keys with a "did you mean", unreadable files, bad values — and every
value it wrote, with the layer that wrote it), and `config.loading.load_config` lists the
problems of every layer at once and computes the provenance of every effective value.

The sources exist only while a `SourceInputs` is active (`config.loading` activates one);
`Settings()` alone is the declared defaults and never reads the environment.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from config.errors import MASK, Problem, display_value, format_path, looks_secret, unknown_key
from config.files import MAX_CONFIG_BYTES, MAX_SECRET_BYTES, parse_yaml_document, read_text_file
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
    "RESERVED_ENV",
    "CommandLineSource",
    "EnvSource",
    "LayerRecord",
    "LayerSource",
    "Ledger",
    "Override",
    "SourceInputs",
    "YamlFileSource",
    "layer_sources",
    "parse_yaml_12",
    "read_secret_file",
]

CONFIG_ENV = "GRIDSHIFT_CONFIG"
DEBUG_ENV = "GRIDSHIFT_DEBUG"
RESERVED_ENV = frozenset({CONFIG_ENV, DEBUG_ENV, "GRIDSHIFT_SHARED_DATA"})

# Variables kubelet injects for a Service named gridshift / gridshift-<x> (enableServiceLinks).
_SERVICE_LINK = re.compile(
    r"^(?:[A-Z0-9_]+_)?(?:SERVICE_HOST|SERVICE_PORT(?:_[A-Z0-9_]+)?"
    r"|PORT(?:_\d+_(?:TCP|UDP|SCTP)(?:_(?:PROTO|PORT|ADDR))?)?)$"
)

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Override:
    """One command-line value: `path` is dotted (`scaler.tick_interval_seconds`), `value` the
    text as typed, `label` how the provenance names it (`flag:--set`, `flag:--tick-interval`)."""

    path: str
    value: str
    label: str = "flag:--set"


# ---------------------------------------------------------------------- the merge, recorded
class Ledger:
    """Merged data and the layer of every value: mappings merge key by key, anything else
    replaces, and an empty mapping written where the schema has a map (`regions: {}`) replaces
    that map. One per layer (what the source returns) and one over all layers (provenance)."""

    def __init__(self, model: type[BaseSettings]) -> None:
        self.model = model
        self.data: dict[str, Any] = {}
        self.prov: dict[Loc, str] = {}
        self.secret_files: dict[Loc, str] = {}
        self.replaced: set[Loc] = set()

    def apply(self, loc: Loc, value: Any, label: str, secret_files: Mapping[Loc, str] = {}) -> None:
        """Merge `value` at `loc`; `secret_files` notes which values were read from a file."""
        self._merge(loc, value, label)
        self.secret_files.update(secret_files)

    def label_for(self, loc: Loc) -> str | None:
        for end in range(len(loc), -1, -1):
            label = self.prov.get(loc[:end])
            if label is not None:
                return label
        return None

    def _merge(self, loc: Loc, value: Any, label: str) -> None:
        if isinstance(value, dict):
            if not value and loc and getattr(node_at(self.model, loc), "kind", None) == "dict":
                # `regions: {}` replaces a map's default: that is this layer's doing.
                self._container(loc[:-1])[str(loc[-1])] = {}
                self._drop_below(loc)
                self.prov[loc] = label
                self.replaced.add(loc)
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
        here = self.data
        for i, key in enumerate(loc):
            nxt = here.get(str(key))
            if not isinstance(nxt, dict):
                nxt = here[str(key)] = {}
                self.prov.pop(loc[: i + 1], None)
            here = nxt
        return here


@dataclass
class LayerRecord:
    """What one source did: the layers it read (`labels`), every value it wrote in order
    (`writes`: loc, value, label, secret-file notes), its problems, and for a file the
    line and column of every key (`marks`)."""

    labels: list[str] = field(default_factory=list)
    writes: list[tuple[Loc, Any, str, dict[Loc, str]]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    marks: dict[Loc, tuple[int, int]] = field(default_factory=dict)


# ---------------------------------------------------------------------- the inputs
@dataclass(frozen=True)
class SourceInputs:
    """What the layer sources read: the process environment, the YAML file named on the
    command line (else `$GRIDSHIFT_CONFIG`), the command-line values. While `active()`,
    `Settings.settings_customise_sources` returns the layer sources built from these and
    keeps them in `sources` (highest precedence first) for `config.loading`."""

    environ: Mapping[str, str]
    config_file: str | Path | None = None
    overrides: Sequence[Override] = ()
    sources: list[LayerSource] = field(default_factory=list, compare=False)

    @contextlib.contextmanager
    def active(self) -> Iterator[SourceInputs]:
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    def replaced_by_higher(self, source: LayerSource) -> set[Loc]:
        """Maps that a source of higher precedence than `source` replaced with `{}`."""
        higher = self.sources[: self.sources.index(source)]
        return {loc for s in higher for loc in s.replaced}


_ACTIVE: ContextVar[SourceInputs | None] = ContextVar("gridshift_source_inputs", default=None)


def layer_sources(settings_cls: type[BaseSettings]) -> tuple[PydanticBaseSettingsSource, ...]:
    """The layer sources for `settings_customise_sources`, highest precedence first; none
    unless a `SourceInputs` is active (then `Settings()` is the declared defaults)."""
    inputs = _ACTIVE.get()
    if inputs is None:
        return ()
    path = inputs.config_file if inputs.config_file not in (None, "") else None
    named_by = None
    if path is None and inputs.environ.get(CONFIG_ENV):
        path, named_by = inputs.environ[CONFIG_ENV], CONFIG_ENV
    sources: list[LayerSource] = [
        CommandLineSource(settings_cls, overrides=inputs.overrides),
        EnvSource(settings_cls, environ=inputs.environ),
    ]
    if path is not None:
        sources.append(YamlFileSource(settings_cls, path=Path(path), named_by=named_by))
    inputs.sources[:] = sources
    for source in sources:
        source.inputs = inputs
    return tuple(sources)


# ---------------------------------------------------------------------- the sources
class LayerSource(PydanticBaseSettingsSource):
    """One layer: reads its input once (`read`), records what it wrote and what was wrong
    (`record`), and returns the layer's merged values, less any map a source of higher
    precedence replaced with `{}` (pydantic-settings would merge into it, not replace it)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        self.root = root_node(settings_cls)
        self.record = LayerRecord()
        self._ledger = Ledger(settings_cls)
        self._pending: dict[Loc, str] = {}
        self._read = False
        self.inputs: SourceInputs | None = None  # set by `layer_sources`

    @property
    def replaced(self) -> set[Loc]:
        self._ensure_read()
        return self._ledger.replaced

    def read(self) -> None:
        raise NotImplementedError

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # The whole layer is read at once (`__call__`): keys are resolved against the full
        # schema, so unknown ones are named with a suggestion instead of being skipped.
        value = self()
        return value.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        self._ensure_read()
        data = self._ledger.data
        if self.inputs is not None and self in self.inputs.sources:
            data = _without(data, self.inputs.replaced_by_higher(self))
        return data

    def _ensure_read(self) -> None:
        if not self._read:
            self._read = True
            self.read()

    # ------------------------------------------------------------------ shared steps
    def _problem(
        self, path: str, message: str, *, value: str | None = None, source: str | None = None
    ) -> None:
        self.record.problems.append(Problem(path, message, value, source))

    def _apply(self, loc: Loc, value: Any, label: str) -> None:
        notes, self._pending = self._pending, {}
        self.record.writes.append((loc, value, label, notes))
        self._ledger.apply(loc, value, label, notes)

    def _assign(
        self,
        segments: Sequence[str],
        raw: str,
        label: str,
        *,
        fold_case: bool,
        parse: Callable[[str], Any],
    ) -> None:
        """Set the value at a dotted (`--set`) or `__`-joined (env) key, parsed as `parse`
        says where the schema expects a nested value."""
        resolved = self._resolve(segments, fold_case=fold_case)
        if isinstance(resolved, Problem):
            shown = resolved.value or display_value(raw)
            self.record.problems.append(Problem(resolved.path, resolved.message, shown, label))
            return
        loc, node, from_file = resolved
        if from_file:
            secret = self._read_secret(raw, (*loc[:-1], f"{loc[-1]}{SECRET_FILE_SUFFIX}"), label)
            if secret is not None:
                self._pending[loc] = raw
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
        marks = self.record.marks
        if node.kind == "model" and node.model is not None and isinstance(value, dict):
            model = node.model
            out: dict[str, Any] = {}
            for key, item in value.items():
                name = field_name(model, key)
                if name is not None:
                    if name != key:
                        marks.setdefault((*loc, name), marks.get((*loc, key), (0, 0)))
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
                    self._pending[(*loc, base)] = str(item)
                    marks.setdefault((*loc, base), marks.get((*loc, key), (0, 0)))
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
            source=with_mark(label, (*loc, key), self.record.marks),
        )

    def _read_secret(self, path: Any, loc: Loc, label: str) -> str | None:
        where = format_path(loc)
        source = with_mark(label, loc, self.record.marks)
        if not isinstance(path, str) or not path:
            self._problem(where, "expected the path of a secret file", source=source)
            return None
        secret = read_secret_file(path)
        if isinstance(secret, Problem):
            self._problem(where, secret.message, source=source)
            return None
        return secret


class YamlFileSource(LayerSource):
    """The YAML file (`file:PATH`): bounded read, YAML 1.2 scalars, line and column of every
    key for error messages, duplicate keys refused."""

    def __init__(
        self, settings_cls: type[BaseSettings], *, path: Path, named_by: str | None = None
    ) -> None:
        super().__init__(settings_cls)
        self.path = path
        self.named_by = named_by
        self.label = f"file:{path}"

    def read(self) -> None:
        label = self.label
        self.record.labels.append(label)
        why = f" (named by ${self.named_by})" if self.named_by else ""
        try:
            text = read_text_file(self.path, max_bytes=MAX_CONFIG_BYTES)
        except FileNotFoundError:
            return self._problem("", f"config file not found{why}", source=label)
        except IsADirectoryError:
            return self._problem("", f"config path is a directory, not a file{why}", source=label)
        except UnicodeDecodeError as exc:
            return self._problem("", f"config file is not UTF-8 text ({exc.reason})", source=label)
        except OSError as exc:
            return self._problem("", f"cannot read config file{why}: {exc.strerror}", source=label)
        try:
            node, data = parse_yaml_12(text)
        except yaml.MarkedYAMLError as exc:
            return self._problem("", _yaml_message(exc), source=label)
        except yaml.YAMLError as exc:  # an alias bomb (config.files)
            return self._problem("", f"YAML error: {exc}", source=label)
        if data is None:
            return None  # an empty file (or only comments) sets nothing
        if not isinstance(data, dict):
            groups = ", ".join(field_names(self.settings_cls))
            return self._problem(
                "",
                f"the top level must be a mapping of setting groups ({groups}), "
                f"got {_kind_of_value(data)}",
                value=display_value(data),
                source=label,
            )
        if node is not None:
            self._collect_marks(node, ())
        data = self._normalise(_str_keys(data), self.root, (), label)
        self._apply((), data, label)
        return None

    def _collect_marks(self, node: yaml.Node, loc: Loc) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                key = str(key_node.value)
                line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                if key in seen:
                    self._problem(
                        format_path((*loc, key)),
                        f"duplicate key (also on line {seen[key]}); YAML would keep only the last",
                        source=f"{self.label}, line {line}, column {column}",
                    )
                seen[key] = line
                self.record.marks[(*loc, key)] = (line, column)
                self._collect_marks(value_node, (*loc, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.record.marks[(*loc, i)] = (
                    item.start_mark.line + 1,
                    item.start_mark.column + 1,
                )
                self._collect_marks(item, (*loc, i))


class EnvSource(LayerSource):
    """`GRIDSHIFT_*` variables (`env:NAME`), in name order; every one that is not reserved
    or a Kubernetes service link must name a setting."""

    def __init__(self, settings_cls: type[BaseSettings], *, environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ
        self.env_prefix = str(self.config.get("env_prefix") or "GRIDSHIFT_")
        self.env_delimiter = str(self.config.get("env_nested_delimiter") or "__")

    def read(self) -> None:
        prefix = self.env_prefix.upper()
        roots = {n.upper() for n in field_names(self.settings_cls)}
        for name in sorted(self.environ):
            upper = name.upper()
            if not upper.startswith(prefix) or upper in RESERVED_ENV:
                continue
            segments = name[len(prefix) :].split(self.env_delimiter)
            bare = upper[len(prefix) :]
            if len(segments) == 1 and bare not in roots and _SERVICE_LINK.match(bare):
                continue
            label = f"env:{name}"
            self.record.labels.append(label)
            self._assign(segments, self.environ[name], label, fold_case=True, parse=_parse_json)


class CommandLineSource(LayerSource):
    """`--set KEY=VALUE` and command-specific flags, in the order given (the last of one key
    wins)."""

    def __init__(self, settings_cls: type[BaseSettings], *, overrides: Sequence[Override]) -> None:
        super().__init__(settings_cls)
        self.overrides = tuple(overrides)

    def read(self) -> None:
        for override in self.overrides:
            self.record.labels.append(override.label)
            self._assign(
                override.path.split("."),
                override.value,
                override.label,
                fold_case=False,
                parse=_parse_yaml,
            )


# ---------------------------------------------------------------------- helpers
def read_secret_file(path: str) -> str | Problem:
    """A secret file's contents less trailing newlines (the way Kubernetes Secret volumes and
    `kubectl create secret --from-file` leave them), or the `Problem` (message only)."""
    try:
        text = read_text_file(path, max_bytes=MAX_SECRET_BYTES)
    except UnicodeDecodeError:
        return Problem("", f"secret file {path} is not UTF-8 text")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return Problem("", f"cannot read secret file {path}: {reason}")
    secret = text.rstrip("\r\n")
    if not secret:
        return Problem("", f"secret file {path} is empty")
    return secret


def with_mark(label: str, loc: Loc, marks: Mapping[Loc, tuple[int, int]]) -> str:
    """`label`, and for a file the line and column of `loc` (or its nearest marked parent)."""
    if not label.startswith("file:"):
        return label
    for end in range(len(loc), 0, -1):
        mark = marks.get(loc[:end])
        if mark is not None and mark != (0, 0):
            return f"{label}, line {mark[0]}, column {mark[1]}"
    return label


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


def parse_yaml_12(text: str) -> tuple[yaml.Node | None, Any]:
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
        return parse_yaml_12(raw)[1]
    except yaml.YAMLError as exc:
        detail = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
        raise ValueError(f"a nested value on the command line must be YAML: {detail}") from exc


def _without(data: dict[str, Any], locs: set[Loc]) -> dict[str, Any]:
    """`data` less the values at `locs` (copied where it changes)."""
    if not locs:
        return data
    out = dict(data)
    for loc in sorted(locs, key=len):
        here: Any = out
        for key in loc[:-1]:
            nxt = here.get(str(key)) if isinstance(here, dict) else None
            if not isinstance(nxt, dict):
                break
            nxt = here[str(key)] = dict(nxt)
            here = nxt
        else:
            if isinstance(here, dict):
                here.pop(str(loc[-1]), None)
    return out
