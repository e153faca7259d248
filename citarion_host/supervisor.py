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

A bot that keeps state (``Bot.State``, ``docs/state.md``) is snapshotted after handled events
(:class:`~citarion_host.checkpoint.Checkpoints`), and a failure in its handler may have left that state
half-updated, so it is *rolled back*: the instance is replaced at once by one restored from the last
snapshot, the events handled since are handled again (their outputs not published twice), and the
failed event is tried once more, so its state is what it would have been without the failure. A
rollback is not a restart: no backoff, not counted in ``restarts``, so a bot that fails now and then
never runs out of ``max_restarts``. As for any bot, ``crash_threshold`` failures within
``crash_window_s`` restart it (with the backoff, counted), so a bot failing on everything still ends
``failed``. A fresh subscription resumes right after the position the state covers (on JetStream,
rewinding the durable consumer when it moved past it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Literal

from pydantic import BaseModel

from .bot import Bot
from .bounded import Overran, bot_task, limited, within
from .bus import EventBus, PositionFinder, Subscription, delivery_position, position_finder
from .checkpoint import Checkpoints
from .context import GuardedContext
from .errors import BotExit, HandledFailure, SubscriptionRefusedError
from .events import Event
from .lineage import CURRENT_EVENT, handling
from .payloads import BotLifecycle
from .settings import BotConfig, HostSettings
from .tasks import Tasks
from .timings import HandlerTimings

__all__ = ["BotRunner", "BusOutlet", "HostBotContext"]

log = logging.getLogger("citarion_host.supervisor")

#: How many of a bot's ``settle(lag=True)`` calls back it waits for: a replayed feed, which calls it
#: before each new bar, keeps this many bars published ahead of the one being handled. Two, not one:
#: with one, a bar whose cascade is a single hop left the next bar's events still on their way to
#: the store when their turn came (on the JetStream demo, a wait in six). The order of handling is
#: the same for any value (an event from outside is handled after the cascades before it).
LAG_SETTLES = 2
State = Literal["created", "standby", "starting", "running", "restarting", "stopped", "failed"]
HOST_SOURCE = "HOST"


class BusOutlet:
    """Where a hosted bot's context sends: the runner's bus, counted, and quiet during a replay.

    The checks (declared patterns, lineage, payloads) are the shared context's
    (:class:`~citarion_host.context.GuardedContext`); this is only the host's side of it."""

    __slots__ = ("_marks", "_now", "_runner")

    def __init__(self, runner: BotRunner) -> None:
        self._runner = runner
        bus = runner.bus
        #: The bus's :meth:`~citarion_host.bus.EventBus.post_now` when the bot sends through the bus
        #: itself and its backend has one (memory): a post that needs no waiting is made at once.
        self._now: Callable[[Event], bool] | None = (
            bus.post_now if runner.lane is bus and type(bus).post_now is not EventBus.post_now else None
        )
        #: Where the bot's last :data:`LAG_SETTLES` ``settle(lag=True)`` calls stood in the sequencer's
        #: external queue, oldest first.
        self._marks: deque[int] = deque(maxlen=LAG_SETTLES)

    def post(self, event: Event) -> Awaitable[None] | None:
        """Post ``event`` in order: None when it is posted already, else the coroutine posting it (the
        context awaits it). Memory posts at once, so a bot's publish has no coroutine of the host's."""
        runner = self._runner
        if runner.quiet or runner.suppress:
            # Handling again an event whose outputs went out before (a replay after a crash or a host
            # restart): the bot rebuilds its state, the world does not hear it twice.
            runner.suppress = max(runner.suppress - 1, 0)
            runner.suppressed += 1
            return None
        now = self._now
        if now is None or not now(event):
            return self._post(event)
        self._count(event)
        return None

    async def _post(self, event: Event) -> None:
        await self._runner.lane.post(event)  # in order; on JetStream the store's ack comes in the background
        self._count(event)

    def _count(self, event: Event) -> None:
        runner = self._runner
        runner.attempt_published += 1
        runner.published[event.entity] = runner.published.get(event.entity, 0) + 1

    async def request(self, event: Event, timeout: float) -> Event:
        return await self._runner.lane.request(event, timeout=timeout)

    async def reply(self, request: Event, response: Event) -> None:
        await self._runner.lane.reply(request, response)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Background work (a data feed) under supervision: if it raises, the bot restarts."""
        return bot_task(work, lambda coroutine: self._runner.tasks.spawn(coroutine, name))

    async def settle(self, lag: bool = False) -> None:
        """Deterministic mode: wait until everything published so far is handled everywhere; with
        ``lag``, everything published before the bot's ``settle(lag=True)`` :data:`LAG_SETTLES` calls
        back (a replayed feed calls that between bars: that many bars stay queued ahead, see
        ``Sequencer.reached``). Otherwise:
        let the other tasks run once."""
        bus = self._runner.bus
        sequencer = bus.sequencer
        if sequencer is None:
            await asyncio.sleep(0)
        elif lag:
            marks = self._marks
            mark = marks[0] if len(marks) == LAG_SETTLES else None
            marks.append(sequencer.external_mark())
            if mark is not None:
                await sequencer.reached(mark)
        else:
            await bus.settle()

    def note_refused(self, topic: str) -> None:
        self._runner.refused += 1


#: The context the host gives a bot: the shared one (``context``), sending through a :class:`BusOutlet`.
HostBotContext = GuardedContext


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
        #: What the bot sends and subscribes through: the bus, or its own connection (per-bot isolation).
        self.lane = bus.for_bot(config.id)
        self.settings = settings
        self.state: State = "created"
        self.bot: Bot | None = None
        self.restarts = 0
        #: Stateful bots: handler failures undone by a rollback to the last snapshot (not restarts).
        self.rollbacks = 0
        self.handled = 0
        self.errors = 0
        self.refused = 0
        self.published: dict[str, int] = {}
        self.timings: HandlerTimings | None = None  # handler durations, when the host asks for them
        self.subscription: Subscription | None = None
        #: A replicated bot without state: the queue group its instances in other processes share
        #: (set by the host, ``replicas.py``); None: the config's ``queue`` alone.
        self.group: str | None = None
        self.final_stats: dict[str, Any] = {}
        #: Set by the host for a bot that keeps state (docs/state.md); None: no snapshots.
        self.checkpoints: Checkpoints | None = None
        #: Outputs of the current handling are not published (a replay); ``suppress``: the next n are not
        #: (a retry after a crash: the failed attempt published them already).
        self.quiet = False
        self.suppress = 0
        self.suppressed = 0
        self.attempt_published = 0
        #: Deliveries have a stream position (a persistent bus): what a stateful bot's snapshot covers.
        self._positions = bus.capabilities.persistent
        self._handling = 0
        self._handled_all: asyncio.Event | None = None  # made by whoever waits for the handlers
        self._on_state = on_state
        self._ready = _Gate()
        self._recent_failures: deque[float] = deque()
        #: The bot's background work (``ctx.spawn``): a failure restarts the bot.
        self.tasks = Tasks(config.id, self._task_failed)
        self._restart_task: asyncio.Task[None] | None = None
        self._rollback: asyncio.Task[None] | None = None
        self.context = GuardedContext(config.id, config.code, config.publish, bus.catalog, BusOutlet(self))

    def __repr__(self) -> str:
        return f"<BotRunner {self.config.id} {self.config.code} {self.state}>"

    def carry_over(self, previous: BotRunner) -> None:
        """Continue the counters of the runner this one replaces (a backend switch)."""
        self.handled, self.errors, self.refused = previous.handled, previous.errors, previous.refused
        self.restarts, self.rollbacks = previous.restarts, previous.rollbacks
        self.published = dict(previous.published)

    # -- wiring -----------------------------------------------------------------------------------

    async def wire(self, config: BotConfig) -> bool:
        """Bring the bot's one subscription in line with ``config``.

        A change of patterns only is applied in place (``EventBus.repattern``: same inbox, nothing
        lost or doubled). A change of queue, durability or backlog bound needs a new subscription:
        the old one is drained and closed first, so no event is handled twice (a durable consumer
        resumes where the old one stopped; on a live subscription events published in between are
        missed, as for any resubscription).

        A subscription the server refuses (per-bot isolation: outside the bot's NATS grant) fails
        this bot only (:meth:`_wiring_refused`) and returns False (True: wired).
        """
        try:
            await self._wire(config)
        except SubscriptionRefusedError as exc:
            await self._wiring_refused(exc)
            return False
        return True

    async def _wiring_refused(self, exc: SubscriptionRefusedError) -> None:
        """The server refused the bot's subscription: the bot is marked failed at once, reported on
        ``system.bot.failed`` with the refusal as the reason (the bus counted the refusal). No restart:
        a permission refusal does not heal by retrying (the fix is the grant or the patterns, then a
        reload or ``start_bot``). Nothing of its subscription is left, so the deterministic mode never
        waits for deliveries it will not get; a running instance (a reload's rewiring) is stopped."""
        log.error(
            "bot's subscription refused by the server", extra={"bot": self.config.id, "reason": str(exc)}
        )
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        subscription, self.subscription = self.subscription, None
        self._set_state("failed", str(exc))
        if subscription is not None:
            await subscription.unsubscribe(drain=False)
        await self._stop_bot()
        self._ready.set()  # handlers still waiting return (they see state != running and skip)

    async def _wire(self, config: BotConfig) -> None:
        old, self.config = self.config, config
        self.context.set_publish(config.publish)
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
        durable = config.consumer if config.durable and capabilities.durable else None
        # On a persistent bus a bot reads the store: stream order across every publisher. A queue
        # group's members would have to share a named consumer: without `durable` they share a
        # live (core) queue subscription instead.
        stored = capabilities.persistent and (config.durable or config.queue is None)
        start_sequence = await self._resume_point(durable, stored) if stored else None
        self.subscription = await self.lane.subscribe(
            patterns,
            self._handle,
            queue=config.queue or self.group,
            durable=durable,  # ``durable`` means nothing without stored events (docs/configuration.md)
            stored=stored,
            name=config.id,
            max_pending=config.max_pending,
            start_sequence=start_sequence,
        )

    async def _resume_point(self, durable: str | None, stored: bool) -> int | None:
        """Where a new stream-backed subscription of a stateful bot starts: right after the stream
        sequence its state covers (None: where it would anyway). A durable consumer that moved past
        it, or stopped before it, is rewound (``EventBus.rewind_durable``); the events an earlier run
        had already handled are handled again quietly (their outputs are in the stream already)."""
        checkpoints = self.checkpoints
        after = checkpoints.resume_after() if checkpoints is not None else None
        if checkpoints is None or after is None:
            return None
        if durable is None:
            start: int | None = after + 1
        elif self.config.queue is not None:
            log.warning(
                "a bot in a queue group resumes where the group's consumer stands, not after its state",
                extra={"bot": self.config.id, "queue": self.config.queue, "state_seq": after},
            )
            return None
        else:
            rewind = await self.bus.rewind_durable(durable, after)
            checkpoints.replay_until = max(checkpoints.replay_until, rewind.acked)
            start = None if rewind.kept else after + 1
            if rewind.first_available is not None:
                log.error(
                    "events after the bot's state are gone from the stream (its limits): they are skipped",
                    extra={"bot": self.config.id, "after": after, "first": rewind.first_available},
                )
        log.info(
            "bot resumes after its state's stream position",
            extra={"bot": self.config.id, "after": after, "replay_until": checkpoints.replay_until},
        )
        return start

    async def _handle(self, event: Event) -> None:
        """Handle ``event`` on the bot: lineage set for the handler, a failure reported (a stateful
        bot's rolled back, :meth:`_crashed`), the duration observed when the host asks for timings.

        Every delivery's path: one coroutine, the lineage variable set inline and a stateful bot's
        bookkeeping inline (no second coroutine per event).

        The lineage variable is set and not reset: every runner sets it before its bot's handler runs,
        so no handler reads what another one set, and an event handed to several bots in a row (the
        deterministic mode runs them one after the other in one task) is set once, not set and reset
        for each (that pair cost as much as the rest of this path). What a handler spawns copies the
        context with the variable set, as before."""
        if not self._ready.open:
            await self._ready.wait()
        bot = self.bot
        if bot is None or self.state != "running":
            return
        timings = self.timings
        started = time.perf_counter() if timings is not None else 0.0
        if CURRENT_EVENT.get() is not event:
            CURRENT_EVENT.set(event)
        checkpoints = self.checkpoints
        try:
            if checkpoints is not None:
                # On a stream the delivery's position is what a snapshot covers: what finds it is kept,
                # and called only when a snapshot needs it (parsing it costs more than the rest).
                where = position_finder() if self._positions else None
                self._handling += 1
                try:
                    self.attempt_published = 0
                    if checkpoints.replay_until:
                        self.quiet = self._replaying(checkpoints)
                    try:
                        await bot.handle(event)
                    except (Exception, SystemExit) as exc:  # sys.exit() in a bot: that bot's failure
                        self.quiet = False
                        await self._crashed(event, BotExit.of(exc), where, checkpoints)
                        return
                    finally:
                        self.quiet = False
                    self.handled += 1
                    journal = checkpoints.journal  # Checkpoints.applied, inline
                    journal.append(event)
                    if where is not None:
                        checkpoints.where = where
                    if len(journal) >= checkpoints.check_at:
                        checkpoints.cadence(bot)
                finally:
                    self._handling -= 1
                    if not self._handling and self._handled_all is not None:
                        self._handled_all.set()
                return
            try:
                await bot.handle(event)
                self.handled += 1
            except (Exception, SystemExit) as caught:  # sys.exit() in a bot: that bot's failure
                failure = BotExit.of(caught)
                self._failed(event, failure)
                # On to the bus, already reported: a durable subscription then follows its retry
                # policy (nak with backoff, max_deliver, dead letter) instead of acking a failure.
                raise HandledFailure(f"bot {self.config.id!r} failed on {event.id}: {failure!r}") from failure
        finally:
            if timings is not None:
                timings.observe(time.perf_counter() - started)

    @staticmethod
    def _replaying(checkpoints: Checkpoints) -> bool:
        """Is the event being handled one an earlier run handled already (a rewound consumer: its
        outputs are in the stream)? Once past those, the position is not looked at again."""
        seq = delivery_position()
        if seq is None:
            return False
        if seq <= checkpoints.replay_until:
            return True
        checkpoints.replay_until = 0
        return False

    async def _crashed(
        self, event: Event, exc: Exception, where: PositionFinder | None, checkpoints: Checkpoints
    ) -> None:
        """A stateful bot's handler failed on ``event`` (see the module docstring).

        The instance is replaced by one restored from the last snapshot and caught up (a rollback; a
        restart with backoff when it is the ``crash_threshold``-th failure within ``crash_window_s``);
        the failed event is tried once more on it, without publishing again what the failed attempt
        published. If that fails too, the state is rolled back once more (it never holds half an event)
        and the event goes to the bus's failure policy.
        """
        for attempt in (1, 2):
            published = self.attempt_published
            reason = f"handler failed on {event.id}: {self._report_failure(event, exc)}"
            if self._count_failure():
                self._schedule_restart(f"{self.settings.crash_threshold} failures: last {reason}")
            else:
                self._roll_back(reason)
            await self._ready.wait()  # the new instance, restored and caught up (or given up)
            bot = self.bot
            if attempt == 2 or bot is None or self.state != "running":
                break
            self.quiet = bool(checkpoints.replay_until) and self._replaying(checkpoints)
            self.suppress, self.attempt_published = published, 0
            try:
                with handling(event):
                    await bot.handle(event)
            except (Exception, SystemExit) as again:
                exc = BotExit.of(again)
                continue
            finally:
                self.quiet, self.suppress = False, 0
            self.handled += 1
            checkpoints.applied(bot, event, where)
            return
        raise HandledFailure(f"bot {self.config.id!r} failed on {event.id}: {exc!r}") from exc

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self, *, wired: bool = False) -> None:
        """Subscribe the bot (unless ``wired`` already), create it, start it.

        A failing start schedules a restart; a bot whose subscription was refused is not started (it
        stays failed). Events arriving before the bot runs wait in its subscriptions' backlogs.
        """
        if self.state == "failed":  # its wiring was refused (:meth:`_wiring_refused`)
            return
        self._set_state("starting")
        if not wired and not await self.wire(self.config):
            return
        try:
            await self._create_and_start()
        except Exception as exc:
            log.exception("bot failed to start", extra={"bot": self.config.id})
            self._start_failed(exc)

    async def _create_and_start(self) -> None:
        params = self._params()
        bot = self.bot = self.bot_type(self.context, params)
        checkpoints = self.checkpoints
        if checkpoints is not None:
            checkpoints.restore(bot)
        await limited(bot.start(), self.settings.start_timeout_s, "start()", "[host] start_timeout_s")
        if checkpoints is not None:
            await self._replay(bot, checkpoints)
            checkpoints.take(bot)  # the restored state, checked encodable now rather than N events later
        if self.state != "running":  # a rollback stays "running": no lifecycle event for it
            self._set_state("running")
        self._ready.set()

    async def _replay(self, bot: Bot, checkpoints: Checkpoints) -> None:
        """Handle again the events applied since the snapshot the instance was restored from (a crash
        lost them with the old instance), publishing nothing: their outputs went out the first time."""
        journal = list(checkpoints.journal)
        self.quiet = True
        try:
            for event in journal:
                with handling(event):
                    await bot.handle(event)
                checkpoints.replayed += 1
        finally:
            self.quiet = False

    async def _idle_handlers(self) -> None:
        """Return once no event is being handled (a restart snapshots the state between two events)."""
        while self._handling:
            waiter = self._handled_all = self._handled_all or asyncio.Event()
            waiter.clear()
            await waiter.wait()

    def snapshot_now(self) -> None:
        """Snapshot the running bot if it keeps state and is between two events (stop, restart, timer)."""
        if self.checkpoints is not None and self.bot is not None and not self._handling:
            self.checkpoints.take(self.bot)

    def snapshot_if_due(self) -> None:
        """The ``every_s`` timer: snapshot an idle running bot with events applied since its last
        snapshot; a bot without a subscription (a feed) has no events, so it is snapshotted each time."""
        checkpoints = self.checkpoints
        if checkpoints is None or self.state != "running" or self._handling or not self._ready.is_set():
            return
        if checkpoints.due() or (self.subscription is None and not self.config.subscribe):
            self.snapshot_now()

    def _params(self) -> BaseModel:
        return self.bot_type.Params.model_validate(self.config.params)

    async def stop(self, *, drain: bool = True) -> None:
        """Stop intake, let queued events be handled (``drain``), then stop the bot."""
        if self._rollback is not None:  # let it finish: its instance is the state to snapshot
            await asyncio.wait({self._rollback})
        if self._restart_task is not None:
            self._restart_task.cancel()
            self._restart_task = None
        running = self.state == "running"
        if not running:
            self._ready.set()  # handlers waiting for a restart return (they skip: not running)
        subscription, self.subscription = self.subscription, None
        if subscription is not None:
            await self._unsubscribe(subscription, drain=drain and running)
        snapshot = running and drain and self.state == "running"
        if snapshot:
            await self._idle_handlers()
        self.final_stats = self.stats()  # after the drain, while the bot (and its books) still exist
        # The state as of the last event handled (a feed's: once its tasks stopped): what the next
        # start restores.
        await self._stop_bot(snapshot=snapshot)
        self.final_stats["errors"] = self.errors  # a stop() that failed counts too
        if self.checkpoints is not None:  # with the snapshot taken at the stop
            self.final_stats["checkpoints"] = {**self.checkpoints.stats(), "suppressed": self.suppressed}
        if self.state != "failed":
            self._set_state("stopped")

    async def _unsubscribe(self, subscription: Subscription, *, drain: bool) -> None:
        """Stop the subscription, its backlog handled first (``drain``) within ``drain_timeout_s``: a
        handler that does not return (``handlerwatch.py``) would hold the host's stop forever, so past
        it the stop is reported as overrun and the backlog discarded (counted in ``dropped``; on
        JetStream the unacknowledged events come back to the next run)."""
        if not drain:
            await subscription.unsubscribe(drain=False)
            return
        timeout = self.settings.drain_timeout_s
        try:
            await within(
                subscription.unsubscribe(drain=True),
                timeout,
                "the drain of its backlog",
                "[host] drain_timeout_s",
            )
        except Overran as exc:
            self._stop_overran(f"{exc}: a handler that does not return; its backlog is discarded")
            subscription.discard()

    async def _stop_bot(self, *, snapshot: bool = False) -> None:
        self._ready.clear()
        # bounded: a task that swallows its cancellation is left behind, not awaited
        stuck = await self.tasks.cancel_all(self.settings.stop_timeout_s)
        if stuck:
            self._stop_overran(
                f"{len(stuck)} spawned tasks did not end within "
                f"{self.settings.stop_timeout_s:g}s ([host] stop_timeout_s)"
            )
        if snapshot:
            self.snapshot_now()
        bot, self.bot = self.bot, None
        if bot is not None:
            try:
                await within(bot.stop(), self.settings.stop_timeout_s, "stop()", "[host] stop_timeout_s")
            except Overran as exc:
                self._stop_overran(str(exc))
            except Exception as exc:  # as a failed handler: counted, reported, the traceback logged
                self.errors += 1
                log.exception("bot stop failed", extra={"bot": self.config.id})
                self._report("system.bot.error", "error", f"stop() failed: {type(exc).__name__}: {exc}")

    def stuck(self, reason: str) -> None:
        """The host's handler watch found this bot on one event for too long (``handlerwatch.py``):
        logged and reported on ``system.bot.stuck``. (In deterministic mode the report is handled
        once the sequencer moves again; the log line and the host's readiness say it at once.)"""
        log.error("bot handler stuck", extra={"bot": self.config.id, "reason": reason})
        self._report("system.bot.stuck", "stuck", reason)

    def unstuck(self, reason: str) -> None:
        """The handler :meth:`stuck` named returned at last."""
        log.warning("bot handler moving again", extra={"bot": self.config.id, "reason": reason})
        self._report("system.bot.unstuck", "running", reason)

    def held_loop(self, reason: str) -> None:
        """The host's loop watch found this bot's code holding the event loop (``loopwatch.py``): a
        fault of the bot's, counted in its errors and reported on ``system.bot.error`` once the loop
        runs again (the watch logged it from its thread meanwhile)."""
        self.errors += 1
        self._report("system.bot.error", "error", reason)

    def _stop_overran(self, reason: str) -> None:
        """A bot's stop overran ``stop_timeout_s``: logged and reported on ``system.bot.error``; the
        host goes on stopping (what was left running is abandoned)."""
        log.error("bot stop overran its timeout", extra={"bot": self.config.id, "reason": reason})
        self._report("system.bot.error", "error", reason)

    async def restart(
        self, reason: str, *, reset_state: bool = False, retype: Callable[[], None] | None = None
    ) -> None:
        """Replace the bot instance (new code or params), keeping its subscriptions and backlog.

        A stateful bot is snapshotted between two events first, and the new instance restores it
        (``reset_state``: it starts fresh instead, and its stored state is dropped). ``retype``
        switches to new code after that snapshot, before the new instance is made."""
        was_running = self.state == "running"
        self._ready.clear()  # events wait from here on; the one being handled finishes first
        await self._idle_handlers()
        self._set_state("restarting", reason)
        await self._stop_bot(snapshot=was_running and not reset_state)
        if retype is not None:
            retype()
        if reset_state and self.checkpoints is not None:
            self.checkpoints.reset()
            await self.checkpoints.keeper.forget(self.config.id)
        try:
            await self._create_and_start()
        except Exception as exc:
            self._start_failed(exc)

    def _task_failed(self, task: asyncio.Task[Any], exc: BaseException) -> None:
        """A background task of the bot raised (already logged by :class:`Tasks`): restart the bot."""
        self._schedule_restart(f"task {task.get_name()} failed: {type(exc).__name__}: {exc}")

    # -- supervision ------------------------------------------------------------------------------

    def _report_failure(self, event: Event, exc: Exception) -> str:
        """Count, log and publish (``system.bot.error``) a handler failure; returns its reason."""
        self.errors += 1
        reason = f"{type(exc).__name__}: {exc}"
        log.error("bot handler failed", extra={"bot": self.config.id, "event_id": event.id}, exc_info=exc)
        self._report("system.bot.error", "error", reason, {"eventId": event.id, "topic": event.topic})
        return reason

    def _failed(self, event: Event, exc: Exception) -> None:
        reason = self._report_failure(event, exc)
        if self._count_failure():
            self._schedule_restart(f"{self.settings.crash_threshold} failures: last {reason}")

    def _count_failure(self) -> bool:
        """One more handler failure: True when it is the ``crash_threshold``-th within ``crash_window_s``
        (the count starts again after that)."""
        now = time.monotonic()
        window = self._recent_failures
        window.append(now)
        while window and now - window[0] > self.settings.crash_window_s:
            window.popleft()
        if len(window) >= self.settings.crash_threshold:
            window.clear()
            return True
        return False

    def _roll_back(self, reason: str) -> None:
        """Replace a stateful bot's instance at once by one restored from its last snapshot and caught
        up with the journal (a failed handler may have left its state half-updated). Not a restart: no
        backoff, no lifecycle event, not counted in ``restarts``; counted in ``rollbacks``."""
        if self._rollback is not None or self._restart_task is not None or self.state != "running":
            return
        self._ready.clear()
        self.rollbacks += 1
        journal = len(self.checkpoints.journal) if self.checkpoints is not None else 0
        log.warning(
            "bot state rolled back to its last snapshot",
            extra={"bot": self.config.id, "reason": reason, "replayed": journal, "rollbacks": self.rollbacks},
        )
        self._rollback = asyncio.get_running_loop().create_task(self._rolled_back())

    async def _rolled_back(self) -> None:
        try:
            await self._stop_bot()
            await self._create_and_start()
        except Exception as exc:
            log.exception("bot failed to start after a rollback", extra={"bot": self.config.id})
            self._rollback = None
            self._start_failed(exc)
        finally:
            self._rollback = None

    def _start_failed(self, exc: Exception) -> None:
        """A start raised: restart with backoff; a start that overran ``start_timeout_s`` is marked
        failed at once (one that hangs would hang every retry too, holding the host each time)."""
        reason = f"start failed: {type(exc).__name__}: {exc}"
        if isinstance(exc, Overran):
            self._give_up(reason)
        else:
            self._schedule_restart(reason)

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
            self._start_failed(exc)

    def _give_up(self, reason: str) -> None:
        self._set_state("failed", f"gave up after {self.restarts} restarts: {reason}")
        self._ready.set()  # let queued handlers return (they see state != running and skip)
        if self.subscription is not None:
            self.subscription.discard()

    def stand_by(self, reason: str) -> None:
        """A replicated bot's instance waiting for its lease (``replicas.py``): reported on
        ``system.bot.standby``; it has no subscription and handles nothing until it is started."""
        self._set_state("standby", reason)

    def hold(self) -> None:
        """Begin no further event (a replica fenced, ``replicas.py``): deliveries wait, unsettled, until
        :meth:`stop` gives them back to the bus; the one being handled finishes or is cancelled there."""
        self._ready.clear()

    def report_takeover(self, reason: str) -> None:
        """This standby won its lease and starts (``system.bot.takeover``, then ``started``)."""
        self._report("system.bot.takeover", "takeover", reason)

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
            "rollbacks": self.rollbacks,
            "refused": self.refused,
            "published": dict(self.published),
            **({"bot": self.bot.stats()} if self.bot is not None else {}),
            # "state" is the lifecycle state above
            **(
                {"checkpoints": {**self.checkpoints.stats(), "suppressed": self.suppressed}}
                if self.checkpoints
                else {}
            ),
        }


class _Gate(asyncio.Event):
    """An :class:`asyncio.Event` whose state is also a plain attribute (``open``), read on every
    delivery's path: ``is_set()`` is a method call there."""

    open = False

    def set(self) -> None:
        self.open = True
        super().set()

    def clear(self) -> None:
        self.open = False
        super().clear()


_STATE_TOPICS: dict[str, str] = {
    "standby": "system.bot.standby",
    "running": "system.bot.started",
    "restarting": "system.bot.restarting",
    "stopped": "system.bot.stopped",
    "failed": "system.bot.failed",
}


def _delivery(config: BotConfig) -> tuple[str | None, bool, int | None]:
    """What a subscription is made with besides its patterns."""
    return config.queue, config.durable, config.max_pending
