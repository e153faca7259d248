"""The event bus interface every backend implements, and the behaviour they share.

Like httpx's transports, a backend is a small class used as an async context manager::

    async with MemoryBus() as bus:
        sub = await bus.subscribe("trading.signal.*", on_signal)
        await bus.publish(make_event("trading.signal.generated", {...}, source="GRD"))

What is common lives here, so backends only move bytes: reporting a failing handler on
``system.handler.failed``, reporting overflow on ``system.bus.overflow``, dead-lettering malformed
input on ``system.deadletter.malformed``, building replies, and the index of local subscriptions by
pattern. Local delivery (ordering, priorities, bounded backlog) is
:class:`~citarion_host.bus.subscription.Subscription`'s job; the deterministic mode's ordering is
:class:`~citarion_host.bus.sequencer.Sequencer`'s.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Protocol, Self, TypedDict

from ..errors import BusClosedError
from ..events import PRIORITIES, Event, EventCatalog, InvalidEventError, catalog
from ..payloads import BusOverflow, DeadLetter, HandlerFailure
from ..topics import PatternIndex, split_pattern
from .position import DurableRewind
from .replies import as_reply
from .sequencer import Sequencer
from .subscription import Handler, Subscription

__all__ = [
    "BUS_SOURCE",
    "DEAD_LETTER_MAX_ORIGINAL",
    "DEFAULT_MAX_EVENT_BYTES",
    "BotLane",
    "BusOptions",
    "Capabilities",
    "EventBus",
    "Wanted",
    "oversized",
    "printable_subject",
]

log = logging.getLogger("citarion_host.bus")

#: ``source`` of the events the bus itself emits.
BUS_SOURCE = "HOST"
#: Bytes of an original message a dead letter keeps (docs/limits.md): below every server's max_payload.
DEAD_LETTER_MAX_ORIGINAL = 32 * 1024
#: Largest encoded event a bus accepts, published or received (``[backend] max_event_bytes``,
#: docs/limits.md): half of nats-server's default ``max_payload`` (1 MiB), leaving room for headers.
DEFAULT_MAX_EVENT_BYTES = 512 * 1024
_DEAD_KEYS_KEPT = 1024
_OVERFLOW_REPORT_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a ``subscribe`` call asked for, checked, as the backend's hooks receive it."""

    patterns: tuple[str, ...]
    queue: str | None
    durable: str | None
    max_pending: int
    start_sequence: int | None
    start_time: datetime | None
    stored: bool

    @property
    def positioned(self) -> bool:
        return self.start_sequence is not None or self.start_time is not None


class BotLane(Protocol):
    """What one hosted bot sends and subscribes through (:meth:`EventBus.for_bot`): the bus itself,
    or (NATS with ``isolation = "per-bot"``) a view of it over the bot's own connection."""

    async def post(self, event: Event) -> None: ...

    async def request(self, event: Event, *, timeout: float = 5.0) -> Event: ...

    async def reply(self, request: Event, response: Event) -> None: ...

    async def subscribe(
        self,
        pattern: str | Sequence[str],
        handler: Handler,
        *,
        queue: str | None = None,
        durable: str | None = None,
        name: str | None = None,
        max_pending: int | None = None,
        start_sequence: int | None = None,
        start_time: datetime | None = None,
        stored: bool = False,
    ) -> Subscription: ...


class BusOptions(TypedDict, total=False):
    """What every backend's constructor takes besides its own settings (see :class:`EventBus`)."""

    catalog_: EventCatalog | None
    max_pending: int
    max_pending_urgent: int | None
    backpressure_timeout: float
    deterministic: bool
    stall_timeout: float
    max_event_bytes: int


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What a backend can do beyond the common contract; the conformance suite reads these."""

    persistent: bool = False  # events survive a restart of the bus
    replay: bool = False  # subscriptions can start from a sequence number or a time
    durable: bool = False  # named subscriptions resume where they stopped
    cross_process: bool = False  # other processes (TypeScript services too) see the events


class EventBus(abc.ABC):
    """Publish events, subscribe handlers to topic patterns, request/reply.

    Subclasses implement the ``_``-prefixed transport methods and :meth:`publish`; everything a user
    calls is defined here with its contract.
    """

    #: Backend name as used in configuration (``memory``, ``nats``).
    name: str = ""
    capabilities: Capabilities = Capabilities()
    #: Appended to a refusal for a missing capability: how to get it, where there is a way.
    capability_hint: str = ""
    #: Whether :meth:`tap` works here: the backend hands every event it routes to its taps.
    tappable: bool = False

    def __init__(
        self,
        *,
        catalog_: EventCatalog | None = None,
        max_pending: int = 10_000,
        max_pending_urgent: int | None = None,
        backpressure_timeout: float = 10.0,
        deterministic: bool = False,
        stall_timeout: float = 30.0,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.catalog = catalog_ or catalog
        self.max_pending = max_pending
        #: Encoded events over this size are refused on publish and dead-lettered on receipt.
        self.max_event_bytes = max_event_bytes
        #: How many critical/high events may wait per subscriber before publishers wait (None: each
        #: subscription's own ``max_pending``); how long they wait (``BackpressureTimeoutError``).
        self.max_pending_urgent = max_pending_urgent
        self.backpressure_timeout = backpressure_timeout
        self.published = 0
        self.malformed = 0
        #: Malformed messages dead-lettered, by kind (``events.MALFORMED_KINDS``: ``too_deep``...).
        self.malformed_kinds: dict[str, int] = {}
        self.handler_failures = 0
        self._closed = False
        self._started = False
        self._names = itertools.count(1)
        self._subscriptions: set[Subscription] = set()
        #: Every local subscription under each of its patterns (routes, the sequencer's expectations).
        self._index: PatternIndex[Subscription] = PatternIndex()
        self._overflow_reported: dict[Subscription, float] = {}
        self._overflow_trailing: dict[Subscription, asyncio.TimerHandle] = {}
        #: Counters of released subscriptions, by name (a bot's id), so drops outlive a resubscription.
        self._retired: dict[str, dict[str, Any]] = {}
        self._retiring: list[Subscription] = []
        self._dead_keys: OrderedDict[str, None] = OrderedDict()  # recent dead letters' keys
        #: Dead letters stored, by reason (``malformed``, ``failed``...).
        self.dead_lettered: dict[str, int] = {}
        #: Deterministic mode (see ``bus/sequencer.py``): None when handlers run concurrently.
        self.sequencer: Sequencer | None = None
        #: Passive observers (:meth:`tap`), called in line as each event is routed.
        self._taps: tuple[Callable[[Event], None], ...] = ()
        if deterministic:
            self.sequencer = Sequencer(stall_timeout=stall_timeout, on_stall=self._stalled)

    @property
    def deterministic(self) -> bool:
        """True when handlers run one at a time in publish order (``bus/sequencer.py``)."""
        return self.sequencer is not None

    # -- lifecycle --------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect / prepare. Idempotent."""
        if not self._started:
            await self._start()
            self._started = True

    async def close(self, *, drain: bool = True, timeout: float = 10.0) -> None:
        """Stop accepting publishes; with ``drain`` let every subscriber finish its backlog first."""
        if self._closed:
            return
        subscriptions = list(self._subscriptions)
        if drain:
            try:
                async with asyncio.timeout(timeout):
                    if self.sequencer is not None:
                        await self.sequencer.settle()  # before closing: handlers may still publish
                    self._closed = True
                    for subscription in subscriptions:
                        await subscription.wait_idle()
                    await self._flush()  # what was posted is stored before the transport goes
            except TimeoutError:
                log.warning("bus close: drain timed out after %.1fs; discarding backlogs", timeout)
        self._closed = True
        if self.sequencer is not None:
            self.sequencer.cancel()
        for subscription in subscriptions:
            subscription.discard()
            self._final_overflow_report(subscription)  # the log line with the final counts
        await self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- publish / subscribe ----------------------------------------------------------------------

    @abc.abstractmethod
    async def publish(self, event: Event) -> None:
        """Publish one event. Returns when the backend has accepted it (JetStream: stored)."""

    async def post(self, event: Event) -> None:
        """Publish without waiting for the backend's confirmation, where that wait is a round trip.

        Returns once the event is handed over in order (memory: delivered, exactly as ``publish``;
        JetStream: written to the connection, stored in the background). A post that is never
        confirmed is reported on ``system.bus.unstored`` and counted: never silently lost.
        :meth:`flush` waits for every confirmation. A bot's ``ctx.publish`` posts.
        """
        await self.publish(event)

    def post_now(self, event: Event) -> bool:
        """Post ``event`` here and now when that needs no waiting (True: done, as :meth:`post` would
        have); False: nothing was done, :meth:`post` it. A bot's every publish asks this first (the
        host's ``BusOutlet``), so the common case costs no coroutine. Default: False (a backend whose
        post always waits for something, or that has not looked into it)."""
        return False

    async def flush(self) -> None:
        """Return once everything published or posted so far is confirmed by the backend (or reported
        as unstored). Memory: at once."""
        await self._flush()

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Publish several events in order; backends may pipeline them."""
        for event in events:
            await self.publish(event)

    async def publish_raw(self, data: bytes, *, subject: str | None = None) -> Event | None:
        """Publish wire bytes from outside (a bridge, a replay file). Malformed input is dead-lettered.

        Returns the decoded event, or None if it was rejected (and counted in ``malformed``, by kind in
        ``malformed_kinds``). Over ``max_event_bytes`` it is refused before being parsed.
        """
        try:
            if len(data) > self.max_event_bytes:
                raise oversized(data, self.max_event_bytes, subject)
            event = self.catalog.decode(data)
        except InvalidEventError as exc:
            await self.dead_letter(data, reason="malformed", error=str(exc), subject=subject, kind=exc.kind)
            return None
        await self.publish(event)
        return event

    async def subscribe(
        self,
        pattern: str | Sequence[str],
        handler: Handler,
        *,
        queue: str | None = None,
        durable: str | None = None,
        name: str | None = None,
        max_pending: int | None = None,
        start_sequence: int | None = None,
        start_time: datetime | None = None,
        stored: bool = False,
    ) -> Subscription:
        """Call ``handler(event)`` for every event whose topic matches ``pattern``.

        ``pattern`` may be a list: one subscription, one inbox, for every event matching any of them,
        in one order (publish order on the memory bus, arrival order on NATS: see docs/events.md); an
        event matching several of them is delivered once.
        ``queue``: subscribers sharing a queue name split the events (one member gets each).
        ``name``: shown in stats and error reports (defaults to a generated one).
        ``max_pending``: backlog bound for this subscriber (default: the bus's).
        ``durable`` (backends with the ``durable`` capability): resume from where this name stopped.
        ``start_sequence`` / ``start_time`` (``replay`` capability): first the stored events from that
        position on, then live ones.
        ``stored`` (``persistent`` capability): read the events from the store, in its order and
        acknowledged, rather than live as they are sent (JetStream: a consumer, not a core
        subscription); from now on unless ``durable`` or a start position says otherwise.

        A backend without a capability refuses its arguments with ``ValueError`` instead of quietly
        delivering something else (the host leaves ``durable`` out on such backends: see
        ``docs/configuration.md``).
        """
        wanted = self._wanted(pattern, queue, durable, max_pending, start_sequence, start_time, stored)
        options = self._subscription_options(wanted)
        return await self._add_subscription(
            wanted.patterns,
            handler,
            queue=queue,
            durable=durable,
            name=name,
            max_pending=max_pending,
            **options,
        )

    def _wanted(
        self,
        pattern: str | Sequence[str],
        queue: str | None,
        durable: str | None,
        max_pending: int | None,
        start_sequence: int | None,
        start_time: datetime | None,
        stored: bool,
    ) -> Wanted:
        """The arguments of :meth:`subscribe`, checked (``ValueError``/``TopicError`` naming the bad one)."""
        self._check_open()
        patterns = self.patterns_of(pattern)
        self._check_capabilities(durable, start_sequence, start_time, stored)
        if start_sequence is not None and start_sequence < 1:
            raise ValueError(f"start_sequence must be >= 1, got {start_sequence}")
        if start_time is not None and start_time.tzinfo is None:
            raise ValueError("start_time must be timezone-aware (e.g. datetime.now(UTC))")
        bound = self.max_pending if max_pending is None else max_pending
        return Wanted(patterns, queue, durable, bound, start_sequence, start_time, stored)

    def for_bot(self, bot_id: str) -> BotLane:
        """What bot ``bot_id`` sends and subscribes through: this bus, unless the backend gives each bot
        a connection of its own (``NatsBus`` with ``isolation = "per-bot"``)."""
        return self

    def connection_problems(self) -> list[str]:
        """Connections of this bus, other than its own, that cannot carry events now (one line each:
        a bot's own NATS connection, ``isolation = "per-bot"``); part of the host's readiness."""
        return []

    async def release_bot(self, bot_id: str) -> None:
        """Bot ``bot_id`` left the topology (stopped, unsubscribed): close what :meth:`for_bot` opened
        for it. Default: nothing."""
        return None

    def _subscription_options(self, wanted: Wanted) -> dict[str, Any]:
        """What the backend's ``_attach`` needs beyond the subscription (checked arguments in, options
        out; ``ValueError`` for a combination the backend cannot honour). Default: nothing."""
        return {}

    async def rewind_durable(self, durable: str, after: int) -> DurableRewind:
        """Prepare durable consumer ``durable`` to deliver from stream sequence ``after + 1`` (a bot
        resuming right after the position its restored state covers). Only backends with the
        ``durable`` capability have one; see ``NatsBus.rewind_durable``."""
        raise ValueError(f"{self.name or type(self).__name__} has no durable subscriptions to rewind")

    @staticmethod
    def patterns_of(pattern: str | Sequence[str]) -> tuple[str, ...]:
        """``pattern`` as a checked, duplicate-free tuple (``TopicError`` names a bad one)."""
        patterns = tuple(dict.fromkeys([pattern] if isinstance(pattern, str) else pattern))
        if not patterns:
            raise ValueError("subscribe needs at least one pattern")
        for each in patterns:
            split_pattern(each)
        return patterns

    async def _add_subscription(
        self,
        patterns: tuple[str, ...],
        handler: Handler,
        *,
        queue: str | None,
        durable: str | None,
        name: str | None,
        max_pending: int | None,
        **backend_options: Any,
    ) -> Subscription:
        """Create the subscription, let the backend feed it (``_attach``), register it."""
        seq = next(self._names)
        subscription = Subscription(
            patterns,
            handler,
            name=name or f"sub-{seq}",
            seq=seq,
            queue=queue,
            durable=durable,
            max_pending=self.max_pending if max_pending is None else max_pending,
            max_urgent=self.max_pending_urgent,
            on_error=self._handler_failed,
            on_overflow=self._overflowed,
            sequencer=self.sequencer,
        )
        await self._attach(subscription, **backend_options)
        subscription._detach = self._release
        self._subscriptions.add(subscription)
        for each in patterns:
            self._index.add(each, subscription)
        self._routes_changed()
        return subscription

    async def repattern(self, subscription: Subscription, pattern: str | Sequence[str]) -> None:
        """Change what ``subscription`` listens to, in place: same inbox, nothing lost or doubled.

        Events matching both the old and the new patterns keep flowing; the host uses this when a
        reload changes only a bot's ``subscribe`` list.
        """
        patterns = self.patterns_of(pattern)
        old = subscription.patterns
        if patterns == old or subscription.closed:
            return
        await self._repattern(subscription, patterns)
        for each in old:
            self._index.remove(each, subscription)
        subscription.patterns = patterns
        subscription.pattern = " | ".join(patterns)
        for each in patterns:
            self._index.add(each, subscription)
        self._routes_changed()

    def local_subscribers(self, event: Event) -> list[Subscription]:
        """This bus's subscriptions whose patterns match ``event``'s topic, each once."""
        return list(dict.fromkeys(self._index.match(event.topic)))

    def _check_capabilities(
        self, durable: str | None, start_sequence: int | None, start_time: datetime | None, stored: bool
    ) -> None:
        wanted = [
            ("stored subscriptions", "persistent", stored),
            ("durable subscriptions", "durable", durable is not None),
            ("start_sequence/start_time", "replay", start_sequence is not None or start_time is not None),
        ]
        for what, capability, asked in wanted:
            if asked and not getattr(self.capabilities, capability):
                raise ValueError(
                    f"{what} need a backend with the {capability!r} capability; "
                    f"{self.name or type(self).__name__} has none ({self.capabilities}){self.capability_hint}"
                )

    async def _release(self, subscription: Subscription) -> None:
        if self._closed:  # the bus closed (and discarded it) already: nothing left to detach from
            return
        if subscription in self._subscriptions:
            self._subscriptions.discard(subscription)
            for each in subscription.patterns:
                self._index.remove(each, subscription)
            self._routes_changed()
        self._overflow_reported.pop(subscription, None)
        self._final_overflow_report(subscription)
        self._retiring.append(subscription)  # counted once it has worked off what it still holds
        self._retire_idle()
        if self.sequencer is not None:
            self.sequencer.forget(subscription)
        await self._detach(subscription)

    def tap(self, observer: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``observer(event)`` for every event this bus routes, in publish order; returns the
        function that removes it.

        Why not a subscription on ``>``: a subscriber is one more handler per event, and in
        deterministic mode one the sequencer runs and waits for (an await, an arrival to record and
        sort) for every event of the run. A tap is a plain call at the moment the event is routed,
        outside every subscriber's order and backlog: what a passive observer (the dashboard's feed)
        needs and no more. So it must be quick, must not block and should not raise: an exception is
        logged and swallowed, never raised into the publisher. Only backends that route every event
        themselves have it (:attr:`tappable`, the memory bus); others raise ``ValueError``.
        """
        if not self.tappable:
            raise ValueError(f"the {self.name or type(self).__name__} bus has no taps: subscribe instead")
        self._taps = (*self._taps, observer)

        def untap() -> None:
            self._taps = tuple(each for each in self._taps if each is not observer)

        return untap

    def _tapped(self, event: Event) -> None:
        """Hand ``event`` to every tap (backends call this when ``_taps`` is not empty)."""
        for observer in self._taps:
            try:
                observer(event)
            except Exception:
                log.exception("a bus tap failed", extra={"event_id": event.id, "topic": event.topic})

    @property
    def subscriptions(self) -> frozenset[Subscription]:
        return frozenset(self._subscriptions)

    # -- request / reply --------------------------------------------------------------------------

    @abc.abstractmethod
    async def request(self, event: Event, *, timeout: float = 5.0) -> Event:
        """Publish ``event`` and wait for the first reply (matched by ``correlationId``).

        Raises :class:`~citarion_host.errors.NoRespondersError` when nobody subscribes to the topic
        and :class:`~citarion_host.errors.RequestTimeoutError` when no reply comes in time.
        """

    @abc.abstractmethod
    async def reply(self, request: Event, response: Event) -> None:
        """Send ``response`` back to whoever made ``request``, and nowhere else.

        ``request`` must be a request made on this backend (its ``metadata.replyTo`` the requester's
        reply inbox); anything else is refused with :class:`~citarion_host.errors.PublishError`
        naming the request, so a reply can never be published on an ordinary topic.
        """

    @staticmethod
    def as_reply(request: Event, response: Event) -> Event:
        """``response`` carrying the request's correlation id and the request as its cause."""
        return as_reply(request, response)

    # -- quiescence ---------------------------------------------------------------------------------

    async def settle(self) -> None:
        """Return once everything published so far has been handled by every local subscriber.

        Deterministic mode: every publish is confirmed (``_flush``) and the sequencer has nothing left:
        every announced event delivered, as the transport proves by delivering it, and handled. No
        question to the server is needed, so it costs no round trip of its own. Otherwise: every
        subscription is idle, after the backend has made sure what it sent has arrived (``_sync``: on
        NATS a ping and a look at each stream consumer's state). Cost: see docs/events.md.
        """
        sequencer = self.sequencer
        while True:
            if sequencer is not None:
                await self._flush()
                await sequencer.settle()
            else:
                await self._sync()
            busy = [s for s in self._subscriptions if s.busy]
            for subscription in busy:
                await subscription.wait_idle()
            if not busy and (sequencer is None or sequencer.pending == 0):
                return

    # -- what backends implement --------------------------------------------------------------------

    async def _flush(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Wait until every publish under way is confirmed by the transport (memory: nothing waits)."""

    async def _sync(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Make sure what this bus published has reached its local subscribers (memory: it has)."""

    def _routes_changed(self) -> None:  # noqa: B027 - optional hook, not abstract
        """The set of local subscriptions (or their patterns) changed: drop cached routes."""

    async def _repattern(  # noqa: B027 - optional hook, not abstract
        self, subscription: Subscription, patterns: tuple[str, ...]
    ) -> None:
        """Feed ``subscription`` from ``patterns`` instead of its current ones (default: nothing to do,
        the shared index is updated by :meth:`repattern`)."""

    async def _start(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Connect to the transport (default: nothing to do)."""

    async def _close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release the transport (default: nothing to do)."""

    @abc.abstractmethod
    async def _attach(self, subscription: Subscription, **options: Any) -> None:
        """Start feeding ``subscription`` (call ``subscription.deliver(event)`` per event).

        ``options``: what the backend's own ``subscribe`` passed to ``_add_subscription``.
        """

    @abc.abstractmethod
    async def _detach(self, subscription: Subscription) -> None:
        """Stop feeding ``subscription``."""

    # -- shared reporting -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BusClosedError(f"the {self.name or 'event'} bus is closed")

    def _emit_internal(self, topic: str, payload: Any, priority: str = "high") -> None:
        """Publish a bus-generated ``system.*`` event without ever raising into the caller."""
        if self._closed:
            return
        try:
            event = self.catalog.make(topic, payload, source=BUS_SOURCE, priority=priority)  # type: ignore[arg-type]
            self._spawn_publish(event)
        except Exception:
            log.exception("could not publish %s", topic)

    def _spawn_publish(self, event: Event) -> None:
        """Publish from a synchronous context; backends override when publishing needs I/O."""
        task = asyncio.get_running_loop().create_task(self.publish(event))
        task.add_done_callback(_log_task_error)

    def _handler_failed(self, subscription: Subscription, event: Event, exc: BaseException) -> None:
        self.handler_failures += 1
        log.error(
            "handler failed",
            extra={
                "subscriber": subscription.name,
                "pattern": subscription.pattern,
                "event_id": event.id,
                "topic": event.topic,
                "error": repr(exc),
            },
            exc_info=exc,
        )
        if event.topic.startswith("system.handler."):
            return  # never report a failure about a failure report: that could loop forever
        self._emit_internal(
            "system.handler.failed",
            HandlerFailure(
                subscriber=subscription.name,
                pattern=subscription.pattern,
                event_id=event.id,
                event_topic=event.topic,
                error_type=type(exc).__name__,
                error=str(exc),
            ),
        )

    def _stalled(self, event: Event, missing: list[Subscription]) -> None:
        """The sequencer gave up waiting for deliveries (see ``bus/sequencer.py``): say so."""
        self._emit_internal(
            "system.bus.stalled",
            {
                "eventId": event.id,
                "topic": event.topic,
                "missing": [s.name for s in missing],
                "timeoutS": self.sequencer.stall_timeout if self.sequencer else None,
            },
        )

    def _overflowed(self, subscription: Subscription) -> None:
        """Rate-limited report of dropped events: one ``system.bus.overflow`` per second at most, and
        always one more at the end of a rate-limited second, so the last report has the final counts
        (reports carry running totals; a burst used to leave only its first drop reported)."""
        now = time.monotonic()
        wait = self._overflow_reported.get(subscription, -1e9) + _OVERFLOW_REPORT_INTERVAL_S - now
        if wait > 0:
            if subscription not in self._overflow_trailing and not self._closed:
                self._overflow_trailing[subscription] = asyncio.get_running_loop().call_later(
                    wait, self._trailing_overflow_report, subscription
                )
            return
        self._report_overflow(subscription, now)

    def _trailing_overflow_report(self, subscription: Subscription) -> None:
        self._overflow_trailing.pop(subscription, None)
        if subscription in self._subscriptions:
            self._report_overflow(subscription, time.monotonic())

    def _final_overflow_report(self, subscription: Subscription) -> None:
        """A released subscription's pending trailing report, sent now with its final counts."""
        if subscription in self._overflow_trailing:
            self._report_overflow(subscription, time.monotonic())

    def _report_overflow(self, subscription: Subscription, now: float) -> None:
        self._overflow_reported[subscription] = now
        trailing = self._overflow_trailing.pop(subscription, None)
        if trailing is not None:  # due, but the loop was busy: this report has the newer counts
            trailing.cancel()
        lost_urgent = subscription.dropped[0] + subscription.dropped[1]
        log.log(
            logging.ERROR if lost_urgent else logging.WARNING,
            "subscriber overflow: %s dropped %d events (%d critical/high)",
            subscription.name,
            sum(subscription.dropped),
            lost_urgent,
            extra={"subscription": subscription.stats()},
        )
        self._emit_internal(
            "system.bus.overflow",
            BusOverflow(
                subscriber=subscription.name,
                pattern=subscription.pattern,
                dropped_low=subscription.dropped[3],
                dropped_normal=subscription.dropped[2],
                queued=subscription.pending,
            ),
        )

    async def dead_letter(
        self,
        original: bytes | str,
        *,
        reason: str,
        error: str,
        subject: str | None = None,
        event_id: str | None = None,
        deliveries: int = 0,
        key: str | None = None,
        kind: str | None = None,
    ) -> None:
        """Park what could not be processed on ``system.deadletter.<reason>``, count it, log it.

        The one dead-letter path of every backend. ``key`` identifies the message when several
        subscribers (or hosts) may report the same one (a malformed message on NATS reaches every
        matching subscription): it is reported and counted once here, and stored once by a backend
        that deduplicates (JetStream's ``Nats-Msg-Id``). An original longer than
        ``DEAD_LETTER_MAX_ORIGINAL`` bytes is cut to that, with its size in ``truncated``, so the
        letter can always be stored. Raises ``BusError`` if it could not be stored (the caller keeps
        the original to try again). ``kind`` (malformed input: ``events.MALFORMED_KINDS``) is counted
        in ``malformed_kinds`` and kept in the letter's ``metadata.kind``.
        """
        if key is not None:
            if key in self._dead_keys:
                return
            self._dead_keys[key] = None
            if len(self._dead_keys) > _DEAD_KEYS_KEPT:
                self._dead_keys.popitem(last=False)
        raw = original if isinstance(original, bytes) else original.encode("utf-8", errors="replace")
        subject = printable_subject(subject)
        keep = DEAD_LETTER_MAX_ORIGINAL
        while True:  # cut the original until the letter itself fits max_event_bytes (escapes inflate it)
            truncated = len(raw) if len(raw) > keep else None
            event = self.catalog.make(
                f"system.deadletter.{reason}",
                DeadLetter(
                    reason=reason,
                    error=error[:2000],
                    original=raw[:keep].decode("utf-8", errors="replace"),
                    subject=subject,
                    event_id=event_id,
                    deliveries=deliveries,
                    truncated=truncated,
                ),
                source=BUS_SOURCE,
                priority="high",
                metadata={"kind": kind} if kind else None,
            )
            if keep == 0 or (len(raw) <= 1024 and keep >= len(raw)) or self._fits(event):
                break
            keep = min(keep, len(raw)) // 2
        log.warning(
            "dead letter",
            extra={
                "reason": reason,
                "kind": kind,
                "error": error[:500],
                "subject": subject,
                "truncated": truncated,
            },
        )
        try:
            await self._store_dead_letter(event, key)
        except BaseException:
            if key is not None:
                self._dead_keys.pop(key, None)  # not parked: a later report may try again
            raise
        self.dead_lettered[reason] = self.dead_lettered.get(reason, 0) + 1
        if reason == "malformed":
            self.malformed += 1
            if kind:
                self.malformed_kinds[kind] = self.malformed_kinds.get(kind, 0) + 1

    def _fits(self, event: Event) -> bool:
        """Whether ``event`` encodes within ``max_event_bytes`` (dead letters only: it costs an encode)."""
        return len(self.catalog.encode(event)) <= self.max_event_bytes

    async def _store_dead_letter(self, event: Event, key: str | None) -> None:
        """Publish a dead letter (a backend that deduplicates stores one copy per ``key``)."""
        await self.publish(event)

    def _retire_idle(self) -> None:
        """Fold released subscriptions that finished their backlog into ``_retired`` (and let go of
        them: a subscription holds its handler, and so a stopped bot)."""
        still_busy = []
        for subscription in self._retiring:
            if subscription.busy:
                still_busy.append(subscription)
            else:
                _merge_counters(self._retired.setdefault(subscription.name, {}), subscription)
        self._retiring = still_busy

    def subscriber_totals(self) -> dict[str, dict[str, Any]]:
        """Delivery counters per subscriber name (a bot's id), over every subscription of that name
        this bus has had: what a bot received, handled and lost across resubscriptions."""
        self._retire_idle()
        totals: dict[str, dict[str, Any]] = {
            name: {**counters, "dropped": dict(counters["dropped"])}
            for name, counters in self._retired.items()
        }
        for subscription in [*self._subscriptions, *self._retiring]:
            _merge_counters(totals.setdefault(subscription.name, {}), subscription)
        return dict(sorted(totals.items()))

    def stats(self) -> dict[str, Any]:
        """Bus-wide counters, drops per priority and per subscriber, plus each subscription's."""
        by_subscriber = self.subscriber_totals()
        dropped = {priority: 0 for priority in PRIORITIES}
        for counters in by_subscriber.values():
            for priority, count in counters["dropped"].items():
                dropped[priority] += count
        return {
            "backend": self.name,
            "deterministic": self.deterministic,
            "published": self.published,
            "dropped": dropped,
            "backpressure_waits": sum(c["backpressure_waits"] for c in by_subscriber.values()),
            "backpressure_timeouts": sum(c["backpressure_timeouts"] for c in by_subscriber.values()),
            "malformed": self.malformed,
            "malformed_kinds": dict(self.malformed_kinds),
            "dead_lettered": dict(self.dead_lettered),
            "handler_failures": self.handler_failures,
            **(
                {
                    "sequenced": self.sequencer.handled,
                    "sequencer_waits": self.sequencer.waits,
                    "stalls": self.sequencer.stalls,
                    "redelivered_early": self.sequencer.redelivered,
                    "long_cascades": self.sequencer.long_cascades,
                }
                if self.sequencer is not None
                else {}
            ),
            "subscriptions": [s.stats() for s in sorted(self._subscriptions, key=lambda s: s.name)],
            "by_subscriber": by_subscriber,
        }


def oversized(data: bytes | str, limit: int, subject: str | None) -> InvalidEventError:
    """The error for wire bytes over ``max_event_bytes`` (refused before they are parsed)."""
    return InvalidEventError(
        printable_subject(subject),
        "<root>",
        f"{len(data)} bytes, over max_event_bytes ({limit}; docs/limits.md)",
        kind="oversized",
    )


def printable_subject(subject: str | None) -> str | None:
    """A subject as it can be logged and stored: bytes that were not UTF-8 (kept as surrogates by the
    wire) shown as ``\\xff`` escapes."""
    if subject is None or subject.isascii():
        return subject
    try:
        return subject.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # surrogates of another origin
        return subject.encode("utf-8", "backslashreplace").decode()


#: The counters :meth:`EventBus.subscriber_totals` adds up per subscriber name.
_SUMMED = ("delivered", "failed", "overflow_admitted", "backpressure_waits", "backpressure_timeouts")


def _merge_counters(into: dict[str, Any], subscription: Subscription) -> None:
    """Add ``subscription``'s delivery counters to ``into`` (one subscriber name's totals)."""
    for counter in _SUMMED:
        into[counter] = into.get(counter, 0) + getattr(subscription, counter)
    dropped = into.setdefault("dropped", {priority: 0 for priority in PRIORITIES})
    for priority, count in zip(PRIORITIES, subscription.dropped, strict=True):
        dropped[priority] += count
    into["dropped_total"] = sum(dropped.values())


def _log_task_error(task: Any) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background publish failed", exc_info=task.exception())
