"""Topics and patterns with NATS semantics.

A *topic* (NATS: subject) is ``<domain>.<entity>.<action>[.<qualifier>...]``. A *pattern* may also use
the NATS wildcards as whole tokens: ``*`` matches exactly one token, ``>`` (last token only) matches one
or more trailing tokens.

This module is pure and synchronous so that the same rules serve the hot path (the subscription
index), the wiring checks (containment, overlap) and the NATS backend, and so that it can be tested
against a real ``nats-server`` as the oracle.

Limits (``docs/limits.md``): a topic or pattern is at most :data:`MAX_TOPIC_BYTES` bytes (UTF-8) and
:data:`MAX_TOPIC_TOKENS` tokens. nats-server itself accepts far longer subjects, up to its
``max_control_line`` (4,096 bytes by default, for the whole ``PUB``/``HPUB`` line, reply subject
included), and closes the connection for good past it: a host whose bots still look "running"
while nothing flows. The caps are the NATS documentation's own recommendation (fewer than 256
characters, at most 16 tokens), far below that line, and are checked here, in the one function every
topic passes through, so the config loader, ``check``, the catalog and the bus refuse the same text
with the same message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Generic, TypeVar

__all__ = [
    "FULL_WILDCARD",
    "MAX_TOPIC_BYTES",
    "MAX_TOPIC_TOKENS",
    "SINGLE_WILDCARD",
    "PatternIndex",
    "TopicError",
    "contains",
    "matches",
    "overlaps",
    "quoted",
    "split_pattern",
    "split_topic",
]

SINGLE_WILDCARD = "*"
FULL_WILDCARD = ">"
_FORBIDDEN = frozenset(" \t\r\n\f\v")

#: The longest topic or pattern, in UTF-8 bytes (NATS docs: "less than 256 characters").
MAX_TOPIC_BYTES = 255
#: The most tokens in a topic or pattern (NATS docs: "a maximum of 16 tokens").
MAX_TOPIC_TOKENS = 16
_SHOWN = 60  # characters of an over-long text quoted in an error: one readable line, not 4 KB

T = TypeVar("T")


class TopicError(ValueError):
    """A topic or pattern is malformed. The message names the offending text and why."""


def _tokens(text: str, kind: str) -> list[str]:
    if not isinstance(text, str) or not text:
        raise TopicError(f"{kind} must be a non-empty string, got {quoted(text)}")
    if len(text) > MAX_TOPIC_BYTES // 4:  # shorter texts cannot exceed the limit, even in 4-byte UTF-8
        size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_TOPIC_BYTES:
            raise TopicError(
                f"{kind} {text[:_SHOWN]!r}... is {size} bytes long, over the limit of {MAX_TOPIC_BYTES}"
                " (see docs/limits.md)"
            )
    if not _FORBIDDEN.isdisjoint(text):
        raise TopicError(f"{kind} {text!r} contains whitespace")
    tokens = text.split(".")
    if len(tokens) > MAX_TOPIC_TOKENS:
        raise TopicError(
            f"{kind} {text!r} has {len(tokens)} tokens, over the limit of {MAX_TOPIC_TOKENS}"
            " (see docs/limits.md)"
        )
    if "" in tokens:
        raise TopicError(f"{kind} {text!r} has an empty token (leading, trailing or double dot)")
    if "*" in text or ">" in text:
        for token in tokens:
            if len(token) > 1 and ("*" in token or ">" in token):
                # nats-server would take 'a*' as a literal, but NATS clients (nats-py, nats.js) refuse
                # it: refusing it here keeps every backend and the TypeScript side in agreement.
                raise TopicError(
                    f"{kind} {text!r}: token {token!r} mixes a wildcard character with others"
                    " (wildcards must be whole tokens)"
                )
    return tokens


def quoted(text: object) -> str:
    """``repr(text)`` for an error message, cut to its first characters when long (saying how long
    the text was): a 4 KB topic in a config or on the wire must still give one readable line."""
    shown = repr(text)
    if len(shown) <= _SHOWN:
        return shown
    size = f"{len(text)} characters" if isinstance(text, str) else type(text).__name__
    return f"{shown[:_SHOWN]}... ({size})"


def split_topic(topic: str) -> tuple[str, ...]:
    """Split a concrete topic into tokens; wildcards are not allowed in a topic."""
    tokens = _tokens(topic, "topic")
    for token in tokens:
        if token in (SINGLE_WILDCARD, FULL_WILDCARD):
            raise TopicError(f"topic {topic!r} contains wildcard {token!r}; only patterns may")
    return tuple(tokens)


def split_pattern(pattern: str) -> tuple[str, ...]:
    """Split a pattern into tokens, checking that ``>`` only appears as the last token."""
    tokens = _tokens(pattern, "pattern")
    for position, token in enumerate(tokens[:-1]):
        if token == FULL_WILDCARD:
            raise TopicError(
                f"pattern {pattern!r}: '>' must be the last token (found at position {position})"
            )
    return tuple(tokens)


def matches(pattern: str, topic: str) -> bool:
    """True if ``topic`` is matched by ``pattern`` under NATS rules."""
    return _match_tokens(split_pattern(pattern), split_topic(topic))


def _match_tokens(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    for position, token in enumerate(pattern):
        if token == FULL_WILDCARD:
            return len(topic) > position
        if position >= len(topic):
            return False
        if token != SINGLE_WILDCARD and token != topic[position]:
            return False
    return len(pattern) == len(topic)


def contains(outer: str, inner: str) -> bool:
    """True if every topic matched by ``inner`` is also matched by ``outer``.

    Used by the wiring check: a bot's declared pattern must be contained in what its category may use.
    """
    return _contains(split_pattern(outer), split_pattern(inner))


def _contains(outer: tuple[str, ...], inner: tuple[str, ...]) -> bool:
    for position, token in enumerate(outer):
        if token == FULL_WILDCARD:
            return len(inner) > position
        if position >= len(inner):
            return False
        other = inner[position]
        if other == FULL_WILDCARD:
            return False  # inner accepts any length here, outer does not
        if token != SINGLE_WILDCARD and (other == SINGLE_WILDCARD or other != token):
            return False
    return len(outer) == len(inner)


def overlaps(first: str, second: str) -> bool:
    """True if at least one topic is matched by both patterns (e.g. a publication reaches a subscription)."""
    a, b = split_pattern(first), split_pattern(second)
    for position in range(max(len(a), len(b))):
        if position >= len(a) or position >= len(b):
            return False
        x, y = a[position], b[position]
        if x == FULL_WILDCARD or y == FULL_WILDCARD:
            return True
        if x != SINGLE_WILDCARD and y != SINGLE_WILDCARD and x != y:
            return False
    return True


class _Node(Generic[T]):
    __slots__ = ("children", "full", "here")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.here: list[tuple[int, T]] = []  # patterns ending exactly at this node
        self.full: list[tuple[int, T]] = []  # patterns ending with '>' below this node


class PatternIndex(Generic[T]):
    """A token trie from patterns to items, with a per-topic result cache.

    ``match`` costs one dict lookup for a topic seen before; a miss walks only the branches that can
    match (literal token, ``*`` and ``>``), never every pattern. Results keep insertion order so that
    delivery order across subscribers is deterministic. Any change clears the cache: subscriptions
    change rarely, topics repeat constantly.
    """

    __slots__ = ("_cache", "_cache_limit", "_counter", "_root", "_size")

    def __init__(self, cache_limit: int = 65_536) -> None:
        self._root: _Node[T] = _Node()
        self._cache: dict[str, tuple[T, ...]] = {}
        self._cache_limit = cache_limit
        self._counter = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: str, item: T) -> None:
        tokens = split_pattern(pattern)
        node = self._root
        for token in tokens[:-1]:
            node = node.children.setdefault(token, _Node())
        self._counter += 1
        entry = (self._counter, item)
        if tokens[-1] == FULL_WILDCARD:
            node.full.append(entry)
        else:
            node.children.setdefault(tokens[-1], _Node()).here.append(entry)
        self._size += 1
        self._cache.clear()

    def remove(self, pattern: str, item: T) -> bool:
        """Remove one registration of ``item`` under ``pattern``; False if it was not there."""
        tokens = split_pattern(pattern)
        path: list[tuple[_Node[T], str]] = []
        node = self._root
        for token in tokens[:-1]:
            child = node.children.get(token)
            if child is None:
                return False
            path.append((node, token))
            node = child
        if tokens[-1] == FULL_WILDCARD:
            entries = node.full
        else:
            leaf = node.children.get(tokens[-1])
            if leaf is None:
                return False
            path.append((node, tokens[-1]))
            node, entries = leaf, leaf.here
        for position, (_, existing) in enumerate(entries):
            if existing is item:
                del entries[position]
                break
        else:
            return False
        self._prune(path)
        self._size -= 1
        self._cache.clear()
        return True

    @staticmethod
    def _prune(path: list[tuple[_Node[T], str]]) -> None:
        for parent, token in reversed(path):
            child = parent.children[token]
            if child.children or child.here or child.full:
                return
            del parent.children[token]

    def match(self, topic: str) -> tuple[T, ...]:
        """Items whose pattern matches ``topic``, in insertion order (cached)."""
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        tokens = split_topic(topic)
        found: list[tuple[int, T]] = []
        self._collect(self._root, tokens, 0, found)
        found.sort(key=_order)
        result = tuple(item for _, item in found)
        if len(self._cache) >= self._cache_limit:
            self._cache.clear()
        self._cache[topic] = result
        return result

    def _collect(
        self, node: _Node[T], tokens: tuple[str, ...], position: int, found: list[tuple[int, T]]
    ) -> None:
        if position == len(tokens):
            found.extend(node.here)
            return
        if node.full:
            found.extend(node.full)
        for key in (tokens[position], SINGLE_WILDCARD):
            child = node.children.get(key)
            if child is not None:
                self._collect(child, tokens, position + 1, found)

    def overlapping(self, pattern: str) -> tuple[T, ...]:
        """Items whose pattern overlaps ``pattern`` (at least one topic matches both), in insertion
        order. Not cached: this serves the wiring check and reloads, not the delivery path."""
        found: list[tuple[int, T]] = []
        self._overlap(self._root, split_pattern(pattern), 0, found, first=False)
        found.sort(key=_order)
        return tuple(item for _, item in found)

    def overlaps_any(self, pattern: str) -> bool:
        """True if any registered pattern overlaps ``pattern``; stops at the first one found."""
        return self._overlap(self._root, split_pattern(pattern), 0, [], first=True)

    def _overlap(
        self, node: _Node[T], tokens: tuple[str, ...], position: int, found: list[tuple[int, T]], first: bool
    ) -> bool:
        """Add the entries at or below ``node`` (reached by ``tokens[:position]``) whose pattern
        overlaps ``tokens``; with ``first``, stop once one is found. Returns whether any was.

        Only branches that can overlap are walked: a literal token follows its own branch and the
        ``*`` branch, a ``*`` follows every branch, a ``>`` takes every pattern below (all longer than
        ``position``). A pattern's own ``>`` (``node.full``) overlaps whatever has a token here.
        """
        if position == len(tokens):
            found.extend(node.here)
            return bool(found)
        found.extend(node.full)
        token = tokens[position]
        if token == FULL_WILDCARD:
            below = self._entries_below(node)
            found.extend(islice(below, 1) if first else below)
            return bool(found)
        if token == SINGLE_WILDCARD:
            children: Iterable[_Node[T]] = node.children.values()
        else:
            children = [c for c in (node.children.get(token), node.children.get(SINGLE_WILDCARD)) if c]
        for child in children:
            if first and found:
                break
            self._overlap(child, tokens, position + 1, found, first)
        return bool(found)

    @staticmethod
    def _entries_below(node: _Node[T]) -> Iterator[tuple[int, T]]:
        stack = list(node.children.values())
        while stack:
            child = stack.pop()
            yield from child.here
            yield from child.full
            stack.extend(child.children.values())

    def items(self) -> Iterable[T]:
        """Every registered item (any order); for introspection and shutdown, not the hot path."""
        stack = [self._root]
        while stack:
            node = stack.pop()
            yield from (item for _, item in node.here)
            yield from (item for _, item in node.full)
            stack.extend(node.children.values())


_order: Callable[[tuple[int, object]], int] = lambda entry: entry[0]  # noqa: E731
