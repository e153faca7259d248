"""From a question to one fixed intent, or to a refusal with suggestions.

1. :func:`~.intents.extract` finds the slots (order, topic, symbol, bot) and puts placeholders in their
   place.
2. **Gate**: a request to act ("buy ...", "cancel ...") is refused: ORA has no trading rights. Then
   the intents whose key words the question contains (``Intent.keys``), whose needed slots it
   names and whose refused slots it does not. None left: refused. This is what keeps "what is the
   capital of France" from becoming a PnL question because it starts like one.
3. **Match**: among those, the matcher's most similar intent (:mod:`.matchers`), accepted at or over
   its threshold.

A refusal says why (nothing ORA knows, or a missing bot / topic / order id) and suggests the closest
questions ORA can answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .intents import INTENTS, Intent, Slots, extract
from .matchers import FuzzyMatcher, Matcher

__all__ = ["Route", "Router"]

_AND = re.compile(r"\bp\s*&\s*l\b|\bp\s*/\s*l\b", re.IGNORECASE)
#: A request to act, not a question: ORA has no trading rights (docs/wiring.md), so it refuses.
_ACTIONS = frozenset(
    [
        "buy",
        "sell",
        "cancel",
        "send",
        "set",
        "place",
        "shut",
        "start",
        "stop",
        "increase",
        "decrease",
        "transfer",
        "withdraw",
        "deposit",
        "liquidate",
        "short",
        "long",
        "trade",
        "move",
        "amend",
        "restart",
        "kill",
        "execute",
    ]
)
#: "open positions of X" is a question; "open a long", "close every position" are requests
_OPEN_CLOSE = re.compile(r"^(please )?(open|close) (a|an|the|all|every|my|long|short)\b")
_SLOT_WORDS = {"bot": "a bot", "topic": "a topic", "order": "an order id"}


@dataclass
class Route:
    question: str
    slots: Slots
    intent: Intent | None
    score: float
    reason: str = ""
    suggestions: list[str] = field(default_factory=list)


class Router:
    def __init__(self, names: dict[str, list[str]], matcher: Matcher | None = None) -> None:
        self.names = names
        self.matcher = matcher or FuzzyMatcher()
        self.by_name = {intent.name: intent for intent in INTENTS}
        texts = [extract(example, names).text for intent in INTENTS for example in intent.examples]
        labels = [intent.name for intent in INTENTS for _ in intent.examples]
        self.matcher.fit(texts, labels)

    def route(self, question: str, order_ids: Iterable[str] = ()) -> Route:
        slots = extract(_AND.sub("pnl", question), self.names, order_ids)
        words = f" {re.sub(r'[^a-z0-9 ]+', ' ', slots.text.lower())} "
        first = words.split()[1:2] if words.split()[:1] == ["please"] else words.split()[:1]
        keyed = [i for i in INTENTS if any(f" {key} " in words for key in i.keys)]
        scores = self.matcher.scores(slots.text)
        ranked = sorted(INTENTS, key=lambda i: (-scores.get(i.name, 0.0), i.name))
        suggestions = [i.suggestion for i in ranked[:3]]
        if (first and first[0] in _ACTIONS) or _OPEN_CLOSE.match(words.strip()):
            reason = "a request to act: ORA answers questions and places nothing (no trading rights)"
            return Route(question, slots, None, 0.0, reason, suggestions)
        if not keyed:
            return Route(question, slots, None, 0.0, "none of the questions ORA answers", suggestions)
        fitting = [
            i
            for i in keyed
            if all(slots.has(s) for s in i.needs) and not any(slots.has(s) for s in i.refuses)
        ]
        if not fitting:
            intent = max(keyed, key=lambda i: scores.get(i.name, 0.0))
            missing = [_SLOT_WORDS[s] for s in intent.needs if not slots.has(s)]
            reason = f"name {' and '.join(missing)}" if missing else "none of the questions ORA answers"
            offered = list(dict.fromkeys([intent.suggestion, *suggestions]))[:3]
            return Route(question, slots, None, 0.0, reason, offered)
        intent = max(fitting, key=lambda i: (scores.get(i.name, 0.0), -INTENTS.index(i)))
        score = round(scores.get(intent.name, 0.0), 4)
        if score < self.matcher.threshold:
            return Route(question, slots, None, score, "none of the questions ORA answers", suggestions)
        return Route(question, slots, intent, score)
