"""Which subscriptions something can feed and which publications someone receives, fleet-wide.

The wiring check warns about a subscription no publication can reach and a publication no
subscription reads. Asked by comparing each pattern with every pattern of the other side, that is
``(3N)^2`` overlap tests for ``N`` bots with three patterns each: 39 s for a thousand bots, on every
start and every reload. Here the distinct patterns of each side live in a token trie
(:class:`~citarion_host.topics.PatternIndex`), so a question is one walk of the other side's trie
that follows only the branches that can overlap, and every answer is kept. :meth:`FeedIndex.update`
takes the new pattern lists and drops only the answers the difference can change (those of the
opposite-side patterns that overlap an added or removed one), so a reload that changes one bot asks
again about that bot's patterns and their counterparts, not about the fleet.

The cost of a walk grows with the wildcards of the question and of the trie: literal-heavy fleets
(``trading.order.b17``) take a few dict lookups per question; a ``*`` visits every branch at its
level. The answers are those of comparing every pair (a property test compares them).
"""

from __future__ import annotations

from collections.abc import Iterable

from .topics import PatternIndex

__all__ = ["FeedIndex"]


class _Side:
    """The distinct patterns of one side (publish or subscribe), indexed."""

    __slots__ = ("_items", "index")

    def __init__(self) -> None:
        self.index: PatternIndex[str] = PatternIndex(cache_limit=0)
        self._items: dict[str, str] = {}  # pattern -> the object registered (removal is by identity)

    def __len__(self) -> int:
        return len(self._items)

    def replace(self, patterns: Iterable[str]) -> list[str]:
        """Hold exactly ``patterns`` (repeats count once); return those added or removed."""
        new = dict.fromkeys(patterns)
        changed = [pattern for pattern in self._items if pattern not in new]
        for pattern in changed:
            self.index.remove(pattern, self._items.pop(pattern))
        for pattern in new:
            if pattern not in self._items:
                self._items[pattern] = pattern
                self.index.add(pattern, pattern)
                changed.append(pattern)
        return changed


class FeedIndex:
    """Answers "can anything feed this subscription?" and "does anyone receive this publication?"
    for the patterns last given to :meth:`update`, plus ``host_publishes`` (always published)."""

    def __init__(self, host_publishes: Iterable[str] = ()) -> None:
        self._host: PatternIndex[str] = PatternIndex(cache_limit=0)
        for pattern in host_publishes:
            self._host.add(pattern, pattern)
        self._published = _Side()
        self._subscribed = _Side()
        self._fed: dict[str, bool] = {}  # subscribe pattern -> some publication overlaps it
        self._received: dict[str, bool] = {}  # publish pattern -> some subscription overlaps it

    def update(self, publish: Iterable[str], subscribe: Iterable[str]) -> None:
        """Hold exactly these patterns (all enabled bots' lists; repeats allowed); keep every answer
        the change cannot affect."""
        published = self._published.replace(publish)
        subscribed = self._subscribed.replace(subscribe)
        if 2 * (len(published) + len(subscribed)) >= len(self._fed) + len(self._received):
            self._fed.clear()  # mostly new (a first check): asking again is cheaper than sorting out
            self._received.clear()
            return
        for pattern in published:
            self._received.pop(pattern, None)
            for subscription in self._subscribed.index.overlapping(pattern):
                self._fed.pop(subscription, None)
        for pattern in subscribed:
            self._fed.pop(pattern, None)
            for publication in self._published.index.overlapping(pattern):
                self._received.pop(publication, None)

    def fed(self, subscription: str) -> bool:
        """True if the host or a publish pattern given to :meth:`update` overlaps ``subscription``."""
        answer = self._fed.get(subscription)
        if answer is None:
            answer = self._host.overlaps_any(subscription) or self._published.index.overlaps_any(subscription)
            self._fed[subscription] = answer
        return answer

    def received(self, publication: str) -> bool:
        """True if a subscribe pattern given to :meth:`update` overlaps ``publication``."""
        answer = self._received.get(publication)
        if answer is None:
            answer = self._received[publication] = self._subscribed.index.overlaps_any(publication)
        return answer
