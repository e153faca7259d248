"""Feeding NATS messages into :class:`~citarion_host.bus.subscription.Subscription` objects.

Two kinds of feed:

* :class:`CoreFeed`, for plain subscriptions (no durable name, no start position): one core NATS
  subscription per pattern (with the queue group, if any), all feeding the one ``Subscription``. Events
  arrive as they are published, like on the memory bus: at most once, from the moment of subscribing,
  nothing to acknowledge, in the order the server sends them to this connection.
* :class:`StreamFeed`, for stored, durable and positioned subscriptions: one JetStream push consumer
  with explicit acks and every pattern as a filter subject, so events come in stream order. Each event
  is handed over with its message as the *receipt* (``Subscription.deliver(event, msg)``); the feed is
  the subscription's :class:`~citarion_host.bus.subscription.Receipts`: once the handler has run, it
  acks the message, or applies the retry policy (nak with backoff up to ``max_deliver``, then the dead
  letter). What is never handled (dropped, discarded, unsubscribed) is naked at once, for redelivery.

A message that is not a valid event (whatever the decoder raises, or over ``max_event_bytes``) is
dead-lettered once with its kind and, from a stream, terminated: poison never waits for a redelivery
that would fail the same way, so it cannot fill a consumer's ``max_ack_pending``.

What the feeds need from the bus comes in explicitly, as a :class:`FeedContext`: the wire, the settings,
the catalog, how to dead-letter and how to run background work. Nothing here imports the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import hashlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import Error as NatsError
from nats.js import JetStreamManager, api
from nats.js.errors import NotFoundError

from ...errors import BusError
from ...events import Event, EventCatalog, InvalidEventError
from ...topics import PatternIndex, matches, overlaps
from ..base import oversized, printable_subject
from ..config import NatsSettings
from ..position import set_delivery_position
from ..subscription import Subscription
from ._client import Wire
from .stream import (
    ConsumerPlan,
    consumer_config,
    deliver_subject,
    ensure_consumer,
    retry_api,
    retry_budget,
    same_filters,
)

__all__ = ["CoreFeed", "DeadLetter", "Feed", "FeedContext", "HostInbox", "StreamFeed", "stream_sequence"]

log = logging.getLogger("citarion_host.bus.nats")

#: How long a durable stays paused after its subscriber left (the next one resumes it at once).
_PAUSE_S = 60.0
#: ``caught_up`` asks the server again after this long without a delivery (acks may free room).
_CATCH_UP_POLL_S = 0.05

#: ``await dead_letter(original, reason=, error=, subject=, event_id=, deliveries=, key=)``: the bus's
#: one dead-letter path (``EventBus.dead_letter``); raises ``BusError`` if it could not be stored.
DeadLetter = Callable[..., Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class FeedContext:
    """What every feed of one bus shares."""

    wire: Wire
    settings: NatsSettings
    catalog: EventCatalog
    dead_letter: DeadLetter
    spawn: Callable[[Coroutine[Any, Any, Any]], None]
    max_event_bytes: int


def refusal(subject: str, error: Exception) -> InvalidEventError:
    """``error`` (raised while reading a message) as the reason a message is malformed."""
    if isinstance(error, InvalidEventError):
        return error
    return InvalidEventError(printable_subject(subject), "<root>", repr(error), kind="undecodable")


def stream_sequence(msg: Msg) -> int:
    """A JetStream delivery's stream sequence, read from its reply subject (``$JS.ACK.<stream>.
    <consumer>.<delivered>.<stream seq>...``, or the newer form with domain and account hash first)
    without nats-py's ``msg.metadata``, which also parses the timestamp and builds three objects (about
    ten times the cost). Anything else goes to ``msg.metadata``, which raises what is wrong.

    On the path of every delivery to a host inbox member that joined while the consumer ran (a bot
    added or restarted by a reload): it only gets events published after it joined."""
    tokens = msg.reply.split(".")
    if tokens[0] == "$JS" and tokens[1:2] == ["ACK"]:
        if len(tokens) == 9:
            return int(tokens[5])
        if len(tokens) >= 11:
            return int(tokens[7])
    return msg.metadata.sequence.stream


async def _settle(action: Awaitable[None], what: str, event: Event | None) -> None:
    """Send an ack/nak/term; if the connection is gone the server redelivers after ack_wait."""
    try:
        await action
    except NatsError as exc:
        log.warning(
            "could not settle a message",
            extra={"action": what, "event_id": event and event.id, "error": repr(exc)},
        )


async def _malformed(
    ctx: FeedContext, subject: str, data: bytes, error: InvalidEventError, msg: Msg | None
) -> None:
    """Dead-letter a message that is not a valid event, once whoever saw it (the key is derived from
    the message), then terminate it in the stream; if it cannot be stored, keep it for a later try."""
    shown = printable_subject(subject) or ""
    digest = hashlib.blake2b(shown.encode() + b"\0" + data, digest_size=12).hexdigest()
    try:
        await ctx.dead_letter(
            data,
            reason="malformed",
            error=str(error),
            subject=shown,
            key=f"malformed-{digest}",
            kind=error.kind,
        )
    except BusError as exc:
        log.error("could not dead-letter a malformed message", extra={"error": repr(exc)})
        if msg is not None:
            await _settle(msg.nak(delay=ctx.settings.nak_backoff_s[-1]), "nak", None)
        return
    if msg is not None:
        await _settle(msg.term(), "term", None)


class Feed:
    """A source of events for one subscription."""

    subscription: Any  # a Subscription (the host inbox's shared consumer feeds a dispatcher)
    _nats_sub: NatsSubscription | None = None
    stopping = False

    async def start(self) -> None:
        raise NotImplementedError

    async def quiesce(self) -> None:
        """Closing: hand nothing new to the subscription, so draining its backlog has an end."""
        self.stopping = True

    async def stop(self) -> None:
        self.stopping = True
        if self._nats_sub is not None:
            sub, self._nats_sub = self._nats_sub, None
            try:
                await self._unsubscribe(sub)
            except NatsError as exc:
                log.debug("unsubscribe failed", extra={"error": repr(exc)})

    async def _unsubscribe(self, sub: NatsSubscription) -> None:
        await sub.unsubscribe()

    async def recover(self, anew: bool = False) -> bool:
        """Called after a reconnection, or when the consumer was found gone (default: nothing to do;
        nats-py resubscribes core subscriptions). ``anew``: the stream was made anew since (its
        sequence numbers began again). True when a consumer had to be made again."""
        return False

    def stream_feed(self) -> StreamFeed | None:
        """The stream consumer's feed behind this one, if any (what ``NatsBus`` checks is still on
        the server)."""
        return None

    async def repattern(self, patterns: tuple[str, ...], confirm: Callable[[], Awaitable[None]]) -> None:
        """Listen to ``patterns`` instead, losing and doubling nothing (``confirm`` syncs with the server)."""
        raise NotImplementedError

    async def caught_up(self) -> None:
        """Return once the server has nothing more for this feed (default: a ping did that already)."""


class CoreFeed(Feed):
    """Core NATS subscriptions, one per pattern, feeding one subscription: live events, at most once.

    The server sends an event once per matching subscription of this connection, so an event matching
    two patterns would arrive twice. Each event is therefore delivered only by the first pattern of the
    list that matches its subject (its *owner*); a pattern that overlaps no earlier one owns everything
    it receives, so only overlapping patterns pay for the check, and no ids are remembered. Queue
    subscriptions need none of that: the server picks one member per queue name across all patterns
    (checked against nats-server in the tests).

    A pattern starting with a wildcard (``>``, ``*.signal.*``) would also match subjects that are not
    events: inboxes, JetStream acks and API calls of every client on the account, and every JetStream
    consumer's deliveries (routed by the consumer's deliver subject, which ``>`` matches, but shown with
    the event's subject: they would look like the same event again). So it is subscribed once per event
    domain instead (``>`` as ``market.>``, ``trading.>``, ...; ``*.signal.*`` as ``market.signal.*``,
    ...): the server sends it events only. Measured on the JetStream demo, a literal ``>`` received eight
    messages per event. Messages come through the bus's :class:`~._client.Wire` as subject and data.
    """

    def __init__(self, ctx: FeedContext, subscription: Subscription) -> None:
        self._ctx = ctx
        self._wire = ctx.wire
        self.subscription = subscription
        self._decode = ctx.catalog.decode
        self._max_bytes = ctx.max_event_bytes
        self._domains = ctx.catalog.domains
        self._subs: dict[str, list[NatsSubscription]] = {}  # per pattern: one, or one per domain
        #: For each pattern that may deliver: the earlier patterns overlapping it (an event one of them
        #: matches is theirs to deliver). A pattern missing here delivers nothing (being removed).
        self._earlier: dict[str, tuple[str, ...]] = {}

    async def start(self) -> None:
        self._update(self.subscription.patterns)
        for pattern in self.subscription.patterns:
            self._subs[pattern] = await self._subscribe(pattern)

    async def _subscribe(self, pattern: str) -> list[NatsSubscription]:
        queue, on_message = self.subscription.queue, self._dispatcher(pattern)
        return [await self._wire.subscribe(subject, queue, on_message) for subject in self._subjects(pattern)]

    def _subjects(self, pattern: str) -> list[str]:
        """What to subscribe for ``pattern``: itself, or its form in each event domain."""
        first, _, rest = pattern.partition(".")
        if first == ">":
            return [f"{domain}.>" for domain in sorted(self._domains)]
        if first == "*":
            return [f"{domain}.{rest}" if rest else domain for domain in sorted(self._domains)]
        return [pattern]

    def _dispatcher(self, pattern: str) -> Callable[[str, bytes], None]:
        """What ``pattern``'s subscription calls per message: ``_on_message`` itself for a queue member
        (the server delivers each event once), else a check of who owns the event (see the class doc)."""
        deliver = self._on_message
        if self.subscription.queue is not None:
            return deliver
        earlier_of = self._earlier  # mutated in place by _update: always the current ownership

        def on_message(subject: str, data: bytes) -> None:
            earlier = earlier_of.get(pattern)
            if earlier:  # an earlier pattern overlaps this one: is the event its to deliver?
                for other in earlier:
                    if matches(other, subject):
                        return
            elif earlier is None:  # being removed
                return
            deliver(subject, data)

        return on_message

    async def stop(self) -> None:
        self.stopping = True
        subs, self._subs = [sub for each in self._subs.values() for sub in each], {}
        for sub in subs:
            await self._unsubscribe(sub)

    async def _unsubscribe(self, sub: NatsSubscription) -> None:
        try:
            await self._wire.unsubscribe(sub)  # drops the lean route too
        except NatsError as exc:
            log.debug("unsubscribe failed", extra={"error": repr(exc)})

    async def repattern(self, patterns: tuple[str, ...], confirm: Callable[[], Awaitable[None]]) -> None:
        """Subscribe the new patterns, confirm with the server, then hand ownership over and unsubscribe
        the old ones. Until the confirmation an event may have been routed to the old subscriptions
        only, so they keep ownership; after it, every event reaches every matching subscription."""
        old = tuple(self._subs)
        added = tuple(p for p in patterns if p not in self._subs)
        self._update(old + added)  # the new ones deliver only what no old one covers
        for pattern in added:
            self._subs[pattern] = await self._subscribe(pattern)
        await confirm()
        self._update(patterns)
        for pattern in [p for p in old if p not in patterns]:
            for sub in self._subs.pop(pattern):
                await self._unsubscribe(sub)

    def _update(self, owners: tuple[str, ...]) -> None:
        """Change ownership in place: the dispatchers read this dict."""
        earlier = {p: tuple(q for q in owners[:i] if overlaps(q, p)) for i, p in enumerate(owners)}
        self._earlier.clear()
        self._earlier.update(earlier)

    def _on_message(self, subject: str, data: bytes) -> None:
        if self.stopping:
            return
        try:
            if len(data) > self._max_bytes:
                raise oversized(data, self._max_bytes, subject)
            event = self._decode(data, subject)  # the subject is the topic it must carry
        except Exception as exc:  # whatever it is: dead-lettered, never a dropped message
            self._ctx.spawn(_malformed(self._ctx, subject, data, refusal(subject, exc), None))
            return
        self.subscription.deliver(event)


class Target(Protocol):
    """What a stream feed hands its events to: one subscription, or the host inbox's dispatcher."""

    def deliver(self, event: Event, receipt: Any = None) -> None: ...


class StreamFeed(Feed):
    """JetStream push consumer (explicit acks) feeding a subscription; it settles the receipts."""

    def __init__(
        self,
        ctx: FeedContext,
        jsm: JetStreamManager,
        subscription: Target,
        plan: ConsumerPlan,
        echoes: dict[bytes, Event] | None = None,
    ) -> None:
        self._ctx = ctx
        self._wire = wire = ctx.wire
        self._jsm = jsm
        self._settings = settings = ctx.settings
        self.subscription = subscription
        self.plan = plan
        self._decode = ctx.catalog.decode
        self._max_bytes = ctx.max_event_bytes
        #: The host inbox's events posted by this process, by their bytes (``HostInbox.expect_echo``).
        self._echoes = echoes
        self.consumer: str | None = None
        self._last: Msg | None = None  # the latest delivery: its reply subject holds the stream sequence
        self._arrival = asyncio.Event()
        self._returned: list[Msg] = []
        if plan.consumer is not None:
            self._deliver = deliver_subject(settings.stream, plan.consumer)
        else:
            self._deliver = wire.nc.new_inbox()
        self._config = consumer_config(plan, settings, self._deliver)

    async def start(self) -> None:
        if self.plan.durable is None and self.plan.name is not None:
            await self._remove_leftover(self.plan.name)
        info = await ensure_consumer(
            self._jsm, self._settings.stream, self._config, retry_budget(self._settings)
        )
        self.consumer = info.name
        if info.paused:  # paused by the previous subscriber's quiesce(): we take over
            await self._jsm.resume_consumer(self._settings.stream, info.name)
        # Subscribe after the consumer exists: a push consumer only pushes while someone listens.
        self._nats_sub = await self._wire.subscribe_msgs(self._deliver, self.plan.queue, self._on_msg)
        log.info(
            "stream consumer attached",
            extra={"consumer": self.consumer, "patterns": self.plan.patterns, "queue": self.plan.queue},
        )

    async def _remove_leftover(self, name: str) -> None:
        """A named ephemeral consumer left by a run that ended without deleting it (it expires after
        ``inactive_threshold_s``): this subscription starts afresh, as a non-durable one does."""
        try:
            await self._jsm.delete_consumer(self._settings.stream, name)
        except NotFoundError:
            return
        log.info("leftover ephemeral consumer removed", extra={"consumer": name})

    @property
    def last_stream_seq(self) -> int:
        """Stream sequence of the latest event this feed received (0: none yet)."""
        return stream_sequence(self._last) if self._last is not None else 0

    def _on_msg(self, msg: Msg) -> None:
        if not msg.reply:  # a status message (heartbeat, flow control): none are enabled, ignore
            return
        if self.stopping:  # given back (naked) by stop(), for another member or the next run
            self._returned.append(msg)
            return
        self._last = msg
        self._arrival.set()
        data = msg.data
        echoes = self._echoes
        if echoes:  # an event this process posted, back from the store: the object it posted
            event = echoes.pop(data, None)
            if event is not None and event.topic == msg.subject:
                self.subscription.deliver(event, msg)
                return
        try:
            if len(data) > self._max_bytes:
                raise oversized(data, self._max_bytes, msg.subject)
            event = self._decode(data, msg.subject)  # the subject is the topic it must carry
        except Exception as exc:  # whatever it is: dead-lettered and terminated, never left to redeliver
            self._ctx.spawn(_malformed(self._ctx, msg.subject, data, refusal(msg.subject, exc), msg))
            return
        self.subscription.deliver(event, msg)

    # -- receipts (the subscription's ``Receipts``) ---------------------------------------------------

    def position(self, receipt: Any) -> int:
        msg: Msg = receipt
        return stream_sequence(msg)

    def settle(self, event: Event, receipt: Any, error: BaseException | None) -> Awaitable[None] | None:
        """Ack a handled event (at once when the wire can); after a failure nak with backoff, and at
        ``max_deliver`` dead-letter it."""
        msg: Msg = receipt
        if error is None:
            wire = self._wire
            return None if wire.ack_now(msg) else _settle(wire.ack(msg), "ack", event)
        return self._failed(event, msg, error)

    async def _failed(self, event: Event, msg: Msg, error: BaseException) -> None:
        settings = self._settings
        deliveries = msg.metadata.num_delivered
        if deliveries < settings.max_deliver:
            backoff = settings.nak_backoff_s[min(deliveries, len(settings.nak_backoff_s)) - 1]
            await _settle(msg.nak(delay=backoff), "nak", event)
            return
        cause = error.__cause__ or error  # a failure the host already reported carries the bot's error
        try:
            await self._ctx.dead_letter(
                msg.data,
                reason="failed",
                error=f"{type(cause).__name__}: {cause}",
                subject=msg.subject,
                event_id=event.id,
                deliveries=deliveries,
            )
        except Exception as dl_error:  # could not park it: keep it in the stream, try again later
            log.error(
                "could not dead-letter a failed event; it will be redelivered",
                extra={"event_id": event.id, "topic": event.topic, "error": repr(dl_error)},
            )
            await _settle(msg.nak(delay=settings.nak_backoff_s[-1]), "nak", event)
            return
        await _settle(msg.term(), "term", event)

    def give_back(self, receipt: Any) -> None:
        """Never handled here: nak it, so it comes back at once (to us, another member, the next run)."""
        msg: Msg = receipt
        self._ctx.spawn(_settle(msg.nak(), "nak", None))

    def stream_feed(self) -> StreamFeed | None:
        return None if self.stopping else self

    async def recover(self, anew: bool = False) -> bool:
        """Make the consumer again if the server lost it (memory storage, expiry, deleted). It goes on
        after the last event this feed saw (from its first place, if it saw none); in a stream made
        anew (``anew``) it starts at the stream's start, since all of it came after."""
        if self.consumer is None or self._nats_sub is None:
            return False
        timeout = self._settings.api_timeout_s * 6
        try:
            await retry_api(
                lambda: self._jsm.consumer_info(self._settings.stream, self.consumer or ""), timeout
            )
            return False
        except NotFoundError:
            pass
        config = self._config
        if anew:
            config = config.evolve(
                deliver_policy=api.DeliverPolicy.ALL, opt_start_seq=None, opt_start_time=None
            )
        elif self.last_stream_seq:  # go on after the last event seen (durable or not)
            config = config.evolve(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.last_stream_seq + 1,
                opt_start_time=None,
            )
        info = await retry_api(lambda: self._jsm.add_consumer(self._settings.stream, config), timeout)
        self.consumer = info.name
        log.warning(
            "stream consumer made again",
            extra={"consumer": self.consumer, "after": self.last_stream_seq, "stream_anew": anew},
        )
        return True

    async def repattern(self, patterns: tuple[str, ...], confirm: Callable[[], Awaitable[None]]) -> None:
        """Update the consumer's filter subjects in place: it goes on from where it is, so nothing is
        delivered twice or skipped; events already delivered under the old filters are still handled."""
        if self.consumer is None:
            return
        plan = dataclasses.replace(self.plan, patterns=patterns)
        config = consumer_config(plan, self._settings, self._deliver)
        if same_filters(config, self._config):  # e.g. the host inbox, whose monitor reads ``>`` already
            self.plan, self._config = plan, config
            await confirm()
            return
        current = await self._jsm.consumer_info(self._settings.stream, self.consumer)
        update = current.config.evolve(
            name=self.consumer,  # an ephemeral's config may not carry its server-given name: update, not add
            filter_subject=config.filter_subject,
            filter_subjects=config.filter_subjects,
            description=config.description,
        )
        await retry_api(
            lambda: self._jsm.add_consumer(self._settings.stream, update), retry_budget(self._settings)
        )
        self.plan, self._config = plan, config
        await confirm()

    async def caught_up(self) -> None:
        """Return once the server has delivered to us everything of the stream this consumer matches,
        as its own state says (nothing pending, its delivered sequence received here)."""
        deadline = asyncio.get_running_loop().time() + self._settings.api_timeout_s
        while self.consumer is not None and not self.stopping:
            if asyncio.get_running_loop().time() > deadline:
                log.warning(
                    "stream consumer not caught up in time; going on",
                    extra={"consumer": self.consumer, "timeout_s": self._settings.api_timeout_s},
                )
                return
            info = await self._jsm.consumer_info(self._settings.stream, self.consumer)
            delivered = (info.delivered.stream_seq if info.delivered else 0) or 0
            # A queue member shares the consumer: what went to the others never arrives here.
            if not info.num_pending and (self.plan.queue is not None or delivered <= self.last_stream_seq):
                return
            self._arrival.clear()
            with contextlib.suppress(TimeoutError):  # on its way, or held back until acks free room
                async with asyncio.timeout(_CATCH_UP_POLL_S):
                    await self._arrival.wait()

    async def quiesce(self) -> None:
        """Stop the server pushing to a durable that is going away, before we stop listening.

        The server notices lost interest in a deliver subject with a delay; what it pushes meanwhile goes
        nowhere and only comes back after ``ack_wait``. A non-queue durable is therefore paused first
        (nats-server >= 2.11; the next subscriber of that name resumes it). A queue durable is not: the
        other members go on, and core NATS routes only to live members.
        """
        if self.stopping:
            return
        self.stopping = True
        if self.plan.durable is None or self.plan.queue is not None or self.consumer is None:
            return
        until = (datetime.now(UTC) + timedelta(seconds=_PAUSE_S)).isoformat().replace("+00:00", "Z")
        try:
            await self._jsm.pause_consumer(self._settings.stream, self.consumer, until)
        except Exception as exc:  # an older server: in-flight events come back after ack_wait
            log.debug("could not pause the consumer", extra={"consumer": self.consumer, "error": repr(exc)})

    async def stop(self) -> None:
        """Stop the inflow without losing anything to the ack timeout.

        Messages that arrive once we are stopping are naked, not dropped: nats-py's ``drain``
        unsubscribes and waits a round trip, so everything pushed before the UNSUB (or the pause)
        arrives while the NATS subscription still exists. Events delivered but never handled (a forced
        shutdown) are given back by the subscription and naked too; all of them come back at once
        instead of after ``ack_wait``.
        """
        await self.quiesce()
        sub, self._nats_sub = self._nats_sub, None
        if sub is not None:
            self._wire.forget(sub)  # what still arrives takes nats-py's path to _on_msg
            try:
                await sub.drain()  # type: ignore[no-untyped-call]
            except (NatsError, TimeoutError) as exc:
                log.debug("draining a consumer subscription failed", extra={"error": repr(exc)})
        returned, self._returned = self._returned, []
        for msg in returned:
            await _settle(msg.nak(), "nak", None)
        # What waits in the subscription's backlog is handled (unsubscribe with drain) or given back
        # (discarded): either way its receipt is settled by the subscription, not here.
        if self.plan.durable is None and self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            try:
                await self._jsm.delete_consumer(self._settings.stream, consumer)
            except Exception as exc:  # it expires by itself (inactive_threshold)
                log.debug(
                    "could not delete ephemeral consumer", extra={"consumer": consumer, "error": repr(exc)}
                )


#: Posted events a host inbox keeps for their delivery back (``HostInbox.expect_echo``): far more
#: than are ever in flight (the publisher's window, the consumer's ``max_ack_pending``).
ECHOES_KEPT = 16_384


class _Shared:
    """A receipt shared by the members an inbox delivery went to: acked when the last one is done."""

    __slots__ = ("msg", "remaining")

    def __init__(self, msg: Msg, remaining: int) -> None:
        self.msg = msg
        self.remaining = remaining

    def position(self) -> int:
        """The message's stream sequence (what ``delivery_position()`` gives its handlers)."""
        return stream_sequence(self.msg)


class HostInbox:
    """One ephemeral consumer for every stored, non-durable subscription of the bus: the stream as the
    backing of the in-process bus.

    Why: with a consumer per subscription the server sends each event once per subscriber, each with
    its own ack (the JetStream demo: four deliveries and four acks per event, most of the host's CPU).
    Through one consumer whose filter subjects are the union of its members' patterns, each event
    arrives once, in stream order, and is dispatched here to the members it matches, in their creation
    order, like the memory bus routes it. The message is acked when every member has handled it (a
    member's failure is reported by its subscription, not retried: these subscriptions are not
    durable, and a retry would reach the members that succeeded too). Durable subscriptions keep a
    consumer of their own, where the retry policy applies.

    A member added while the consumer runs gets events published from then on: ones already in the
    stream (``since``, the stream's last sequence when it joined) are not handed to it.
    """

    def __init__(self, ctx: FeedContext, jsm: JetStreamManager, max_ack_pending: int) -> None:
        self._ctx = ctx
        self._jsm = jsm
        self._max_ack_pending = max_ack_pending
        self._index: PatternIndex[Subscription] = PatternIndex()
        self._members: dict[Subscription, int] = {}  # member -> stream sequence it joined after
        #: Per topic: its members in creation order, and whether one of them joined while the consumer
        #: ran (its deliveries then need the message's stream sequence). Cleared on every change of
        #: members or patterns; bounded like the pattern index's own cache.
        self._routes: dict[str, tuple[tuple[Subscription, ...], bool]] = {}
        #: Events this process posted to topics the inbox takes, by their encoded bytes, until the
        #: consumer delivers them back (:meth:`expect_echo`).
        self.echoes: dict[bytes, Event] = {}
        self._feed: StreamFeed | None = None
        self._lock = asyncio.Lock()

    def membership(self, subscription: Subscription) -> Feed:
        """The feed the bus keeps for ``subscription`` (its start/stop join and leave the inbox)."""
        return _Member(self, subscription)

    # -- members ----------------------------------------------------------------------------------

    def _union(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for member in self._members for p in member.patterns))

    async def join(self, subscription: Subscription) -> None:
        async with self._lock:
            if self._feed is None:
                self._members[subscription] = 0
                self._add(subscription)
                plan = ConsumerPlan(subscription.patterns, None, None, None, None, self._max_ack_pending)
                self._feed = StreamFeed(self._ctx, self._jsm, self, plan, self.echoes)
                await self._feed.start()
                return
            settings = self._ctx.settings
            info = await retry_api(lambda: self._jsm.stream_info(settings.stream), retry_budget(settings))
            self._members[subscription] = info.state.last_seq
            self._add(subscription)
            await self._feed.repattern(self._union(), _nothing)

    async def leave(self, subscription: Subscription) -> None:
        async with self._lock:
            if self._members.pop(subscription, None) is None:
                return
            self._routes.clear()
            for pattern in subscription.patterns:
                self._index.remove(pattern, subscription)
            feed = self._feed
            if feed is None:
                return
            if not self._members:
                self._feed = None
                await feed.stop()
                return
            try:  # narrow the filters to who is left; leaving must not fail on a server gone away
                await feed.repattern(self._union(), _nothing)
            except Exception as exc:  # the wider filter only costs deliveries nobody takes (acked)
                log.warning("could not narrow the host inbox's filters", extra={"error": repr(exc)})

    async def repattern(self, subscription: Subscription, patterns: tuple[str, ...]) -> None:
        """The bus updates the member's patterns after this: widen the consumer first, so nothing is
        missed, and route by the new patterns from now on."""
        async with self._lock:
            for pattern in subscription.patterns:
                self._index.remove(pattern, subscription)
            for pattern in patterns:
                self._index.add(pattern, subscription)
            self._routes.clear()
            if self._feed is not None:
                union = tuple(dict.fromkeys([*self._union(), *patterns]))
                await self._feed.repattern(union, _nothing)

    def _add(self, subscription: Subscription) -> None:
        for pattern in subscription.patterns:
            self._index.add(pattern, subscription)
        self._routes.clear()

    # -- the consumer's target ----------------------------------------------------------------------

    def expect_echo(self, event: Event, data: bytes) -> None:
        """``event``, encoded as ``data``, is being posted by this process: when the consumer delivers
        those bytes back, the members get this object instead of a decoded copy of it.

        Why: in the host's own runs every event comes back this way (the monitor reads ``>``), and
        decoding it again was the largest cost of a delivery. It is the same event (the same bytes,
        checked in full by the lookup); the deterministic mode already hands its handlers the object
        that was published. Only for a topic some member takes; bounded by :data:`ECHOES_KEPT` (an
        echo that never comes, e.g. its publish failed or the member left, is forgotten oldest first).
        """
        route = self._routes.get(event.topic)
        if route is None:
            route = self._route(event.topic)
        if not route[0]:
            return
        echoes = self.echoes
        if len(echoes) >= ECHOES_KEPT:
            del echoes[next(iter(echoes))]
        echoes[data] = event

    def deliver(self, event: Event, receipt: Any = None) -> None:
        msg: Msg = receipt
        route = self._routes.get(event.topic)
        if route is None:
            route = self._route(event.topic)
        members, late = route
        if late:
            seq = stream_sequence(msg)
            members = tuple(m for m in members if self._members.get(m, 0) < seq)
        if not members:
            self._ctx.spawn(_settle(self._ctx.wire.ack(msg), "ack", event))
            return
        sequencer = members[0].sequencer  # the bus's: every member's, or none's
        if sequencer is not None and "replyTo" not in event.metadata:
            # Deterministic: the members' handlers run when the sequencer says (it sets the position
            # then); here the message only arrives, for all its members at once.
            sequencer.arrived_all(members, event, _Shared(msg, len(members)))
            return
        # One context of the message's own for all its members: the position set once, each
        # member's first step run in it (``Subscription.deliver``'s ``in_context``), nothing to reset.
        contextvars.copy_context().run(_hand_over, event, members, _Shared(msg, len(members)))

    def _route(self, topic: str) -> tuple[tuple[Subscription, ...], bool]:
        members = tuple(sorted(set(self._index.match(topic)), key=_by_creation))
        route = members, any(self._members.get(m, 0) for m in members)
        if len(self._routes) >= 65_536:
            self._routes.clear()
        self._routes[topic] = route
        return route

    # -- receipts (each member's ``Receipts``) --------------------------------------------------------

    def position(self, receipt: Any) -> int:
        shared: _Shared = receipt
        return shared.position()

    def settle(self, event: Event, receipt: Any, error: BaseException | None) -> Awaitable[None] | None:
        shared: _Shared = receipt
        shared.remaining -= 1
        if shared.remaining:
            return None
        # Every member is done (failures were reported, not retried): ack, at once when the wire can.
        wire = self._ctx.wire
        return None if wire.ack_now(shared.msg) else _settle(wire.ack(shared.msg), "ack", event)

    def give_back(self, receipt: Any) -> None:
        """A member dropped it (overflow, unsubscribed): for a live subscriber it is gone, as on core."""
        shared: _Shared = receipt
        shared.remaining -= 1
        if shared.remaining == 0:
            self._ctx.spawn(_settle(self._ctx.wire.ack(shared.msg), "ack", None))

    # -- what the bus asks of every feed ------------------------------------------------------------

    async def caught_up(self) -> None:
        if self._feed is not None:
            await self._feed.caught_up()

    async def recover(self, anew: bool = False) -> bool:
        async with self._lock:
            return self._feed is not None and await self._feed.recover(anew)


class _Member(Feed):
    """A subscription's feed in the host inbox: joining, leaving, changing its patterns."""

    def __init__(self, inbox: HostInbox, subscription: Subscription) -> None:
        self._inbox = inbox
        self.subscription = subscription
        subscription.receipts = inbox

    async def start(self) -> None:
        await self._inbox.join(self.subscription)

    async def stop(self) -> None:
        self.stopping = True
        await self._inbox.leave(self.subscription)

    async def repattern(self, patterns: tuple[str, ...], confirm: Callable[[], Awaitable[None]]) -> None:
        await self._inbox.repattern(self.subscription, patterns)
        await confirm()

    async def caught_up(self) -> None:
        await self._inbox.caught_up()

    async def recover(self, anew: bool = False) -> bool:
        return await self._inbox.recover(anew)

    def stream_feed(self) -> StreamFeed | None:
        feed = self._inbox._feed
        return feed if feed is not None and not feed.stopping else None


async def _nothing() -> None:
    """A repattern confirmation with nothing to confirm (the consumer update itself was answered)."""


def _hand_over(event: Event, members: tuple[Subscription, ...], shared: _Shared) -> None:
    """An inbox delivery to its members, in the message's own context (``HostInbox.deliver``)."""
    set_delivery_position(shared.position)
    for member in members:
        member.deliver(event, shared, True)  # in_context: this message's own


def _by_creation(subscription: Subscription) -> int:
    return subscription.seq
