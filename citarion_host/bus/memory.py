"""The in-memory backend: zero configuration, one process, the default.

The hot path is ``publish``: one dict lookup for the topic's route (cached per topic, rebuilt only
when subscriptions change), then ``Subscription.deliver`` for each plain subscriber and for one
member of each queue group. Nothing is copied or serialized: every subscriber gets the same
immutable :class:`~citarion_host.events.Event`. A subscription with several patterns appears once in
a route however many of its patterns match, so it gets the event once, in publish order.

In deterministic mode the route goes to the sequencer instead (``bus/sequencer.py``), which runs
the handlers one at a time in publish order. Taps (``EventBus.tap``: passive observers such as the
dashboard's feed) are called first, in line, and are no part of either.

Backpressure: a ``critical``/``high`` event is never dropped, so a slow subscriber could otherwise
hold an unbounded number of them. ``publish`` waits instead while any subscriber on the route
:meth:`~Subscription.needs_room` (``max_urgent`` such events already waiting), then delivers to all
at once; after the bus's ``backpressure_timeout`` it raises ``BackpressureTimeoutError`` naming the
subscriber and the topic, and nobody got the event. ``normal``/``low`` events never wait: a full
backlog drops them by the overflow policy, counted.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

from typing_extensions import Unpack

from ..errors import BackpressureTimeoutError, PublishError
from ..events import PRIORITY_RANK, Event
from .base import BusOptions, Capabilities, EventBus
from .replies import as_request, await_reply, no_responders
from .subscription import Subscription

__all__ = ["MemoryBus"]

log = logging.getLogger("citarion_host.bus.memory")

#: ``metadata.replyTo`` of a request on the memory bus (replies are matched by correlation id).
_REPLY_TO = "memory"


class _Group:
    """Queue-group members matching one topic; events go round-robin, preferring idle members."""

    __slots__ = ("members", "turn")

    def __init__(self, members: tuple[Subscription, ...]) -> None:
        self.members = members
        self.turn = itertools.cycle(range(len(members)))

    def pick(self) -> Subscription:
        members = self.members
        start = next(self.turn)
        for offset in range(len(members)):
            member = members[(start + offset) % len(members)]
            if not member.busy:
                return member
        for offset in range(len(members)):  # all busy: one with room for an urgent event, if any
            member = members[(start + offset) % len(members)]
            if not member.needs_room():
                return member
        return members[start]

    def needs_room(self) -> Subscription | None:
        """A member, when every member needs room (an urgent event would have nowhere to go)."""
        for member in self.members:
            if not member.needs_room():
                return None
        return self.members[0]


class _Route:
    __slots__ = ("groups", "subscribers")

    def __init__(self, subscribers: tuple[Subscription, ...], groups: tuple[_Group, ...]) -> None:
        self.subscribers = subscribers
        self.groups = groups


class MemoryBus(EventBus):
    """Events delivered within this process. See :class:`~citarion_host.bus.base.EventBus`."""

    name = "memory"
    capabilities = Capabilities()
    tappable = True

    def __init__(self, **options: Unpack[BusOptions]) -> None:
        super().__init__(**options)
        self._routes: dict[str, _Route] = {}
        self._waiting: dict[str, asyncio.Future[Event]] = {}
        self.unrouted = 0

    async def publish(self, event: Event) -> None:
        if self._closed:
            self._check_open()
        sequencer = self.sequencer
        if sequencer is not None:
            if sequencer.crowded():
                await sequencer.admit()
        elif PRIORITY_RANK[event.priority] <= 1:
            full = self._full(event)
            if full is not None:
                await self._wait_for_room(event, full)
        self._dispatch(event)

    #: Posting is publishing on memory (nothing is confirmed later): the same coroutine, not a second
    #: one awaiting it on every event a bot sends.
    post = publish

    def post_now(self, event: Event) -> bool:
        """:meth:`publish` without its coroutine, unless it would wait (the bus closed, the sequencer's
        external events at their limit, a subscriber without room for an urgent event): then False."""
        if self._closed:
            return False
        sequencer = self.sequencer
        if sequencer is not None:
            if sequencer.crowded():
                return False
        elif PRIORITY_RANK[event.priority] <= 1 and self._full(event) is not None:
            return False
        self._dispatch(event)
        return True

    def _full(self, event: Event) -> Subscription | None:
        """A subscriber on ``event``'s route that needs room for an urgent event (and may wait)."""
        route = self._routes.get(event.topic) or self._route(event.topic)
        for subscriber in route.subscribers:
            if subscriber.needs_room() and not subscriber.draining_here():
                return subscriber
        for group in route.groups:
            member = group.needs_room()
            if member is not None and not member.draining_here():
                return member
        return None

    async def _wait_for_room(self, event: Event, full: Subscription) -> None:
        """Wait until no subscriber on the route needs room (see the module docstring), counted in the
        subscribers' ``backpressure_waits``; ``BackpressureTimeoutError`` after the bus's timeout."""
        full.backpressure_waits += 1
        try:
            async with asyncio.timeout(self.backpressure_timeout):
                while True:
                    await full.room()
                    self._check_open()
                    found = self._full(event)
                    if found is None:
                        return
                    if found is not full:
                        found.backpressure_waits += 1
                    full = found
        except TimeoutError:
            full.backpressure_timeouts += 1
            message = (
                f"backpressure: subscriber {full.name!r} ({full.pattern}) still has {full.urgent_pending:,}"
                f" critical/high events waiting (max_urgent {full.max_urgent:,}) after"
                f" {self.backpressure_timeout:g} s; {event.priority} event {event.id} on {event.topic!r}"
                " was not published"
            )
            log.error(message, extra={"subscriber": full.name, "topic": event.topic, "event_id": event.id})
            raise BackpressureTimeoutError(message, subscriber=full.name, topic=event.topic) from None

    def _dispatch(self, event: Event) -> None:
        route = self._routes.get(event.topic) or self._route(event.topic)
        self.published += 1
        if self._taps:
            self._tapped(event)
        if self.sequencer is not None and "replyTo" not in event.metadata:
            if route.groups:  # a queue group's pick: not in creation order among the others
                members = [group.pick() for group in route.groups]
                self.sequencer.push(event, [*route.subscribers, *members])
            else:
                self.sequencer.push(event, route.subscribers, ordered=True)  # sorted by _route
            return
        for subscriber in route.subscribers:
            subscriber.deliver(event)
        for group in route.groups:
            group.pick().deliver(event)

    def _route(self, topic: str) -> _Route:
        plain: list[Subscription] = []
        queued: dict[str, list[Subscription]] = {}
        # Each subscription once (several of its patterns may match), in creation order.
        for subscription in sorted(dict.fromkeys(self._index.match(topic)), key=_creation):
            if subscription.queue is None:
                plain.append(subscription)
            else:
                queued.setdefault(subscription.queue, []).append(subscription)
        route = _Route(tuple(plain), tuple(_Group(tuple(m)) for m in queued.values()))
        if not route.subscribers and not route.groups:
            self.unrouted += 1
        if len(self._routes) >= 65_536:
            self._routes.clear()
        self._routes[topic] = route
        return route

    def _spawn_publish(self, event: Event) -> None:
        self._dispatch(event)  # in memory, publishing never waits: no task needed

    async def _attach(self, subscription: Subscription, **options: object) -> None:
        """Nothing to do: the shared index (``EventBus._index``) is the memory bus's routing table."""

    async def _detach(self, subscription: Subscription) -> None:
        """Nothing to do: ``EventBus._release`` took it out of the index."""

    def _routes_changed(self) -> None:
        self._routes.clear()

    async def request(self, event: Event, *, timeout: float = 5.0) -> Event:
        self._check_open()
        # ``replyTo`` marks a request, as on NATS: responders see the same event (replies are matched
        # here by correlation id), and the deterministic mode's sequencer lets it through at once.
        event = as_request(event, _REPLY_TO)
        correlation_id = event.correlation_id or event.id
        route = self._routes.get(event.topic) or self._route(event.topic)
        if not route.subscribers and not route.groups:
            raise no_responders(event)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Event] = loop.create_future()
        self._waiting[correlation_id] = future
        try:
            self._dispatch(event)
            return await await_reply(future, event, loop.time() + timeout, timeout)
        finally:
            self._waiting.pop(correlation_id, None)

    async def reply(self, request: Event, response: Event) -> None:
        reply_to = request.metadata.get("replyTo")
        if reply_to is not None and reply_to != _REPLY_TO:
            raise PublishError(
                f"reply to request {request.id} on {request.topic!r} refused: its metadata.replyTo "
                f"{str(reply_to)[:80]!r} is not a request of this bus; a reply goes to its requester only "
                "(docs/events.md)"
            )
        response = self.as_reply(request, response)
        future = self._waiting.get(response.correlation_id or "")
        if future is None or future.done():
            log.warning(
                "reply to a request nobody waits for (expired or answered)",
                extra={"correlation_id": response.correlation_id, "topic": response.topic},
            )
            return
        future.set_result(response)

    async def _close(self) -> None:
        for future in self._waiting.values():
            future.cancel()
        self._waiting.clear()


def _creation(subscription: Subscription) -> int:
    return subscription.seq
