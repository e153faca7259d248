"""One bot instance under supervision: its context, its subscription, its restarts.

Each bot has exactly one subscription, over all its ``subscribe`` patterns: one inbox, so it sees
events in one order (publish order on memory, stream order on JetStream) and handles one at a time.
The host owns it (closed when the bot goes), so nothing leaks across reloads. A bot's ``handle``
failing is isolated: the failure is reported on ``system.bot.error`` and counted; ``crash_threshold``
failures within ``crash_window_s`` (or a failing ``start``) restart the bot with exponential backoff,
and after ``max_restarts`` it is marked failed. While a bot restarts its subscription stays in place
and events wait in its (bounded) backlog, so nothing is lost by a restart.

Around each ``handle`` call the runner marks the event as the one being handled (``lineage``), so
what the bot publishes carries it as its cause without the bot saying so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from pydantic import BaseModel

from .bot import Bot, PublishGuard
from .bus import EventBus, Subscription
from .errors import PublishNotAllowedError
from .events import Event, Priority
from .lineage import handling, stamp
from .payloads import BotLifecycle
from .settings import BotConfig, HostSettings
from .timings import HandlerTimings

__all__ = ["BotRunner", "HostBotContext"]

log = logging.getLogger("citarion_host.supervisor")
State = Literal["created", "starting", "running", "restarting", "stopped", "failed"]
HOST_SOURCE = "HOST"


class HostBotContext:
    """The :class:`~citarion_host.bot.BotContext` the host gives a bot: publish within its patterns."""

    def __init__(self, runner: BotRunner) -> None:
        self._runner = runner
        self._log = logging.LoggerAdapter(
            logging.getLogger(f"citarion.bot.{runner.config.id}"),
            {"bot": runner.config.id, "code": runner.config.code},
        )

    @property
    def bot_id(self) -> str:
        return self._runner.config.id

    @property
    def code(self) -> str:
        return self._runner.config.code

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
        runner = self._runner
        runner.check_publish(topic)
        causation_id, correlation_id, metadata = stamp(causation_id, correlation_id, metadata)
        event = runner.bus.catalog.make(
            topic,
            payload,
            source=runner.config.code,
            priority=priority,
            causation_id=causation_id,
            correlation_id=correlation_id,
            metadata=metadata,
        )
        await runner.bus.publish(event)
        runner.published[event.entity] = runner.published.get(event.entity, 0) + 1
        return event

    async def request(self, topic: str, payload: Any, *, timeout: float = 5.0) -> Event:
        runner = self._runner
        runner.check_publish(topic)
        event = runner.bus.catalog.make(topic, payload, source=runner.config.code)
        return await runner.bus.request(event, timeout=timeout)

    async def reply(self, request: Event, topic: str, payload: Any) -> Event:
        runner = self._runner
        event = runner.bus.catalog.make(topic, payload, source=runner.config.code)
        await runner.bus.reply(request, event)
        return event

    def spawn(self, work: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run background work (a data feed) under supervision: if it raises, the bot restarts."""
        return self._runner.spawn(work, name)

    async def settle(self) -> None:
        """Deterministic mode: wait until everything published so far is handled everywhere (a
        replayed feed calls this between bars). Otherwise: let the other tasks run once."""
        bus = self._runner.bus
        if bus.deterministic:
            await bus.settle()
        else:
            await asyncio.sleep(0)


class BotRunner:
    """Creates, starts, feeds, restarts and stops one bot instance."""

    def __init__(
        self,
        config: BotConfig,
        bot_type: type[Bot],
        bus: EventBus,
        settings: HostSettings,
        on_state: Callable[[BotRunner, State, str | None], None],
    ) -> None:
        self.config = config
        self.bot_type = bot_type
        self.bus = bus
        self.settings = settings
        self.state: State = "created"
        self.bot: Bot | None = None
        self.restarts = 0
        self.handled = 0
        self.errors = 0
        self.refused = 0
        self.published: dict[str, int] = {}
        self.timings: HandlerTimings | None = None  # handler durations, when the host asks for them
        self.subscription: Subscription | None = None
        self.final_stats: dict[str, Any] = {}
        self._on_state = on_state
        self._ready = asyncio.Event()
        self._recent_failures: deque[float] = deque()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._restart_task: asyncio.Task[None] | None = None
        self.context = HostBotContext(self)
        self.set_publish(config.publish)

    def __repr__(self) -> str:
        return f"<BotRunner {self.config.id} {self.config.code} {self.state}>"

    def carry_over(self, previous: BotRunner) -> None:
        """Continue the counters of the runner this one replaces (a backend switch)."""
        self.handled, self.errors, self.refused = previous.handled, previous.errors, previous.refused
        self.restarts = previous.restarts
        self.published = dict(previous.published)

    # -- wiring -----------------------------------------------------------------------------------

    def set_publish(self, patterns: list[str]) -> None:
        """Replace the publish allow-list in place (a config-only change, no restart)."""
        self.guard = PublishGuard(self.config.id, patterns)

    def check_publish(self, topic: str) -> None:
        """Refuse (and count) a topic outside the declared publish patterns."""
        try:
            self.guard.check(topic)
        except PublishNotAllowedError:
            self.refused += 1
            raise

    async def wire(self, config: BotConfig) -> None:
        """Bring the bot's one subscription in line with ``config``.

        A change of patterns only is applied in place (``EventBus.repattern``: same inbox, nothing
        lost or doubled). A change of queue, durability or backlog bound needs a new subscription:
        the old one is drained and closed first, so no event is handled twice (a durable consumer
        resumes where the old one stopped; on a live subscription events published in between are
        missed, as for any resubscription).
        """
        old, self.config = self.config, config
        self.set_publish(config.publish)
        patterns = list(dict.fromkeys(config.subscribe))
        current = self.subscription
        if current is not None and not current.closed:
            if _delivery(old) == _delivery(config) and patterns:
                await self.bus.repattern(current, patterns)
                return
            self.subscription = None
            await current.unsubscribe(drain=True)
        if not patterns:
            return
        capabilities = self.bus.capabilities
        self.subscription = await self.bus.subscribe(
            patterns,
            self._handle,
            queue=config.queue,
            # ``durable`` means nothing without stored events (docs/configuration.md)
            durable=config.consumer if config.durable and capabilities.durable else None,
            # On a persistent bus a bot reads the store: stream order across every publisher. A queue
            # group's members would have to share a named consumer: without `durable` they share a
            # live (core) queue subscription instead.
            stored=capabilities.persistent and (config.durable or config.queue is None),
            name=config.id,
            max_pending=config.max_pending,
        )

    async def _handle(self, event: Event) -> None:
        if not self._ready.is_set():
            await self._ready.wait()
        bot = self.bot
        if bot is None or self.state != "running":
            return
        timings = self.timings
        started = time.perf_counter() if timings is not None else 0.0
        try:
            with handling(event):
                await bot.handle(event)
            self.handled += 1
        except Exception as exc:
            self._failed(event, exc)
        if timings is not None:
            timings.observe(time.perf_counter() - started)

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, wired: bool = False) -> None:
        """Subscribe the bot (unless ``wired`` already), create it, start it.

        A failing start schedules a restart. Events arriving before the bot runs wait in its
        subscriptions' backlogs.
        """
        self._set_state("starting")
        if not wired:
            await self.wire(self.config)
        try:
            await self._create_and_start()
        except Exception as exc:
            log.exception("bot failed to start", extra={"bot": self.config.id})
            self._schedule_restart(f"start failed: {type(exc).__name__}: {exc}")

    async def _create_and_start(self) -> None:
        params = self._params()
        self.bot = self.bot_type(self.context, params)
        await self.bot.start()
        self._set_state("running")
        self._ready.set()

    def _params(self) -> BaseModel:
        return self.bot_type.Params.model_validate(self.config.params)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop intake, let queued events be handled (``drain``), then stop the bot."""
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        running = self.state == "running"
        if not running:
            self._ready.set()  # handlers waiting for a restart return (they skip: not running)
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            await subscription.unsubscribe(drain=drain and running)
        self.final_stats = self.stats()  # after the drain, while the bot (and its books) still exist
        await self._stop_bot()
        if self.state != "failed":
            self._set_state("stopped")

    async def _stop_bot(self) -> None:
        self._ready.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        bot, self.bot = self.bot, None
        if bot is not None:
            try:
                async with asyncio.timeout(self.settings.drain_timeout_s):
                    await bot.stop()
            except Exception:
                log.exception("bot stop failed", extra={"bot": self.config.id})

    async def restart(self, reason: str) -> None:
        """Replace the bot instance (new code or params), keeping its subscriptions and backlog."""
        self._set_state("restarting", reason)
        await self._stop_bot()
        try:
            await self._create_and_start()
        except Exception as exc:
            self._schedule_restart(f"start failed: {type(exc).__name__}: {exc}")

    def spawn(self, work: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work, name=f"{self.config.id}:{name or 'task'}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("bot task failed", extra={"bot": self.config.id, "task": task.get_name()}, exc_info=exc)
        self._schedule_restart(f"task {task.get_name()} failed: {type(exc).__name__}: {exc}")

    # -- supervision ------------------------------------------------------------------------------

    def _failed(self, event: Event, exc: Exception) -> None:
        self.errors += 1
        reason = f"{type(exc).__name__}: {exc}"
        log.error("bot handler failed", extra={"bot": self.config.id, "event_id": event.id}, exc_info=exc)
        self._report("system.bot.error", "error", reason, {"eventId": event.id, "topic": event.topic})
        now = time.monotonic()
        window = self._recent_failures
        window.append(now)
        while window and now - window[0] > self.settings.crash_window_s:
            window.popleft()
        if len(window) >= self.settings.crash_threshold:
            window.clear()
            self._schedule_restart(f"{self.settings.crash_threshold} failures: last {reason}")

    def _schedule_restart(self, reason: str) -> None:
        if self._restart_task is not None or self.state in ("stopped", "failed"):
            return
        if self.restarts >= self.settings.max_restarts:
            self._give_up(reason)
            return
        delay = min(self.settings.restart_backoff_s * 2**self.restarts, self.settings.restart_backoff_max_s)
        self.restarts += 1
        self._ready.clear()
        self._set_state("restarting", f"{reason}; restart {self.restarts} in {delay:g}s")
        self._restart_task = asyncio.get_running_loop().create_task(self._restart_after(delay, reason))

    async def _restart_after(self, delay: float, reason: str) -> None:
        await asyncio.sleep(delay)
        await self._stop_bot()
        self._restart_task = None
        try:
            await self._create_and_start()
        except Exception as exc:
            log.exception("bot failed to restart", extra={"bot": self.config.id})
            self._schedule_restart(f"start failed: {type(exc).__name__}: {exc}")

    def _give_up(self, reason: str) -> None:
        self._set_state("failed", f"gave up after {self.restarts} restarts: {reason}")
        self._ready.set()  # let queued handlers return (they see state != running and skip)
        if self.subscription is not None:
            self.subscription.discard()

    def _set_state(self, state: State, reason: str | None = None) -> None:
        self.state = state
        self._on_state(self, state, reason)
        topic = _STATE_TOPICS.get(state)
        if topic is not None:
            self._report(topic, state, reason)

    def _report(
        self, topic: str, state: str, reason: str | None, metadata: dict[str, Any] | None = None
    ) -> None:
        if self.bus.closed:
            return
        try:
            event = self.bus.catalog.make(
                topic,
                BotLifecycle(
                    bot_id=self.config.id,
                    code=self.config.code,
                    state=state,
                    reason=reason,
                    restarts=self.restarts,
                ),
                source=HOST_SOURCE,
                priority="high",
                metadata=metadata,
            )
            self.bus._spawn_publish(event)
        except Exception:
            log.exception("could not report bot state", extra={"bot": self.config.id})

    def stats(self) -> dict[str, Any]:
        return {
            "id": self.config.id,
            "code": self.config.code,
            "state": self.state,
            "handled": self.handled,
            "errors": self.errors,
            "restarts": self.restarts,
            "refused": self.refused,
            "published": dict(self.published),
            **({"bot": self.bot.stats()} if self.bot is not None else {}),
        }


_STATE_TOPICS: dict[str, str] = {
    "running": "system.bot.started",
    "restarting": "system.bot.restarting",
    "stopped": "system.bot.stopped",
    "failed": "system.bot.failed",
}


def _delivery(config: BotConfig) -> tuple[str | None, bool, int | None]:
    """What a subscription is made with besides its patterns."""
    return config.queue, config.durable, config.max_pending
