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

The package reads top-down, and imports only downward (a test keeps it so):

* ``__init__`` — :class:`NatsBus`, the backend: publish, subscribe, request/reply, connection events;
* ``feeds`` — feeding subscriptions (core subscriptions, JetStream consumers) and settling receipts;
* ``lanes`` — a bot's own connection (``isolation = "per-bot"``: :meth:`NatsBus.for_bot`, :class:`BotView`);
* ``publisher`` — acknowledged, pipelined JetStream publishing; ``requests`` — request/reply;
* ``stream`` — stream and consumer management; ``connection`` — options, connecting, reconnect backoff;
* ``_client`` — the only module that touches nats-py's internals (direct dispatch, the lean wire).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import datetime
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamManager, api
from nats.js.errors import NotFoundError
from typing_extensions import Unpack

from ...errors import BusError, PublishError, SubscriptionRefusedError
from ...events import Event
from ...payloads import ConnectionStatus, PermissionViolation
from ...topics import TopicError, matches
from ..base import BUS_SOURCE, BotLane, BusOptions, Capabilities, EventBus, Wanted
from ..config import NatsSettings
from ..position import DurableRewind
from ..sequencer import Sequencer
from ..subscription import Handler, Subscription
from ._client import Wire, close_connection
from .connection import connect, server_url, sync_with_server
from .feeds import CoreFeed, Feed, FeedContext, HostInbox, StreamFeed
from .lanes import REPLY_ROOT, BotLink, bot_credentials
from .publisher import JetStreamPublisher, Outgoing
from .requests import RESPONDERS_PREFIX, Requests
from .resume import rewind_durable
from .stream import ConsumerPlan, consumer_names, ensure_stream, retry_api, validate_consumer_name

__all__ = ["RESPONDERS_PREFIX", "BotView", "NatsBus"]

log = logging.getLogger("citarion_host.bus.nats")

#: Distinct (bot, operation, subject) refusals reported and logged; beyond it they are only counted.
_VIOLATIONS_REPORTED = 1024


class NatsBus(EventBus):
    """Event bus over NATS (JetStream by default). See the module docstring and ``docs/nats.md``."""

    name = "nats"
    capabilities = Capabilities(persistent=True, replay=True, durable=True, cross_process=True)

    def __init__(
        self,
        settings: NatsSettings | None = None,
        **options: Unpack[BusOptions],
    ) -> None:
        super().__init__(**options)
        self.settings = settings or NatsSettings()
        self.jetstream = self.settings.jetstream
        if not self.jetstream:
            self.capabilities = Capabilities(cross_process=True)
            self.capability_hint = ": core NATS stores nothing; set [backend.nats] jetstream = true"
        self.nc = Client()
        self.stream_info: api.StreamInfo | None = None
        self.connection_state = "new"
        self._jsm: JetStreamManager | None = None
        self._publisher: JetStreamPublisher | None = None
        self._requests = Requests(self.nc, self.catalog)
        self._wire = Wire(self.nc, lean=False)  # the lean path, if possible, once connected
        #: Set while sending makes sense: connected, or closed for good (sends then fail at once).
        self._send_gate = asyncio.Event()
        self._feeds: dict[Subscription, Feed] = {}
        self._inbox: HostInbox | None = None  # the consumer shared by stored, non-durable subscriptions
        self._stored_topics: dict[str, bool] = {}
        #: Posted events the store never confirmed (reported on ``system.bus.unstored``).
        self.unstored = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._encode = self.catalog.encode
        #: ``isolation = "per-bot"``: each bot's view over its own connection (opened on first use),
        #: and which subscription is fed through which bot's connection.
        self._lanes: dict[str, BotView] = {}
        self._feed_links: dict[Subscription, BotLink] = {}
        #: Why the stream cannot be used (gone from the server after a reconnection), else None.
        self.stream_problem: str | None = None
        #: Consumers found gone from the server while connected, and made again (:meth:`_watch_consumers`).
        self.consumers_lost = 0
        self._consumer_watch: asyncio.Task[None] | None = None
        #: Operations the server refused to a bot's own connection (reported on ``system.bus.permission``).
        self.permission_violations = 0
        self._reported_violations: set[tuple[str, str, str]] = set()

    @property
    def wire(self) -> Wire:
        """How this bus sends and receives on its connection (the lean path once connected, if possible)."""
        return self._wire

    # -- connection -------------------------------------------------------------------------------

    async def _start(self) -> None:
        settings = self.settings
        # Bounded (nats-py retries a first connection forever), failing fast on refused credentials,
        # with one BusError naming the servers (credentials masked) and the cause.
        await connect(
            self.nc,
            settings,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            closed_cb=self._on_closed,
            error_cb=self._on_error,
        )
        self.connection_state = "connected"
        self._wire = Wire.for_client(self.nc, lean=settings.lean_wire)
        self._send_gate.set()
        log.info("connected to NATS", extra={"server": server_url(self.nc), "jetstream": self.jetstream})
        try:
            await self._requests.start()
            if self.jetstream:
                self._jsm = self.nc.jsm(timeout=settings.api_timeout_s)
                self.stream_info = await ensure_stream(self._jsm, settings, self.catalog.domains)
                self._publisher = JetStreamPublisher(
                    self.nc,
                    self._wire,
                    self._send_gate,
                    timeout=settings.publish_timeout_s,
                    ack_timeout=settings.publish_ack_timeout_s,
                    max_in_flight=settings.publish_max_in_flight,
                    on_unstored=self._unstored,
                    on_refusal=self._store_refusal,
                )
                await self._publisher.start()
                if settings.consumer_check_s > 0:
                    self._consumer_watch = asyncio.get_running_loop().create_task(
                        self._watch_consumers(settings.consumer_check_s), name="nats-consumer-watch"
                    )
        except BaseException:
            # The start failed (a stream the server refuses, say): closing what it opened is ours, not
            # the server dropping us. Its callbacks then stay quiet (as for a failed first connect):
            # the start's own error says why, in one line.
            self.connection_state = "new"
            await self.nc.close()
            raise

    async def close(self, *, drain: bool = True, timeout: float = 10.0) -> None:
        """As :meth:`EventBus.close`; first stops the inflow from NATS so the drain has an end."""
        if not self._closed:
            for feed in list(self._feeds.values()):
                await feed.quiesce()
        await super().close(drain=drain, timeout=timeout)

    async def _close(self) -> None:
        if self._consumer_watch is not None:
            self._consumer_watch.cancel()
        self._requests.cancel_all()
        for feed in list(self._feeds.values()):
            await feed.stop()
        self._feeds.clear()
        if self._tasks:  # the last naks and reports: a moment to finish, then cancelled
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        if self._publisher is not None:
            self._publisher.fail_all("the bus is closed")
        for lane in self._lanes.values():
            if lane.link.state != "new":
                await lane.link.close()
        if self.nc.is_connected:
            try:
                await sync_with_server(self.nc, timeout=2)  # the last acks and naks
            except (NatsError, TimeoutError) as exc:
                log.debug("final flush failed", extra={"error": repr(exc)})
        await close_connection(self.nc)
        self.connection_state = "closed"

    async def _on_disconnected(self) -> None:
        self._send_gate.clear()
        if self._closed or self.connection_state == "new":
            # Never connected: the first connect's own error says why, in one line (``_start``
            # raises it); a "disconnected" warning and its report before it would only mislead.
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
        log.warning("reconnected to NATS", extra={"server": server_url(self.nc)})
        if self._publisher is not None:
            self._publisher.reconnected()
        self._send_gate.set()
        self._spawn(self._recover())
        self._emit_internal(
            "system.connection.reconnected",
            ConnectionStatus(backend="nats", state="reconnected", detail=server_url(self.nc)),
        )

    async def _recover(self) -> None:
        """After a reconnection: the stream first, then every feed's consumer (``Feed.recover``).

        The server may come back without the stream (memory storage does not outlive a restart; an
        operator may have deleted it). Then nothing can be stored or read and no consumer can be made
        again; that is not papered over by making the stream anew (it would hold none of the run's
        events): it is reported once, on ``system.connection.stream_missing`` (locally: the server
        cannot store it), the host is not ready while it lasts (:meth:`connection_problems`), and the
        stream is looked for every ``reconnect_wait_s`` until it is there again. A stream that is there
        but is not the one this bus started on (made anew meanwhile: its sequence numbers began again)
        is read by every consumer made again from its start (``Feed.recover(anew=True)``)."""
        if not self.jetstream:
            return
        found = await self._find_stream()
        if found is not None:
            for feed in list(self._feeds.values()):
                self._spawn(feed.recover(anew=found))

    async def _find_stream(self) -> bool | None:
        """Look the stream up: None when it is missing (reported; :meth:`_look_for_stream` keeps
        looking), else whether it was made anew since this bus last saw it. When the server does not
        say (gone again, too slow), False: the feeds try on their own."""
        assert self._jsm is not None
        jsm, name = self._jsm, self.settings.stream
        try:
            info = await retry_api(lambda: jsm.stream_info(name), self.settings.api_timeout_s * 6)
        except NotFoundError:
            if self.stream_problem is None:
                self.stream_problem = (
                    f"JetStream stream {name!r} is gone from the server (storage "
                    f"{self.settings.storage!r}: memory storage does not outlive a server restart; or "
                    "it was deleted): nothing can be stored or read until it is there again; restart the"
                    " host to create it anew"
                )
                log.error("the stream is gone from the server", extra={"stream": name})
                self._tell_locally(
                    "system.connection.stream_missing",
                    ConnectionStatus(backend="nats", state="stream missing", detail=self.stream_problem),
                )
                self._spawn(self._look_for_stream())
            return None
        except (NatsError, TimeoutError) as exc:
            log.warning("could not look the stream up", extra={"stream": name, "error": repr(exc)})
            return False
        known, self.stream_info = self.stream_info, info
        anew = known is not None and info.created != known.created
        if self.stream_problem is not None:
            self.stream_problem = None
            log.warning("the stream is there again", extra={"stream": name, "anew": anew})
        elif anew:
            log.warning(
                "the stream was made anew: its consumers read it from its start", extra={"stream": name}
            )
        return anew

    async def _look_for_stream(self) -> None:
        """While the stream is missing: look for it now and then; once it is there, recover."""
        while self.stream_problem is not None and not self._closed:
            await asyncio.sleep(self.settings.reconnect_wait_s)
            if self.nc.is_connected:
                await self._recover()

    async def _watch_consumers(self, interval: float) -> None:
        """Every ``interval`` seconds, one request for the names of the stream's consumers: one of this
        bus's found gone (deleted by an operator, while the connection stayed up, so no reconnection
        made it again) would otherwise leave its subscription without events and without a word. It
        is logged, counted (``consumers_lost``), reported on ``system.connection.consumer_missing``
        (locally, critical) and made again after the last event its feed saw. The stream itself gone
        is taken as after a reconnection (:meth:`_recover`)."""
        while not self._closed:
            await asyncio.sleep(interval)
            if self.nc.is_connected and self.stream_problem is None:
                try:
                    await self._check_consumers()
                except NotFoundError:  # the stream itself is gone (deleted): said as after a reconnection
                    await self._recover()
                except (NatsError, TimeoutError) as exc:  # the next round asks again
                    log.debug("consumer check failed", extra={"error": repr(exc)})

    async def _check_consumers(self) -> None:
        feeds: dict[int, tuple[Feed, StreamFeed]] = {}
        for feed in list(self._feeds.values()):  # the ones that exist before the names are asked for
            inner = feed.stream_feed()
            if inner is not None and inner.consumer is not None:
                feeds.setdefault(id(inner), (feed, inner))  # the host inbox: once for all its members
        if not feeds:
            return
        assert self._jsm is not None
        names = await consumer_names(self._jsm, self.settings.stream)
        for feed, inner in feeds.values():
            if inner.consumer in names or inner.stopping:
                continue
            gone, after, patterns = inner.consumer, inner.last_stream_seq, " | ".join(inner.plan.patterns)
            if not await feed.recover():  # there after all (made meanwhile), or stopped since
                continue
            self.consumers_lost += 1
            detail = (
                f"consumer {gone!r} ({patterns}) was gone from the server while connected: made again"
                f" as {inner.consumer!r}, after stream sequence {after}"
            )
            log.error("a stream consumer was gone from the server", extra={"detail": detail})
            self._tell_locally(
                "system.connection.consumer_missing",
                ConnectionStatus(backend="nats", state="consumer missing", detail=detail),
            )

    async def _on_closed(self) -> None:
        """The client gave up reconnecting (``max_reconnect_attempts``): fail fast from now on."""
        self._send_gate.set()  # waiting publishers go on and fail with "connection closed"
        if self._closed or self.connection_state == "new":  # the first connect failed: it says so
            return
        self.connection_state = "closed"
        detail = repr(self.nc.last_error) if self.nc.last_error else "connection closed"
        log.error("NATS connection closed for good; the bus cannot publish any more", extra={"error": detail})
        if self._publisher is not None:
            self._publisher.fail_all(f"NATS connection closed ({detail})")
        # nothing can be sent any more: tell the local subscribers directly
        self._tell_locally(
            "system.connection.closed", ConnectionStatus(backend="nats", state="closed", detail=detail)
        )

    def _tell_locally(self, topic: str, payload: Any) -> None:
        """A report about the server failing us: delivered to this host's subscribers directly, since
        sending it through the server could fail the same way."""
        event = self.catalog.make(topic, payload, source=BUS_SOURCE, priority="critical")
        for subscription in self.local_subscribers(event):
            subscription.deliver(event)

    async def _on_error(self, error: Exception) -> None:
        log.debug("NATS client error", extra={"error": repr(error)})

    # -- per-bot connections --------------------------------------------------------------------

    def for_bot(self, bot_id: str) -> BotLane:
        """``isolation = "per-bot"``: a :class:`BotView` whose sends and subscription go over the bot's
        own connection (``lanes.py``, connected on first use); otherwise this bus (``EventBus.for_bot``).
        A bot without a seed is refused here (:class:`ConfigError` naming it), before anything starts."""
        if self.settings.isolation != "per-bot":
            return self
        lane = self._lanes.get(bot_id)
        if lane is None:
            bot_credentials(self.settings, bot_id, os.environ)  # fail fast; read again when connecting
            link = BotLink(bot_id, self.settings, self.catalog, self._violation, self._link_reconnected)
            lane = self._lanes[bot_id] = BotView(self, link)
        return lane

    def connection_problems(self) -> list[str]:
        """The stream gone from the server (:meth:`_recover`); bots whose own connection is away
        (nats-py reconnects it) or closed for good."""
        problems = [self.stream_problem] if self.stream_problem is not None else []
        refusal = self._publisher.refusal if self._publisher is not None else None
        if refusal is not None:
            problems.append(f"JetStream refuses to store this host's events: {refusal}")
        problems += [  # per-bot isolation: a bot's events go through its own publisher
            f"bot {bot_id!r}: JetStream refuses to store its events: {lane.link.publisher.refusal}"
            for bot_id, lane in sorted(self._lanes.items())
            if lane.link.publisher is not None and lane.link.publisher.refusal is not None
        ]
        return problems + [
            f"bot {bot_id!r}: its own NATS connection is {lane.link.state}"
            for bot_id, lane in sorted(self._lanes.items())
            if lane.link.state in ("disconnected", "closed")
        ]

    async def release_bot(self, bot_id: str) -> None:
        """A removed bot's connection is closed (its subscription was closed by the host first)."""
        lane = self._lanes.pop(bot_id, None)
        if lane is not None and lane.link.state != "new":
            await lane.link.close()

    def _violation(self, link: BotLink, operation: str, subject: str) -> None:
        """The server refused a bot's operation: counted always; the first time per bot, operation
        and subject, logged and reported to this host's subscribers on ``system.bus.permission``
        (critical; locally, since the bot's connection is what was refused). The host goes on."""
        self.permission_violations += 1
        key = (link.bot_id, operation, subject)
        if key in self._reported_violations or len(self._reported_violations) >= _VIOLATIONS_REPORTED:
            return
        self._reported_violations.add(key)
        log.error(
            "the NATS server refused a bot's operation: outside its NATS user's permissions",
            extra={"bot": link.bot_id, "operation": operation, "subject": subject},
        )
        payload = PermissionViolation(bot_id=link.bot_id, operation=operation, subject=subject)
        self._tell_locally("system.bus.permission", payload)

    def _link_reconnected(self, link: BotLink) -> None:
        for subscription, feed in list(self._feeds.items()):
            if self._feed_links.get(subscription) is link:
                self._spawn(feed.recover())

    async def _post_via(self, link: BotLink, event: Event) -> None:
        """:meth:`post` over a bot's own connection (same checks, same place in the publish order)."""
        self._check_open()
        data = self._encode(event)
        if len(data) > self.max_event_bytes:
            raise self._too_big(event, data)
        publisher = link.publisher
        sending: Callable[[], Awaitable[None]]
        if publisher is None:
            sending = lambda: link.send_core(event.topic, data)  # noqa: E731
        else:
            if not self._stored_topics.get(event.topic):
                self._check_stored(event.topic)
            item = Outgoing(event.topic, data, event.id, event)
            sending = lambda: publisher.post(item)  # noqa: E731
            if self._inbox is not None:
                self._inbox.expect_echo(event, data)
        if self.sequencer is not None:
            await self.sequencer.admit()
            await self._sequenced(sending, (event,))
        else:
            await sending()
        self.published += 1
        link.published += 1

    # -- publish ----------------------------------------------------------------------------------

    async def publish(self, event: Event) -> None:
        """Returns once the event is stored (JetStream) or written to the connection (core)."""
        if self._closed:
            self._check_open()
        data = self._encode(event)
        if len(data) > self.max_event_bytes:
            raise self._too_big(event, data)
        if self._publisher is None and self.sequencer is None and self._send_gate.is_set():
            try:  # core, concurrent: the hot path of the core benchmark, straight to the wire
                await self._wire.publish(event.topic, data)
            except (NatsError, TopicError) as exc:
                raise PublishError(f"publish on {event.topic!r} failed: {exc!r}") from exc
            self.published += 1
            return
        if self._publisher is not None:
            if not self._stored_topics.get(event.topic):
                self._check_stored(event.topic)
            if self._inbox is not None:
                self._inbox.expect_echo(event, data)
        if self.sequencer is not None:
            await self.sequencer.admit()
            await self._sequenced(lambda: self._send(event, data, event.id), (event,))
        else:
            await self._send(event, data, event.id)
        self.published += 1

    async def post(self, event: Event) -> None:
        """JetStream: returns once the event is written to the connection, in order; the store's ack is
        awaited in the background (resent with the same ``Nats-Msg-Id`` when missing), and an event
        that is never stored is reported on ``system.bus.unstored`` and counted (``unstored``).
        ``flush()`` / ``settle()`` wait for every ack. Core NATS: the same as ``publish``."""
        publisher = self._publisher
        if publisher is None:
            await self.publish(event)
            return
        if self._closed:
            self._check_open()
        data = self._encode(event)
        if len(data) > self.max_event_bytes:
            raise self._too_big(event, data)
        if not self._stored_topics.get(event.topic):
            self._check_stored(event.topic)
        item = Outgoing(event.topic, data, event.id, event)
        if self._inbox is not None:
            self._inbox.expect_echo(event, data)
        if self.sequencer is not None:
            await self.sequencer.admit()
            await self._sequenced(lambda: publisher.post(item), (event,))
        else:
            await publisher.post(item)
        self.published += 1

    def post_now(self, event: Event) -> bool:
        """JetStream: :meth:`post` without a coroutine when nothing has to wait (a topic checked
        before, room in the in-flight window, the wire taking it at once, and in deterministic mode
        room in the sequencer); False otherwise (and on core NATS): :meth:`post` it.

        Deterministic mode: the event is announced to the sequencer right after the wire took it, in
        the same call, so before any of its deliveries can be read: the same place in the order as
        :meth:`post` gives it. A post that is never stored is withdrawn by :meth:`_unstored`."""
        publisher = self._publisher
        if publisher is None or self._closed:
            return False
        sequencer = self.sequencer
        if sequencer is not None and sequencer.crowded():
            return False
        if not self._stored_topics.get(event.topic):
            return False
        data = self._encode(event)
        if len(data) > self.max_event_bytes:
            return False
        if not publisher.post_now(Outgoing(event.topic, data, event.id, event)):
            return False
        if self._inbox is not None:
            self._inbox.expect_echo(event, data)
        if sequencer is not None:
            sequencer.expect(event, self._index.match(event.topic))
        self.published += 1
        return True

    def _too_big(self, event: Event, data: bytes) -> PublishError:
        return PublishError(
            f"event {event.id} on {event.topic!r} is {len(data)} bytes encoded, over [backend] "
            f"max_event_bytes ({self.max_event_bytes}; the server's max_payload is {self.nc.max_payload}): "
            "not sent (docs/limits.md)"
        )

    def _store_refusal(self, reason: str | None) -> None:
        """The server refuses to store (no storage left), or stores again: reported on
        ``system.connection.store_refused`` / ``store_ok`` (locally: the store is what fails); the host
        is not ready meanwhile (:meth:`connection_problems`)."""
        state, detail = ("store refused", reason) if reason is not None else ("store ok", "")
        topic = "system.connection.store_refused" if reason is not None else "system.connection.store_ok"
        self._tell_locally(topic, ConnectionStatus(backend="nats", state=state, detail=detail))

    def _unstored(self, items: list[Outgoing], reason: str) -> None:
        """Posted events the store never confirmed: counted, reported (to this host's subscribers: the
        store is what failed), no longer awaited anywhere."""
        self.unstored += len(items)
        for item in items:
            if self.sequencer is not None and isinstance(item.event, Event):
                self.sequencer.withdraw(item.event)
        report = {"count": len(items), "eventIds": [item.msg_id for item in items[:20]], "reason": reason}
        self._tell_locally("system.bus.unstored", report)

    async def _send(self, event: Event, data: bytes, msg_id: str) -> None:
        if self._publisher is not None:
            await self._publisher.publish((Outgoing(event.topic, data, msg_id),))
        elif self._send_gate.is_set():  # core: the hot path of the core benchmark, straight to the wire
            try:
                await self._wire.publish(event.topic, data)
            except (NatsError, TopicError) as exc:
                raise PublishError(f"publish on {event.topic!r} failed: {exc!r}") from exc
        else:
            await self._core_publish(event.topic, data)

    def _sequenced(
        self, sending: Callable[[], Awaitable[None]], events: Sequence[Event]
    ) -> Coroutine[Any, Any, None]:
        """Deterministic mode: announce ``events`` to the sequencer now (their place in the publish
        order), and return the send, which withdraws them if it fails."""
        sequencer = self.sequencer
        assert sequencer is not None
        match = self._index.match  # each subscription once: expect() gathers them in a set
        for event in events:
            sequencer.expect(event, match(event.topic))
        return _withdrawn_on_failure(sending, sequencer, events)

    async def publish_many(self, events: Iterable[Event]) -> None:
        """Pipelined: one round trip for the whole batch; stored in the order given."""
        self._check_open()
        encode = self._encode
        if self._publisher is not None:
            batch = list(events)
            items = [Outgoing(event.topic, encode(event), event.id) for event in batch]
            for event, item in zip(batch, items, strict=True):
                if len(item.data) > self.max_event_bytes:
                    raise self._too_big(event, item.data)
            for topic in {item.subject for item in items}:
                self._check_stored(topic)
            if self._inbox is not None:
                for event, item in zip(batch, items, strict=True):
                    self._inbox.expect_echo(event, item.data)
            if self.sequencer is not None:
                publisher = self._publisher
                await self._sequenced(lambda: publisher.publish(items), batch)
            else:
                await self._publisher.publish(items)
            self.published += len(items)
            return
        for event in events:
            await self.publish(event)

    def _check_stored(self, topic: str) -> None:
        """Refuse at once a topic the stream does not store (instead of timing out on its ack)."""
        if self._stored_topics.get(topic):
            return
        subjects = self.stream_info.config.subjects or [] if self.stream_info else []
        if not any(matches(subject, topic) for subject in subjects):
            raise PublishError(
                f"topic {topic!r} is not stored by stream {self.settings.stream!r} (subjects {subjects}); "
                "add its domain before the bus starts, or widen NatsSettings.subjects"
            )
        if len(self._stored_topics) >= 65_536:
            self._stored_topics.clear()
        self._stored_topics[topic] = True

    async def _core_publish(self, subject: str, data: bytes) -> None:
        if not self._send_gate.is_set():
            try:
                async with asyncio.timeout(self.settings.publish_timeout_s):
                    await self._send_gate.wait()
            except TimeoutError:
                raise PublishError(
                    f"publish on {subject!r}: not connected to NATS for {self.settings.publish_timeout_s:g}s"
                ) from None
        try:
            await self._wire.publish(subject, data)
        except (NatsError, TopicError) as exc:
            raise PublishError(f"publish on {subject!r} failed: {exc!r}") from exc

    async def _store_dead_letter(self, event: Event, key: str | None) -> None:
        """With a key, stored under it as ``Nats-Msg-Id``: several reporters (hosts) store one copy."""
        msg_id = key or event.id
        data = self._encode(event)
        if self.sequencer is not None:
            await self._sequenced(lambda: self._send(event, data, msg_id), (event,))
        else:
            await self._send(event, data, msg_id)
        self.published += 1

    def _spawn_publish(self, event: Event) -> None:
        if self.sequencer is None:
            self._spawn(self.publish(event))
            return
        # Announced now, so the event keeps its place in the publish order; sent in the background.
        data = self._encode(event)
        self._spawn(self._sequenced(lambda: self._send(event, data, event.id), (event,)))
        self.published += 1

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """A background task the bus cancels when it closes; failures are logged."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if isinstance(error, BusError):  # e.g. a report that could not be stored: say why, no trace
            log.warning("background publish failed", extra={"error": str(error)})
        elif error is not None:
            log.error("background bus task failed", exc_info=error)

    # -- subscribe --------------------------------------------------------------------------------

    def _subscription_options(self, wanted: Wanted) -> dict[str, Any]:
        """Plain subscriptions are core NATS subscriptions, one per pattern, feeding one inbox: events
        arrive live, in the order the server sends them (an event matching several patterns once).
        ``stored``, ``durable`` or a start position read the stream instead, through a JetStream
        consumer with the patterns as filter subjects: stream order, acknowledged (see
        ``feeds.py``). ``durable``: the consumer has that name and resumes where it stopped, also
        after a restart; with ``queue``, every member (on any host) shares it. ``start_sequence`` /
        ``start_time``: stored events from there on, then live ones (with ``durable``, only when the
        consumer is first created)."""
        durable, queue = wanted.durable, wanted.queue
        if not (durable or wanted.positioned or wanted.stored):
            return {}
        if durable is not None:
            validate_consumer_name(durable)
            if queue is None and any(
                isinstance(feed, StreamFeed) and feed.plan.durable == durable for feed in self._feeds.values()
            ):  # the server's push_bound flag lags behind a new subscription: check ours first
                raise ValueError(f"durable {durable!r} is already being consumed by another subscriber")
        elif queue is not None:
            raise ValueError("a queue group reading from the stream needs a durable name to share")
        # The server never has more unacknowledged events out than our backlog bound: a stream-backed
        # subscriber is paced by the server and never drops events to overflow.
        plan = ConsumerPlan(
            wanted.patterns, durable, queue, wanted.start_sequence, wanted.start_time, wanted.max_pending
        )
        return {"plan": plan}

    async def rewind_durable(self, durable: str, after: int) -> DurableRewind:
        """See :func:`.resume.rewind_durable`: call it before subscribing ``durable`` again, and pass
        ``start_sequence=after + 1`` unless the result says the consumer was ``kept``."""
        self._check_open()
        if self._jsm is None:
            raise ValueError("durable consumers need NatsSettings.jetstream = true")
        validate_consumer_name(durable)
        return await rewind_durable(
            self._jsm, self.settings.stream, durable, after, self.settings.api_timeout_s
        )

    async def _attach(self, subscription: Subscription, **options: Any) -> None:
        plan: ConsumerPlan | None = options.get("plan")
        link: BotLink | None = options.get("link")  # a bot's own connection (per-bot isolation)
        wire = self._wire if link is None else link.wire
        context = FeedContext(
            wire, self.settings, self.catalog, self.dead_letter, self._spawn, self.max_event_bytes
        )
        feed: Feed
        if plan is None:
            feed = CoreFeed(context, subscription)
        elif link is None and plan.durable is None and plan.queue is None and not plan.positioned:
            feed = self._host_inbox(context).membership(subscription)  # one consumer for all of these
        else:
            assert self._jsm is not None, "stream-backed subscriptions exist in JetStream mode only"
            if link is not None and plan.durable is None:
                # The consumer the bot's user was granted (natsauth.bot_consumer): named after the bot,
                # created by the host's connection, read and acked over the bot's.
                plan = dataclasses.replace(plan, name=link.bot_id)
            stream_feed = StreamFeed(context, self._jsm, subscription, plan)
            subscription.receipts = stream_feed  # the feed settles what it hands over
            feed = stream_feed
        refused = link.refused_subscriptions if link is not None else 0
        await feed.start()
        self._feeds[subscription] = feed
        if link is not None:
            self._feed_links[subscription] = link
        for each in subscription.patterns:
            await self._requests.add_responder(each)
        # Once subscribe() returns, the server has our interest, so events (and requests)
        # published from any other connection from then on reach this subscriber.
        await self._confirm(subscription, f"subscribing to {subscription.pattern!r}")
        if link is not None and link.refused_subscriptions > refused:
            await self._refused(subscription, link)

    async def _refused(self, subscription: Subscription, link: BotLink) -> None:
        """The server refused (part of) a bot's subscription; its refusal arrived before the
        confirmation, which the server answers after it. A subscription that would never receive
        those events must not exist: the deterministic mode would wait for its deliveries (on a
        repattern the subscription is still registered: its owner unsubscribes it, as the host does)."""
        await self._detach(subscription)
        raise SubscriptionRefusedError(
            f"bot {link.bot_id!r}: the NATS server refused its subscription to "
            f"{link.last_refused_subject!r}: outside its NATS user's permissions (regenerate them with "
            "`citarion-host nats-config` from this config, or narrow the bot's subscribe patterns)",
            link.bot_id,
            link.last_refused_subject,
        )

    def _host_inbox(self, context: FeedContext) -> HostInbox:
        if self._inbox is None:
            assert self._jsm is not None, "stream-backed subscriptions exist in JetStream mode only"
            self._inbox = HostInbox(context, self._jsm, self.max_pending)
        return self._inbox

    async def _confirm(self, subscription: Subscription, what: str) -> None:
        link = self._feed_links.get(subscription)
        try:
            await sync_with_server(self.nc if link is None else link.nc, self.settings.api_timeout_s)
        except TimeoutError:
            await self._detach(subscription)
            raise BusError(
                f"{what}: the server did not confirm it within "
                f"{self.settings.api_timeout_s:g}s ({self.connection_state})"
            ) from None

    async def _repattern(self, subscription: Subscription, patterns: tuple[str, ...]) -> None:
        feed = self._feeds.get(subscription)
        if feed is None:
            return
        old = subscription.patterns
        for each in patterns:
            if each not in old:
                await self._requests.add_responder(each)
        link = self._feed_links.get(subscription)
        refused = link.refused_subscriptions if link is not None else 0
        await feed.repattern(patterns, lambda: self._confirm(subscription, f"resubscribing to {patterns}"))
        if link is not None and link.refused_subscriptions > refused:
            await self._refused(subscription, link)
        for each in old:
            if each not in patterns:
                await self._requests.remove_responder(each)

    async def _detach(self, subscription: Subscription) -> None:
        self._feed_links.pop(subscription, None)
        feed = self._feeds.pop(subscription, None)
        if feed is not None:
            await feed.stop()
            for each in subscription.patterns:
                await self._requests.remove_responder(each)

    async def _flush(self) -> None:
        if self._publisher is not None:
            await self._publisher.flush()
        for lane in self._lanes.values():
            await lane.link.flush()

    async def stream_position(self) -> int:
        """The stream's last sequence now (0 when empty): where what is published from now on starts."""
        jsm = self._jsm
        if jsm is None:
            raise ValueError("stream positions need NatsSettings.jetstream = true")
        info = await retry_api(lambda: jsm.stream_info(self.settings.stream), self.settings.api_timeout_s)
        return int(info.state.last_seq or 0)

    async def _sync(self) -> None:
        """Settle without the sequencer: our publishes acknowledged, core deliveries received (a
        ping through the same connection), every stream consumer caught up (its server-side state)."""
        await self._flush()
        if self.nc.is_connected:
            await sync_with_server(self.nc, self.settings.api_timeout_s)
        for lane in self._lanes.values():
            await lane.link.sync(self.settings.api_timeout_s)
        for feed in list(self._feeds.values()):
            await feed.caught_up()

    # -- request / reply --------------------------------------------------------------------------

    async def request(self, event: Event, *, timeout: float = 5.0) -> Event:
        """Publish ``event`` with ``metadata.replyTo`` set to an inbox of this bus; wait for the answer."""
        self._check_open()
        return await self._requests.request(event, timeout, self.publish)

    async def reply(self, request: Event, response: Event) -> None:
        """Send ``response`` to the requester's inbox (core NATS: replies are not stored), and nowhere
        else: a ``metadata.replyTo`` that is no reply inbox is refused (``PublishError``)."""
        self._check_open()
        await self._requests.reply(
            request, self.as_reply(request, response), request.metadata.get("replyTo"), self._stores
        )

    def _stores(self, subject: str) -> bool:
        """Whether the stream stores ``subject`` (core mode: nothing is stored)."""
        subjects = self.stream_info.config.subjects or [] if self.stream_info else []
        return any(matches(pattern, subject) for pattern in subjects)

    # -- introspection ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        stats = super().stats()
        stats["nats"] = {
            "connection": self.connection_state,
            "server": server_url(self.nc),
            "jetstream": self.jetstream,
            "stream": self.settings.stream if self.jetstream else None,
            "in_flight": self._publisher.in_flight if self._publisher else 0,
            "duplicates": self._publisher.duplicates if self._publisher else 0,
            "resent": self._publisher.resent if self._publisher else 0,
            "unstored": self.unstored,
            "consumers_lost": self.consumers_lost,
            "stream_missing": self.stream_problem is not None,
            "store_refused": self._publisher.refusal is not None if self._publisher else False,
            "reconnects": self.nc.stats.get("reconnects", 0),
            "isolation": self.settings.isolation,
            "permission_violations": self.permission_violations,
        }
        if self._lanes:
            stats["nats"]["bots"] = {
                bot_id: {
                    "connection": lane.link.state,
                    "published": lane.link.published,
                    "permission_violations": lane.link.violations,
                }
                for bot_id, lane in sorted(self._lanes.items())
            }
        return stats


class BotView:
    """One bot's side of a :class:`NatsBus` with ``isolation = "per-bot"`` (:meth:`NatsBus.for_bot`).

    Its posts, requests and subscription go over the bot's own connection (:class:`~.lanes.BotLink`,
    opened on first use), so the server checks them against the bot's NATS user; everything else (the
    catalog, the stream, the consumers, the sequencer, local delivery, the host's reports) is the bus's.
    The responders' probe subscriptions stay on the host's connection (``docs/nats.md``).
    """

    __slots__ = ("_bus", "link")

    def __init__(self, bus: NatsBus, link: BotLink) -> None:
        self._bus = bus
        self.link = link

    def __repr__(self) -> str:
        return f"<BotView {self.link.bot_id} on {self._bus.name}>"

    async def _opened(self) -> BotLink:
        link = self.link
        if not link.opened:
            bus = self._bus
            bus._check_open()
            await link.open(os.environ, bus.jetstream, bus._unstored)
        return link

    async def post(self, event: Event) -> None:
        link = self.link if self.link.opened else await self._opened()
        await self._bus._post_via(link, event)

    async def request(self, event: Event, *, timeout: float = 5.0) -> Event:
        """Probe, request and answer over the bot's connection; the answer comes to its reply inbox
        (``_CIT.reply.<id>``), where only the bots that can receive its requests may write."""
        link = await self._opened()
        bus = self._bus
        bus._check_open()
        return await link.requests.request(event, timeout, lambda sent: bus._post_via(link, sent))

    async def reply(self, request: Event, response: Event) -> None:
        """To another bot's reply inbox over the bot's connection (the server checks that it may
        answer that bot); to any other requester's inbox (a service, ``citarion-host ask``) over the
        host's, which only ever sends to reply inboxes (``check_reply_subject``)."""
        bus = self._bus
        reply_to = request.metadata.get("replyTo")
        if not (isinstance(reply_to, str) and reply_to.startswith(REPLY_ROOT + ".")):
            await bus.reply(request, response)
            return
        link = await self._opened()
        bus._check_open()
        await link.requests.reply(request, bus.as_reply(request, response), reply_to, bus._stores)

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
        """As :meth:`EventBus.subscribe`, fed through the bot's connection."""
        link = await self._opened()
        bus = self._bus
        wanted = bus._wanted(pattern, queue, durable, max_pending, start_sequence, start_time, stored)
        options = bus._subscription_options(wanted)
        return await bus._add_subscription(
            wanted.patterns,
            handler,
            queue=queue,
            durable=durable,
            name=name,
            max_pending=max_pending,
            link=link,
            **options,
        )


async def _withdrawn_on_failure(
    sending: Callable[[], Awaitable[None]], sequencer: Sequencer, events: Sequence[Event]
) -> None:
    try:
        await sending()
    except BaseException:
        for event in events:
            sequencer.withdraw(event)
        raise
