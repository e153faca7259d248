"""Local dispatch to one subscriber: ordering, priorities, bounded backlog, eager execution.

Every backend hands incoming events to a :class:`Subscription` through :meth:`Subscription.deliver`,
so ordering, priority overtaking, overflow and error isolation behave the same on every backend.

Why eager execution: an ``asyncio.Queue`` hop per event caps a pipeline's throughput (measured:
docs/performance.md, "Design measurements") and adds a scheduling round to the latency. Here,
when the subscriber is idle, ``deliver`` starts the handler coroutine right away inside the
publisher's call. Most handlers finish without suspending,
so the event is handled with no task, no queue and no loop iteration. If the handler does suspend
(awaits I/O), the rest of it continues in a task and later events wait in the backlog, so a slow
handler never blocks the publisher. This is ``asyncio.eager_task_factory`` (Python 3.12) done by
hand for 3.11.

Delivery rules:

* Events of one priority reach a subscriber in publish order.
* Queued events are served by priority: a ``critical`` event overtakes queued lower-priority ones.
* The backlog is bounded by ``max_pending``. When full, the oldest ``low`` event is dropped, then the
  oldest ``normal`` one; a new ``low``/``normal`` event that would displace only more urgent ones is
  dropped itself. Every drop is counted per priority (``dropped``) and reported
  (``system.bus.overflow``), never silent.
* ``critical`` and ``high`` events are not dropped: they are admitted past ``max_pending``, up to
  ``max_urgent`` of them waiting. Past that the subscriber :meth:`needs_room`, and a publisher that can
  wait (the memory bus's ``publish``) waits for :meth:`room` before handing the event to anyone, up to
  the bus's backpressure timeout (then ``BackpressureTimeoutError``). So memory stays bounded without
  losing them. An arrival that cannot wait (core NATS from another process, the bus's own reports, a
  handler publishing to its own full inbox) is still admitted, up to twice ``max_urgent``; past that
  hard ceiling it is dropped too, counted under its priority and reported as an error.
* A handler that raises is isolated: the error is reported (``system.handler.failed``) and the
  subscriber goes on with the next event.
* One subscription may cover several patterns: it is still one inbox, so events matching any of them
  arrive in one order (an event matching two of them is delivered once; backends see to that).

In deterministic mode (:mod:`~citarion_host.bus.sequencer`) ``deliver`` hands the event to the bus's
sequencer instead, which runs handlers one at a time in publish order through :meth:`Subscription.run`.

Receipts: a delivery from a store that wants to hear how it went (a JetStream message, to ack, nak or
dead-letter) comes with a *receipt*, which travels with the event through the backlog (or the
sequencer) to the handler call; afterwards the subscription's :class:`Receipts` (given by the backend)
settles it with the outcome. A delivery that is dropped or discarded is given back (redelivered). The
memory bus has no receipts: its path only pays a ``None`` check. Settling is synchronous when it can
be (an ack is written to the connection's buffer, as a publish is): a backend returns something to
await only when it has to wait (a nak with its policy, a dead letter, a full buffer), so the common
case costs no coroutine per delivery.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from typing import Any, Protocol

from ..errors import HandledFailure
from ..events import PRIORITIES, PRIORITY_RANK, Event
from .position import reset_delivery_position, set_delivery_position

__all__ = ["Arrivals", "Handler", "Receipts", "Subscription"]

#: What a subscription calls per event: a coroutine function, or a plain function (its result awaited
#: when it is awaitable).
Handler = Callable[[Event], Awaitable[Any] | None]
_CoroutineHandler = Callable[[Event], Coroutine[Any, Any, Any]]
ErrorCallback = Callable[["Subscription", Event, BaseException], None]
OverflowCallback = Callable[["Subscription"], None]

_YIELD_EVERY = 256  # backlog items handled before letting other tasks run


def _as_coroutine_function(handler: Handler) -> _CoroutineHandler:
    """Accept plain functions and callables returning awaitables, so the hot path sees coroutines."""
    if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - async callable objects
    ):
        return handler  # type: ignore[return-value]

    async def adapter(event: Event) -> Any:
        result = handler(event)
        if inspect.isawaitable(result):
            return await result
        return result

    return adapter


async def _outcome(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Exception | None:
    """Finish a handler already advanced to its first suspension: the exception it raised, or None."""
    try:
        await _Resume(coro, waiting_on)
    except Exception as exc:
        return exc
    return None


async def _awaiting(result: Awaitable[Any]) -> Any:
    """What a plain handler returned when it is awaitable, as a coroutine to drive."""
    return await result


class Arrivals(Protocol):
    """Where a subscription sends what arrives in deterministic mode (``bus/sequencer.py``)."""

    def arrived(self, subscription: Subscription, event: Event, receipt: Any = None) -> None: ...

    def arrived_all(self, subscriptions: Sequence[Subscription], event: Event, receipt: Any) -> None:
        """:meth:`arrived` for each of ``subscriptions`` (one message's, holding one receipt)."""
        ...


class Receipts(Protocol):
    """How a backend settles the deliveries it hands over with a receipt (see the module docstring)."""

    def position(self, receipt: Any) -> int:
        """The delivery's position in its store (``delivery_position()`` inside the handler)."""
        ...

    def settle(self, event: Event, receipt: Any, error: BaseException | None) -> Awaitable[None] | None:
        """The handler returned (``error`` None) or raised ``error``: ack, or apply the retry policy.
        None when that is done already; else what finishes it, which the caller awaits."""
        ...

    def give_back(self, receipt: Any) -> None:
        """The delivery will not be handled here (dropped, discarded, unsubscribed): redeliver it."""
        ...


class _Resume:
    """Awaitable that finishes a coroutine already advanced to its first suspension point."""

    __slots__ = ("_coro", "_waiting_on")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting_on: Any) -> None:
        self._coro = coro
        self._waiting_on = waiting_on

    def __await__(self) -> Generator[Any, None, Any]:
        coro, waiting_on = self._coro, self._waiting_on
        while True:
            try:
                yield waiting_on  # the running task waits on what the handler was waiting on
            except BaseException as exc:  # cancellation thrown into the task: pass it on
                try:
                    waiting_on = coro.throw(exc)
                except StopIteration as done:
                    return done.value
                continue
            try:
                waiting_on = coro.send(None)
            except StopIteration as done:
                return done.value


class Subscription:
    """One subscriber's handle: cancel it with :meth:`unsubscribe`; read its counters.

    Backends create these; user code gets them from ``bus.subscribe``.
    """

    __slots__ = (
        "_active",
        "_backlog",
        "_closed",
        "_detach",
        "_handler",
        "_idle",
        "_on_error",
        "_on_overflow",
        "_pending",
        "_plain",
        "_room",
        "_task",
        "backpressure_timeouts",
        "backpressure_waits",
        "delivered",
        "dropped",
        "durable",
        "failed",
        "max_pending",
        "max_urgent",
        "name",
        "overflow_admitted",
        "pattern",
        "patterns",
        "queue",
        "receipts",
        "seq",
        "sequencer",
    )

    def __init__(
        self,
        patterns: tuple[str, ...],
        handler: Handler,
        *,
        name: str,
        seq: int = 0,
        queue: str | None = None,
        durable: str | None = None,
        max_pending: int = 10_000,
        max_urgent: int | None = None,
        on_error: ErrorCallback,
        on_overflow: OverflowCallback,
        sequencer: Arrivals | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        if max_urgent is not None and max_urgent < 1:
            raise ValueError(f"max_urgent must be >= 1, got {max_urgent}")
        if not patterns:
            raise ValueError("a subscription needs at least one pattern")
        if not callable(handler):
            raise TypeError(f"handler for {patterns!r} must be callable, got {handler!r}")
        self.patterns = patterns
        #: The patterns as one string, for reports and logs (``a.b.* | c.>``).
        self.pattern = " | ".join(patterns)
        #: Creation order on its bus; the deterministic mode hands an event to its subscribers in it.
        self.seq = seq
        #: Set in deterministic mode: arrivals go to it instead of running the handler here.
        self.sequencer = sequencer
        #: Set by a backend whose deliveries come with receipts (JetStream consumers).
        self.receipts: Receipts | None = None
        self.name = name
        self.queue = queue
        self.durable = durable
        self.max_pending = max_pending
        #: How many ``critical``/``high`` events may wait before their publishers have to (default:
        #: ``max_pending``).
        self.max_urgent = max_pending if max_urgent is None else max_urgent
        self.delivered = 0
        self.failed = 0
        #: Drops by priority rank (critical, high, normal, low): urgent ones only past the hard ceiling.
        self.dropped = [0, 0, 0, 0]
        self.overflow_admitted = 0
        #: Publishes that had to wait for room (:meth:`room`), and those that gave up waiting.
        self.backpressure_waits = 0
        self.backpressure_timeouts = 0
        self._handler: _CoroutineHandler = _as_coroutine_function(handler)
        #: The handler when it is a plain function (``_handler`` then wraps it in a coroutine): the
        #: deterministic mode's sequencer calls it as it is, without that coroutine (``Sequencer._run``).
        self._plain: Callable[[Event], Any] | None = None if self._handler is handler else handler
        self._on_error = on_error
        self._on_overflow = on_overflow
        #: One queue per priority, made when the first event has to wait: most subscriptions never
        #: queue anything (eager execution), and four empty deques cost 2.5 KB each subscription.
        self._backlog: tuple[deque[tuple[Event, Any]], ...] | None = None
        self._pending = 0
        self._active = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        #: Made by the first publisher that has to wait for room; set when room is made.
        self._room: asyncio.Event | None = None
        self._detach: Callable[[Subscription], Awaitable[None]] | None = None

    def __repr__(self) -> str:
        queue = f" queue={self.queue!r}" if self.queue else ""
        return f"<Subscription {self.name!r} {self.pattern!r}{queue} pending={self._pending}>"

    @property
    def pending(self) -> int:
        """Events waiting in the backlog (not counting one being handled)."""
        return self._pending

    @property
    def busy(self) -> bool:
        return self._active

    @property
    def urgent_pending(self) -> int:
        """``critical`` and ``high`` events waiting in the backlog."""
        backlog = self._backlog
        return 0 if backlog is None else len(backlog[0]) + len(backlog[1])

    def needs_room(self) -> bool:
        """True while a ``critical``/``high`` event should not be added: ``max_urgent`` of them wait.

        A publisher that can wait checks this for every subscriber it is about to deliver to and
        awaits :meth:`room` (the memory bus's ``publish``); a closed subscription never needs room.
        """
        backlog = self._backlog
        return (
            backlog is not None and len(backlog[0]) + len(backlog[1]) >= self.max_urgent and not self._closed
        )

    def draining_here(self) -> bool:
        """True inside this subscription's own handler task: waiting for its own room would deadlock
        (its backlog only shrinks once the handler returns), so such a publish is admitted instead."""
        task = self._task
        return task is not None and task is asyncio.current_task()

    async def room(self) -> None:
        """Return once an urgent event has left the backlog (or the subscription closed). The caller
        checks :meth:`needs_room` again: another publisher may have taken the room first."""
        room = self._room
        if room is None:
            room = self._room = asyncio.Event()
        room.clear()
        await room.wait()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- hot path ---------------------------------------------------------------------------------

    def deliver(self, event: Event, receipt: Any = None, in_context: bool = False) -> None:
        """Hand ``event`` (and its receipt, if its store gave one) to this subscriber. Never blocks,
        never raises.

        ``in_context``: the caller runs this in a context of the delivery's own (the host inbox: one
        copy per message for all its members, in which it set the position), so the handler's first
        step runs right in it, without a copy and a ``Context.run`` per member (together about a third
        of a member's delivery when its handler finishes at once). What one member's handler sets in
        it, the next member of the same message sees, as every handler of the deterministic mode
        shares its sequencer's; the host's own variables (lineage, position) are set by each delivery.
        Only with a receipt."""
        if self.sequencer is not None and "replyTo" not in event.metadata:
            self.sequencer.arrived(self, event, receipt)  # requests stay eager: their requester waits
            return
        if self._active:
            self._enqueue(event, receipt)
            return
        if self._closed:
            self._give_back(receipt)
            return
        self._active = True
        if in_context:
            self._deliver_receipted(event, receipt, None)
            return
        # The first step runs in a copy of the publisher's context, as a task would: a handler that
        # sets a context variable (the host's lineage) and then suspends must not leave it set in the
        # publisher's context.
        context = contextvars.copy_context()
        if receipt is not None:
            self._deliver_receipted(event, receipt, context)
            return
        try:
            coro = self._handler(event)
            waiting_on = context.run(coro.send, None)
        except StopIteration:
            self.delivered += 1
        except Exception as exc:
            self._report(event, exc)
        else:  # the handler awaits something: finish it in a task, queue what comes meanwhile
            self._start_task(self._finish(coro, waiting_on, event), context)
            return
        if self._pending:  # the handler published to itself: serve that in a task, not recursively
            self._start_task(self._drain())
        else:
            self._active = False

    def _deliver_receipted(self, event: Event, receipt: Any, context: contextvars.Context | None) -> None:
        """:meth:`deliver` for a delivery with a receipt: what :meth:`_receipted` does, without its
        coroutine when the handler finishes at once (a free-running host's every delivery on
        JetStream). The delivery's position is set in ``context``, this delivery's own copy (nothing to
        reset); ``context`` None: the caller runs this in a context of the delivery's own, where it set
        the position already (``deliver(..., in_context=True)``). The receipt is settled with the
        outcome, in a task only when the handler suspends or settling has to wait."""
        receipts = self.receipts
        assert receipts is not None, "a receipt came to a subscription whose backend settles none"
        if context is not None:
            context.run(set_delivery_position, lambda: receipts.position(receipt))
        # The handler's first step, inline as in :meth:`run_now` (its twin): a shared helper returning
        # a tuple cost ~0.9 us per event, 2 % of a free-running JetStream host's CPU (measured).
        error: Exception | None = None
        plain = self._plain
        coro: Coroutine[Any, Any, Any] | None = None
        try:
            if plain is None:
                coro = self._handler(event)
            else:  # a plain function (the run monitor's) is called as it is
                result = plain(event) if context is None else context.run(plain, event)
                if result is not None and inspect.isawaitable(result):
                    coro = _awaiting(result)
            if coro is None:
                waiting_on = None
            elif context is None:
                waiting_on = coro.send(None)
            else:
                waiting_on = context.run(coro.send, None)
        except StopIteration:
            coro = None
        except Exception as exc:
            coro, error = None, exc
        work: Coroutine[Any, Any, None] | None = None
        if coro is not None:  # the handler awaits something: finish it (and settle) in a task
            work = self._finish_receipted(coro, waiting_on, event, receipt)
        else:
            pending = receipts.settle(event, receipt, error)
            if pending is not None:
                work = self._settled(pending, event, error)
        if work is not None:  # in a copy of the context the first step ran in, as a task would
            self._start_task(work, contextvars.copy_context() if context is None else context)
            return
        if error is None:
            self.delivered += 1
        else:
            self._report(event, error)
        if self._pending:  # the handler published to itself: serve that in a task, not recursively
            self._start_task(self._drain())
        else:
            self._active = False

    async def run(self, event: Event, receipt: Any = None) -> None:
        """Handle ``event`` now and return when done (the deterministic mode's sequencer, through
        :meth:`run_now` for a delivery with a receipt; its own loop for the memory bus's events).

        Same counters and error isolation as :meth:`deliver`; no backlog, since the sequencer hands
        events over one at a time. Requests that arrived meanwhile (they stay eager) are served after.
        """
        if self._closed:
            self._give_back(receipt)
            return
        self._active = True
        try:
            await (self._handler(event) if receipt is None else self._receipted(event, receipt))
            self.delivered += 1
        except Exception as exc:
            self._report(event, exc)
        except BaseException:  # cancelled (the bus closes without a drain): not busy any more
            self._active = False
            raise
        self._ran()

    def run_now(self, event: Event, receipt: Any = None, positioned: bool = False) -> Awaitable[None] | None:
        """:meth:`run` for the sequencer, without its coroutines when they are not needed: None when
        the delivery is handled and settled already, else what finishes it (the sequencer awaits it).

        Why: on JetStream every sequenced delivery has a receipt, and :meth:`run` costs three
        coroutines per delivery (its own, :meth:`_receipted`'s and the handler's adapter for a plain
        function); most handlers finish at once and most settles need no wait, so the first step is
        driven here, as :meth:`_deliver_receipted` does for a free-running host. The delivery's
        position is set in the sequencer's context around the handler, as :meth:`_receipted` sets it
        (``positioned``: the sequencer set it already, for every member of one message)."""
        receipts = self.receipts
        if receipt is None or receipts is None or self._closed:
            return self.run(event, receipt)
        self._active = True
        token = None if positioned else set_delivery_position(lambda: receipts.position(receipt))
        # The handler's first step, inline as in :meth:`_deliver_receipted` (its twin, and why).
        error: Exception | None = None
        plain = self._plain
        coro: Coroutine[Any, Any, Any] | None = None
        try:
            if plain is None:
                coro = self._handler(event)
            else:  # a plain function (the run monitor's) is called as it is
                result = plain(event)
                if result is not None and inspect.isawaitable(result):
                    coro = _awaiting(result)
            waiting_on = None if coro is None else coro.send(None)
        except StopIteration:
            coro = None
        except Exception as exc:
            coro, error = None, exc
        except BaseException:  # cancelled (the bus closes without a drain): not settled, not busy
            if token is not None:
                reset_delivery_position(token)
            self._active = False
            raise
        if coro is not None:  # the handler awaits something: the sequencer awaits the rest
            return self._finish_run(coro, waiting_on, event, receipt, token)
        if token is not None:
            reset_delivery_position(token)
        pending = receipts.settle(event, receipt, error)
        if pending is not None:
            return self._settled(pending, event, error, sequenced=True)
        if error is None:
            self.delivered += 1
        else:
            self._report(event, error)
        self._ran()
        return None

    async def _finish_run(
        self,
        coro: Coroutine[Any, Any, Any],
        waiting_on: Any,
        event: Event,
        receipt: Any,
        token: contextvars.Token[Any] | None,
    ) -> None:
        """:meth:`run_now`'s handler suspended: finish it in the sequencer's task (a cancelled handler
        is not settled: the store redelivers it later), then settle it with the outcome."""
        receipts = self.receipts
        assert receipts is not None
        try:
            error = await _outcome(coro, waiting_on)
        except BaseException:
            self._active = False
            raise
        finally:
            if token is not None:
                reset_delivery_position(token)
        await self._settled(receipts.settle(event, receipt, error), event, error, sequenced=True)

    def _ran(self) -> None:
        """A sequenced handler returned: serve the requests that came meanwhile, or go idle."""
        if self._pending:
            self._start_task(self._drain())
        else:
            self._active = False
            if self._idle is not None:
                self._idle.set()

    def _start_task(
        self, work: Coroutine[Any, Any, None], context: contextvars.Context | None = None
    ) -> None:
        # Settle in a done-callback, not in the coroutine: a task cancelled before its first step
        # never runs its own ``finally``.
        self._task = asyncio.get_running_loop().create_task(work, context=context)
        self._task.add_done_callback(self._settle)

    async def _receipted(self, event: Event, receipt: Any) -> None:
        """Run the handler for a delivery with a receipt, then settle it with the outcome."""
        receipts = self.receipts
        assert receipts is not None, "a receipt came to a subscription whose backend settles none"
        token = set_delivery_position(lambda: receipts.position(receipt))
        try:
            await self._handler(event)
        except Exception as exc:
            pending = receipts.settle(event, receipt, exc)
            if pending is not None:
                await pending
            raise
        finally:
            reset_delivery_position(token)
        # A cancelled handler (forced shutdown) is not settled: the store redelivers it later.
        pending = receipts.settle(event, receipt, None)
        if pending is not None:
            await pending

    def _give_back(self, receipt: Any) -> None:
        if receipt is not None and self.receipts is not None:
            self.receipts.give_back(receipt)

    def _enqueue(self, event: Event, receipt: Any) -> None:
        if self._closed:
            self._give_back(receipt)
            return
        rank = PRIORITY_RANK[event.priority]
        if rank <= 1:
            if self.urgent_pending >= 2 * self.max_urgent:  # the hard ceiling (module docstring)
                self._drop(rank, receipt)
                return
            if self._pending >= self.max_pending:
                self.overflow_admitted += 1
        elif self._pending >= self.max_pending and not self._make_room(rank):
            self._drop(rank, receipt)
            return
        backlog = self._backlog
        if backlog is None:
            backlog = self._backlog = (deque(), deque(), deque(), deque())
        backlog[rank].append((event, receipt))
        self._pending += 1

    def _drop(self, rank: int, receipt: Any) -> None:
        self.dropped[rank] += 1
        self._give_back(receipt)
        self._on_overflow(self)

    def _make_room(self, rank: int) -> bool:
        """Drop the oldest queued event of the least urgent class the new one may displace."""
        backlog = self._backlog
        if backlog is None:
            return False
        for victim in (3, 2):
            if victim >= rank and backlog[victim]:
                self._give_back(backlog[victim].popleft()[1])
                self._pending -= 1
                self.dropped[victim] += 1
                self._on_overflow(self)
                return True
        return False

    # -- the slow path: a task that finishes a suspended handler, then works off the backlog -------

    async def _finish(self, coro: Coroutine[Any, Any, Any], waiting_on: Any, event: Event) -> None:
        try:
            await _Resume(coro, waiting_on)
            self.delivered += 1
        except Exception as exc:
            self._report(event, exc)
        await self._drain()

    async def _finish_receipted(
        self, coro: Coroutine[Any, Any, Any], waiting_on: Any, event: Event, receipt: Any
    ) -> None:
        """:meth:`_finish` for a delivery with a receipt: settled with the outcome (a cancelled
        handler is not settled: the store redelivers it later)."""
        receipts = self.receipts
        assert receipts is not None
        error = await _outcome(coro, waiting_on)
        await self._settled(receipts.settle(event, receipt, error), event, error)

    async def _settled(
        self, pending: Awaitable[None] | None, event: Event, error: Exception | None, sequenced: bool = False
    ) -> None:
        """Wait for a settle that has to wait, count the delivery (or report its failure, or the
        settle's), then work off what queued meanwhile; ``sequenced`` (the sequencer's task, through
        :meth:`run_now`): go idle or serve the requests that came meanwhile, as :meth:`run` does."""
        if pending is not None:
            try:
                await pending
            except Exception as exc:  # settling failed: reported as the handler's failure would be
                error = error or exc
            except BaseException:
                if sequenced:  # cancelled (the bus closes without a drain): not busy any more
                    self._active = False
                raise
        if error is None:
            self.delivered += 1
        else:
            self._report(event, error)
        if sequenced:
            self._ran()
        else:
            await self._drain()

    async def _drain(self) -> None:
        backlog = self._backlog
        if backlog is None:  # a suspended handler finished and nothing arrived meanwhile
            return
        handled = 0
        while self._pending:
            for queue in backlog:  # most urgent first
                if queue:
                    event, receipt = queue.popleft()
                    break
            self._pending -= 1
            room = self._room
            if room is not None and not room.is_set() and not self.needs_room():
                room.set()  # a publisher waits for room for an urgent event
            try:
                await (self._handler(event) if receipt is None else self._receipted(event, receipt))
                self.delivered += 1
            except Exception as exc:
                self._report(event, exc)
            handled += 1
            if handled % _YIELD_EVERY == 0:
                await asyncio.sleep(0)

    def _settle(self, _task: object = None) -> None:
        self._task = None
        if self._pending and not self._closed:
            # Events queued between the task's last step and this callback: keep their order.
            self._start_task(self._drain())
            return
        self._active = False
        if self._idle is not None:
            self._idle.set()

    def _report(self, event: Event, exc: BaseException) -> None:
        self.failed += 1
        if not isinstance(exc, HandledFailure):  # its owner (the host's supervisor) reported it
            self._on_error(self, event, exc)

    # -- lifecycle ------------------------------------------------------------------------------

    async def wait_idle(self) -> None:
        """Return once the backlog is empty and no handler is running."""
        while self._active:
            self._idle = self._idle or asyncio.Event()
            self._idle.clear()
            await self._idle.wait()

    async def unsubscribe(self, *, drain: bool = True) -> None:
        """Stop receiving; with ``drain``, let already-queued events be handled first.

        Without ``drain`` queued events are discarded and counted in ``dropped``.
        """
        detach, self._detach = self._detach, None  # once, also after a discard (a bot given up)
        discarded = self._closed
        self._closed = True
        if self._room is not None:
            self._room.set()
        if detach is not None:
            await detach(self)
        if discarded:
            return
        if drain:
            await self.wait_idle()
        else:
            self.discard()

    def discard(self) -> None:
        """Drop the backlog and cancel a running handler (used on forced shutdown)."""
        self._closed = True
        for rank, queue in enumerate(self._backlog or ()):
            self.dropped[rank] += len(queue)
            for _, receipt in queue:
                self._give_back(receipt)
            queue.clear()
        self._pending = 0
        if self._room is not None:
            self._room.set()  # waiting publishers look again: a closed subscription needs no room
        if self._task is not None:
            self._task.cancel()

    def stats(self) -> dict[str, Any]:
        """Counters for logs, ``system.*`` reports and benchmarks."""
        return {
            "name": self.name,
            "pattern": self.pattern,
            "patterns": list(self.patterns),
            "queue": self.queue,
            "delivered": self.delivered,
            "failed": self.failed,
            "pending": self._pending,
            "dropped": dict(zip(PRIORITIES, self.dropped, strict=True)),
            "dropped_total": sum(self.dropped),
            "overflow_admitted": self.overflow_admitted,
            "urgent_pending": self.urgent_pending,
            "max_pending": self.max_pending,
            "max_urgent": self.max_urgent,
            "backpressure_waits": self.backpressure_waits,
            "backpressure_timeouts": self.backpressure_timeouts,
        }
