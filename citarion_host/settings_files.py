"""Reading config files: bytes -> UTF-8 -> TOML, within limits, following includes.

Everything that can go wrong with a file becomes one :class:`ConfigError` line naming the file:
unreadable, too large, not UTF-8 (with the line and byte), not TOML, nested too deeply, an include
cycle or a file included twice. Never a traceback, never a hang: a config file may be half written
(hot reload reads it while an editor saves) or hostile (fuzzing, a mistyped path to a binary).

Why the limits (``docs/configuration.md#limits``):

* ``MAX_FILE_BYTES``: a config is a few KB; megabytes are a wrong path (a log, a binary), and
  reading it all would only produce a confusing TOML error later.
* ``MAX_DEPTH``: ``tomllib`` parses recursively, so ``a = [[[[...]]]]`` a few thousand deep raises
  ``RecursionError``; below that, deep values would still recurse through pydantic and ``tomli_w``.
  No real config nests more than a handful of levels; 32 leaves room for structured bot params.
* Includes are read once each: a file reached twice is an error naming both includers, so an include
  graph costs linear time (a chain where each file includes the next twice used to be read 2^n times)
  and a bot is never declared twice by accident. ``MAX_INCLUDE_DEPTH`` bounds the recursion.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .findings import Finding

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_INCLUDE_DEPTH",
    "ReadFiles",
    "absolute",
    "nesting_depth",
    "read_document",
    "read_with_includes",
]

MAX_FILE_BYTES = 1024 * 1024
MAX_DEPTH = 32
MAX_INCLUDE_DEPTH = 16


@dataclass
class ReadFiles:
    """What reading a config and its includes produced, besides the merged data."""

    files: list[Path] = field(default_factory=list)  # every file read, the main one first
    origins: list[Path] = field(default_factory=list)  # file of bots[i] in the merged data
    included_by: dict[Path, Path | None] = field(default_factory=dict)  # resolved file -> includer


def absolute(path: Path) -> Path:
    """Absolute and normalized, but symlinks kept: a reloader must watch the link's directory
    (Kubernetes swaps ConfigMap symlinks), not the directory of today's target."""
    return Path(os.path.abspath(path))


def read_document(path: Path) -> dict[str, Any]:
    """One file as a TOML table; every failure is a one-line :class:`ConfigError` naming ``path``."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _fail(path, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(path, f"larger than {MAX_FILE_BYTES // 1024} KiB: not a config file?")
    text = _decode(path, raw)
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _fail(path, f"invalid TOML: {exc}") from None
    except RecursionError:
        raise _fail(path, _too_deep()) from None
    except ValueError as exc:  # e.g. an integer literal beyond Python's digit limit
        raise _fail(path, f"invalid TOML: {_one_line(str(exc))}") from None
    if nesting_depth(document) > MAX_DEPTH:
        raise _fail(path, _too_deep())
    return document


def _decode(path: Path, raw: bytes) -> str:
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")  # a BOM (some Windows editors) is harmless
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        cut = exc.end >= len(raw) and exc.reason == "unexpected end of data"
        why = " (a character cut short at the end: is the file still being written?)" if cut else ""
        raise _fail(
            path, f"not valid UTF-8: byte 0x{raw[exc.start]:02x} at line {line}, column {column}{why}"
        ) from None


def _too_deep() -> str:
    return f"nested too deeply (more than {MAX_DEPTH} levels of tables and arrays)"


def _fail(file: Path | None, message: str, *, key: str = "") -> ConfigError:
    """One problem with ``file`` as a finding (``check --json`` shows the file on its own)."""
    return ConfigError.of(Finding("error", "" if file is None else str(file), None, key, message))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def nesting_depth(value: Any) -> int:
    """Levels of dicts and lists in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest  # enough to refuse; do not walk the rest of a hostile value
        stack.extend((child, depth) for child in children)
    return deepest


def read_with_includes(main: Path) -> tuple[dict[str, Any], ReadFiles]:
    """Read ``main`` and its includes (each file once) and merge them (see :func:`merge`)."""
    read = ReadFiles()
    data = _read(absolute(main), read, stack=())
    return data, read


def _read(path: Path, read: ReadFiles, stack: tuple[Path, ...]) -> dict[str, Any]:
    includer = stack[-1] if stack else None
    key = _identity(path)
    if key in {_identity(p) for p in stack}:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise _fail(includer, f"include cycle: {chain}")
    if key in read.included_by:
        first = read.included_by[key]
        by = f"by {first}" if first is not None else "as the main config"
        raise _fail(includer, f"include {path}: already included {by} (include each file once)")
    if len(stack) >= MAX_INCLUDE_DEPTH:
        raise _fail(includer, f"include {path}: includes nested more than {MAX_INCLUDE_DEPTH} deep")
    if not _is_file(path):
        if includer is None:
            raise _fail(path, "no such config file")
        raise _fail(includer, f"include {path}: no such config file")
    read.included_by[key] = includer
    document = read_document(path)
    read.files.append(path)
    includes = document.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) and i for i in includes):
        raise _fail(path, "must be a file name or a list of file names", key="include")
    merged: dict[str, Any] = {}
    for include in includes:
        if "\x00" in include:
            raise _fail(path, f"{include!r}: a file name cannot contain a NUL character", key="include")
        included = _read(absolute(path.parent / include), read, (*stack, path))
        merged = merge(merged, included)
    own_bots = document.get("bots", [])
    read.origins.extend([path] * (len(own_bots) if isinstance(own_bots, list) else 0))
    return merge(merged, document)


def _identity(path: Path) -> Path:
    """The file itself (symlinks resolved): two spellings of one file are one file."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare as spelled
        return path


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key (``override`` wins); ``bots`` lists are concatenated."""
    result = dict(base)
    for key, value in override.items():
        if key == "bots" and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = [*result[key], *value]
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merge(result[key], value)
        else:
            result[key] = value
    return result
