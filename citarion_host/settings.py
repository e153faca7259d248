"""Host configuration: TOML files (with includes) plus ``CITARION_*`` environment overrides.

Why the loader reads TOML itself instead of pydantic-settings' TOML source: that source silently
skips a missing file (a mistyped ``--config`` would run an empty host), cannot follow includes, and
cannot say which file a bad key came from. Here the files are read with ``tomllib``, merged, and
handed to a pydantic-settings model whose only other source is the environment, which wins:
``CITARION_BACKEND__TYPE=nats`` sets ``[backend] type``.

Every error names the file, the bot id (for ``[[bots]]`` entries) and the key path. Every key is
documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .bus.config import BackendSettings
from .errors import ConfigError
from .topics import TopicError, split_pattern, split_topic

__all__ = [
    "BotConfig",
    "HostConfig",
    "HostSettings",
    "LoadedConfig",
    "LoggingSettings",
    "load_config",
    "parse_config",
]

_BOT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def _pattern(value: str) -> str:
    try:
        split_pattern(value)
    except TopicError as exc:
        raise ValueError(str(exc)) from None
    return value


#: A topic pattern, checked item by item so an error names its index (``publish[1]``).
Pattern = Annotated[str, AfterValidator(_pattern)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HostSettings(_Strict):
    """``[host]``: how the host runs and supervises bots."""

    name: str = "citarion-host"
    reload: bool = False
    watch_plugins: bool = False
    drain_timeout_s: float = Field(default=10.0, gt=0)
    stop_on: str | None = None
    record: str | None = None
    summary: bool = True
    progress_interval_s: float = Field(default=2.0, ge=0)
    restart_backoff_s: float = Field(default=0.5, gt=0)
    restart_backoff_max_s: float = Field(default=30.0, gt=0)
    max_restarts: int = Field(default=5, ge=0)
    crash_threshold: int = Field(default=5, ge=1)
    crash_window_s: float = Field(default=10.0, gt=0)
    #: ``auto``: uvloop when importable, else asyncio's loop (see ``citarion_host.loops``). Read at start.
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"

    @field_validator("stop_on")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                split_topic(value)
            except TopicError as exc:
                raise ValueError(str(exc)) from None
        return value


class LoggingSettings(_Strict):
    """``[logging]``."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = "INFO"
    format: Literal["text", "json"] = "text"


class BotConfig(_Strict):
    """One ``[[bots]]`` entry: a bot instance and its wiring."""

    id: str
    code: str
    plugin: str
    publish: list[Pattern] = Field(default_factory=list)
    subscribe: list[Pattern] = Field(default_factory=list)
    queue: str | None = None
    durable: bool = False
    enabled: bool = True
    max_pending: int | None = Field(default=None, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _BOT_ID.match(value):
            raise ValueError("must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
        return value


class HostConfig(BaseSettings):
    """The whole configuration. Environment variables ``CITARION_<SECTION>__<KEY>`` override files."""

    model_config = SettingsConfigDict(
        env_prefix="CITARION_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    host: HostSettings = Field(default_factory=HostSettings)
    backend: BackendSettings = Field(default_factory=BackendSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    bots: list[BotConfig] = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)  # the environment overrides the files

    def bot(self, bot_id: str) -> BotConfig:
        for bot in self.bots:
            if bot.id == bot_id:
                return bot
        raise KeyError(bot_id)

    def to_toml(self) -> str:
        """The effective configuration as TOML (``config show``)."""
        return tomli_w.dumps(_drop_none(self.model_dump(mode="json")))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: HostConfig
    path: Path
    files: tuple[Path, ...]  # every file read, the main one first: what a reloader watches
    bot_files: dict[str, Path] = field(default_factory=dict)  # bot id -> file that declared it
    bot_origins: tuple[Path, ...] = ()  # file of bots[i], in order (duplicate ids too)

    def file_of(self, bot_id: str | None) -> Path:
        return self.bot_files.get(bot_id or "", self.path)


def load_config(path: str | Path) -> LoadedConfig:
    """Read, merge and validate a config file and its includes.

    Raises :class:`~citarion_host.errors.ConfigError` listing every problem found.
    """
    main = Path(path)
    if not main.is_file():
        raise ConfigError(f"{main}: no such config file" + (" (it is a directory)" if main.is_dir() else ""))
    files: list[Path] = []
    origins: list[Path] = []
    data = _read_with_includes(_absolute(main), files, origins, stack=())
    return parse_config(data, main, files=tuple(files), bot_origins=origins)


def parse_config(
    data: dict[str, Any],
    path: Path,
    *,
    files: tuple[Path, ...] = (),
    bot_origins: list[Path] | None = None,
) -> LoadedConfig:
    """Validate already-parsed TOML data (``bot_origins[i]`` is the file of ``bots[i]``)."""
    origins = bot_origins or []
    raw_bots = data.get("bots", [])
    try:
        config = HostConfig(**data)
    except ValidationError as exc:
        problems = [_describe(error, path, raw_bots, origins) for error in exc.errors()]
        raise ConfigError(f"{path}: invalid configuration ({len(problems)} problems)", problems) from None
    per_entry = tuple(origins[i] if i < len(origins) else path for i in range(len(config.bots)))
    bot_files = {bot.id: per_entry[index] for index, bot in reversed(list(enumerate(config.bots)))}
    return LoadedConfig(config, path, files or (path,), bot_files, per_entry)


def _read_with_includes(
    path: Path, files: list[Path], origins: list[Path], stack: tuple[Path, ...]
) -> dict[str, Any]:
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"{stack[-1]}: include cycle: {chain}")
    if not path.is_file():
        where = f"{stack[-1]}: include" if stack else ""
        raise ConfigError(f"{where} {path}: no such config file".strip())
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    files.append(path)
    includes = document.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: include: must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for include in includes:
        included = _read_with_includes(_absolute(path.parent / include), files, origins, (*stack, path))
        merged = _merge(merged, included)
    own_bots = document.get("bots", [])
    origins.extend([path] * (len(own_bots) if isinstance(own_bots, list) else 0))
    return _merge(merged, document)


def _absolute(path: Path) -> Path:
    """Absolute and normalized, but symlinks kept: a reloader must watch the link's directory
    (Kubernetes swaps ConfigMap symlinks), not the directory of today's target."""
    return Path(os.path.abspath(path))


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Tables merge key by key (the including file wins); ``bots`` lists are concatenated."""
    result = dict(base)
    for key, value in override.items():
        if key == "bots" and isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = [*result[key], *value]
        elif isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def _describe(error: Any, path: Path, raw_bots: Any, origins: list[Path]) -> str:
    """``file: bot 'id': key.path: message`` for one pydantic error."""
    loc = list(error["loc"])
    file, subject = path, ""
    if len(loc) >= 2 and loc[0] == "bots" and isinstance(loc[1], int):
        index = loc[1]
        bot = raw_bots[index] if isinstance(raw_bots, list) and index < len(raw_bots) else {}
        bot_id = bot.get("id") if isinstance(bot, dict) else None
        subject = f"bot {bot_id!r}" if bot_id else f"bots[{index}]"
        file = origins[index] if index < len(origins) else path
        loc = loc[2:]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (see docs/configuration.md)"
    parts = [str(file), subject, key or "<root>", message]
    return ": ".join(part for part in parts if part)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
