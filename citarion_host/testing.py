"""Helpers for testing bots without a host: a recording context and a harness.

::

    from citarion_host.testing import BotHarness

    async def test_grid_buys_on_a_dip():
        harness = BotHarness(GridBot, {"levels": 5}, publish=["trading.>"], code="GRD")
        await harness.start()
        await harness.feed("market.candle.closed", candle)
        assert harness.published_topics() == ["trading.signal.generated"]

The context is the host's own (:class:`~citarion_host.context.GuardedContext`: declared publish
patterns, lineage, payload validation), only recording instead of sending, so a bot that passes its
harness tests is not refused at run time, and one the host refuses is refused here with the same
exception and message.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from .bot import Bot
from .context import GuardedContext
from .errors import StateError
from .events import Event, EventCatalog, Priority, catalog
from .hookspecs import PROJECT
from .lineage import handling
from .plugins import Plugins
from .state import decode_snapshot, encode_snapshot, read_snapshot, state_spec
from .tasks import Tasks

__all__ = ["BotHarness", "Recording", "RecordingContext", "plugin_catalog"]


class Recording:
    """The harness's :class:`~citarion_host.context.Outlet`: keeps what the bot sends instead of sending it.

    Replies are recorded with what the bot published; a request has nobody to answer it here."""

    def __init__(self, bot_id: str) -> None:
        self.published: list[Event] = []
        self.refused: list[str] = []
        self.task_errors: list[BaseException] = []
        self.tasks = Tasks(bot_id, lambda _task, exc: self.task_errors.append(exc))

    def post(self, event: Event) -> None:
        self.published.append(event)

    async def request(self, event: Event, timeout: float) -> Event:
        raise NotImplementedError("the test harness has no responders; test request() against a bus")

    async def reply(self, request: Event, response: Event) -> None:
        self.published.append(response)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``work`` as a task; its failure is kept in ``task_errors`` (the host would restart)."""
        return self.tasks.spawn(work, name)

    async def settle(self, lag: bool = False) -> None:
        """Nothing is delivered anywhere here: let the other tasks run once."""
        await asyncio.sleep(0)

    def note_refused(self, topic: str) -> None:
        self.refused.append(topic)


class RecordingContext(GuardedContext):
    """The host's context (:class:`~citarion_host.context.GuardedContext`, the same checks and
    messages), recording what the bot publishes (``published``), was refused (``refused``: topics),
    spawned (``tasks``) and what its tasks raised (``task_errors``)."""

    def __init__(
        self,
        bot_id: str = "test-bot",
        code: str = "TST",
        publish: Iterable[str] = (">",),
        catalog_: EventCatalog | None = None,
    ) -> None:
        self.recording = Recording(bot_id)
        super().__init__(bot_id, code, publish, catalog_ or catalog, self.recording)

    @property
    def published(self) -> list[Event]:
        return self.recording.published

    @property
    def refused(self) -> list[str]:
        return self.recording.refused

    @property
    def tasks(self) -> list[asyncio.Task[Any]]:
        """The bot's background tasks still running."""
        return list(self.recording.tasks)

    @property
    def task_errors(self) -> list[BaseException]:
        return self.recording.task_errors


def plugin_catalog(*plugins: object) -> EventCatalog:
    """The event catalog a host with ``plugins`` registered builds: the built-in payload types and
    domains plus those the plugins contribute (``citarion_payload_types``, ``citarion_domains``)."""
    registered = Plugins()
    for plugin in plugins:
        registered.register(plugin, name=getattr(plugin, "__name__", None) or repr(plugin))
    built = EventCatalog.with_builtins()
    registered.extend_catalog(built)
    return built


def _catalog_for(bot_type: type[Bot]) -> EventCatalog:
    """The catalog a host running ``bot_type`` from its plugin module would validate with: the
    built-in one, extended by the module's own payload types and domains when it contributes any."""
    module = sys.modules.get(bot_type.__module__)
    contributes = module is not None and any(
        getattr(getattr(module, hook, None), f"{PROJECT}_impl", None)
        for hook in ("citarion_payload_types", "citarion_domains")
    )
    return plugin_catalog(module) if contributes else catalog


class BotHarness:
    """Build a bot with validated params and a :class:`RecordingContext`; feed it events.

    ``catalog_``: the event types to validate with; by default the built-in ones plus those the bot's
    module contributes as a plugin (what the host would have), see :func:`plugin_catalog`."""

    def __init__(
        self,
        bot_type: type[Bot],
        params: Mapping[str, Any] | None = None,
        *,
        bot_id: str = "test-bot",
        code: str = "TST",
        publish: Iterable[str] = (">",),
        catalog_: EventCatalog | None = None,
    ) -> None:
        self.catalog = catalog_ or _catalog_for(bot_type)
        self.ctx = RecordingContext(bot_id, code, publish, self.catalog)
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
        event = self.catalog.make(topic, payload, source=source, priority=priority, metadata=metadata)
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
            bot_type,
            old_params if params is None else params,
            bot_id=bot_id,
            code=code,
            publish=publish,
            catalog_=self.catalog,
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
