"""Feeding NATS messages into :class:`~citarion_host.bus.subscription.Subscription` objects.

Two kinds of feed:

* :class:`CoreFeed`, for plain subscriptions (no durable name, no start position): a core NATS
  subscription on the pattern (with the queue group, if any). Events arrive as they are published, like
  on the memory bus: at most once, from the moment of subscribing, nothing to acknowledge.
* :class:`StreamFeed`, for durable and positioned subscriptions: a JetStream push consumer with explicit
  acks. The subscription's handler is wrapped in an :class:`AckingHandler`, which learns the outcome of
  each delivery and acks, naks (with backoff) or dead-letters the message.

Why wrap the handler instead of adding a completion callback to ``Subscription``: the wrapper is the
only place where the outcome is known anyway (it is the coroutine that ran the handler), and it keeps
the memory backend's hot path exactly as it was. ``Subscription`` still does everything else (ordering,
priority overtaking, error isolation and reporting): the wrapper re-raises the handler's error after
nak-ing, so the failure is reported on ``system.handler.failed`` as on every backend.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import Error as NatsError
from nats.js import JetStreamManager, api
from nats.js.errors import NotFoundError

from ..events import Event, EventCatalog, InvalidEventError
from .config import NatsSettings
from .nats_stream import ConsumerPlan, consumer_config, deliver_subject, ensure_consumer, retry_api
from .subscription import Handler, Subscription

if TYPE_CHECKING:
    from .nats import NatsBus

__all__ = ["AckingHandler", "CoreFeed", "Feed", "StreamFeed"]

log = logging.getLogger("citarion_host.bus.nats")

#: Messages nats-py may hold for one subscription before calling it a slow consumer. Our own
#: ``Subscription`` bounds the real backlog; this only has to absorb bursts between two loop turns.
_NATS_PENDING_MSGS = 1_000_000
_NATS_PENDING_BYTES = 512 * 1024 * 1024


class AckingHandler:
    """The handler of a stream-backed subscription: run it, then ack; on failure nak or dead-letter.

    The feed registers each decoded event's message in ``inflight`` just before delivering it; the
    wrapper takes it back out when the handler runs. Events with no message (a ``system.connection``
    report delivered locally) are just handled.
    """

    __slots__ = ("_bus", "_handler", "inflight")

    def __init__(self, bus: NatsBus, handler: Handler) -> None:
        self._bus = bus
        self._handler = handler
        self.inflight: dict[int, Msg] = {}

    async def __call__(self, event: Event) -> Any:
        msg = self.inflight.pop(id(event), None)
        try:
            result = self._handler(event)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            if msg is not None:
                await self._failed(msg, event, exc)
            raise  # Subscription reports it (system.handler.failed) and goes on
        # A cancelled handler (forced shutdown) is neither acked nor naked: redelivered after ack_wait.
        if msg is not None:
            await _settle(msg.ack(), "ack", event)
        return result

    async def _failed(self, msg: Msg, event: Event, exc: Exception) -> None:
        settings = self._bus.settings
        deliveries = msg.metadata.num_delivered
        if deliveries < settings.max_deliver:
            backoff = settings.nak_backoff_s[min(deliveries, len(settings.nak_backoff_s)) - 1]
            await _settle(msg.nak(delay=backoff), "nak", event)
            return
        try:
            await self._bus.dead_letter(
                msg.data,
                reason="failed",
                error=f"{type(exc).__name__}: {exc}",
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


async def _settle(action: Awaitable[None], what: str, event: Event) -> None:
    """Send an ack/nak/term; if the connection is gone the server redelivers after ack_wait."""
    try:
        await action
    except NatsError as exc:
        log.warning(f"could not {what} a message", extra={"event_id": event.id, "error": repr(exc)})


class Feed:
    """A source of events for one subscription."""

    subscription: Subscription
    _nats_sub: NatsSubscription | None = None

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        if self._nats_sub is not None:
            sub, self._nats_sub = self._nats_sub, None
            try:
                await sub.unsubscribe()
            except NatsError as exc:
                log.debug("unsubscribe failed", extra={"error": repr(exc)})

    async def recover(self) -> None:
        """Called after a reconnection (default: nothing; nats-py resubscribes core subscriptions)."""


MalformedCallback = Callable[[str, bytes, InvalidEventError, "Msg | None"], Awaitable[None]]


class CoreFeed(Feed):
    """Core NATS subscription on the pattern: live events, at most once."""

    def __init__(
        self, nc: Client, catalog: EventCatalog, subscription: Subscription, on_malformed: MalformedCallback
    ) -> None:
        self._nc = nc
        self.subscription = subscription
        self._decode = catalog.decode
        self._on_malformed = on_malformed

    async def start(self) -> None:
        self._nats_sub = await self._nc.subscribe(
            self.subscription.pattern,
            queue=self.subscription.queue or "",
            cb=self._on_msg,
            pending_msgs_limit=_NATS_PENDING_MSGS,
            pending_bytes_limit=_NATS_PENDING_BYTES,
        )

    async def _on_msg(self, msg: Msg) -> None:
        try:
            event = self._decode(msg.data)
        except InvalidEventError as exc:
            await self._on_malformed(msg.subject, msg.data, exc, None)
            return
        self.subscription.deliver(event)


class StreamFeed(Feed):
    """JetStream push consumer (explicit acks) feeding a subscription through its AckingHandler."""

    def __init__(
        self,
        nc: Client,
        jsm: JetStreamManager,
        settings: NatsSettings,
        catalog: EventCatalog,
        subscription: Subscription,
        plan: ConsumerPlan,
        acker: AckingHandler,
        on_malformed: MalformedCallback,
    ) -> None:
        self._nc = nc
        self._jsm = jsm
        self._settings = settings
        self.subscription = subscription
        self.plan = plan
        self._acker = acker
        self._decode = catalog.decode
        self._on_malformed = on_malformed
        self.consumer: str | None = None
        self.last_stream_seq = 0
        if plan.durable is not None:
            self._deliver = deliver_subject(settings.stream, plan.durable)
        else:
            self._deliver = nc.new_inbox()
        self._config = consumer_config(plan, settings, self._deliver)

    async def start(self) -> None:
        info = await ensure_consumer(
            self._jsm, self._settings.stream, self._config, self._settings.api_timeout_s
        )
        self.consumer = info.name
        # Subscribe after the consumer exists: a push consumer only pushes while someone listens.
        self._nats_sub = await self._nc.subscribe(
            self._deliver,
            queue=self.plan.queue or "",
            cb=self._on_msg,
            pending_msgs_limit=_NATS_PENDING_MSGS,
            pending_bytes_limit=_NATS_PENDING_BYTES,
        )
        log.info(
            "stream consumer attached",
            extra={"consumer": self.consumer, "pattern": self.plan.pattern, "queue": self.plan.queue},
        )

    async def _on_msg(self, msg: Msg) -> None:
        if not msg.reply:  # a status message (heartbeat, flow control): none are enabled, ignore
            return
        if self.plan.durable is None:
            self.last_stream_seq = max(self.last_stream_seq, msg.metadata.sequence.stream)
        try:
            event = self._decode(msg.data)
        except InvalidEventError as exc:
            await self._on_malformed(msg.subject, msg.data, exc, msg)
            return
        self._acker.inflight[id(event)] = msg
        self.subscription.deliver(event)

    async def recover(self) -> None:
        """After a reconnection: recreate the consumer if the server lost it (memory storage, expiry)."""
        if self.consumer is None or self._nats_sub is None:
            return
        timeout = self._settings.api_timeout_s * 6
        try:
            await retry_api(
                lambda: self._jsm.consumer_info(self._settings.stream, self.consumer or ""), timeout
            )
            return
        except NotFoundError:
            pass
        config = self._config
        if self.plan.durable is None:  # continue after the last event seen, not from the original start
            config = config.evolve(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self.last_stream_seq + 1
                if self.last_stream_seq
                else self._config.opt_start_seq,
                opt_start_time=None,
            )
            if config.opt_start_seq is None:
                config = self._config
        info = await retry_api(lambda: self._jsm.add_consumer(self._settings.stream, config), timeout)
        self.consumer = info.name
        log.warning("stream consumer recreated after reconnect", extra={"consumer": self.consumer})

    async def stop(self) -> None:
        await super().stop()
        if self.plan.durable is None and self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            try:
                await self._jsm.delete_consumer(self._settings.stream, consumer)
            except Exception as exc:  # it expires by itself (inactive_threshold)
                log.debug(
                    "could not delete ephemeral consumer", extra={"consumer": consumer, "error": repr(exc)}
                )
