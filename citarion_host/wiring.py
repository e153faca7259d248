"""The wiring check: is a config's topology valid, and does it make sense?

``load_config`` already checked each key on its own (types, bot ids, pattern syntax and length). What
it cannot check needs the registry and the plugins: whether a bot's code exists, whether its plugin
imports, whether its params fit its type, whether its patterns stay within its category's rights, and
how the bots fit together. That is this module, run by ``citarion-host check`` and before a host
starts or applies a reload.

Every finding is collected, never only the first: fixing a config one error per run is slow. A
config that does not load still gets the check of the entries that did (:func:`check_config`), so a
malformed pattern does not hide the other mistakes of the file. Findings are sorted (file, bot order,
key) so that two runs print the same report. Errors make the config unusable; warnings are wiring
that is legal but probably not what was meant (a subscription nothing feeds, a publication nobody
reads, a bot that receives its own events).

The check scales with the fleet: feeds are answered by :class:`~citarion_host.feeds.FeedIndex`
(token tries, not every pattern pair), and :class:`WiringCheck` remembers its answers, so a host
re-checking a reload re-checks only the bots that changed and the patterns their change overlaps.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .bot import Bot
from .feeds import FeedIndex
from .findings import Finding, Severity, format_findings, has_errors
from .plugins import PluginError, Plugins
from .registry import BotInfo, BotRegistry, UnknownBotError, load_registry
from .replica_rules import replica_problems
from .settings import BotConfig, LoadedConfig, load_for_check
from .topics import TopicError, overlaps

__all__ = [
    "HOST_PUBLISHES",
    "Finding",
    "Severity",
    "WiringCheck",
    "check_config",
    "check_topology",
    "format_findings",
    "has_errors",
]

#: What the host itself publishes (bot lifecycle, handler failures, dead letters, bus and connection
#: health): subscriptions to these are fed even when no bot publishes them.
HOST_PUBLISHES: tuple[str, ...] = (
    "system.bot.>",
    "system.handler.>",
    "system.deadletter.>",
    "system.bus.>",
    "system.connection.>",
    "system.host.>",
)

# Key order inside one bot: the order of BotConfig's fields, so a report reads like the config.
_KEY_RANK = {name: rank for rank, name in enumerate(BotConfig.model_fields)}
_KEY_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


@dataclass(frozen=True, slots=True)
class _Problem:
    severity: Severity
    key: str
    message: str
    suggestion: str | None = None


@dataclass(frozen=True, slots=True)
class _BotResult:
    """What one bot's entry alone decides, and what it was decided from (to know when to reuse it)."""

    config: BotConfig
    entry: BotInfo | None  # the registry entry its code named (None: unknown code)
    bot_type: type[Bot] | str  # the resolved class, or why there is none
    errors: tuple[_Problem, ...]  # code, rights, plugin, params
    loops: tuple[tuple[int, str], ...]  # (publish position, message): overlaps with its own subscribe


class WiringCheck:
    """The wiring check for one registry and one set of plugins, remembering its last answers.

    A check's result depends only on the config (and the registry and plugins): this object saves
    work, never changes an answer. A bot's own findings are reused while its entry is equal and its
    registry entry and resolved bot type are the same objects (a plugin reimport or a registry
    extension makes them new); the feed answers are kept in a :class:`FeedIndex` that drops only what
    a change can affect. So ``check`` on a reload that changes one bot of a thousand costs that bot,
    the patterns its change overlaps, and a linear pass to assemble the report.
    """

    def __init__(self, registry: BotRegistry, plugins: Plugins) -> None:
        self._registry = registry
        self._plugins = plugins
        self._results: dict[str, _BotResult] = {}
        self._feeds = FeedIndex(HOST_PUBLISHES)

    def check(self, loaded: LoadedConfig, *, topology: bool = True) -> list[Finding]:
        """Every finding for ``loaded``: per-bot errors for all bots, then (with ``topology``) the
        warnings about how the enabled bots fit together."""
        bots = loaded.config.bots
        files = _bot_files(loaded)
        found: list[tuple[int, Finding]] = []  # (bot index, finding), sorted at the end

        def add(index: int, problem: _Problem) -> None:
            finding = Finding(
                problem.severity,
                files[index],
                bots[index].id,
                problem.key,
                problem.message,
                problem.suggestion,
            )
            found.append((index, finding))

        types = {spec: _resolve(self._plugins, spec) for spec in dict.fromkeys(bot.plugin for bot in bots)}
        first_seen: dict[str, int] = {}
        results: dict[str, _BotResult] = {}  # what the next check may reuse (a duplicate id: the last)
        per_entry: list[_BotResult] = []
        for index, bot in enumerate(bots):
            if bot.id in first_seen:
                other = first_seen[bot.id]
                where = f"bots[{other}] in the same file" if files[other] == files[index] else files[other]
                add(index, _Problem("error", "id", f"duplicate bot id {bot.id!r}: also declared in {where}"))
            else:
                first_seen[bot.id] = index
            result = results[bot.id] = self._bot_result(bot, types[bot.plugin])
            per_entry.append(result)
            for problem in result.errors:
                add(index, problem)
        self._results = results
        if topology:
            for index, problem in self._topology(loaded, per_entry):
                add(index, problem)

        # main file first, then the includes in reading order; within a file, bot order, then key order
        rank = {name: position for position, name in enumerate(_display(loaded, f) for f in loaded.files)}
        found.sort(
            key=lambda item: (
                rank.get(item[1].file, len(rank)),
                item[1].file,
                item[0],
                _key_order(item[1].key),
            )
        )
        return [finding for _, finding in found]

    def _bot_result(self, bot: BotConfig, bot_type: type[Bot] | str) -> _BotResult:
        """The bot's own findings: remembered ones if nothing they depend on changed."""
        try:
            entry: BotInfo | None = self._registry.entry(bot.code)
            unknown: UnknownBotError | None = None
        except UnknownBotError as exc:
            entry, unknown = None, exc
        cached = self._results.get(bot.id)
        if (
            cached is not None
            and cached.entry is entry
            and cached.bot_type == bot_type  # a class compares by identity, an error by its text
            and cached.config == bot
        ):
            return cached
        errors: list[_Problem] = []
        if unknown is not None:
            errors.append(_Problem("error", "code", str(unknown), unknown.suggestion))
        elif entry is not None:
            errors.extend(_rights(self._registry, bot))
        if isinstance(bot_type, str):
            errors.append(_Problem("error", "plugin", bot_type))
        else:
            errors.extend(_params(bot_type, bot))
        return _BotResult(bot, entry, bot_type, tuple(errors), tuple(_loops(bot)))

    def _topology(
        self, loaded: LoadedConfig, per_entry: Sequence[_BotResult]
    ) -> Iterable[tuple[int, _Problem]]:
        """Warnings about how the enabled bots fit together.

        A bot's own patterns count as feeding and receiving: a bot that only feeds itself gets the
        loop warning instead of two more.
        """
        enabled = [(index, bot) for index, bot in enumerate(loaded.config.bots) if bot.enabled]
        feeds = self._feeds
        feeds.update(
            publish=(p for _, bot in enabled for p in bot.publish),
            subscribe=(p for _, bot in enabled for p in bot.subscribe),
        )
        for index, bot in enabled:
            for position, pattern in enumerate(bot.subscribe):
                if not feeds.fed(pattern):
                    why = "no enabled bot publishes a matching topic, nor does the host"
                    message = f"nothing can feed {pattern!r}: {why}"
                    yield index, _Problem("warning", f"subscribe[{position}]", message)
            loops = per_entry[index].loops
            for position, pattern in enumerate(bot.publish):
                if not feeds.received(pattern):
                    why = "no enabled bot subscribes a matching topic"
                    message = f"nobody receives {pattern!r}: {why}"
                    yield index, _Problem("warning", f"publish[{position}]", message)
                for message in (message for at, message in loops if at == position):
                    yield index, _Problem("warning", f"publish[{position}]", message)
        groups: dict[str, BotConfig] = {}
        for index, bot in enabled:
            if bot.queue is not None:
                first = groups.setdefault(bot.queue, bot)
                if set(bot.subscribe) != set(first.subscribe):
                    message = (
                        f"queue group {bot.queue!r}: subscribe {bot.subscribe} differs from"
                        f" {first.subscribe} of bot {first.id!r}; members share the work only where"
                        " their subscriptions match"
                    )
                    yield index, _Problem("warning", "queue", message)
        for index, bot in enabled:
            for severity, message in replica_problems(loaded.config, bot, per_entry[index].bot_type):
                yield index, _Problem(severity, "replicas", message)
        backend = loaded.config.backend
        if backend.type == "nats" and not backend.nats.jetstream:
            for index, bot in enabled:
                if bot.durable:
                    why = "backend.nats.jetstream is false, nothing is stored: the bot gets live events only"
                    yield index, _Problem("warning", "durable", f"durable has no effect: {why}")


def check_topology(loaded: LoadedConfig, registry: BotRegistry, plugins: Plugins) -> list[Finding]:
    """Every finding for ``loaded``, from scratch (a :class:`WiringCheck` used once)."""
    return WiringCheck(registry, plugins).check(loaded)


def _resolve(plugins: Plugins, spec: str) -> type[Bot] | str:
    """The bot class, or why there is none. Any exception counts: plugin code is third-party code,
    and one broken plugin must not hide the findings about the others."""
    try:
        return plugins.resolve(spec)
    except PluginError as exc:
        return str(exc)
    except Exception as exc:
        return f"plugin {spec!r}: {type(exc).__name__}: {exc}"


def _rights(registry: BotRegistry, bot: BotConfig) -> Iterable[_Problem]:
    entry = registry.entry(bot.code)
    for field, allowed, may in (
        ("publish", entry.publish, registry.may_publish),
        ("subscribe", entry.subscribe, registry.may_subscribe),
    ):
        for position, pattern in enumerate(getattr(bot, field)):
            try:
                within = may(bot.code, pattern)
            except TopicError:
                continue  # malformed: only in a config that did not load, whose loader reported it
            if not within:
                rights = ", ".join(allowed) if allowed else "nothing"
                yield _Problem(
                    "error",
                    f"{field}[{position}]",
                    f"{pattern!r} is not within what {bot.code} ({entry.name}, {entry.category}) may"
                    f" {field}: {rights}",
                )


def _params(bot_type: type[Bot], bot: BotConfig) -> Iterable[_Problem]:
    try:
        bot_type.Params.model_validate(bot.params)
    except ValidationError as exc:
        for error in exc.errors():
            path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"])
            message = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            yield _Problem("error", f"params{path}", f"{message} ({bot_type.__name__}.Params)")


def _loops(bot: BotConfig) -> Iterable[tuple[int, str]]:
    """``(publish position, message)`` for each of the bot's publications its own subscriptions get."""
    for position, pattern in enumerate(bot.publish):
        for other, subscription in enumerate(bot.subscribe):
            try:
                loop = overlaps(pattern, subscription)
            except TopicError:
                continue  # malformed: see _rights
            if loop:
                yield (
                    position,
                    (
                        f"{pattern!r} overlaps the bot's own subscribe[{other}] {subscription!r}:"
                        " it receives its own events (skip them by source, or narrow a pattern)"
                    ),
                )


def _bot_files(loaded: LoadedConfig) -> list[str]:
    """The file of each ``bots[i]``, for display (per entry, so both of two duplicate ids are right;
    if the environment replaced ``bots``, the id mapping is all there is)."""
    bots = loaded.config.bots
    origins = list(loaded.bot_origins)
    if len(origins) != len(bots):
        origins = [loaded.file_of(bot.id) for bot in bots]
    shown = {origin: _display(loaded, origin) for origin in set(origins)}  # resolve() once per file
    return [shown[origin] for origin in origins]


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


def check_config(path: str | Path, plugins: Plugins | None = None) -> list[Finding]:
    """Load ``path`` and check it against the packaged registry, extended by the plugins
    (``Plugins.discover()`` when none are given).

    A config that does not load yields the loader's findings, then the errors the wiring check finds
    in the entries that did load (codes, plugins, rights, params, duplicate ids). Its topology
    warnings are left out: with entries or patterns missing they would be guesses.
    """
    loaded, findings = load_for_check(path)
    if loaded is None:
        return findings
    complete = not findings
    if plugins is None:  # with the config's import timeout, as `run` uses it
        plugins = Plugins.discover(import_timeout_s=loaded.config.host.plugin_import_timeout_s)
    registry = load_registry()
    try:
        plugins.extend_registry(registry)
    except Exception as exc:  # a plugin's hook: report it, then check against what was registered
        message = f"a plugin's citarion_registry hook failed: {exc}"
        findings.append(Finding("error", str(loaded.path), None, "", message))
    return [*findings, *WiringCheck(registry, plugins).check(loaded, topology=complete)]
