"""The bot registry: who the bots are and which topics each may publish and subscribe.

The data is ``citarion_host/data/registry.toml``: the platform's 19 bots (``[[bots]]``), the host's
own services such as the paper exchange (``[[services]]``, category ``service``) and the wiring rules
per category; ``docs/wiring.md`` gives the reason for every rule. An entry's effective rights are its
category's patterns plus its own ``extra_publish``/``extra_subscribe``: rights only add up.

Bots and services share one type, :class:`BotInfo`, told apart by ``kind``. The "known bots" views
(``get``, ``in``, ``len``, iteration, ``codes``) cover bots only: the seed's 19 plus plugin bots.
Services are reached through :meth:`BotRegistry.service`; the rule checks (``allowed_*``, ``may_*``)
take any code, since the host wires services by the same rules.

Why frozen dataclasses and not pydantic: the checks that matter cross entries (the category exists,
one entry per code, patterns parse with :func:`~citarion_host.topics.split_pattern`) and each error
must name the file, the entry and the field in one line. That is a few lines of plain code; a
pydantic model would validate the easy half and still need this code for the rest.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from .topics import TopicError, contains, split_pattern

__all__ = ["BotInfo", "BotRegistry", "Category", "Kind", "RegistryError", "UnknownBotError", "load_registry"]

Kind = Literal["bot", "service"]
_CODE = re.compile(r"[A-Z][A-Z0-9_]{1,15}")
_CATEGORY_ID = re.compile(r"[a-z][a-z0-9_]*")
_REQUIRED = frozenset({"code", "name", "category"})
_OPTIONAL = frozenset({"description", "why", "holding_period"})
_PATTERN_FIELDS = frozenset({"publish", "subscribe", "extra_publish", "extra_subscribe"})
_CATEGORY_KEYS = frozenset({"name", "description", "publish", "subscribe", "why", "kind"})
_ENTRY_KEYS = frozenset({*_REQUIRED, "description", "holding_period", "extra_publish", "extra_subscribe"})
_ARRAYS: tuple[tuple[str, Kind], ...] = (("bots", "bot"), ("services", "service"))


class RegistryError(ValueError):
    """Bad registry data or registration. The message names the file or entry, and the field."""


class UnknownBotError(RegistryError, LookupError):
    """No bot (or service) has this code. The message lists the known codes and a close match."""

    def __init__(self, code: str, message: str, suggestion: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.suggestion = suggestion


def _error(where: str, field: str, reason: str) -> RegistryError:
    return RegistryError(f"{where}: field {field!r}: {reason}")


@dataclass(frozen=True, slots=True)
class Category:
    """A group of entries and the patterns every member may publish and subscribe."""

    id: str
    name: str
    description: str = ""
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    why: str = ""
    kind: Kind = "bot"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class BotInfo:
    """A bot or host service. ``publish``/``subscribe`` are the effective patterns, derived by the
    registry (category + extras): when registering, leave them empty and put exceptions in extras."""

    code: str
    name: str
    category: str
    description: str = ""
    holding_period: str | None = None
    kind: Kind = "bot"
    extra_publish: tuple[str, ...] = ()
    extra_subscribe: tuple[str, ...] = ()
    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _merge(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys((*first, *second)))


def _check_patterns(patterns: object, where: str, field: str) -> tuple[str, ...]:
    if not isinstance(patterns, list | tuple) or not all(isinstance(p, str) for p in patterns):
        raise _error(where, field, f"must be a list of pattern strings, got {patterns!r}")
    for pattern in patterns:
        try:
            split_pattern(pattern)
        except TopicError as error:
            raise _error(where, field, str(error)) from None
    return tuple(patterns)


def _checked(item: Category | BotInfo, where: str) -> dict[str, Any]:
    """Check text and pattern fields; return the patterns as tuples, to ``replace`` into ``item``."""
    patterns: dict[str, Any] = {}
    for field in (f.name for f in fields(item)):
        value = getattr(item, field)
        if field in _PATTERN_FIELDS:
            patterns[field] = _check_patterns(value, where, field)
        elif field in _REQUIRED and not (isinstance(value, str) and value.strip()):
            raise _error(where, field, f"must be a non-empty string, got {value!r}")
        elif field in _OPTIONAL and not isinstance(value, str | None):
            raise _error(where, field, f"must be a string, got {value!r}")
    return patterns


class BotRegistry:
    """Bots, services and categories, with the wiring rules. Build with :func:`load_registry`."""

    def __init__(self, categories: Iterable[Category] = (), bots: Iterable[BotInfo] = ()) -> None:
        self._categories: dict[str, Category] = {}
        self._entries: dict[str, BotInfo] = {}
        for category in categories:
            self.add_category(category)
        for bot in bots:
            self.register(bot)

    # -- lookups ------------------------------------------------------------------------------
    @property
    def categories(self) -> tuple[Category, ...]:
        return tuple(self._categories.values())

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(bot.code for bot in self)

    @property
    def services(self) -> tuple[BotInfo, ...]:
        return tuple(e for e in self._entries.values() if e.kind == "service")

    def category(self, category_id: str) -> Category:
        if category_id not in self._categories:
            raise RegistryError(f"unknown category {category_id!r} (known: {', '.join(self._categories)})")
        return self._categories[category_id]

    def by_category(self, category_id: str) -> tuple[BotInfo, ...]:
        self.category(category_id)
        return tuple(e for e in self._entries.values() if e.category == category_id)

    def get(self, code: str) -> BotInfo:
        """The bot with this code; :class:`UnknownBotError` (with a suggestion) otherwise."""
        return self._find(code, "bot")

    def service(self, code: str) -> BotInfo:
        return self._find(code, "service")

    def entry(self, code: str) -> BotInfo:
        """The bot or service with this code."""
        return self._find(code, None)

    def __iter__(self) -> Iterator[BotInfo]:
        return (e for e in self._entries.values() if e.kind == "bot")

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, code: object) -> bool:
        entry = self._entries.get(code) if isinstance(code, str) else None
        return entry is not None and entry.kind == "bot"

    def _find(self, code: str, kind: Kind | None) -> BotInfo:
        entry = self._entries.get(code)
        if entry is not None and kind in (None, entry.kind):
            return entry
        noun = kind or "bot or service"
        pool = [e for e in self._entries.values() if kind in (None, e.kind)]
        known = sorted(e.code for e in pool)
        names = {e.name.upper(): e.code for e in pool}
        wanted = str(code).upper()
        swapped = [c for c in known if sorted(c) == sorted(wanted)]  # "HTF" -> HFT, before difflib
        close = swapped or difflib.get_close_matches(wanted, [*known, *names], n=1, cutoff=0.6)
        suggestion = names.get(wanted) or (names.get(close[0], close[0]) if close else None)
        message = f"unknown {noun} code {code!r}"
        if entry is not None:
            lookup = "service" if entry.kind == "service" else "get"
            message += f": {code!r} ({entry.name}) is a {entry.kind}, use BotRegistry.{lookup}()"
        elif suggestion is not None:
            message += f" (did you mean {suggestion!r}, {self._entries[suggestion].name}?)"
        raise UnknownBotError(code, f"{message}; known {noun} codes: {', '.join(known)}", suggestion)

    # -- wiring rules -------------------------------------------------------------------------
    def allowed_publish(self, code: str) -> tuple[str, ...]:
        return self.entry(code).publish

    def allowed_subscribe(self, code: str) -> tuple[str, ...]:
        return self.entry(code).subscribe

    def may_publish(self, code: str, pattern: str) -> bool:
        """True if everything ``pattern`` matches lies within one of the entry's publish patterns."""
        return any(contains(allowed, pattern) for allowed in self.allowed_publish(code))

    def may_subscribe(self, code: str, pattern: str) -> bool:
        """True if everything ``pattern`` matches lies within one of the entry's subscribe patterns."""
        return any(contains(allowed, pattern) for allowed in self.allowed_subscribe(code))

    # -- extension ----------------------------------------------------------------------------
    def add_category(self, category: Category) -> Category:
        """Add a category; adding an identical one again is a no-op, a different one an error."""
        return self._add_category(category, f"category {category.id!r}")

    def _add_category(self, category: Category, where: str) -> Category:
        if not isinstance(category.id, str) or not _CATEGORY_ID.fullmatch(category.id):
            raise _error(where, "id", f"must match {_CATEGORY_ID.pattern}, got {category.id!r}")
        if category.kind not in ("bot", "service"):
            raise _error(where, "kind", f"must be 'bot' or 'service', got {category.kind!r}")
        category = replace(category, **_checked(category, where))
        if self._categories.setdefault(category.id, category) != category:
            raise _error(where, "id", f"category {category.id!r} already exists, with other content")
        return category

    def register(self, bot: BotInfo) -> BotInfo:
        """Add a bot or service; return it with its effective rules. Registering an identical entry
        again is a no-op; a different entry under a taken code is an error."""
        return self._register(bot, f"{bot.kind} {bot.code!r}", allow_identical=True)

    def _register(self, bot: BotInfo, where: str, *, allow_identical: bool) -> BotInfo:
        bot = replace(bot, **_checked(bot, where))
        if not _CODE.fullmatch(bot.code):
            raise _error(where, "code", f"must match {_CODE.pattern}, got {bot.code!r}")
        category = self._categories.get(bot.category)
        if category is None:
            known = ", ".join(self._categories)
            raise _error(where, "category", f"unknown category {bot.category!r} (known: {known})")
        if bot.kind != category.kind:
            raise _error(
                where, "kind", f"a {bot.kind} cannot join {category.id!r}, a {category.kind} category"
            )
        resolved = self._resolve(bot, category)
        for field in ("publish", "subscribe"):
            if getattr(bot, field) not in ((), getattr(resolved, field)):
                raise _error(where, field, f"is derived from the category; grant more with extra_{field}")
        existing = self._entries.get(bot.code)
        if existing is not None and not (allow_identical and existing == resolved):
            raise _error(where, "code", f"{bot.code!r} is already registered ({existing.name})")
        self._entries[bot.code] = resolved
        return resolved

    @staticmethod
    def _resolve(bot: BotInfo, category: Category) -> BotInfo:
        publish = _merge(category.publish, bot.extra_publish)
        return replace(bot, publish=publish, subscribe=_merge(category.subscribe, bot.extra_subscribe))

    def extend_rules(
        self,
        *,
        category: str | None = None,
        bot: str | None = None,
        publish: Iterable[str] = (),
        subscribe: Iterable[str] = (),
    ) -> None:
        """Grant more patterns to a whole category (``category=``) or to one entry (``bot=``, a bot
        or service code). Everything is checked before anything changes."""
        if (category is None) == (bot is None):
            raise RegistryError("extend_rules: pass exactly one of category= or bot=")
        where = f"category {category!r}" if category is not None else f"entry {bot!r}"
        pub = _check_patterns(tuple(publish), where, "publish")
        sub = _check_patterns(tuple(subscribe), where, "subscribe")
        if category is not None:
            old = self.category(category)
            new = replace(old, publish=_merge(old.publish, pub), subscribe=_merge(old.subscribe, sub))
            self._categories[category] = new
            for entry in [e for e in self._entries.values() if e.category == category]:
                self._entries[entry.code] = self._resolve(entry, new)
        elif bot is not None:
            entry = self.entry(bot)
            pub, sub = _merge(entry.extra_publish, pub), _merge(entry.extra_subscribe, sub)
            entry = replace(entry, extra_publish=pub, extra_subscribe=sub)
            self._entries[bot] = self._resolve(entry, self._categories[entry.category])

    def copy(self) -> BotRegistry:
        """An independent registry with the same content (entries are immutable, so this is cheap)."""
        clone = BotRegistry()
        clone._categories, clone._entries = dict(self._categories), dict(self._entries)
        return clone

    # -- export -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """``{"categories": [...], "bots": [...], "services": [...]}`` for the CLI's listing."""
        return {
            "categories": [c.to_dict() for c in self._categories.values()],
            "bots": [b.to_dict() for b in self],
            "services": [s.to_dict() for s in self.services],
        }

    def as_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)


def _parse(raw: bytes, source: str) -> BotRegistry:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise RegistryError(f"{source}: invalid TOML: {error}") from None
    _only_keys(data, {"categories", "bots", "services"}, source)
    registry = BotRegistry()
    categories = data.get("categories", {})
    _only_keys(categories, categories, f"{source}: categories")
    for category_id, table in categories.items():
        where = f"{source}: category {category_id!r}"
        _only_keys(table, _CATEGORY_KEYS, where)
        registry._add_category(Category(id=category_id, **{"name": None, **table}), where)
    for array, kind in _ARRAYS:
        entries = data.get(array, [])
        if not isinstance(entries, list):
            raise RegistryError(f"{source}: {array!r} must be an array of [[{array}]] tables")
        for index, table in enumerate(entries):
            where = f"{source}: {array}[{index}]"
            _only_keys(table, _ENTRY_KEYS, where)
            where += f" (code {table.get('code')!r})"
            info = BotInfo(**{"code": None, "name": None, "category": None, **table}, kind=kind)
            registry._register(info, where, allow_identical=False)
    return registry


def _only_keys(table: object, allowed: Iterable[str], where: str) -> None:
    if not isinstance(table, Mapping):
        raise RegistryError(f"{where}: must be a table, got {table!r}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise _error(where, unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")


@lru_cache(maxsize=1)
def _packaged() -> BotRegistry:
    resource = resources.files("citarion_host") / "data" / "registry.toml"
    return _parse(resource.read_bytes(), str(resource))


def load_registry(path: Path | None = None) -> BotRegistry:
    """A fresh registry from ``path``, or from the packaged ``data/registry.toml`` (parsed once, then
    copied, so each caller may extend its registry without affecting anyone else's)."""
    if path is None:
        return _packaged().copy()
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise RegistryError(f"{path}: cannot read the registry file: {error}") from None
    return _parse(raw, str(path))
