"""LOGOS's arithmetic: weighted consensus of signals and each source's hit rate. Pure, no events.

Each live vote i has a direction, a confidence c_i and its source's reliability r_i (the source's
smoothed hit rate). With weight w_i = c_i * r_i::

    L = sum of w_i over LONG votes         S = sum of w_i over SHORT votes
    direction  = LONG if L > S, SHORT if S > L, NEUTRAL on a tie (or no votes)
    agreement  = max(L, S) / (L + S)       the weighted share of the majority direction
    confidence = |L - S| / sum(r_i)        net conviction: 1 only if every source is unanimous and
                                           sure; conflict and doubt both pull it toward 0

Reliability is Laplace-smoothed: r = (hits + 1) / (outcomes + 2) over the last ``memory`` outcomes,
so a new source starts at 0.5 and a couple of lucky calls cannot make it an oracle.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Consensus", "HitRate", "Vote", "consensus"]

Direction = Literal["LONG", "SHORT"]


@dataclass(frozen=True, slots=True)
class Vote:
    source: str
    direction: Direction
    confidence: float
    time: int
    reference: float | None = None


@dataclass(frozen=True, slots=True)
class Consensus:
    direction: Literal["LONG", "SHORT", "NEUTRAL"]
    confidence: float
    agreement: float
    sources: dict[str, float] = field(default_factory=dict)  # signed weight: + LONG, - SHORT

    @property
    def count(self) -> int:
        return len(self.sources)


def consensus(votes: Iterable[Vote], reliability: dict[str, float] | None = None) -> Consensus:
    """Combine ``votes`` (one per source) weighted by confidence x reliability (default 0.5 each)."""
    reliability = reliability or {}
    long_weight = short_weight = total_reliability = 0.0
    sources: dict[str, float] = {}
    for vote in votes:
        r = reliability.get(vote.source, 0.5)
        weight = vote.confidence * r
        total_reliability += r
        if vote.direction == "LONG":
            long_weight += weight
            sources[vote.source] = round(weight, 6)
        else:
            short_weight += weight
            sources[vote.source] = round(-weight, 6)
    total = long_weight + short_weight
    if total <= 0:
        return Consensus("NEUTRAL", 0.0, 0.0, sources)
    direction: Literal["LONG", "SHORT", "NEUTRAL"] = (
        "LONG" if long_weight > short_weight else "SHORT" if short_weight > long_weight else "NEUTRAL"
    )
    agreement = max(long_weight, short_weight) / total
    confidence = abs(long_weight - short_weight) / total_reliability
    return Consensus(direction, min(1.0, confidence), min(1.0, agreement), sources)


class HitRate:
    """Per-source record of whether past signals were right (price moved their way in time)."""

    def __init__(self, memory: int = 50) -> None:
        self.memory = memory
        self.outcomes: dict[str, deque[bool]] = {}
        self._hits: dict[str, int] = {}  # the hits among each source's outcomes (derived, not state)

    def record(self, source: str, hit: bool) -> None:
        outcomes = self.outcomes.get(source)
        if outcomes is None:  # not setdefault: that builds a deque per vote
            outcomes = self.outcomes[source] = deque(maxlen=self.memory)
        hits = self._hits.get(source, 0) + hit
        if len(outcomes) == outcomes.maxlen:
            hits -= outcomes[0]  # the oldest outcome leaves the window
        outcomes.append(hit)
        self._hits[source] = hits

    def rate(self, source: str) -> float:
        """Laplace-smoothed hit rate: (hits + 1) / (n + 2); 0.5 with no history."""
        seen = self.outcomes.get(source)
        if seen is None:
            return 0.5  # (0 + 1) / (0 + 2)
        return (self._hits[source] + 1) / (len(seen) + 2)

    def raw(self, source: str) -> tuple[int, int]:
        seen = self.outcomes.get(source, ())
        return sum(seen), len(seen)

    def rates(self) -> dict[str, float]:
        return {source: round(self.rate(source), 4) for source in sorted(self.outcomes)}

    def state(self) -> dict[str, list[bool]]:
        """The outcomes per source, oldest first (what LOGOS's snapshot keeps)."""
        return {source: list(seen) for source, seen in self.outcomes.items()}

    def restore(self, outcomes: dict[str, list[bool]]) -> None:
        """Take outcomes back (each source's last ``memory`` of them)."""
        self.outcomes = {source: deque(seen, maxlen=self.memory) for source, seen in outcomes.items()}
        self._hits = {source: sum(seen) for source, seen in self.outcomes.items()}
