"""The NATS backend: events as JSON on NATS subjects, stored in a JetStream stream.

Subjects *are* the event topics and message bodies are exactly ``catalog.encode(event)`` (the
TypeScript ``BaseEvent`` JSON), so a TypeScript or Go service subscribing to ``trading.signal.generated``
on the same NATS sees the same events, and can publish ones we decode. See ``docs/nats.md``.

Two modes (``NatsSettings.jetstream``):

* JetStream (default): ``publish`` returns once the event is stored (acknowledged, deduplicated by
  ``Nats-Msg-Id``); ``subscribe(durable=...)`` and ``subscribe(start_sequence=/start_time=)`` read the
  stream through push consumers with acks, nak-with-backoff and dead-lettering.
* Core: plain NATS publish/subscribe, nothing stored (``capabilities`` says so). This is also the
  like-for-like path the core benchmark compares with raw nats-py.

Plain subscriptions are core NATS subscriptions in both modes: they see events live, as on the memory
bus. Every incoming message goes through :meth:`Subscription.deliver`, so the local rules (order,
priority overtaking, bounded backlog, error isolation) are the same as on every backend.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import itertools
import logging
import random
import socket
import ssl
from collections import OrderedDict
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import msgspec
from nats.aio.client import Client, Server
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError as NatsNoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamManager, api

from ..errors import BusError, NoRespondersError, PublishError, RequestTimeoutError
from ..events import Event, EventCatalog, InvalidEventError
from ..payloads import ConnectionStatus, DeadLetter
from ..topics import matches, split_pattern
from .base import BUS_SOURCE, Capabilities, EventBus
from .config import NatsSettings
from .nats_consumer import AckingHandler, CoreFeed, Feed, StreamFeed
from .nats_publish import JetStreamPublisher, Outgoing
from .nats_stream import ConsumerPlan, ensure_stream, validate_consumer_name
from .subscription import Handler, Subscription

__all__ = ["RESPONDERS_PREFIX", "NatsBus", "auth_options"]

log = logging.getLogger("citarion_host.bus.nats")

#: Every subscription also listens on ``<prefix>.<pattern>`` so a requester can ask the server whether
#: anybody would receive a request (the stream itself always "listens" to event subjects).
RESPONDERS_PREFIX = "_CIT.responders"
_MALFORMED_MEMORY = 1024
#: Hands a stream-backed subscription's plan from ``subscribe`` to ``_attach`` (base ``subscribe`` runs in
#: between and knows nothing about streams); a context variable, so concurrent subscribes never mix.
_plan: contextvars.ContextVar[tuple[ConsumerPlan, AckingHandler] | None] = contextvars.ContextVar(
    "nats_plan", default=None
)


class NatsBus(EventBus):
    """Event bus over NATS (JetStream by default). See the module docstring and ``docs/nats.md``."""

    name = "nats"
    capabilities = Capabilities(persistent=True, replay=True, durable=True, cross_process=True)

    def __init__(
        self,
        settings: NatsSettings | None = None,
        *,
        catalog_: EventCatalog | None = None,
        max_pending: int = 10_000,
    ) -> None:
        super().__init__(catalog_=catalog_, max_pending=max_pending)
        self.settings = settings or NatsSettings()
        self.jetstream = self.settings.jetstream
        if not self.jetstream:
            self.capabilities = Capabilities(cross_process=True)
        self.nc = Client()
        self.stream_info: api.StreamInfo | None = None
        self.connection_state = "new"
        self._jsm: JetStreamManager | None = None
        self._publisher: JetStreamPublisher | None = None
        self._connected = asyncio.Event()
        self._feeds: dict[Subscription, Feed] = {}
        self._responders: dict[str, tuple[NatsSubscription, int]] = {}
        self._waiting: dict[str, tuple[str, asyncio.Future[Event]]] = {}
        self._tokens = itertools.count(1)
        self._inbox = ""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._malformed_seen: OrderedDict[str, None] = OrderedDict()
        self._encode = self.catalog.encode

    # -- connection -------------------------------------------------------------------------------

    async def _start(self) -> None:
        settings = self.settings
        options: dict[str, Any] = {
            "servers": settings.servers,
            "name": settings.connection_name or socket.gethostname(),
            "connect_timeout": settings.connect_timeout_s,
            "reconnect_time_wait": settings.reconnect_wait_s,
            "max_reconnect_attempts": settings.max_reconnect_attempts,
            "reconnect_to_server_handler": self._next_server,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "closed_cb": self._on_closed,
            "error_cb": self._on_error,
            **auth_options(settings),
            # Topics and patterns are validated by the catalog and topics module before they get here.
            "skip_subject_validation": True,
        }
        attempts_budget = settings.connect_timeout_s * len(settings.servers) + settings.reconnect_wait_s * 2
        try:
            async with asyncio.timeout(attempts_budget + 1.0):
                await self.nc.connect(**{k: v for k, v in options.items() if v is not None})
        except (TimeoutError, OSError, NatsError) as exc:
            await self.nc.close()
            raise BusError(f"cannot connect to NATS at {', '.join(settings.servers)}: {exc!r}") from exc
        self.connection_state = "connected"
        self._connected.set()
        log.info("connected to NATS", extra={"server": _url(self.nc), "jetstream": self.jetstream})
        self._inbox = self.nc.new_inbox()
        await self.nc.subscribe(self._inbox + ".*", cb=self._on_reply)
        if self.jetstream:
            self._jsm = self.nc.jsm(timeout=settings.api_timeout_s)
            try:
                self.stream_info = await ensure_stream(self._jsm, settings, self.catalog.domains)
            except BaseException:
                await self.nc.close()
                raise
            self._publisher = JetStreamPublisher(
                self.nc,
                self._connected,
                timeout=settings.publish_timeout_s,
                ack_timeout=settings.publish_ack_timeout_s,
                max_in_flight=settings.publish_max_in_flight,
            )
            await self._publisher.start()

    async def close(self, *, drain: bool = True, timeout: float = 10.0) -> None:
        """As :meth:`EventBus.close`; first stops the inflow from NATS so the drain has an end."""
        if not self._closed:
            for feed in list(self._feeds.values()):
                await feed.quiesce()
        await super().close(drain=drain, timeout=timeout)

    async def _close(self) -> None:
        for future in (future for _, future in self._waiting.values()):
            future.cancel()
        self._waiting.clear()
        for feed in list(self._feeds.values()):
            await feed.stop()
        self._feeds.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._publisher is not None:
            self._publisher.fail_all("the bus is closed")
        if not self.nc.is_closed:
            try:
                await self.nc.flush(timeout=2)  # the last acks/naks
            except (NatsError, TimeoutError) as exc:
                log.debug("final flush failed", extra={"error": repr(exc)})
            await self.nc.close()
        self.connection_state = "closed"

    def _next_server(self, servers: list[Server], info: dict[str, Any]) -> tuple[Server | None, float]:
        """Reconnect backoff: first retry at once, then ``reconnect_wait_s`` doubling to the maximum."""
        server = min(servers, key=lambda s: s.reconnects)
        if server.reconnects == 0:
            return server, 0.0
        delay = min(
            self.settings.reconnect_wait_s * 2 ** (server.reconnects - 1), self.settings.reconnect_wait_max_s
        )
        return server, delay * random.uniform(0.8, 1.0)

    async def _on_disconnected(self) -> None:
        self._connected.clear()
        if self._closed:
            return
        self.connection_state = "disconnected"
        detail = repr(self.nc.last_error) if self.nc.last_error else None
        log.warning("disconnected from NATS", extra={"error": detail})
        # Published once the connection is back (stored with the time of the disconnection).
        self._emit_internal(
            "system.connection.disconnected",
            ConnectionStatus(backend="nats", state="disconnected", detail=detail),
        )

    async def _on_reconnected(self) -> None:
        if self._closed:
            return
        self.connection_state = "connected"
        log.warning("reconnected to NATS", extra={"server": _url(self.nc)})
        self._connected.set()
        if self._publisher is not None:
            self._publisher.reconnected()
        for feed in list(self._feeds.values()):
            self._spawn(feed.recover())
        self._emit_internal(
            "system.connection.reconnected",
            ConnectionStatus(backend="nats", state="reconnected", detail=_url(self.nc)),
        )

    async def _on_closed(self) -> None:
        self._connected.clear()
        if self._closed:
            return
        self.connection_state = "closed"
        detail = repr(self.nc.last_error) if self.nc.last_error else "connection closed"
        log.error("NATS connection closed for good; the bus cannot publish any more", extra={"error": detail})
        if self._publisher is not None:
            self._publisher.fail_all(f"NATS connection closed ({detail})")
        try:  # nothing can be sent any more: tell the local subscribers directly
            event = self.catalog.make(
                "system.connection.closed",
                ConnectionStatus(backend="nats", state="closed", detail=detail),
                source=BUS_SOURCE,
                priority="critical",
            )
        except InvalidEventError:  # pragma: no cover - the system domain is built in
            return
        for subscription in list(self._subscriptions):
            if matches(subscription.pattern, event.topic):
                subscription.deliver(event)

    async def _on_error(self, error: Exception) -> None:
        log.debug("NATS client error", extra={"error": repr(error)})

    # -- publish ----------------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        if self._closed:
            self._check_open()
        data = self._encode(event)
        if self._publisher is not None:
            await self._publisher.publish((Outgoing(event.topic, data, event.id),))
        elif self._connected.is_set():  # core: the hot path of the core benchmark, one call deep
            try:
                await self.nc.publish(event.topic, data)
            except NatsError as exc:
                raise PublishError(f"publish on {event.topic!r} failed: {exc!r}") from exc
        else:
            await self._core_publish(event.topic, data)
        self.published += 1

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Pipelined: one round trip for the whole batch; stored in the order given."""
        self._check_open()
        encode = self.catalog.encode
        if self._publisher is not None:
            items = [Outgoing(event.topic, encode(event), event.id) for event in events]
            await self._publisher.publish(items)
            self.published += len(items)
            return
        for event in events:
            await self._core_publish(event.topic, encode(event))
            self.published += 1

    async def _core_publish(self, subject: str, data: bytes) -> None:
        if not self._connected.is_set():
            try:
                async with asyncio.timeout(self.settings.publish_timeout_s):
                    await self._connected.wait()
            except TimeoutError:
                raise PublishError(
                    f"publish on {subject!r}: not connected to NATS for {self.settings.publish_timeout_s:g}s"
                ) from None
        try:
            await self.nc.publish(subject, data)
        except NatsError as exc:
            raise PublishError(f"publish on {subject!r} failed: {exc!r}") from exc

    async def _store(self, event: Event, msg_id: str) -> None:
        """Publish with a chosen dedup id (JetStream) so several reporters store one copy."""
        data = self.catalog.encode(event)
        if self._publisher is not None:
            await self._publisher.publish((Outgoing(event.topic, data, msg_id),))
        else:
            await self._core_publish(event.topic, data)
        self.published += 1

    def _spawn_publish(self, event: Event) -> None:
        self._spawn(self.publish(event))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background bus task failed", exc_info=task.exception())

    # -- subscribe --------------------------------------------------------------------------------

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
        """As :meth:`EventBus.subscribe`, plus stream positions (JetStream mode only).

        ``durable``: a JetStream durable consumer of that name; it resumes where it stopped, also after a
        restart of this host. With ``queue``, every member (on any host) shares the one consumer.
        ``start_sequence`` / ``start_time``: deliver stored events from that stream sequence number or
        time on, then live ones. With ``durable``, only when the consumer is first created.
        """
        split_pattern(pattern)
        positioned = start_sequence is not None or start_time is not None
        if start_sequence is not None and start_sequence < 1:
            raise ValueError(f"start_sequence must be >= 1, got {start_sequence}")
        if start_time is not None and start_time.tzinfo is None:
            raise ValueError("start_time must be timezone-aware (e.g. datetime.now(UTC))")
        if not (durable or positioned):
            return await super().subscribe(
                pattern, handler, queue=queue, durable=None, name=name, max_pending=max_pending
            )
        if not self.jetstream:
            raise ValueError("durable and positioned subscriptions need NatsSettings.jetstream = true")
        if durable is not None:
            validate_consumer_name(durable)
            if queue is None and any(
                isinstance(feed, StreamFeed) and feed.plan.durable == durable for feed in self._feeds.values()
            ):  # the server's push_bound flag lags behind a new subscription: check ours first
                raise ValueError(f"durable {durable!r} is already being consumed by another subscriber")
        elif queue is not None:
            raise ValueError("a queue group reading from a stream position needs a durable name to share")
        plan = ConsumerPlan(
            pattern=pattern,
            durable=durable,
            queue=queue,
            start_sequence=start_sequence,
            start_time=start_time,
            max_ack_pending=max_pending or self.max_pending,
        )
        acker = AckingHandler(self, handler)
        token = _plan.set((plan, acker))
        try:
            return await super().subscribe(
                pattern, acker, queue=queue, durable=durable, name=name, max_pending=max_pending
            )
        finally:
            _plan.reset(token)

    async def _attach(self, subscription: Subscription) -> None:
        planned = _plan.get()
        feed: Feed
        if planned is None:
            feed = CoreFeed(self.nc, self.catalog, subscription, self._malformed)
        else:
            assert self._jsm is not None
            plan, acker = planned
            feed = StreamFeed(
                self.nc, self._jsm, self.settings, self.catalog, subscription, plan, acker, self._malformed
            )
        await feed.start()
        self._feeds[subscription] = feed
        await self._add_responder(subscription.pattern)
        # A round trip: once subscribe() returns, the server has our interest, so events (and
        # requests) published from any other connection from then on reach this subscriber.
        await self.nc.flush(timeout=max(1, int(self.settings.api_timeout_s)))

    async def _detach(self, subscription: Subscription) -> None:
        feed = self._feeds.pop(subscription, None)
        if feed is not None:
            await feed.stop()
            await self._remove_responder(subscription.pattern)

    async def _add_responder(self, pattern: str) -> None:
        current = self._responders.get(pattern)
        if current is not None:
            self._responders[pattern] = (current[0], current[1] + 1)
            return
        sub = await self.nc.subscribe(f"{RESPONDERS_PREFIX}.{pattern}", cb=_answer_probe)
        self._responders[pattern] = (sub, 1)

    async def _remove_responder(self, pattern: str) -> None:
        sub, count = self._responders.pop(pattern, (None, 0))
        if count > 1 and sub is not None:
            self._responders[pattern] = (sub, count - 1)
        elif sub is not None and not self.nc.is_closed:
            await sub.unsubscribe()

    # -- malformed input --------------------------------------------------------------------------

    async def _malformed(self, subject: str, data: bytes, error: InvalidEventError, msg: Msg | None) -> None:
        """Dead-letter a message that is not a valid event, once, whoever saw it.

        Several subscriptions (and hosts) may receive the same bad message. The dead letter's
        ``Nats-Msg-Id`` is derived from the message, so the stream stores one copy, and this bus
        remembers recent ones, so it reports (and counts) each once.
        """
        digest = hashlib.blake2b(subject.encode() + b"\0" + data, digest_size=12).hexdigest()
        if digest not in self._malformed_seen:
            self._malformed_seen[digest] = None
            if len(self._malformed_seen) > _MALFORMED_MEMORY:
                self._malformed_seen.popitem(last=False)
            self.malformed += 1
            log.warning("dead letter", extra={"reason": "malformed", "error": str(error), "subject": subject})
            letter = self.catalog.make(
                "system.deadletter.malformed",
                DeadLetter(
                    reason="malformed",
                    error=str(error),
                    original=data.decode("utf-8", errors="replace"),
                    subject=subject,
                ),
                source=BUS_SOURCE,
                priority="high",
            )
            try:
                await self._store(letter, f"malformed-{digest}")
            except (PublishError, BusError) as exc:
                log.error("could not dead-letter a malformed message", extra={"error": repr(exc)})
                if msg is not None:  # keep it in the stream; it comes back and is tried again
                    self._malformed_seen.pop(digest, None)
                    await _quietly(msg.nak(delay=self.settings.nak_backoff_s[-1]))
                return
        if msg is not None:
            await _quietly(msg.term())

    # -- request / reply --------------------------------------------------------------------------

    async def request(self, event: Event, *, timeout: float = 5.0) -> Event:
        """Publish ``event`` with ``metadata.replyTo`` set to an inbox of this bus; wait for the answer."""
        self._check_open()
        correlation_id = event.correlation_id or event.id
        token = str(next(self._tokens))
        reply_to = f"{self._inbox}.{token}"
        event = msgspec.structs.replace(
            event, correlation_id=correlation_id, metadata={**event.metadata, "replyTo": reply_to}
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await self.nc.request(f"{RESPONDERS_PREFIX}.{event.topic}", b"", timeout=timeout)
        except NatsNoRespondersError:
            raise NoRespondersError(f"request {event.id} on {event.topic!r}: no subscriber") from None
        except NatsTimeoutError:
            pass  # somebody listens but is busy: go ahead, the reply deadline decides
        future: asyncio.Future[Event] = loop.create_future()
        self._waiting[token] = (correlation_id, future)
        try:
            async with asyncio.timeout_at(deadline):
                await self.publish(event)
                return await future
        except TimeoutError:
            raise RequestTimeoutError(
                f"request {event.id} on {event.topic!r}: no reply within {timeout:g}s"
            ) from None
        finally:
            self._waiting.pop(token, None)

    async def reply(self, request: Event, response: Event) -> None:
        """Send ``response`` to the requester's inbox (core NATS: replies are not stored)."""
        response = self.as_reply(request, response)
        reply_to = request.metadata.get("replyTo")
        if not isinstance(reply_to, str) or not reply_to:
            log.warning(
                "reply to an event that was not a request (no metadata.replyTo)",
                extra={"correlation_id": response.correlation_id, "topic": response.topic},
            )
            return
        try:
            await self.nc.publish(reply_to, self.catalog.encode(response))
        except NatsError as exc:
            raise PublishError(f"reply on {response.topic!r} to {reply_to!r} failed: {exc!r}") from exc

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._inbox) + 1 :]
        waiting = self._waiting.get(token)
        if waiting is None:
            return  # expired or already answered
        try:
            response = self.catalog.decode(msg.data)
        except InvalidEventError as exc:
            log.warning("malformed reply ignored", extra={"subject": msg.subject, "error": str(exc)})
            return
        correlation_id, future = waiting
        if response.correlation_id != correlation_id:
            log.warning("reply with a foreign correlation id ignored", extra={"subject": msg.subject})
            return
        if not future.done():
            future.set_result(response)

    # -- introspection ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        stats["nats"] = {
            "connection": self.connection_state,
            "server": _url(self.nc),
            "jetstream": self.jetstream,
            "stream": self.settings.stream if self.jetstream else None,
            "in_flight": self._publisher.in_flight if self._publisher else 0,
            "duplicates": self._publisher.duplicates if self._publisher else 0,
            "resent": self._publisher.resent if self._publisher else 0,
            "reconnects": self.nc.stats.get("reconnects", 0),
        }
        return stats


async def _answer_probe(msg: Msg) -> None:
    if msg.reply:
        await _quietly(msg.respond(b""))


async def _quietly(action: Any) -> None:
    try:
        await action
    except NatsError as exc:
        log.debug("NATS action failed", extra={"error": repr(exc)})


def _url(nc: Client) -> str | None:
    url = nc.connected_url
    return f"{url.scheme}://{url.hostname}:{url.port}" if url is not None else None


def auth_options(settings: NatsSettings) -> dict[str, Any]:
    """Credentials and TLS from ``settings`` as ``nats.connect`` keyword arguments (unset ones left out)."""
    options = {
        "user": settings.user,
        "password": settings.password,
        "token": settings.token,
        "user_credentials": settings.creds_file,
        "nkeys_seed": settings.nkeys_seed,
        "tls": _tls_context(settings),
    }
    return {key: value for key, value in options.items() if value is not None}


def _tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """An ``SSLContext`` from ``settings.tls`` (None: nats-py negotiates TLS only if the URL says so)."""
    tls = settings.tls
    if tls is None:
        return None
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.cert_file:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
