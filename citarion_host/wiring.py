"""The wiring check: is a config's topology valid, and does it make sense?

``load_config`` already checked each key on its own (types, bot ids, pattern syntax). What it cannot
check needs the registry and the plugins: whether a bot's code exists, whether its plugin imports,
whether its params fit its type, whether its patterns stay within its category's rights, and how
the bots fit together. That is this module, run by ``citarion-host check`` and before a host starts.

Every finding is collected, never only the first: fixing a config one error per run is slow, and
the findings are sorted (file, bot order, key) so that two runs print the same report. Errors make
the config unusable; warnings are wiring that is legal but probably not what was meant (a
subscription nothing feeds, a publication nobody reads, a bot that receives its own events).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from .bot import Bot
from .errors import ConfigError
from .plugins import PluginError, Plugins
from .registry import BotRegistry, RegistryError, load_registry
from .settings import BotConfig, LoadedConfig, load_config
from .topics import overlaps

__all__ = [
    "HOST_PUBLISHES",
    "Finding",
    "Severity",
    "check_config",
    "check_topology",
    "findings_from_config_error",
    "format_findings",
    "has_errors",
]

Severity = Literal["error", "warning"]

#: What the host itself publishes (bot lifecycle, handler failures, dead letters, bus and connection
#: health): subscriptions to these are fed even when no bot publishes them.
HOST_PUBLISHES: tuple[str, ...] = (
    "system.bot.>",
    "system.handler.>",
    "system.deadletter.>",
    "system.bus.>",
    "system.connection.>",
)

# Key order inside one bot: the order of BotConfig's fields, so a report reads like the config.
_KEY_RANK = {name: rank for rank, name in enumerate(BotConfig.model_fields)}
_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True)
class Finding:
    """One problem, located by file, bot id (None for config-wide problems) and key path."""

    severity: Severity
    file: str
    bot_id: str | None
    key: str
    message: str

    def __str__(self) -> str:
        subject = f"bot {self.bot_id!r}" if self.bot_id is not None else ""
        parts = (self.file, subject, self.key, self.message)
        return f"{self.severity}: " + ": ".join(part for part in parts if part)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def has_errors(findings: Iterable[Finding]) -> bool:
    return any(finding.severity == "error" for finding in findings)


def format_findings(findings: Sequence[Finding]) -> str:
    """Errors first, then warnings (each group in check order), then ``N errors, M warnings``."""
    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    lines = [str(f) for f in (*errors, *warnings)]
    lines.append(f"{_plural(len(errors), 'error')}, {_plural(len(warnings), 'warning')}")
    return "\n".join(lines)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def check_topology(loaded: LoadedConfig, registry: BotRegistry, plugins: Plugins) -> list[Finding]:
    """Every finding for ``loaded``: per-bot errors for all bots, topology warnings for enabled ones."""
    bots = loaded.config.bots
    files = _bot_files(loaded)
    found: list[tuple[int, Finding]] = []  # (bot index, finding), sorted at the end

    def add(index: int, severity: Severity, key: str, message: str) -> None:
        found.append((index, Finding(severity, files[index], bots[index].id, key, message)))

    first_seen: dict[str, int] = {}
    resolved: dict[str, type[Bot] | str] = {}  # plugin spec -> class, or the error text
    for index, bot in enumerate(bots):
        if bot.id in first_seen:
            other = first_seen[bot.id]
            where = f"bots[{other}] in the same file" if files[other] == files[index] else files[other]
            add(index, "error", "id", f"duplicate bot id {bot.id!r}: also declared in {where}")
        else:
            first_seen[bot.id] = index
        try:
            registry.entry(bot.code)
        except RegistryError as exc:
            add(index, "error", "code", str(exc))
        else:
            for key, message in _rights(registry, bot):
                add(index, "error", key, message)
        if bot.plugin not in resolved:
            resolved[bot.plugin] = _resolve(plugins, bot.plugin)
        bot_type = resolved[bot.plugin]
        if isinstance(bot_type, str):
            add(index, "error", "plugin", bot_type)
        else:
            for key, message in _params(bot_type, bot):
                add(index, "error", key, message)

    for index, key, message in _topology(bots):
        add(index, "warning", key, message)
    backend = loaded.config.backend
    if backend.type == "nats" and not backend.nats.jetstream:
        for index, bot in enumerate(bots):
            if bot.enabled and bot.durable:
                why = "backend.nats.jetstream is false, nothing is stored: the bot gets live events only"
                add(index, "warning", "durable", f"durable has no effect: {why}")

    # main file first, then the includes in reading order; within a file, bot order, then key order
    rank = {name: position for position, name in enumerate(_display(loaded, f) for f in loaded.files)}
    found.sort(
        key=lambda item: (rank.get(item[1].file, len(rank)), item[1].file, item[0], _key_order(item[1].key))
    )
    return [finding for _, finding in found]


def _resolve(plugins: Plugins, spec: str) -> type[Bot] | str:
    """The bot class, or why there is none. Any exception counts: plugin code is third-party code,
    and one broken plugin must not hide the findings about the others."""
    try:
        return plugins.resolve(spec)
    except PluginError as exc:
        return str(exc)
    except Exception as exc:
        return f"plugin {spec!r}: {type(exc).__name__}: {exc}"


def _rights(registry: BotRegistry, bot: BotConfig) -> Iterable[tuple[str, str]]:
    entry = registry.entry(bot.code)
    for field, allowed, may in (
        ("publish", entry.publish, registry.may_publish),
        ("subscribe", entry.subscribe, registry.may_subscribe),
    ):
        for position, pattern in enumerate(getattr(bot, field)):
            if not may(bot.code, pattern):
                rights = ", ".join(allowed) if allowed else "nothing"
                yield (
                    f"{field}[{position}]",
                    f"{pattern!r} is not within what {bot.code} ({entry.name}, {entry.category}) may"
                    f" {field}: {rights}",
                )


def _params(bot_type: type[Bot], bot: BotConfig) -> Iterable[tuple[str, str]]:
    try:
        bot_type.Params.model_validate(bot.params)
    except ValidationError as exc:
        for error in exc.errors():
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            yield f"params{path}", f"{message} ({bot_type.__name__}.Params)"


def _topology(bots: Sequence[BotConfig]) -> list[tuple[int, str, str]]:
    """Warnings about how the enabled bots fit together: ``(bot index, key, message)``.

    A bot's own patterns count as feeding and receiving: a bot that only feeds itself gets the loop
    warning instead of two more.
    """
    enabled = [(index, bot) for index, bot in enumerate(bots) if bot.enabled]
    published = [*(p for _, bot in enabled for p in bot.publish), *HOST_PUBLISHES]
    subscribed = [p for _, bot in enabled for p in bot.subscribe]
    warnings: list[tuple[int, str, str]] = []
    for index, bot in enabled:
        for position, pattern in enumerate(bot.subscribe):
            if not any(overlaps(pattern, p) for p in published):
                why = "no enabled bot publishes a matching topic, nor does the host"
                warnings.append((index, f"subscribe[{position}]", f"nothing can feed {pattern!r}: {why}"))
        for position, pattern in enumerate(bot.publish):
            if not any(overlaps(pattern, s) for s in subscribed):
                why = "no enabled bot subscribes a matching topic"
                warnings.append((index, f"publish[{position}]", f"nobody receives {pattern!r}: {why}"))
            for other, subscription in enumerate(bot.subscribe):
                if overlaps(pattern, subscription):
                    message = (
                        f"{pattern!r} overlaps the bot's own subscribe[{other}] {subscription!r}:"
                        " it receives its own events (skip them by source, or narrow a pattern)"
                    )
                    warnings.append((index, f"publish[{position}]", message))
    groups: dict[str, list[BotConfig]] = {}
    for index, bot in enabled:
        if bot.queue is not None:
            first = groups.setdefault(bot.queue, [bot])[0]
            if set(bot.subscribe) != set(first.subscribe):
                message = (
                    f"queue group {bot.queue!r}: subscribe {bot.subscribe} differs from {first.subscribe} of"
                    f" bot {first.id!r}; members share the work only where their subscriptions match"
                )
                warnings.append((index, "queue", message))
    return warnings


def _bot_files(loaded: LoadedConfig) -> list[str]:
    """The file of each ``bots[i]``, for display (per entry, so both of two duplicate ids are right;
    if the environment replaced ``bots``, the id mapping is all there is)."""
    bots = loaded.config.bots
    origins = list(loaded.bot_origins)
    if len(origins) != len(bots):
        origins = [loaded.file_of(bot.id) for bot in bots]
    return [_display(loaded, origin) for origin in origins]


def _display(loaded: LoadedConfig, file: Path) -> str:
    """A file as the user would write it: relative to the main config's directory as given
    (``configs/dev.toml`` -> ``configs/bots.toml``), absolute only when outside it."""
    main = loaded.path.resolve()
    if file.resolve() == main:
        return str(loaded.path)
    try:
        return str(loaded.path.parent / file.resolve().relative_to(main.parent))
    except ValueError:
        return str(file)


def _key_order(key: str) -> tuple[tuple[int, str], ...]:
    """Keys in BotConfig field order (``id``, ``code``, ``plugin``, ...), ``publish[10]`` after
    ``publish[2]``."""
    order: list[tuple[int, str]] = []
    for name, number in _KEY_PART.findall(key):
        if name:
            order.append((_KEY_RANK.get(name, len(_KEY_RANK)) if not order else 0, name))
        else:
            order.append((int(number), ""))
    return tuple(order)


_PROBLEM = re.compile(
    r"^(?P<file>.+?): (?:bot '(?P<bot>[^']*)'|(?P<entry>bots\[\d+\])): (?P<key>[^:\s]+): (?P<message>.+)$"
)
_FILE_PROBLEM = re.compile(r"^(?P<file>.+?\.toml): (?P<rest>.+)$")


def findings_from_config_error(error: ConfigError) -> list[Finding]:
    """A :class:`ConfigError`'s problems as error findings (one per problem line), so that
    ``check`` reports a config that does not even load in the same format as one that does."""
    findings = []
    for problem in error.problems:
        if match := _PROBLEM.match(problem):
            key = f"{match['entry']}.{match['key']}" if match["entry"] else match["key"]
            findings.append(Finding("error", match["file"], match["bot"], key, match["message"]))
        elif match := _FILE_PROBLEM.match(problem):
            key, _, message = match["rest"].partition(": ")
            if not message or " " in key:
                key, message = "", match["rest"]
            findings.append(Finding("error", match["file"], None, key, message))
        else:
            findings.append(Finding("error", "", None, "", problem))
    return findings


def check_config(path: str | Path, plugins: Plugins | None = None) -> list[Finding]:
    """Load ``path`` and check it against the packaged registry, extended by the plugins
    (``Plugins.discover()`` when none are given). A config that does not load yields its problems."""
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        return findings_from_config_error(exc)
    plugins = plugins if plugins is not None else Plugins.discover()
    registry = load_registry()
    try:
        plugins.extend_registry(registry)
    except Exception as exc:  # a plugin's hook: report it, then check against what was registered
        return [
            Finding("error", str(loaded.path), None, "", f"a plugin's citarion_registry hook failed: {exc}"),
            *check_topology(loaded, registry, plugins),
        ]
    return check_topology(loaded, registry, plugins)
