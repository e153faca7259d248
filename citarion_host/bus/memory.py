"""The in-memory backend: zero configuration, one process, the default.

The hot path is ``publish``: one dict lookup for the topic's route (cached per topic, rebuilt only
when subscriptions change), then ``Subscription.deliver`` for each plain subscriber and for one
member of each queue group. Nothing is copied or serialized: every subscriber gets the same
immutable :class:`~citarion_host.events.Event`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import msgspec

from ..errors import NoRespondersError, RequestTimeoutError
from ..events import Event, EventCatalog
from ..topics import PatternIndex
from .base import Capabilities, EventBus
from .subscription import Subscription

__all__ = ["MemoryBus"]

log = logging.getLogger("citarion_host.bus.memory")


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
        return members[start]


class _Route:
    __slots__ = ("groups", "subscribers")

    def __init__(self, subscribers: tuple[Subscription, ...], groups: tuple[_Group, ...]) -> None:
        self.subscribers = subscribers
        self.groups = groups


class MemoryBus(EventBus):
    """Events delivered within this process. See :class:`~citarion_host.bus.base.EventBus`."""

    name = "memory"
    capabilities = Capabilities()

    def __init__(self, *, catalog_: EventCatalog | None = None, max_pending: int = 10_000) -> None:
        super().__init__(catalog_=catalog_, max_pending=max_pending)
        self._index: PatternIndex[Subscription] = PatternIndex(cache_limit=1)
        self._routes: dict[str, _Route] = {}
        self._waiting: dict[str, asyncio.Future[Event]] = {}
        self.unrouted = 0

    async def publish(self, event: Event) -> None:
        if self._closed:
            self._check_open()
        self._dispatch(event)

    def _dispatch(self, event: Event) -> None:
        route = self._routes.get(event.topic) or self._route(event.topic)
        self.published += 1
        for subscriber in route.subscribers:
            subscriber.deliver(event)
        for group in route.groups:
            group.pick().deliver(event)

    def _route(self, topic: str) -> _Route:
        plain: list[Subscription] = []
        queued: dict[str, list[Subscription]] = {}
        for subscription in self._index.match(topic):
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

    async def _attach(self, subscription: Subscription) -> None:
        self._index.add(subscription.pattern, subscription)
        self._routes.clear()

    async def _detach(self, subscription: Subscription) -> None:
        self._index.remove(subscription.pattern, subscription)
        self._routes.clear()

    async def request(self, event: Event, *, timeout: float = 5.0) -> Event:
        self._check_open()
        correlation_id = event.correlation_id or event.id
        if event.correlation_id is None:
            event = _with_correlation(event, correlation_id)
        route = self._routes.get(event.topic) or self._route(event.topic)
        if not route.subscribers and not route.groups:
            raise NoRespondersError(f"request {event.id} on {event.topic!r}: no subscriber")
        future: asyncio.Future[Event] = asyncio.get_running_loop().create_future()
        self._waiting[correlation_id] = future
        try:
            self._dispatch(event)
            async with asyncio.timeout(timeout):
                return await future
        except TimeoutError:
            raise RequestTimeoutError(
                f"request {event.id} on {event.topic!r}: no reply within {timeout:g}s"
            ) from None
        finally:
            self._waiting.pop(correlation_id, None)

    async def reply(self, request: Event, response: Event) -> None:
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


def _with_correlation(event: Event, correlation_id: str) -> Event:
    return msgspec.structs.replace(event, correlation_id=correlation_id)
