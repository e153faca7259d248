"""The one implementation of :class:`~citarion_host.bot.BotContext`, shared by the host and the harness.

What a bot may do through its context is decided here, once: a topic outside the bot's declared
``publish`` patterns is refused (requests and replies included), what it publishes while handling an
event carries that event's lineage (``lineage``), and every payload is validated against the event
catalog. Only *where the events go* differs, and that is injected as an :class:`Outlet`: the host's
(``supervisor``) posts to the bus, the test harness's (``testing``) records. So a bot refused at run
time is refused in its tests, with the same exception and the same message, and the reverse.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Iterable
from typing import Any, Protocol

from .bot import PublishGuard
from .errors import PublishNotAllowedError
from .events import Event, EventCatalog, Priority
from .lineage import stamp

__all__ = ["GuardedContext", "Outlet"]

#: Topics a context remembers as allowed (then it starts again).
_ALLOWED_KEPT = 1024


class Outlet(Protocol):
    """Where a context's events go and its background work runs (the host's bus, or a recording)."""

    def post(self, event: Event) -> Awaitable[None] | None:
        """Send a checked, stamped event on (in publish order): None when it is sent already, else an
        awaitable the context awaits (a coroutine per publish only where sending has to wait)."""
        ...

    async def request(self, event: Event, timeout: float) -> Event:
        """Send a checked request and return its reply."""
        ...

    async def reply(self, request: Event, response: Event) -> None:
        """Send a checked reply to whoever made ``request``."""
        ...

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run background work under the owner's supervision."""
        ...

    async def settle(self, lag: bool = False) -> None:
        """Wait until what was published so far (with ``lag``: before the lagged call two back) has
        been handled (see ``BotContext.settle``)."""
        ...

    def note_refused(self, topic: str) -> None:
        """Note a refused topic (the host counts it, the harness records it); the context raises."""
        ...


class GuardedContext:
    """A bot's :class:`~citarion_host.bot.BotContext`: publish, request and reply within its declared
    patterns, lineage stamped, payloads validated by ``catalog``; events handed to ``outlet``."""

    __slots__ = ("_allowed", "_catalog", "_code", "_guard", "_log", "_outlet", "bot_id")

    def __init__(
        self, bot_id: str, code: str, publish: Iterable[str], catalog: EventCatalog, outlet: Outlet
    ) -> None:
        self.bot_id = bot_id
        self._code = code
        self._catalog = catalog
        self._outlet = outlet
        self._guard = PublishGuard(bot_id, publish)
        #: Topics the guard let through (a publish checks one set lookup, not the guard's trie).
        self._allowed: set[str] = set()
        self._log = logging.LoggerAdapter(
            logging.getLogger(f"citarion.bot.{bot_id}"), {"bot": bot_id, "code": code}
        )

    @property
    def code(self) -> str:
        return self._code

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._log

    @property
    def publish_patterns(self) -> tuple[str, ...]:
        return self._guard.patterns

    def set_publish(self, patterns: Iterable[str]) -> None:
        """Replace the publish allow-list in place (a config-only change: no new instance)."""
        self._guard = PublishGuard(self.bot_id, patterns)
        self._allowed = set()

    def check(self, topic: str) -> None:
        """Return if the bot may send on ``topic``; note the refusal and raise
        :class:`PublishNotAllowedError` otherwise (nothing is sent)."""
        if topic in self._allowed:
            return
        try:
            self._guard.check(topic)
        except PublishNotAllowedError:
            self._outlet.note_refused(topic)
            raise
        if len(self._allowed) >= _ALLOWED_KEPT:  # a topic per order id or the like: stay bounded
            self._allowed.clear()
        self._allowed.add(topic)

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        priority: Priority = "normal",
        causation_id: str | None = None,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        if topic not in self._allowed:
            self.check(topic)
        causation_id, correlation_id, metadata = stamp(causation_id, correlation_id, metadata)
        event = self._catalog.make(
            topic,
            payload,
            source=self._code,
            priority=priority,
            causation_id=causation_id,
            correlation_id=correlation_id,
            metadata=metadata,
        )
        pending = self._outlet.post(event)
        if pending is not None:
            await pending
        return event

    async def request(self, topic: str, payload: Any, *, timeout: float = 5.0) -> Event:
        """A request made while handling an event has it as its cause; its correlation id is its own
        (the reply is matched by it, so it must not be shared with the handled event's conversation)."""
        self.check(topic)
        causation_id, _, metadata = stamp(None, None, None)
        event = self._catalog.make(
            topic, payload, source=self._code, causation_id=causation_id, metadata=metadata
        )
        return await self._outlet.request(event, timeout)

    async def reply(self, request: Event, topic: str, payload: Any) -> Event:
        """The reply carries the request's correlation id and the request as its cause."""
        self.check(topic)
        _, _, metadata = stamp(None, None, None)
        event = self._catalog.make(
            topic,
            payload,
            source=self._code,
            causation_id=request.id,
            correlation_id=request.correlation_id or request.id,
            metadata=metadata,
        )
        await self._outlet.reply(request, event)
        return event

    def spawn(self, work: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        return self._outlet.spawn(work, name)

    async def settle(self, *, lag: bool = False) -> None:
        await self._outlet.settle(lag)
