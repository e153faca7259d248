"""The event bus interface every backend implements, and the behaviour they share.

Like httpx's transports, a backend is a small class used as an async context manager::

    async with MemoryBus() as bus:
        sub = await bus.subscribe("trading.signal.*", on_signal)
        await bus.publish(make_event("trading.signal.generated", {...}, source="GRD"))

What is common lives here, so backends only move bytes: reporting a failing handler on
``system.handler.failed``, reporting overflow on ``system.bus.overflow``, dead-lettering malformed
input on ``system.deadletter.malformed``, and building replies. Local delivery (ordering, priorities,
bounded backlog) is :class:`~citarion_host.bus.subscription.Subscription`'s job.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import msgspec

from ..errors import BusClosedError
from ..events import Event, EventCatalog, InvalidEventError, catalog
from ..payloads import BusOverflow, DeadLetter, HandlerFailure
from .subscription import Handler, Subscription

__all__ = ["BUS_SOURCE", "Capabilities", "EventBus"]

log = logging.getLogger("citarion_host.bus")

#: ``source`` of the events the bus itself emits.
BUS_SOURCE = "HOST"
_OVERFLOW_REPORT_INTERVAL_S = 1.0


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

    def __init__(self, *, catalog_: EventCatalog | None = None, max_pending: int = 10_000) -> None:
        self.catalog = catalog_ or catalog
        self.max_pending = max_pending
        self.published = 0
        self.malformed = 0
        self.handler_failures = 0
        self._closed = False
        self._started = False
        self._names = itertools.count(1)
        self._subscriptions: set[Subscription] = set()
        self._overflow_reported: dict[Subscription, float] = {}

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
        self._closed = True
        subscriptions = list(self._subscriptions)
        if drain:
            try:
                async with asyncio.timeout(timeout):
                    for subscription in subscriptions:
                        await subscription.wait_idle()
            except TimeoutError:
                log.warning("bus close: drain timed out after %.1fs; discarding backlogs", timeout)
        for subscription in subscriptions:
            subscription.discard()
        await self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- publish / subscribe ----------------------------------------------------------------------

    @abc.abstractmethod
    async def publish(self, event: Event) -> None:
        """Publish one event. Returns when the backend has accepted it (JetStream: stored)."""

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Publish several events in order; backends may pipeline them."""
        for event in events:
            await self.publish(event)

    async def publish_raw(self, data: bytes, *, subject: str | None = None) -> Event | None:
        """Publish wire bytes from outside (a bridge, a replay file). Malformed input is dead-lettered.

        Returns the decoded event, or None if it was rejected (and counted in ``malformed``).
        """
        try:
            event = self.catalog.decode(data)
        except InvalidEventError as exc:
            await self.dead_letter(data, reason="malformed", error=str(exc), subject=subject)
            return None
        await self.publish(event)
        return event

    async def subscribe(
        self,
        pattern: str,
        handler: Handler,
        *,
        queue: str | None = None,
        durable: str | None = None,
        name: str | None = None,
        max_pending: int | None = None,
        start_sequence: int | None = None,
        start_time: datetime | None = None,
    ) -> Subscription:
        """Call ``handler(event)`` for every event whose topic matches ``pattern``.

        ``queue``: subscribers sharing a queue name split the events (one member gets each).
        ``name``: shown in stats and error reports (defaults to a generated one).
        ``max_pending``: backlog bound for this subscriber (default: the bus's).
        ``durable`` (backends with the ``durable`` capability): resume from where this name stopped.
        ``start_sequence`` / ``start_time`` (``replay`` capability): first the stored events from that
        position on, then live ones.

        A backend without a capability refuses its arguments with ``ValueError`` instead of quietly
        delivering something else (the host leaves ``durable`` out on such backends: see
        ``docs/configuration.md``).
        """
        self._check_open()
        self._check_capabilities(durable, start_sequence, start_time)
        subscription = Subscription(
            pattern,
            handler,
            name=name or f"sub-{next(self._names)}",
            queue=queue,
            durable=durable,
            max_pending=self.max_pending if max_pending is None else max_pending,
            on_error=self._handler_failed,
            on_overflow=self._overflowed,
        )
        await self._attach(subscription)
        subscription._detach = self._release
        self._subscriptions.add(subscription)
        return subscription

    def _check_capabilities(
        self, durable: str | None, start_sequence: int | None, start_time: datetime | None
    ) -> None:
        if durable is not None and not self.capabilities.durable:
            raise ValueError(
                f"durable subscriptions need a backend with the 'durable' capability; "
                f"{self.name or type(self).__name__} has none ({self.capabilities})"
            )
        if (start_sequence is not None or start_time is not None) and not self.capabilities.replay:
            raise ValueError(
                f"start_sequence/start_time need a backend with the 'replay' capability; "
                f"{self.name or type(self).__name__} has none ({self.capabilities})"
            )

    async def _release(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)
        self._overflow_reported.pop(subscription, None)
        await self._detach(subscription)

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
        """Send ``response`` back to whoever made ``request``."""

    @staticmethod
    def as_reply(request: Event, response: Event) -> Event:
        """``response`` carrying the request's correlation id and the request as its cause."""
        return msgspec.structs.replace(
            response,
            correlation_id=request.correlation_id or request.id,
            causation_id=response.causation_id or request.id,
        )

    # -- what backends implement --------------------------------------------------------------------

    async def _start(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Connect to the transport (default: nothing to do)."""

    async def _close(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release the transport (default: nothing to do)."""

    @abc.abstractmethod
    async def _attach(self, subscription: Subscription) -> None:
        """Start feeding ``subscription`` (call ``subscription.deliver(event)`` per event)."""

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

    def _overflowed(self, subscription: Subscription) -> None:
        """Rate-limited report of dropped events: one ``system.bus.overflow`` per second at most."""
        now = time.monotonic()
        if now - self._overflow_reported.get(subscription, -1e9) < _OVERFLOW_REPORT_INTERVAL_S:
            return
        self._overflow_reported[subscription] = now
        log.warning("subscriber overflow", extra={"subscription": subscription.stats()})
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
    ) -> None:
        """Park what could not be processed on ``system.deadletter.<reason>``, and count it."""
        if reason == "malformed":
            self.malformed += 1
        text = original.decode("utf-8", errors="replace") if isinstance(original, bytes) else original
        log.warning("dead letter", extra={"reason": reason, "error": error, "subject": subject})
        event = self.catalog.make(
            f"system.deadletter.{reason}",
            DeadLetter(
                reason=reason,
                error=error,
                original=text,
                subject=subject,
                event_id=event_id,
                deliveries=deliveries,
            ),
            source=BUS_SOURCE,
            priority="high",
        )
        await self.publish(event)

    def stats(self) -> dict[str, Any]:
        """Bus-wide counters plus each subscription's."""
        return {
            "backend": self.name,
            "published": self.published,
            "malformed": self.malformed,
            "handler_failures": self.handler_failures,
            "subscriptions": [s.stats() for s in sorted(self._subscriptions, key=lambda s: s.name)],
        }


def _log_task_error(task: Any) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background publish failed", exc_info=task.exception())
