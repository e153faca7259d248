"""Helpers for testing bots without a host: a recording context and a harness.

::

    from citarion_host.testing import BotHarness

    async def test_grid_buys_on_a_dip():
        harness = BotHarness(GridBot, {"levels": 5}, publish=["trading.>"], code="GRD")
        await harness.start()
        await harness.feed("market.candle.closed", candle)
        assert harness.published_topics() == ["trading.signal.generated"]

The context enforces the declared publish patterns exactly like the host does, so a bot that passes
its harness tests will not be refused at run time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from .bot import Bot, PublishGuard
from .errors import PublishNotAllowedError, StateError
from .events import Event, EventCatalog, Priority, catalog
from .lineage import handling, stamp
from .state import decode_snapshot, encode_snapshot, read_snapshot, state_spec

__all__ = ["BotHarness", "RecordingContext"]


class RecordingContext:
    """A :class:`~citarion_host.bot.BotContext` that records what the bot publishes."""

    def __init__(
        self,
        bot_id: str = "test-bot",
        code: str = "TST",
        publish: Iterable[str] = (">",),
        catalog_: EventCatalog | None = None,
    ) -> None:
        self._bot_id = bot_id
        self._code = code
        self._guard = PublishGuard(bot_id, publish)
        self._catalog = catalog_ or catalog
        self.published: list[Event] = []
        self.refused: list[str] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.task_errors: list[BaseException] = []
        self._log = logging.LoggerAdapter(logging.getLogger(f"citarion.bot.{bot_id}"), {"bot": bot_id})

    @property
    def bot_id(self) -> str:
        return self._bot_id

    @property
    def code(self) -> str:
        return self._code

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._log

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
        try:
            self._guard.check(topic)
        except PublishNotAllowedError:
            self.refused.append(topic)
            raise
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
        self.published.append(event)
        return event

    async def request(self, topic: str, payload: Any, *, timeout: float = 5.0) -> Event:
        raise NotImplementedError("RecordingContext has no responders; test request() against a bus")

    async def reply(self, request: Event, topic: str, payload: Any) -> Event:
        return await self.publish(topic, payload, correlation_id=request.correlation_id or request.id)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run ``work`` as a task; its failure is kept in ``task_errors`` (the host would restart)."""
        task = asyncio.get_running_loop().create_task(work, name=name or None)
        self.tasks.append(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self.task_errors.append(task.exception())  # type: ignore[arg-type]

    async def settle(self) -> None:
        """Nothing is delivered anywhere here: let the other tasks run once."""
        await asyncio.sleep(0)


class BotHarness:
    """Build a bot with validated params and a :class:`RecordingContext`; feed it events."""

    def __init__(
        self,
        bot_type: type[Bot],
        params: Mapping[str, Any] | None = None,
        *,
        bot_id: str = "test-bot",
        code: str = "TST",
        publish: Iterable[str] = (">",),
    ) -> None:
        self.ctx = RecordingContext(bot_id, code, publish)
        self.bot = bot_type(self.ctx, bot_type.Params.model_validate(dict(params or {})))
        self._spec = (bot_type, dict(params or {}), bot_id, code, tuple(publish))

    async def start(self) -> None:
        await self.bot.start()

    async def stop(self) -> None:
        await self.bot.stop()

    async def feed(
        self,
        topic: str,
        payload: Any,
        *,
        source: str = "TST",
        priority: Priority = "normal",
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        """Build an event like the bus would and hand it to the bot (as the one being handled, like
        the host does: what the bot publishes carries its lineage); returns the event."""
        event = catalog.make(topic, payload, source=source, priority=priority, metadata=metadata)
        await self.feed_event(event)
        return event

    async def feed_event(self, event: Event) -> None:
        with handling(event):
            await self.bot.handle(event)

    async def restarted(self, params: Mapping[str, Any] | None = None) -> BotHarness:
        """A new harness whose bot was restored from a snapshot of this one's, through the same encoding
        the host stores (``docs/state.md``), and started: what a reload or crash restart gives the bot.
        ``params``: the new instance's (a params change). Raises StateError if the bot keeps no state."""
        bot_type, old_params, bot_id, code, publish = self._spec
        if not bot_type.keeps_state():
            raise StateError(f"bot type {bot_type.__name__} declares no State and no snapshot()")
        spec = state_spec(bot_type)
        _, data = encode_snapshot(
            bot_id, spec, self.bot.snapshot(), handled=0, seq=None, stream=None, event_id=None
        )
        harness = BotHarness(
            bot_type, old_params if params is None else params, bot_id=bot_id, code=code, publish=publish
        )
        harness.bot.restore(decode_snapshot(read_snapshot(data, f"bot {bot_id!r}"), spec, bot_type))
        await harness.start()
        return harness

    @property
    def published(self) -> list[Event]:
        return self.ctx.published

    def published_topics(self) -> list[str]:
        return [event.topic for event in self.ctx.published]

    def payloads(self, topic_prefix: str = "") -> list[Any]:
        return [e.payload for e in self.ctx.published if e.topic.startswith(topic_prefix)]
