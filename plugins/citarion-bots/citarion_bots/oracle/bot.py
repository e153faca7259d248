"""ORA (Oracle), the platform's assistant: answers questions about the running platform, offline.

It subscribes to everything (the registry grants ORA ``>``) and folds each event into
:class:`~.state.PlatformState`. A question is a request on ``analytics.query.asked`` (a ``Query``);
ORA routes it (:mod:`.router`: slots, a key-word gate, RapidFuzz against the example questions) to
one of a fixed set of queries (:mod:`.answers`), and replies on ``analytics.query.answered`` (an
``Answer`` citing the ids of the events its figures come from). A question it cannot answer gets a
refusal with suggestions, never an invented figure; a request to act ("buy ...") is refused too: ORA
has no trading rights.

The topology (who declares which patterns) is not on the bus: the host hands it over through the
``citarion_host_started`` / ``citarion_topology_applied`` hooks below, and ``citarion-host ask``
through :meth:`OracleBot.learn` when it replays a record. Nothing is downloaded: the matcher fits on
the examples in :mod:`.intents` when ORA starts.

Its state (``docs/state.md``) is the index it folded (:class:`~.state.IndexState`, the topology
included) and its counters, so a restarted ORA still answers about what it heard before.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Answer, Query
from citarion_host.registry import load_registry

from ..common import StrictParams
from .answers import ANSWERS
from .router import Router
from .state import IndexState, PlatformState

__all__ = ["OracleBot", "OracleParams", "citarion_bot_types"]

QUERY_TOPIC = "analytics.query.asked"
ANSWER_TOPIC = "analytics.query.answered"


class OracleParams(StrictParams):
    alert_memory: int = Field(default=50, ge=1, le=10_000)
    max_items: int = Field(default=5, ge=1, le=100)
    threshold: float | None = Field(default=None, ge=0, le=1)


class OracleState(msgspec.Struct, kw_only=True):
    """ORA's index of the platform and how many questions it answered and refused."""

    index: IndexState = msgspec.field(default_factory=IndexState)
    counts: dict[str, int] = {}


class OracleBot(Bot[OracleParams]):
    type_name = "oracle"
    description = "ORA: the platform's assistant; answers questions from the bus's events (request/reply)"
    State = OracleState

    def __init__(self, ctx: BotContext, params: OracleParams) -> None:
        super().__init__(ctx, params)
        self.state = PlatformState(alert_memory=self.params.alert_memory)
        self._router: Router | None = None
        self._known: frozenset[tuple[str, str | None]] = frozenset()
        self._registry_names = {info.code: info.name for info in load_registry()}
        self.counts = {"answered": 0, "refused": 0}

    def snapshot(self) -> OracleState:
        return OracleState(index=self.state.state(), counts=self.counts)

    def restore(self, state: OracleState) -> None:
        self.state.restore(state.index)
        self.counts = {"answered": 0, "refused": 0, **state.counts}

    def learn(self, bots: Sequence[Any]) -> None:
        """The topology: the host config's ``[[bots]]`` entries (id, code, publish, subscribe)."""
        self.state.learn(list(bots))

    async def handle(self, event: Event) -> None:
        if event.source == self.ctx.code:
            return  # its own answers
        if event.topic == QUERY_TOPIC and isinstance(event.payload, Query):
            answer = self.ask(event.payload.question)
            await self.ctx.reply(event, ANSWER_TOPIC, answer)
            return
        self.state.take(event)

    def names(self) -> dict[str, list[str]]:
        """Every lower-cased bot id, registry code and registry name -> the bot ids it means."""
        names: dict[str, list[str]] = {}
        for bot_id, record in sorted(self.state.bots.items()):
            code = record.code
            if code not in self._registry_names:
                continue  # the host's services (exchange, risk guard) are not bots to ask about
            for alias in (bot_id, code, self._registry_names[code]):
                ids = names.setdefault(alias.lower(), [])
                if bot_id not in ids:
                    ids.append(bot_id)
        return names

    def router(self) -> Router:
        known = frozenset((bot_id, record.code) for bot_id, record in self.state.bots.items())
        if self._router is None or known != self._known:
            from .matchers import FuzzyMatcher

            self._router = Router(self.names(), FuzzyMatcher(self.params.threshold))
            self._known = known
        return self._router

    def ask(self, question: str) -> Answer:
        """Answer ``question`` from what ORA has heard so far."""
        route = self.router().route(question, self.state.orders)
        if route.intent is None:
            self.counts["refused"] += 1
            text = f"I cannot answer that ({route.reason}). I can answer questions like: " + "; ".join(
                route.suggestions
            )
            return Answer(
                question=question, answered=False, text=text, suggestions=route.suggestions, score=route.score
            )
        text, cited = ANSWERS[route.intent.name](route, self.state, self.params.max_items)
        self.counts["answered"] += 1
        return Answer(
            question=question,
            answered=True,
            text=text,
            intent=route.intent.name,
            event_ids=list(dict.fromkeys(cited)),
            score=route.score,
        )

    def stats(self) -> dict[str, Any]:
        return {
            **self.counts,
            "events": self.state.events,
            "bots": len(self.state.bots),
            "orders": len(self.state.orders),
            "alerts": len(self.state.alerts),
            "topology": bool(self.state.codes),
        }


def _teach(host: Any) -> None:
    bots = list(getattr(host.config, "bots", ()))
    for runner in getattr(host, "runners", {}).values():
        if isinstance(runner.bot, OracleBot):
            runner.bot.learn(bots)


@hookimpl
def citarion_host_started(host: Any) -> None:
    """Hand every ORA the topology once the host has started its bots."""
    _teach(host)


@hookimpl
def citarion_topology_applied(
    host: Any, added: Sequence[str], removed: Sequence[str], changed: Sequence[str]
) -> None:
    """A reload changed the topology (or restarted ORA): hand it over again."""
    _teach(host)


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [OracleBot]
