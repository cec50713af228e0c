"""`gridshift config check|show`: validate the configuration, print the effective one.

Both load every layer (defaults < file < env < flags); any problem is printed as one readable
list and the command exits 2 (the root group does that for every `ConfigError`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, TypeVar

import click
from pydantic_core import to_jsonable_python

from config.errors import MASK, format_path
from config.loading import LoadedConfig
from config.options import RunState, loaded_settings_from_context, settings_options
from config.schema import SECRET_FILE_SUFFIX, FieldDoc, describe_fields
from config.settings import Settings

__all__ = ["config_group", "render_fields", "render_json", "render_yaml"]

F = TypeVar("F", bound=Callable[..., Any])
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _format_option(*choices: str, help: str) -> Callable[[F], F]:
    """`--format` with the first choice as default."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=choices[0],
        show_default=True,
        help=help,
    )


@click.group("config")
def config_group() -> None:
    """Validate and show the effective configuration."""


@config_group.command("check")
@settings_options
@click.pass_context
def check(ctx: click.Context) -> None:
    """Validate; list every problem and exit 2 if any."""
    loaded = loaded_settings_from_context(ctx)
    overridden = sum(1 for leaf in loaded.leaves if leaf.source != "default")
    click.echo(
        f"configuration OK: {len(loaded.leaves)} settings, {overridden} not default "
        f"(layers: {', '.join(loaded.layers)})"
    )


@config_group.command("show")
@settings_options
@_format_option(
    "yaml", "json", help="yaml: each value with its layer as a comment; json: {settings, sources}."
)
@click.option(
    "--sources/--no-sources",
    default=True,
    show_default=True,
    help="Say which layer each value came from.",
)
@click.pass_context
def show(ctx: click.Context, fmt: str, sources: bool) -> None:
    """Print the effective configuration (secrets masked as ***)."""
    loaded = loaded_settings_from_context(ctx)
    click.echo(
        render_json(loaded, sources=sources)
        if fmt == "json"
        else render_yaml(loaded, sources=sources)
    )


@config_group.command("fields")
@_format_option("text", "json", help="text: one block per setting; json: a list of objects.")
@click.pass_context
def fields(ctx: click.Context, fmt: str) -> None:
    """List every setting: type, bounds, default, env variable, why."""
    state = ctx.find_object(RunState) or RunState()
    model = state.model()
    cfg = model.model_config
    docs = describe_fields(
        model,
        env_prefix=str(cfg.get("env_prefix") or "GRIDSHIFT_"),
        env_delimiter=str(cfg.get("env_nested_delimiter") or "__"),
    )
    click.echo(render_fields(docs, fmt=fmt))


def render_fields(docs: list[FieldDoc], *, fmt: str = "text") -> str:
    """The settings reference, from the declarations themselves (secret defaults masked)."""
    if fmt == "json":
        rows = [
            {
                "path": d.path,
                "env": d.env,
                "type": d.type,
                "required": d.required,
                "default": MASK if d.secret and d.default is not None else _plain(d.default),
                "constraints": list(d.constraints),
                "description": d.description,
                "secret": d.secret,
            }
            for d in docs
        ]
        return json.dumps(rows, indent=2, ensure_ascii=False)
    blocks = []
    for d in docs:
        bounds = f" ({', '.join(d.constraints)})" if d.constraints else ""
        if d.required:
            default = "required"
        elif d.secret and d.default is not None:
            default = f"default {MASK}"
        else:
            default = f"default {json.dumps(_plain(d.default), ensure_ascii=False)}"
        lines = [f"{d.path}: {d.type}{bounds}, {default}", f"    env {d.env}"]
        if d.secret:
            lines.append(f"    or from a file: {d.path}{SECRET_FILE_SUFFIX} / {d.env}_FILE")
        if d.description:
            lines.append(f"    {d.description}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def _plain(value: Any) -> Any:
    return to_jsonable_python(value, fallback=str)


def render_json(loaded: LoadedConfig[Settings], *, sources: bool = True) -> str:
    data: dict[str, Any] = loaded.masked_dict()
    if sources:
        data = {"settings": data, "sources": loaded.provenance}
    return json.dumps(data, indent=2, ensure_ascii=False)


def render_yaml(loaded: LoadedConfig[Settings], *, sources: bool = True) -> str:
    """Valid YAML (a config file could start from it), each leaf commented with its layer."""
    lines = [
        "# gridshift effective configuration; secrets are shown as ***",
        "# layers, lowest first: " + ", ".join(loaded.layers),
    ]
    _yaml_lines(loaded.masked_dict(), (), loaded.provenance if sources else None, lines)
    return "\n".join(lines)


def _yaml_lines(
    data: dict[str, Any], loc: tuple[str, ...], sources: dict[str, str] | None, out: list[str]
) -> None:
    indent = "  " * len(loc)
    for key, value in data.items():
        here = (*loc, key)
        name = key if _PLAIN_KEY.match(key) else json.dumps(key, ensure_ascii=False)
        if isinstance(value, dict) and value:
            out.append(f"{indent}{name}:")
            _yaml_lines(value, here, sources, out)
            continue
        comment = f"  # {sources.get(format_path(here), 'default')}" if sources is not None else ""
        out.append(f"{indent}{name}: {_yaml_scalar(value)}{comment}")


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    return json.dumps(value, ensure_ascii=False)
