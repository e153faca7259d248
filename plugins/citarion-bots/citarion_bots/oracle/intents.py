"""ORA's fixed queries (intents), the example questions that define them, and slot extraction.

A question is first searched for *slots*: an order id (``mesh-12``: a bot id, a dash, a number), a
topic or pattern (``trading.order.filled``, ``risk.>``), a bot (its id, its registry code or its
registry name: ``orion``, ``ARB``, ``Orion``) and a symbol (``BTCUSDT``). Each slot found is replaced by
a placeholder (``ORDER``, ``TOPIC``, ``BOT``, ``SYMBOL``), so the matcher compares the *shape* of the
question with the examples below, whatever the bot or topic: "why is mesh blocked" and "why is ARB
blocked" are one question. The examples are the matcher's whole training set; the held-out
paraphrases it is measured on (``heldout.toml``) are never shown to it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["INTENTS", "Intent", "Slots", "extract"]


@dataclass(frozen=True, slots=True)
class Intent:
    """One fixed query. ``keys``: words (or phrases) of which a question must contain one to be
    this intent at all (the gate that refuses what merely *sounds* like a question ORA knows);
    ``needs`` / ``refuses``: slots it cannot do without / must not have (``blocked_bots`` is
    ``why_blocked`` without a bot)."""

    name: str
    needs: tuple[str, ...]
    suggestion: str  # the question offered when refusing
    examples: tuple[str, ...]
    keys: tuple[str, ...] = ()
    refuses: tuple[str, ...] = ()


INTENTS: tuple[Intent, ...] = (
    Intent(
        "positions",
        (),
        "what are the positions of orion?",
        (
            "what are the positions of BOT",
            "what does BOT hold",
            "show the open positions of BOT",
            "which positions does BOT have",
            "BOT positions",
            "list the holdings of BOT",
            "what is BOT holding right now",
            "what are all the open positions",
            "show me every position",
            "how much SYMBOL does BOT hold",
        ),
        keys=(
            "position",
            "positions",
            "hold",
            "holds",
            "holding",
            "holdings",
            "held",
            "own",
            "owns",
            "inventory",
            "coins",
        ),
        refuses=(),
    ),
    Intent(
        "pnl",
        (),
        "what is the pnl of mesh?",
        (
            "what is the pnl of BOT",
            "how much did BOT make",
            "how is BOT doing",
            "profit and loss of BOT",
            "BOT pnl",
            "how much money has BOT lost",
            "what are the returns of BOT",
            "which bot made the most money",
            "show the pnl of every bot",
            "what is the profit of BOT",
            "is BOT making money",
            "how much has BOT earned",
        ),
        keys=(
            "pnl",
            "profit",
            "profits",
            "profitable",
            "loss",
            "lost",
            "lose",
            "losing",
            "make",
            "made",
            "making",
            "earn",
            "earned",
            "earnings",
            "money",
            "return",
            "returns",
            "doing",
            "performance",
        ),
        refuses=(),
    ),
    Intent(
        "alerts",
        (),
        "what were the last alerts?",
        (
            "what were the last alerts",
            "show recent risk alerts",
            "any alerts",
            "list the latest alerts",
            "what alarms fired",
            "recent warnings from the risk guard",
            "what did the risk guard raise",
            "show the alerts about BOT",
            "were there any risk alerts",
        ),
        keys=(
            "alert",
            "alerts",
            "alarm",
            "alarms",
            "warning",
            "warnings",
            "raise",
            "raised",
            "triggered",
            "fired",
        ),
        refuses=(),
    ),
    Intent(
        "why_blocked",
        ("bot",),
        "why is scale blocked?",
        (
            "why is BOT blocked",
            "is BOT blocked",
            "what blocked BOT",
            "why can't BOT trade",
            "reason for the block of BOT",
            "BOT block reason",
            "why did the risk guard stop BOT",
            "why was BOT halted",
            "is BOT allowed to trade",
        ),
        keys=("block", "blocked", "blocking", "halt", "halted", "stop", "stopped", "allowed", "trade"),
        refuses=(),
    ),
    Intent(
        "blocked_bots",
        (),
        "which bots are blocked?",
        (
            "which bots are blocked",
            "who is blocked right now",
            "list the blocked bots",
            "are any bots blocked",
            "which bots can not trade",
            "what bots are halted by the risk guard",
        ),
        keys=("block", "blocked", "blocking", "halt", "halted", "stop", "stopped", "allowed", "trade"),
        refuses=("bot",),
    ),
    Intent(
        "publishers",
        ("topic",),
        "who publishes trading.order.filled?",
        (
            "who publishes TOPIC",
            "which bots publish TOPIC",
            "who sends TOPIC",
            "where does TOPIC come from",
            "source of TOPIC",
            "who produces TOPIC events",
            "which bot emits TOPIC",
            "who writes TOPIC",
        ),
        keys=(
            "publish",
            "publishes",
            "published",
            "emit",
            "emits",
            "send",
            "sends",
            "produce",
            "produces",
            "source",
            "come from",
            "comes from",
            "writes",
            "write",
        ),
        refuses=(),
    ),
    Intent(
        "subscribers",
        ("topic",),
        "who subscribes to risk.block.set?",
        (
            "who subscribes to TOPIC",
            "which bots listen to TOPIC",
            "who receives TOPIC",
            "who consumes TOPIC",
            "where does TOPIC go",
            "which bots read TOPIC",
            "who is subscribed to TOPIC",
            "who hears TOPIC",
        ),
        keys=(
            "subscribe",
            "subscribes",
            "subscribed",
            "listen",
            "listens",
            "receive",
            "receives",
            "consume",
            "consumes",
            "read",
            "reads",
            "hears",
            "hear",
            "gets",
            "get",
            "go",
            "goes",
        ),
        refuses=(),
    ),
    Intent(
        "lineage",
        ("order",),
        "what is the lineage of order logos-1?",
        (
            "what is the lineage of order ORDER",
            "explain order ORDER",
            "trace ORDER",
            "why was ORDER placed",
            "where did ORDER come from",
            "show the causes of ORDER",
            "history of order ORDER",
            "what led to ORDER",
            "what caused order ORDER",
            "lineage of ORDER",
        ),
        keys=(
            "lineage",
            "trace",
            "explain",
            "cause",
            "caused",
            "causes",
            "why",
            "history",
            "led",
            "come from",
            "comes from",
            "placed",
            "place",
        ),
        refuses=(),
    ),
    Intent(
        "activity",
        ("bot",),
        "how many fills did helios get?",
        (
            "how many fills did BOT get",
            "how many orders did BOT send",
            "how many signals did BOT publish",
            "BOT activity",
            "trading activity of BOT",
            "how many trades did BOT make",
            "how active was BOT",
            "count the orders of BOT",
            "how many rejections did BOT have",
        ),
        keys=(
            "how many",
            "count",
            "number",
            "activity",
            "active",
            "trade",
            "trades",
            "fills",
            "orders",
            "signals",
            "rejections",
            "times",
        ),
        refuses=(),
    ),
    Intent(
        "help",
        (),
        "what can you answer?",
        (
            "what can you answer",
            "help",
            "what questions can I ask",
            "what do you know",
            "what can you do",
            "how do I use you",
        ),
        keys=("help", "answer", "ask", "questions", "can you", "able", "know", "use you"),
        refuses=(),
    ),
)

_ORDER = re.compile(r"\b([a-z0-9][a-z0-9_]*(?:-[0-9]+)+)\b", re.IGNORECASE)
_TOPIC = re.compile(r"(?<![\w.])([a-z][a-z0-9_]*(?:\.(?:[a-z0-9_]+|\*|>))+)(?![\w.])", re.IGNORECASE)
_SYMBOL = re.compile(r"\b([a-z]{2,10}usdt)\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z0-9_']+|[<>*]")


@dataclass
class Slots:
    """What a question names, and the question with each of them replaced by its placeholder."""

    text: str
    order: str | None = None
    topic: str | None = None
    bots: list[str] = field(default_factory=list)
    symbol: str | None = None

    @property
    def bot(self) -> str | None:
        return self.bots[0] if self.bots else None

    def has(self, slot: str) -> bool:
        return {"order": self.order, "topic": self.topic, "bot": self.bot, "symbol": self.symbol}[
            slot
        ] is not None


def extract(question: str, bot_names: dict[str, list[str]], order_ids: Iterable[str] = ()) -> Slots:
    """Find the slots of ``question``. ``bot_names`` maps every lower-cased id, code and registry name
    to the bot ids it means; ``order_ids`` are the known ids (an unknown ``x-1`` is still an order)."""
    slots = Slots(question)
    text = question.strip()
    found = _ORDER.search(text)
    if found and (found.group(1) in order_ids or found.group(1).split("-")[0].lower() in bot_names):
        slots.order = found.group(1)
        text = text.replace(found.group(1), " ORDER ")
    found = _TOPIC.search(text)
    if found:
        slots.topic = found.group(1)
        text = text.replace(found.group(1), " TOPIC ")
    found = _SYMBOL.search(text)
    if found:
        slots.symbol = found.group(1).upper()
        text = text.replace(found.group(1), " SYMBOL ")
    words = []
    for word in _WORD.findall(text):
        plain = word.lower().removesuffix("'s")
        if word not in ("ORDER", "TOPIC", "SYMBOL") and plain in bot_names:
            for bot_id in bot_names[plain]:
                if bot_id not in slots.bots:
                    slots.bots.append(bot_id)
            words.append("BOT")
        else:
            words.append(word if word in ("ORDER", "TOPIC", "SYMBOL") else word.lower())
    slots.text = " ".join(words)
    return slots
