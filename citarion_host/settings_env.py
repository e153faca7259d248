"""``CITARION_*`` environment overrides: names checked against the config's keys, values parsed.

Why not pydantic-settings' environment source (used before): it ignores a misspelt name
(``CITARION_BAKEND__TYPE=nats`` ran on the memory bus without a word), turns a plain value for a list
(``CITARION_BACKEND__NATS__SERVERS=nats://a:4222``, the form people write) into a 50-line traceback,
and its validation errors cannot say which variable a bad value came from. Here every variable is
resolved against the model tree first, so each problem is one line naming the variable.

Rules (``docs/configuration.md#environment-overrides``):

* ``CITARION_<SECTION>__<KEY>[__<KEY>...]``, case-insensitive, sets one key; a name that is a table
  (``CITARION_BACKEND__NATS``) takes a JSON object, merged key by key.
* A name is taken as meant for the config when it has ``__`` or its first word is a section name or
  close to one; other ``CITARION_*`` variables (``CITARION_NATS_SERVER``: where the nats-server binary
  is) are not config and are left alone. A config name that matches no key is an error with the
  closest valid name as a suggestion.
* Lists and tables are JSON; a list also takes a plain comma-separated value
  (``nats://a:4222,nats://b:4222``; one item without a comma). Other values are validated like the
  same key in a file.
"""

from __future__ import annotations

import difflib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Union

from pydantic import BaseModel

from .findings import Finding

__all__ = ["PREFIX", "EnvOverrides", "env_names", "read_environment"]

PREFIX = "CITARION_"
_DELIMITER = "__"


@dataclass
class EnvOverrides:
    """The overrides found in an environment: a nested dict, where each came from, what was wrong."""

    data: dict[str, Any] = field(default_factory=dict)
    sources: dict[tuple[str, ...], str] = field(default_factory=dict)  # key path -> variable name
    problems: list[Finding] = field(default_factory=list)

    def variable_for(self, loc: tuple[str | int, ...]) -> str | None:
        """The variable that set the value at ``loc`` (or a table containing it), if any."""
        for length in range(len(loc), 0, -1):
            found = self.sources.get(tuple(str(part) for part in loc[:length]))
            if found is not None:
                return found
        return None


def env_names(model: type[BaseModel]) -> list[str]:
    """Every valid override name for ``model``: ``CITARION_HOST``, ``CITARION_HOST__NAME``, ..."""
    names: list[str] = []
    stack: list[tuple[type[BaseModel], str]] = [(model, PREFIX)]
    while stack:
        current, prefix = stack.pop()
        for name, info in current.model_fields.items():
            full = prefix + name.upper()
            names.append(full)
            nested = _model_of(info.annotation)
            if nested is not None:
                stack.append((nested, full + _DELIMITER))
    return sorted(names)


def read_environment(model: type[BaseModel], environ: Mapping[str, str]) -> EnvOverrides:
    """The overrides for ``model`` in ``environ`` (see the module docstring)."""
    result = EnvOverrides()
    sections = [name.upper() for name in model.model_fields]
    for variable in sorted(environ):
        if not variable.upper().startswith(PREFIX):
            continue
        rest = variable[len(PREFIX) :]
        if not _meant_for_config(rest.upper(), sections):
            continue
        path, annotation, problem = _resolve(model, rest)
        if problem is not None:
            result.problems.append(_problem(variable, f"{problem}{_suggestion(variable, model)}"))
            continue
        value, problem = _parse(environ[variable], annotation)
        if problem is not None:
            result.problems.append(_problem(variable, problem))
            continue
        result.sources[path] = variable
        _set(result.data, path, value)
    return result


def _problem(variable: str, message: str) -> Finding:
    """A bad variable, as a finding whose "file" is the environment and whose key is the variable."""
    return Finding("error", "environment", None, variable, message)


def _meant_for_config(rest: str, sections: list[str]) -> bool:
    if _DELIMITER in rest:
        return True
    return bool(difflib.get_close_matches(rest, sections, n=1, cutoff=0.75))


def _resolve(model: type[BaseModel], rest: str) -> tuple[tuple[str, ...], Any, str | None]:
    """``HOST__RELOAD`` -> (("host", "reload"), bool, None), or a problem."""
    current: type[BaseModel] | None = model
    path: list[str] = []
    annotation: Any = model
    for part in rest.split(_DELIMITER):
        if current is None:
            where = ".".join(path)
            if where == "bots":
                return (), None, "single bots cannot be overridden: CITARION_BOTS replaces the whole list"
            return (), None, f"{where} has no keys below it"
        fields = {name.lower(): name for name in current.model_fields}
        name = fields.get(part.lower())
        if name is None:
            return (), None, "no such config key"
        path.append(name)
        annotation = current.model_fields[name].annotation
        current = _model_of(annotation)
    return tuple(path), annotation, None


def _suggestion(variable: str, model: type[BaseModel]) -> str:
    close = difflib.get_close_matches(variable.upper(), env_names(model), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else " (see docs/configuration.md)"


def _parse(text: str, annotation: Any) -> tuple[Any, str | None]:
    kind = _kind(annotation)
    if kind == "scalar":
        return text, None
    stripped = text.strip()
    if stripped.startswith(("[", "{")) or kind in ("table", "list of tables"):
        expected = {
            "table": "a JSON object",
            "list of tables": "a JSON list of objects",
            "list": "a JSON list or comma-separated values",
        }[kind]
        try:
            value = json.loads(stripped)
        except RecursionError:
            return None, "JSON nested too deeply"
        except ValueError as exc:
            return None, f"not valid JSON ({exc}); expected {expected}"
        if kind == "table" and not isinstance(value, dict):
            return None, f"expected {expected}, got {type(value).__name__}"
        return value, None
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        return None, "an empty item in a comma-separated list"
    return items, None


def _kind(annotation: Any) -> str:
    """``"table"`` (a model or dict), ``"list of tables"``, ``"list"`` or ``"scalar"``, ignoring
    ``| None``."""
    for candidate in _candidates(annotation):
        origin = typing.get_origin(candidate) or candidate
        if _is_table(origin):
            return "table"
        if origin in (list, tuple, set, frozenset):
            items = typing.get_args(candidate)
            return (
                "list of tables" if items and _is_table(typing.get_origin(items[0]) or items[0]) else "list"
            )
    return "scalar"


def _is_table(origin: Any) -> bool:
    return isinstance(origin, type) and (issubclass(origin, BaseModel) or issubclass(origin, dict))


def _candidates(annotation: Any) -> list[Any]:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _candidates(typing.get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [c for arg in typing.get_args(annotation) for c in _candidates(arg) if c is not type(None)]
    return [annotation]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    for candidate in _candidates(annotation):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        child = data.get(part)
        if not isinstance(child, dict):
            child = data[part] = {}
        data = child
    data[path[-1]] = value
