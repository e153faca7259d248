"""Deterministic mode: every event handled everywhere, one handler at a time, in a fixed order.

Why: with concurrent delivery, the order in which two bots' reactions to the same event reach a third
bot depends on scheduling (on NATS, on which JetStream consumer the server served first), so a paper
run's figures could change from run to run and between backends. The sequencer makes the order a
function of the program alone. Each event is handed to its subscribers in their creation order, each
handler finishing before the next starts, and events are taken in this order:

1. events published by the handlers the sequencer runs (*internal*: the consequences of what is being
   handled), in the order they were published;
2. only when there are none, the next event published from outside them (*external*: a data feed, the
   host's own reports, a test), in the order those were published.

So an external event's whole cascade is handled before the next external event, whenever the feed
happened to publish it (on NATS a feed's publish waits for the store's ack, so it interleaves with
the handlers in time, never in order). The transport only has to deliver; when each delivery arrives
does not matter.

How it knows an event is complete: the bus announces each event when it is published with the local
subscriptions that will receive it (:meth:`Sequencer.expect`), and each arrival is reported
(:meth:`Sequencer.arrived`, from ``Subscription.deliver``). On the memory bus both happen in the same
call; on NATS the arrival is the server's proof of delivery (a core message, or a JetStream consumer's
delivery). An event is handled once every expected subscriber has it. An event this bus did not publish
(another process, a redelivery) is sequenced when it first arrives, after what is already waiting.

A subscription that only reads (:meth:`Sequencer.observe`: the host's run monitor and dashboard,
which count, record and publish nothing) sees every event in this order too, each once its own
delivery is in, but nobody waits for its deliveries: its share of each event goes to a queue of its
own (:meth:`Sequencer._catch_up`) when its delivery is not in yet or it is behind, so an event only
it takes is never a wait for the bots (on JetStream a store round trip each).

What it cannot do: make another process's publishes deterministic, or know which member of a NATS
queue group the server picks (queue members are never waited for, only handled on arrival). A delivery
that never comes (a server that lost it) would hold everything: after ``stall_timeout`` the sequencer
goes on without it, counts it in ``stalls`` and calls ``on_stall`` (the bus reports it on
``system.bus.stalled``) — a safety valve, never how correct runs are ordered.

Backpressure: an external publisher waits (:meth:`Sequencer.admit`) while ``external_limit`` external
events wait to be handled. Beyond keeping memory bounded, this matters on JetStream: a consumer stops
pushing at ``max_ack_pending`` unacknowledged events, and events are acknowledged when handled, so a
feed far ahead of the handlers could starve the delivery the sequencer waits for.

Requests (events with ``metadata.replyTo``) bypass the sequencer: their requester is waiting inside a
handler the sequencer runs, so queueing them would deadlock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from ..events import Event
from .position import reset_delivery_position, set_delivery_position

if TYPE_CHECKING:
    from .subscription import Subscription

__all__ = ["Sequencer"]

log = logging.getLogger("citarion_host.bus.sequencer")

#: Handled events between two turns given to the rest of the event loop. Handlers that never wait
#: (most of them) would otherwise keep the loop for a whole cascade: a loop between bots (a bot that
#: receives what it publishes) held it for good, and the host ignored SIGINT and SIGTERM.
YIELD_EVERY = 1024

#: One external event's cascade this long (internal events handled in a row) is said once: a loop
#: between bots, most likely (the demo's are a few dozen events at most).
LONG_CASCADE = 100_000

#: The sequencer whose handler is running in this context (its publishes are internal).
_running: contextvars.ContextVar[Sequencer | None] = contextvars.ContextVar("sequencer", default=None)


class _Entry:
    """An event announced (:meth:`Sequencer.expect`) or arrived (:meth:`Sequencer.arrived`): what it
    waits for, and who holds it with which receipt."""

    __slots__ = ("arrived", "event", "together", "waiting")

    def __init__(
        self, event: Event, waiting: set[Subscription], arrived: list[tuple[Subscription, Any]]
    ) -> None:
        self.event = event
        self.waiting = waiting  # expected subscribers whose delivery has not arrived yet
        self.arrived = arrived  # (subscriber, receipt) holding the event, run in creation order
        #: Every arrival came at once with one receipt, in creation order (:meth:`Sequencer.arrived_all`):
        #: nothing to sort, and the delivery's position is set once for all of them.
        self.together = False


#: An event the memory bus pushed (:meth:`Sequencer.push`), with its subscribers in creation order: a
#: plain tuple, never in ``_by_id``, never waiting, no (subscriber, receipt) pairs: the path of every
#: event on memory, where an :class:`_Entry` and its set and list cost more than the rest of the push.
_Pushed = tuple[Event, Sequence["Subscription"]]


class Sequencer:
    """Runs a bus's handlers one at a time, in publish order (see the module docstring)."""

    def __init__(
        self,
        *,
        stall_timeout: float = 30.0,
        on_stall: Callable[[Event, list[Subscription]], None] | None = None,
        external_limit: int = 1000,
    ) -> None:
        self.stall_timeout = stall_timeout
        self.external_limit = external_limit
        self._space = asyncio.Event()
        self._space_wanted = False  # an external publisher waits in :meth:`admit`
        self.on_stall = on_stall
        self._internal: deque[_Entry | _Pushed] = deque()
        self._external: deque[_Entry | _Pushed] = deque()
        self._head: _Entry | _Pushed | None = None  # the entry being waited for or handled
        self._by_id: dict[str, _Entry] = {}
        self._progress = asyncio.Event()  # set when the head may have become complete
        self._deadline: float | None = None  # when the wait under way stalls (:meth:`_wait_for`)
        self._watchdog: asyncio.TimerHandle | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._holds = 0  # :meth:`hold`
        self._released = asyncio.Event()
        self._released.set()
        self.handled = 0
        #: Internal events handled since the last external one (its cascade so far), that external
        #: event, and how many cascades reached :data:`LONG_CASCADE` (each said once).
        self._cascade = 0
        self._origin: _Entry | _Pushed | None = None
        self.long_cascades = 0
        #: Events whose deliveries had not all arrived when their turn came (on JetStream: each a wait
        #: for the store, a round trip the host spends idle; on memory never).
        self.waits = 0
        self.stalls = 0
        #: Deliveries that came again while the event still waited to be handled (kept once).
        self.redelivered = 0
        # External events queued so far, and taken from the queue so far (:meth:`external_mark`):
        # external events are taken in the order they were queued, so the n-th is taken once
        # ``_external_out > n``, and then everything queued before it has been handled.
        self._external_in = 0
        self._external_out = 0
        self._pacers: list[tuple[int, asyncio.Future[None]]] = []  # :meth:`reached` waiting
        #: Subscriptions that only read (:meth:`observe`), and the events they still have to see, in
        #: order (each entry holding only their arrivals, the others' handled already).
        self._observers: set[Subscription] = set()
        self._observed: deque[_Entry] = deque()
        self._observing: _Entry | None = None  # the first of them still waiting, since when
        self._observing_since = 0.0
        self._for_observers = False  # the wait under way is only theirs: anything queued ends it

    @property
    def pending(self) -> int:
        """Events announced or arrived and not yet handled everywhere."""
        head = self._head is not None and not self._for_observers  # else it is the observers' first
        return len(self._internal) + len(self._external) + head + len(self._observed)

    # -- what the bus reports ------------------------------------------------------------------------

    def crowded(self) -> bool:
        """Would :meth:`admit` wait? Checked first by a publisher, so that the common case (room)
        costs no coroutine."""
        return len(self._external) >= self.external_limit and _running.get() is not self

    async def admit(self) -> None:
        """Wait, if the caller is an external publisher, until fewer than ``external_limit`` events from
        outside the handlers wait to be handled."""
        while len(self._external) >= self.external_limit and _running.get() is not self:
            self._space.clear()
            self._space_wanted = True
            await self._space.wait()

    def expect(self, event: Event, subscribers: Iterable[Subscription]) -> None:
        """``event`` is being published; these local subscribers will receive it."""
        if "replyTo" in event.metadata:  # a request: delivered at once, never sequenced
            return
        waiting = {s for s in subscribers if s.queue is None and not s._closed}
        if waiting:  # nobody local to wait for: a queue member's delivery is sequenced on arrival
            entry = _Entry(event, waiting, [])
            self._by_id[event.id] = entry
            self._append(entry)

    def claim(self, event: Event, subscribers: Iterable[Subscription]) -> None:
        """``event`` was published by another process in this place of the order (a turn or a start
        another host ran for this one: ``bus/nats/relay.py``): announce it like :meth:`expect`, also
        when its deliveries arrived before we knew (then it is moved from where its first arrival put
        it to this place, still waiting for the subscribers it has not reached yet)."""
        entry = self._by_id.get(event.id)
        if entry is None or entry is self._head:
            self.expect(event, subscribers)
            return
        reached = {s for s, _ in entry.arrived}
        entry.waiting = {s for s in subscribers if s.queue is None and not s.closed and s not in reached}
        if _running.get() is self:
            try:
                self._external.remove(entry)
            except ValueError:  # already among the internal ones: it keeps its place
                return
            self._internal.append(entry)
            self._external_out += 1  # out of the external queue: the ones queued after it move up
            if self._pacers:
                self._wake_pacers()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Start no new event meanwhile (the one being handled finishes): another host is running a
        bot's start or stop for this one, and what that publishes must be announced (:meth:`claim`)
        before any of it can be handled as an unannounced arrival."""
        self._holds += 1
        self._released.clear()
        try:
            yield
        finally:
            self._holds -= 1
            if not self._holds:
                self._released.set()

    def withdraw(self, event: Event) -> None:
        """The publish of ``event`` failed: its deliveries will never come."""
        entry = self._by_id.get(event.id)
        if entry is not None:
            entry.waiting.clear()
            self._progress.set()

    def push(self, event: Event, subscribers: Sequence[Subscription], ordered: bool = False) -> None:
        """``event`` was published and already delivered to ``subscribers`` (the memory bus);
        ``ordered``: they are in creation order already (no sort per event). :meth:`_append` inline:
        this is every event's path on memory."""
        if not ordered:
            subscribers = sorted(subscribers, key=_seq)
        if _running.get() is self:
            self._internal.append((event, subscribers))
        else:
            self._external.append((event, subscribers))
            self._external_in += 1
        if self._task is None:
            self._start()

    def arrived(self, subscription: Subscription, event: Event, receipt: Any = None) -> None:
        """``subscription`` received ``event`` (called from ``Subscription.deliver``)."""
        entry = self._by_id.get(event.id)
        if entry is None:  # unannounced (another process's), or delivered again after it was handled
            entry = _Entry(event, set(), [(subscription, receipt)])
            self._by_id[event.id] = entry
            self._append(entry)
            return
        waiting, arrived = entry.waiting, entry.arrived
        entry.together = False
        if subscription in waiting:  # expected and first: every announced event's path
            waiting.discard(subscription)
            arrived.append((subscription, receipt))
            if not waiting and entry is self._head:
                self._progress.set()
            return
        for index, (held, _) in enumerate(arrived):
            if held is subscription:
                # Delivered again before it was handled (the store redelivers what was not acknowledged
                # within ack_wait, e.g. while a lost delivery held the order up): it keeps its place,
                # with the newest receipt (the one to settle). A second entry would take the other
                # subscribers' arrivals away from this one, which would then wait for them forever.
                arrived[index] = (subscription, receipt)
                self.redelivered += 1
                return
        arrived.append((subscription, receipt))  # one it did not wait for (a queue member's)
        if not waiting and entry is self._head:
            self._progress.set()

    def arrived_all(self, subscriptions: Sequence[Subscription], event: Event, receipt: Any) -> None:
        """:meth:`arrived` for several subscriptions holding one receipt (a host inbox message's
        members, in creation order): one lookup for all of them when each was expected and is new,
        the common case; otherwise each as :meth:`arrived` takes it."""
        entry = self._by_id.get(event.id)
        if entry is not None and entry.waiting.issuperset(subscriptions):
            entry.waiting.difference_update(subscriptions)
            entry.together = bool(subscriptions) and not entry.arrived
            entry.arrived.extend([(subscription, receipt) for subscription in subscriptions])
            if not entry.waiting and entry is self._head:
                self._progress.set()
            return
        for subscription in subscriptions:
            self.arrived(subscription, event, receipt)

    def observe(self, subscription: Subscription) -> None:
        """``subscription`` only reads what it is handed (the host's run monitor): its handler publishes
        nothing and no other handler depends on when it runs. It still sees every event in this order,
        each once its own delivery arrived, but the others never wait for its deliveries: an event
        only it receives is not waited for (on JetStream a store round trip each, half of the demo's
        waits, the decisions only the monitor reads), and it catches up on its own (:meth:`_run`)."""
        self._observers.add(subscription)

    def forget(self, subscription: Subscription) -> None:
        """``subscription`` is going away: never wait for it again."""
        heads = [self._head] if self._head else []
        for entry in (*self._internal, *self._external, *heads, *self._observed):
            if type(entry) is _Entry:  # a pushed event waits for nobody
                entry.waiting.discard(subscription)
        self._observers.discard(subscription)
        self._progress.set()

    # -- running ----------------------------------------------------------------------------------------

    def _append(self, entry: _Entry) -> None:
        if _running.get() is self:
            self._internal.append(entry)
        else:
            self._external.append(entry)
            self._external_in += 1
        if self._task is None:
            self._start()
        elif self._for_observers:
            self._progress.set()

    def _start(self) -> None:
        self._idle.clear()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sequencer")

    async def _run(self) -> None:
        """Hand each event to its subscribers, one handler at a time (the module docstring's order).

        A pushed event's handlers are run right here, not in a coroutine per event (nor one per
        subscriber): :meth:`Subscription.run`'s bookkeeping inline, a plain function handler (the run
        monitor's) called as it is. Every event on memory takes this path."""
        _running.set(self)  # this task's context: what its handlers publish is internal
        internal, external, by_id, observed = self._internal, self._external, self._by_id, self._observed
        long_cascade, yield_every = LONG_CASCADE, YIELD_EVERY  # read on every event: locals
        try:
            while internal or external or observed:
                if self._holds:
                    await self._released.wait()
                    continue
                if observed:
                    await self._catch_up()
                    if not (internal or external):
                        await self._wait_for_observers()
                        continue
                if internal:
                    entry = self._head = internal.popleft()
                    self._cascade += 1
                    if self._cascade == long_cascade:
                        self._long_cascade(entry)
                else:
                    entry = self._head = external.popleft()
                    self._cascade, self._origin = 0, entry
                    self._external_out += 1
                    if self._space_wanted:
                        self._space_wanted = False
                        self._space.set()
                    if self._pacers:
                        self._wake_pacers()
                if type(entry) is _Entry:
                    waiting = entry.waiting
                    if waiting and not (self._observers and waiting <= self._observers):
                        await self._wait_for(entry)
                    arrived = entry.arrived
                    if observed or entry.waiting:
                        # Observers wait for this one's delivery, or see earlier ones first: theirs
                        # later, in their order (:meth:`_catch_up`); the others' now.
                        arrived = self._defer_observers(entry)
                    elif by_id.get(entry.event.id) is entry:
                        del by_id[entry.event.id]
                    token = None
                    if entry.together and arrived:
                        # One message's members (one receipt of one backend's, in creation order):
                        # the delivery's position is set once around them all, not per member.
                        first, shared = arrived[0]
                        receipts = first.receipts
                        if receipts is not None:
                            token = set_delivery_position(partial(receipts.position, shared))
                    elif len(arrived) > 1:
                        arrived.sort(key=_creation)
                    try:
                        for subscription, receipt in arrived:
                            rest = subscription.run_now(entry.event, receipt, positioned=token is not None)
                            if rest is not None:  # the handler suspended, or its settle waits
                                await rest
                    finally:
                        if token is not None:
                            reset_delivery_position(token)
                else:  # pushed: (event, subscribers)
                    event, pushed = entry  # type: ignore[misc]  # not an _Entry: a tuple
                    for subscription in pushed:
                        if subscription._closed:
                            continue
                        subscription._active = True
                        try:
                            plain = subscription._plain
                            if plain is None:
                                await subscription._handler(event)
                            else:
                                result = plain(event)
                                if result is not None and inspect.isawaitable(result):
                                    await result
                            subscription.delivered += 1
                        except Exception as exc:
                            subscription._report(event, exc)
                        except BaseException:  # cancelled (the bus closes without a drain): not busy
                            subscription._active = False
                            raise
                        if subscription._pending or subscription._idle is not None:
                            subscription._ran()
                        else:  # _ran()'s common case, inline
                            subscription._active = False
                self._head = None
                self.handled += 1
                if not self.handled % yield_every:
                    await asyncio.sleep(0)  # the loop's turn: signals, timers, I/O
        finally:
            self._task = None
            self._head = None
            if internal or external:  # cancelled (bus closing) with work left: nobody runs it any more
                log.warning("sequencer stopped with events left", extra={"pending": self.pending})
            self._idle.set()
            self._wake_pacers(everyone=True)  # idle: whatever they wait for was handled (or never comes)

    def problem(self) -> str | None:
        """Why the host cannot do its job now, from here: a cascade past :data:`LONG_CASCADE` events
        still running (every event from outside the bots waits for it), else None."""
        if self._cascade < LONG_CASCADE or self._task is None:
            return None
        origin = f" started by {_described(self._origin)}" if self._origin is not None else ""
        return (
            f"deterministic mode: one event's cascade{origin} has run {self._cascade:,} events (a loop"
            " between bots?); the next event from outside the bots waits for its end"
        )

    def _long_cascade(self, entry: _Entry | _Pushed) -> None:
        """Say once that one external event's cascade has run :data:`LONG_CASCADE` events: the next
        external event (the feed's next bar) waits until it ends, which a loop never does."""
        self.long_cascades += 1
        origin = "" if self._origin is None else _described(self._origin)
        log.error(
            f"one event's cascade has run to {LONG_CASCADE:,} events: a loop between bots? (the next"
            " event from outside the bots waits until it ends)",
            extra={"origin": origin or None, "now": _described(entry)},
        )

    def _defer_observers(self, entry: _Entry) -> list[tuple[Subscription, Any]]:
        """Queue ``entry`` for its observers (:meth:`observe`) behind what they still have to see, and
        return its other arrivals, to run now (the entry then holds only the observers')."""
        observers = self._observers
        others: list[tuple[Subscription, Any]] = []
        theirs: list[tuple[Subscription, Any]] = []
        for arrival in entry.arrived:
            (theirs if arrival[0] in observers else others).append(arrival)
        entry.arrived = theirs
        if entry.waiting or theirs:
            self._observed.append(entry)
        elif self._by_id.get(entry.event.id) is entry:
            del self._by_id[entry.event.id]
        return others

    async def _catch_up(self) -> None:
        """Run the observers' events whose deliveries are in, in order, up to the first still on its
        way (the loop in :meth:`_run` waits for that one only when nothing else is left to run). That
        one stalls after ``stall_timeout`` as any wait does, also while the others never stop."""
        observed, by_id = self._observed, self._by_id
        while observed:
            entry = observed[0]
            if entry.waiting:
                now = asyncio.get_running_loop().time()
                if self._observing is not entry:  # a new first one: its wait starts now
                    self._observing, self._observing_since = entry, now
                    return
                if now - self._observing_since < self.stall_timeout:
                    return
                self._stalled(entry)
            observed.popleft()
            if by_id.get(entry.event.id) is entry:
                del by_id[entry.event.id]
            arrived = entry.arrived
            if len(arrived) > 1:
                arrived.sort(key=_creation)
            for subscription, receipt in arrived:
                rest = subscription.run_now(entry.event, receipt)
                if rest is not None:
                    await rest

    async def _wait_for_observers(self) -> None:
        """Nothing else to run: wait for the delivery the observers' first event still needs, or for
        something else to run (:meth:`_append` then ends the wait)."""
        if not self._observed:
            return
        head = self._head = self._observed[0]
        self._for_observers = True
        try:
            await self._wait_for(head)
        finally:
            self._for_observers = False
            self._head = None

    async def _wait_for(self, entry: _Entry) -> None:
        """Wait until every expected delivery of ``entry`` arrived, or ``stall_timeout`` passed.

        On NATS every event waits here (its deliveries come back from the server), so the deadline is
        kept by one watchdog timer (:meth:`_watch`) that is re-armed only when it fires, not by an
        ``asyncio.timeout`` per wait (a timer scheduled and cancelled per event)."""
        self.waits += 1
        loop = asyncio.get_running_loop()
        deadline = self._deadline = loop.time() + self.stall_timeout
        if self._watchdog is None:
            self._watchdog = loop.call_at(deadline, self._watch)
        progress = self._progress
        try:
            while entry.waiting:
                progress.clear()
                await progress.wait()
                if self._for_observers and (self._internal or self._external):
                    return  # the observers' wait: the others' events do not wait for it
                if entry.waiting and loop.time() >= deadline:
                    self._stalled(entry)
        finally:
            self._deadline = None

    def _stalled(self, entry: _Entry) -> None:
        """``entry``'s missing deliveries are past ``stall_timeout``: go on without them, counted and
        reported (``on_stall``)."""
        missing = sorted(entry.waiting, key=lambda subscription: subscription.seq)
        entry.waiting.clear()
        self.stalls += 1
        log.error(
            "deterministic delivery stalled: going on without some deliveries",
            extra={
                "event_id": entry.event.id,
                "topic": entry.event.topic,
                "missing": [s.name for s in missing],
                "timeout_s": self.stall_timeout,
            },
        )
        if self.on_stall is not None:
            self.on_stall(entry.event, missing)

    def _watch(self) -> None:
        """The watchdog: wakes the wait whose deadline has passed; re-armed for a later wait's."""
        self._watchdog = None
        deadline = self._deadline
        if deadline is None:  # no wait under way: armed again by the next one
            return
        loop = asyncio.get_running_loop()
        if loop.time() >= deadline:
            self._progress.set()
        else:
            self._watchdog = loop.call_at(deadline, self._watch)

    async def settle(self) -> None:
        """Return once every event announced so far has been handled by every subscriber."""
        self._not_from_a_handler("settle()")
        while not self._idle.is_set():
            await self._idle.wait()

    def external_mark(self) -> int:
        """The place the next external event will take: :meth:`reached` with it returns once every
        event queued before that one has been handled, with all it caused."""
        return self._external_in

    async def reached(self, mark: int) -> None:
        """Return once the external event at ``mark`` (:meth:`external_mark`) has been taken, so
        everything queued before it has been handled with all it caused; at once if it has, or when
        nothing is left to handle.

        Why: a replayed feed that settles before each bar leaves the platform idle at every bar
        boundary (on JetStream for a whole store round trip: the next bar's first event is only
        published then). Waiting for an earlier bar's first event instead (the bars before it done)
        keeps the bars after it queued ahead (two: ``supervisor.LAG_SETTLES``): the same order, since
        external events wait for the cascades before them anyway, without the idle turn."""
        self._not_from_a_handler("reached()")
        if self._external_out > mark or self._idle.is_set():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._pacers.append((mark, waiter))
        await waiter

    def _wake_pacers(self, everyone: bool = False) -> None:
        taken, waiting = self._external_out, []
        for mark, waiter in self._pacers:
            if everyone or taken > mark:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                waiting.append((mark, waiter))
        self._pacers = waiting

    def _not_from_a_handler(self, what: str) -> None:
        if _running.get() is self:
            raise RuntimeError(
                f"{what} from inside a handler would wait for itself: the sequencer runs one "
                "handler at a time (call it from a feed task, not from handle())"
            )

    def cancel(self) -> None:
        """Stop running handlers (the bus is closing without a drain)."""
        if self._task is not None:
            self._task.cancel()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None


def _creation(arrival: tuple[Subscription, Any]) -> int:
    return arrival[0].seq


def _seq(subscription: Subscription) -> int:
    return subscription.seq


def _described(entry: _Entry | _Pushed) -> str:
    """``<topic> from <source>`` of a queued entry's event, for a log line."""
    event = entry.event if isinstance(entry, _Entry) else entry[0]
    return f"{event.topic} from {event.source}"
