"""Bounded reading of configuration, scenario and secret files.

Every file gridshift reads because a setting or an option names it goes through here:

* regular files only: a FIFO, a device (`/dev/zero`), a socket is refused at once, without
  blocking (the file is opened non-blocking and checked with `fstat` before any read);
* a size limit (`MAX_CONFIG_BYTES`, `MAX_SECRET_BYTES`), checked before reading and while
  reading (a file that grows is cut at the limit, not read to its end);
* YAML aliases expanded at most `MAX_YAML_NODES` nodes in all (a "billion laughs" alias
  bomb is refused after composing, before anything walks the expanded tree).

Refusals are `OSError`s with a readable `strerror` (callers already turn those into a
configuration error naming the file) or `yaml.YAMLError`s.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "MAX_CONFIG_BYTES",
    "MAX_SECRET_BYTES",
    "MAX_YAML_NODES",
    "FileRefused",
    "YamlTooLarge",
    "check_yaml_expansion",
    "load_yaml",
    "parse_yaml_document",
    "read_text_file",
    "read_yaml_file",
]

MAX_CONFIG_BYTES = 512 * 1024
"""A configuration with thousands of workloads is under 100 KB; parsing 512 KB of YAML
takes well under a second."""

MAX_SECRET_BYTES = 64 * 1024
"""Tokens and passwords are bytes to kilobytes; a PEM bundle of many CAs fits too."""

MAX_YAML_NODES = 100_000
"""Scalars, sequences and mappings after alias expansion; a real configuration has
hundreds."""

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class FileRefused(OSError):
    """A file that is not a regular file or is over its size limit."""


class YamlTooLarge(yaml.YAMLError):
    """A YAML document whose aliases expand past `MAX_YAML_NODES` nodes."""


def read_text_file(path: str | os.PathLike[str], *, max_bytes: int) -> str:
    """The UTF-8 text of the regular file at `path`, at most `max_bytes` bytes.

    Raises `FileNotFoundError`, `IsADirectoryError`, `PermissionError` as `open` does,
    `FileRefused` for anything that is not a regular file or is too large, and
    `UnicodeDecodeError` for bytes that are not UTF-8."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
        if not stat.S_ISREG(info.st_mode):
            kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
            raise FileRefused(errno.EINVAL, f"{kind}, not a regular file", str(path))
        if info.st_size > max_bytes:
            raise FileRefused(errno.EFBIG, _too_large(info.st_size, max_bytes), str(path))
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            data = handle.read(max_bytes + 1)
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise FileRefused(errno.EFBIG, _too_large(len(data), max_bytes), str(path))
    return data.decode("utf-8")


def _too_large(size: int, limit: int) -> str:
    return f"{size:,} bytes or more, over the {limit:,}-byte limit"


def check_yaml_expansion(node: yaml.Node | None, *, max_nodes: int = MAX_YAML_NODES) -> None:
    """Raise `YamlTooLarge` if `node`, with every alias expanded, has more than `max_nodes`
    nodes. Counts shared subtrees once per reference, stopping at the limit (so a bomb
    costs `max_nodes` steps, not its expansion)."""
    if node is None:
        return
    seen = 0
    stack: list[yaml.Node] = [node]
    while stack:
        current = stack.pop()
        seen += 1
        if seen > max_nodes:
            raise YamlTooLarge(
                f"YAML document expands to more than {max_nodes:,} nodes "
                "(aliases repeated past any real configuration: an alias bomb?)"
            )
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                stack.append(key)
                stack.append(value)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def parse_yaml_document(
    text: str, *, loader: type[yaml.SafeLoader] = yaml.SafeLoader
) -> tuple[yaml.Node | None, Any]:
    """Parse once with `loader`: the node tree (for line/column of every key) and the data
    built from it, alias expansion bounded (`check_yaml_expansion`) before construction."""
    parser = loader(text)
    try:
        node = parser.get_single_node()
        check_yaml_expansion(node)
        return node, (None if node is None else parser.construct_document(node))
    finally:
        parser.dispose()


def load_yaml(text: str) -> Any:
    """`yaml.safe_load` with alias expansion bounded (`check_yaml_expansion`)."""
    return parse_yaml_document(text)[1]


def read_yaml_file(path: Path) -> Any:
    """A bounded YAML file (`read_text_file` then `load_yaml`)."""
    return load_yaml(read_text_file(path, max_bytes=MAX_CONFIG_BYTES))
