"""Host configuration: TOML files (with includes) plus ``CITARION_*`` environment overrides.

Why the loader reads TOML itself instead of pydantic-settings' TOML source: that source silently
skips a missing file (a mistyped ``--config`` would run an empty host), cannot follow includes, and
cannot say which file a bad key came from. The files are read by :mod:`.settings_files` (limits,
UTF-8, includes), the environment by :mod:`.settings_env` (which wins: ``CITARION_BACKEND__TYPE=nats``
sets ``[backend] type``), and the merged data is validated by the pydantic models below.

Every error is a :class:`~citarion_host.findings.Finding` naming the file (or the environment
variable), the bot id (for ``[[bots]]`` entries) and the key path, one line each;
:class:`~citarion_host.errors.ConfigError` carries them as objects to whoever prints them. Every key is
documented in ``docs/configuration.md``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .bus.config import BackendSettings
from .errors import ConfigError
from .findings import Finding
from .settings_env import read_environment
from .settings_files import MAX_DEPTH, ReadFiles, nesting_depth, read_with_includes
from .topics import TopicError, split_pattern, split_topic

__all__ = [
    "BotConfig",
    "HostConfig",
    "HostSettings",
    "LoadedConfig",
    "LoggingSettings",
    "ReplicaSettings",
    "StateSettings",
    "UiSettings",
    "load_config",
    "load_for_check",
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
    # inf/nan are no valid timeout, share or bound: refuse them instead of waiting forever
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
    reload_debounce_s: float = Field(default=0.2, gt=0, le=60)
    reload_max_removed_share: float = Field(default=0.5, ge=0, le=1)
    plugin_import_timeout_s: float = Field(default=10.0, gt=0)
    #: A bot's ``start()`` past this is cancelled and the bot marked failed (docs/limits.md).
    start_timeout_s: float = Field(default=30.0, gt=0)
    #: A bot's ``stop()`` (and its spawned tasks' ends) past this is abandoned, reported and logged.
    stop_timeout_s: float = Field(default=10.0, gt=0)
    #: A bot handling one event for longer is reported (``system.bot.stuck``) and the host is not
    #: ready until that handler returns (``handlerwatch.py``); 0: never.
    handler_stuck_s: float = Field(default=30.0, ge=0)
    #: An event loop held this long (a bot's synchronous call) is said at once from a thread, and the
    #: bot holding it counted and reported when it runs again (``loopwatch.py``); 0: never.
    loop_blocked_s: float = Field(default=5.0, ge=0)
    #: After SIGINT/SIGTERM, the whole shutdown; past it the process exits with status 1.
    shutdown_timeout_s: float = Field(default=120.0, gt=0)
    #: A split deterministic run (``split.py``): how long the coordinator waits for the hosts of the
    #: other bots to answer (started later, restarting) before it gives up (docs/limits.md).
    split_wait_s: float = Field(default=120.0, gt=0)
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


class StateSettings(_Strict):
    """``[state]``: how the host keeps the bots' state (``docs/state.md``)."""

    #: False: no snapshots are taken, stored or restored; every bot starts fresh (as before state existed).
    enabled: bool = True
    #: A snapshot after this many handled events of a bot...
    every_events: int = Field(default=1000, ge=1)
    #: ...or once this long has passed since its last one (also while it is idle), whichever comes first.
    every_s: float = Field(default=1.0, gt=0)
    #: At most this share of a busy bot's time goes to snapshots: after one that took d seconds, the next
    #: by count waits d / max_share seconds (a large state is snapshotted less often, never a small one).
    max_share: float = Field(default=0.01, gt=0, le=1)
    #: ``auto``: a JetStream key-value bucket on NATS JetStream, else ``dir`` when set, else the process.
    store: Literal["auto", "kv", "dir", "process"] = "auto"
    #: Directory of snapshot files (one ``<bot id>.json`` each) for ``store = "dir"`` (and ``auto``
    #: without JetStream): a restarted host resumes from them. Relative to the working directory.
    dir: str | None = None
    #: The key-value bucket on NATS (created when missing, replicas and storage from ``[backend.nats]``).
    bucket: str = Field(default="citarion-state", pattern=r"^[A-Za-z0-9_-]{1,64}$")


class ReplicaSettings(_Strict):
    """``[replicas]``: the leases that decide which instances of a replicated bot handle events
    (``[[bots]] replicas``, ``docs/deploy.md``). Used on NATS JetStream only."""

    #: The key-value bucket of the leases (created when missing, replicas and storage from [backend.nats]).
    bucket: str = Field(default="citarion-leases", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    #: A lease not renewed for this long may be taken over by a standby (measured on the standby's clock).
    lease_ttl_s: float = Field(default=10.0, gt=0, le=3600)
    #: The holder renews its lease this often, and a standby looks at it this often. The holder stops
    #: handling (fencing) ``lease_ttl_s - renew_s`` after the send of its last successful renewal.
    renew_s: float = Field(default=2.0, gt=0, le=1800)

    @model_validator(mode="after")
    def _renew_within_ttl(self) -> ReplicaSettings:
        if self.renew_s * 2 > self.lease_ttl_s:
            raise ValueError(
                f"renew_s ({self.renew_s:g}) must be at most half of lease_ttl_s ({self.lease_ttl_s:g}):"
                " the holder fences itself lease_ttl_s - renew_s after its last renewal, and must get"
                " more than one renewal in before that"
            )
        return self


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class UiSettings(_Strict):
    """``[ui]``: the dashboard the host serves (``citarion_host/ui``, ``docs/ui.md``).

    Off by default: ``make demo`` and CI runs open no port. Bound to the loopback address unless told
    otherwise; bound anywhere else it requires a ``token`` (anyone who reaches the port could stop the
    bots), checked here so that such a config never starts.
    """

    enabled: bool = False
    host: str = "127.0.0.1"
    #: 0: any free port (the URL printed at start says which).
    port: int = Field(default=8765, ge=0, le=65535)
    token: str | None = Field(default=None, min_length=16)
    #: Events kept for SSE resume (``Last-Event-ID``) and lineage look-ups: the retention window.
    retain_events: int = Field(default=50_000, ge=100, le=5_000_000)
    #: Points kept per chart series (prices, PnL); older points are thinned, never the newest.
    series_points: int = Field(default=5_000, ge=10, le=1_000_000)
    #: Seconds between SSE keep-alive comments on a quiet stream.
    heartbeat_s: float = Field(default=15.0, gt=0, le=3600)
    #: After the feed completed (``[host] stop_on``), keep serving until interrupted.
    linger: bool = True

    @model_validator(mode="after")
    def _token_off_loopback(self) -> UiSettings:
        if self.enabled and self.host not in _LOOPBACK and not self.token:
            raise ValueError(
                f"host {self.host!r} is not a loopback address: set token (16+ characters) so that only"
                " who knows it can use the dashboard and its controls"
            )
        return self


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
    #: Start this bot without its stored state (and replace it): for a state its new code cannot take.
    reset_state: bool = False
    #: How many host processes may run this bot at once (docs/deploy.md, "Replicas and standbys"): a
    #: bot without state handles events in up to this many, a bot with state in one (the others stand by).
    replicas: int = Field(default=1, ge=1, le=64)
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def consumer(self) -> str:
        """The name of the bot's JetStream consumer: its queue group (shared by the members), else its
        id. One per bot, whatever its patterns (they are its filter subjects); a durable one resumes
        by this name after a restart, and ``nats-config`` grants the bot's user exactly this one."""
        return self.queue or self.id

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _BOT_ID.match(value):
            raise ValueError("must be 1-64 letters, digits, '_' or '-', starting with a letter or digit")
        return value


class HostConfig(BaseModel):
    """The whole configuration, validated. :func:`load_config` builds it from the files and the
    ``CITARION_*`` environment; constructed directly it is exactly what it is given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: HostSettings = Field(default_factory=HostSettings)
    backend: BackendSettings = Field(default_factory=BackendSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    state: StateSettings = Field(default_factory=StateSettings)
    replicas: ReplicaSettings = Field(default_factory=ReplicaSettings)
    ui: UiSettings = Field(default_factory=UiSettings)
    bots: list[BotConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _state_store(self) -> HostConfig:
        """A store that cannot exist on this backend is a config error, not a surprise at run time."""
        state, backend = self.state, self.backend
        if state.store == "dir" and not state.dir:
            raise ValueError("[state] store = 'dir' needs [state] dir (a directory for the snapshot files)")
        if state.store == "kv" and not (backend.type == "nats" and backend.nats.jetstream):
            raise ValueError("[state] store = 'kv' needs [backend] type = 'nats' with jetstream = true")
        return self

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


def load_config(path: str | Path, *, environ: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read, merge and validate a config file and its includes, then the ``CITARION_*`` overrides
    of ``environ`` (default: ``os.environ``).

    Raises :class:`~citarion_host.errors.ConfigError` listing every problem found, one line each.
    """
    main = Path(path)
    data, read = _read(main)
    return parse_config(data, main, files=tuple(read.files), bot_origins=read.origins, environ=environ)


def load_for_check(path: str | Path) -> tuple[LoadedConfig | None, list[Finding]]:
    """What ``check`` needs: the loader's findings, and as much of the config as could be loaded.

    A config that loads comes back with no findings. One that does not still has its files read:
    the ``[[bots]]`` entries whose id, code and plugin are valid come back (see :func:`_salvage`),
    so that the wiring check can report every other mistake of the file instead of hiding them
    behind the first malformed pattern. None when the files cannot even be read or parsed.
    """
    main = Path(path)
    try:
        data, read = _read(main)
    except ConfigError as exc:
        return None, list(exc.findings)
    files, origins = tuple(read.files), list(read.origins)
    try:
        return parse_config(data, main, files=files, bot_origins=origins), []
    except ConfigError as exc:
        return _salvage(data, main, files, origins), list(exc.findings)


def _read(main: Path) -> tuple[dict[str, Any], ReadFiles]:
    try:
        is_dir = main.is_dir()
    except (OSError, ValueError):
        is_dir = False
    if is_dir:
        raise ConfigError.of(Finding("error", str(main), None, "", "no such config file (it is a directory)"))
    return read_with_includes(main)


def parse_config(
    data: dict[str, Any],
    path: Path,
    *,
    files: tuple[Path, ...] = (),
    bot_origins: list[Path] | None = None,
    environ: Mapping[str, str] | None = None,
) -> LoadedConfig:
    """Validate already-parsed TOML data (``bot_origins[i]`` is the file of ``bots[i]``), with the
    ``CITARION_*`` overrides of ``environ`` (default: ``os.environ``) applied on top."""
    env = read_environment(HostConfig, os.environ if environ is None else environ)
    problems: list[Finding] = list(env.problems)
    if nesting_depth(env.data) > MAX_DEPTH:
        problems.append(
            Finding("error", "environment", None, "", f"nested too deeply (more than {MAX_DEPTH} levels)")
        )
        env.data.clear()
    origins = [] if "bots" in env.data else list(bot_origins or [])
    merged = _overlay(data, env.data)
    raw_bots = merged.get("bots", [])
    config: HostConfig | None = None
    try:
        config = HostConfig.model_validate(merged)
    except ValidationError as exc:
        for error in exc.errors():
            variable = env.variable_for(tuple(error["loc"]))
            problems.append(_describe(error, path, raw_bots, origins, variable))
    if config is None or problems:
        raise ConfigError(f"{path}: invalid configuration ({len(problems)} problems)", problems)
    per_entry = tuple(origins[i] if i < len(origins) else path for i in range(len(config.bots)))
    bot_files = {bot.id: per_entry[index] for index, bot in reversed(list(enumerate(config.bots)))}
    return LoadedConfig(config, path, files or (path,), bot_files, per_entry)


def _overlay(files: dict[str, Any], env: dict[str, Any]) -> dict[str, Any]:
    """The environment over the files: tables merge key by key; anything else (``bots`` too) is
    replaced."""
    result = dict(files)
    for key, value in env.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _overlay(result[key], value)
        else:
            result[key] = value
    return result


_MAX_SHOWN = 200  # characters of a key, bot id or message shown in one problem line


def _describe(
    error: Any, path: Path, raw_bots: Any, origins: list[Path], variable: str | None = None
) -> Finding:
    """One pydantic error as a finding: the file that declared the entry, the bot id (or, for an
    entry without a usable id, a key starting with ``bots[i].``), the key path and the message
    (``(from VARIABLE)`` appended when the value came from the environment)."""
    loc = list(error["loc"])
    file, bot_id, prefix = path, None, ""
    if len(loc) >= 2 and loc[0] == "bots" and isinstance(loc[1], int):
        index = loc[1]
        bot = raw_bots[index] if isinstance(raw_bots, list) and index < len(raw_bots) else {}
        raw_id = bot.get("id") if isinstance(bot, dict) else None
        if isinstance(raw_id, str) and raw_id:
            bot_id = _short(raw_id)
        else:
            prefix = f"bots[{index}]."
        file = origins[index] if index < len(origins) else path
        loc = loc[2:]
    key = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (see docs/configuration.md)"
    if variable is not None:
        message = f"{message} (from {variable})"
    return Finding("error", str(file), bot_id, _short(prefix + key) or "<root>", _short(message))


def _salvage(data: dict[str, Any], path: Path, files: tuple[Path, ...], origins: list[Path]) -> LoadedConfig:
    """The checkable part of a config that does not load: its ``[[bots]]`` entries, each with its
    invalid keys left out (defaults instead) and its pattern lists as written, malformed items
    included so that positions (``publish[2]``) stay those of the file; the wiring check skips
    what does not parse (the loader has reported it). An entry whose id, code or plugin is invalid
    is left out: its findings could not name the bot. Every other section takes its defaults."""
    raw_bots = data.get("bots")
    bots: list[BotConfig] = []
    kept: list[Path] = []
    for index, raw in enumerate(raw_bots if isinstance(raw_bots, list) else []):
        bot = _salvage_bot(raw)
        if bot is not None:
            bots.append(bot)
            kept.append(origins[index] if index < len(origins) else path)
    bot_files = {bot.id: kept[index] for index, bot in reversed(list(enumerate(bots)))}
    return LoadedConfig(HostConfig.model_construct(bots=bots), path, files or (path,), bot_files, tuple(kept))


_IDENTITY = frozenset({"id", "code", "plugin"})
_PATTERNS = ("publish", "subscribe")


def _salvage_bot(raw: object) -> BotConfig | None:
    if not isinstance(raw, dict):
        return None
    try:
        return BotConfig.model_validate(raw)
    except ValidationError as exc:
        invalid = {error["loc"][0] for error in exc.errors() if error["loc"]}
    if invalid & _IDENTITY:
        return None
    try:
        bot = BotConfig.model_validate({key: value for key, value in raw.items() if key not in invalid})
    except ValidationError:
        return None
    as_written = {key: raw[key] for key in _PATTERNS if key in invalid and isinstance(raw[key], list)}
    return bot.model_copy(update=as_written)


def _short(text: str) -> str:
    """One line, at most ``_MAX_SHOWN`` characters: a hostile key or value must not flood a log."""
    text = " ".join(text.split()) if "\n" in text or "\r" in text else text
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
