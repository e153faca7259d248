"""Request/reply over NATS for :class:`~citarion_host.bus.nats.NatsBus`.

A request is an ordinary event on its topic (stored in JetStream mode, so durable and queue-group
responders get it like any event) whose ``metadata.replyTo`` names an inbox of the requesting bus.
The responder's ``bus.reply`` publishes the answer there with core NATS (replies are not stored);
the requester matches it by ``correlationId``. A TypeScript service answers the same way: read
``metadata.replyTo``, publish a JSON event carrying the request's ``correlationId`` to it.

"No responders" needs one extra step. NATS reports it when nobody subscribes to a subject, but in
JetStream mode the stream itself subscribes to every event subject. So every subscription also
listens on ``_CIT.responders.<its pattern>`` and answers an empty probe; the requester first sends
such a probe for the request's topic, and the server's "no responders" status on it means nobody
would receive the request.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError as NatsNoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from ...errors import PublishError
from ...events import Event, EventCatalog, InvalidEventError
from ...topics import TopicError, split_topic
from ..replies import as_request, await_reply, no_responders, timeout_error

__all__ = ["REPLY_ROOTS", "RESPONDERS_PREFIX", "Requests", "check_reply_subject"]

log = logging.getLogger("citarion_host.bus.nats")

#: Every subscription also listens on ``<prefix>.<pattern>`` (see the module docstring).
RESPONDERS_PREFIX = "_CIT.responders"
#: Where a reply may go: a requester's inbox (nats-py's and nats.js's ``_INBOX.``, or the per-bot reply
#: root of docs/nats-auth.md). Never an event topic: a reply is for its requester only.
REPLY_ROOTS = ("_INBOX.", "_CIT.reply.")


def check_reply_subject(request: Event, reply_to: str, stored: Callable[[str], bool]) -> None:
    """Refuse a ``metadata.replyTo`` that is not a reply inbox (``PublishError`` naming the request).

    ``replyTo`` comes from whoever published the request; sending there unchecked would let a request
    make its responder publish on any subject: an event topic (stored in the stream and delivered as
    an event), a JetStream API call. ``stored``: whether the stream would store the subject.
    """
    reason = None
    if not reply_to.startswith(REPLY_ROOTS):
        reason = f"not a reply inbox (one of {', '.join(r + '...' for r in REPLY_ROOTS)})"
    else:
        try:
            split_topic(reply_to)
        except TopicError as exc:
            reason = str(exc)
        else:
            if stored(reply_to):
                reason = "a subject the stream stores"
    if reason is not None:
        raise PublishError(
            f"reply to request {request.id} on {request.topic!r} refused: its metadata.replyTo "
            f"{reply_to[:80]!r} is {reason}; a reply goes to its requester only (docs/events.md)"
        )


class Requests:
    """The requester's inbox and pending requests, and the responders' probe subscriptions."""

    def __init__(self, nc: Client, catalog: EventCatalog, root: str | None = None) -> None:
        """``root``: where the reply inbox goes (a bot's ``_CIT.reply.<id>``, the only place other
        bots may answer it: docs/nats-auth.md); default: the connection's own inbox prefix."""
        self._nc = nc
        self._catalog = catalog
        self._root = root
        self._inbox = ""
        self._tokens = itertools.count(1)
        self._waiting: dict[str, tuple[str, asyncio.Future[Event]]] = {}
        self._responders: dict[str, tuple[NatsSubscription, int]] = {}

    async def start(self) -> None:
        inbox = self._nc.new_inbox()
        self._inbox = inbox if self._root is None else f"{self._root}.{inbox.rsplit('.', 1)[-1]}"
        await self._nc.subscribe(self._inbox + ".*", cb=self._on_reply)

    def cancel_all(self) -> None:
        for _, future in self._waiting.values():
            future.cancel()
        self._waiting.clear()

    async def request(
        self, event: Event, timeout: float, publish: Callable[[Event], Awaitable[None]]
    ) -> Event:
        """Probe for responders, publish ``event`` with ``metadata.replyTo``, wait for the answer."""
        token = str(next(self._tokens))
        event = as_request(event, f"{self._inbox}.{token}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            await self._nc.request(f"{RESPONDERS_PREFIX}.{event.topic}", b"", timeout=timeout)
        except NatsNoRespondersError:
            raise no_responders(event) from None
        except NatsTimeoutError:
            pass  # somebody listens but is slow to answer the probe: go on, the deadline decides
        future: asyncio.Future[Event] = loop.create_future()
        self._waiting[token] = (event.correlation_id or event.id, future)
        try:
            async with asyncio.timeout_at(deadline):
                await publish(event)
            return await await_reply(future, event, deadline, timeout)
        except TimeoutError:
            raise timeout_error(event, timeout) from None
        finally:
            self._waiting.pop(token, None)

    async def reply(
        self, request: Event, response: Event, reply_to: object, stored: Callable[[str], bool]
    ) -> None:
        """Send ``response`` (already carrying the correlation id) to the requester's inbox, and only
        there (:func:`check_reply_subject`)."""
        if reply_to is None or reply_to == "":
            log.warning(
                "reply to an event that was not a request (no metadata.replyTo): nothing sent",
                extra={"correlation_id": response.correlation_id, "topic": response.topic},
            )
            return
        if not isinstance(reply_to, str):
            raise PublishError(
                f"reply to request {request.id} on {request.topic!r} refused: its metadata.replyTo is a "
                f"{type(reply_to).__name__}, not a reply inbox"
            )
        check_reply_subject(request, reply_to, stored)
        try:
            await self._nc.publish(reply_to, self._catalog.encode(response))
        except NatsError as exc:
            raise PublishError(f"reply on {response.topic!r} to {reply_to!r} failed: {exc!r}") from exc

    async def _on_reply(self, msg: Msg) -> None:
        token = msg.subject[len(self._inbox) + 1 :]
        waiting = self._waiting.get(token)
        if waiting is None:
            return  # expired, or answered already
        try:
            response = self._catalog.decode(msg.data)
        except InvalidEventError as exc:
            log.warning("malformed reply ignored", extra={"subject": msg.subject, "error": str(exc)})
            return
        correlation_id, future = waiting
        if response.correlation_id != correlation_id:
            log.warning("reply with a foreign correlation id ignored", extra={"subject": msg.subject})
            return
        if not future.done():
            future.set_result(response)

    # -- the responders' side -------------------------------------------------------------------

    async def add_responder(self, pattern: str) -> None:
        """Answer probes for ``pattern`` (reference-counted: one NATS subscription per pattern)."""
        current = self._responders.get(pattern)
        if current is not None:
            self._responders[pattern] = (current[0], current[1] + 1)
            return
        sub = await self._nc.subscribe(f"{RESPONDERS_PREFIX}.{pattern}", cb=_answer_probe)
        self._responders[pattern] = (sub, 1)

    async def remove_responder(self, pattern: str) -> None:
        current = self._responders.pop(pattern, None)
        if current is None:
            return
        sub, count = current
        if count > 1:
            self._responders[pattern] = (sub, count - 1)
        elif not self._nc.is_closed:
            try:
                await sub.unsubscribe()
            except NatsError as exc:
                log.debug("probe unsubscribe failed", extra={"error": repr(exc)})


async def _answer_probe(msg: Msg) -> None:
    if msg.reply:
        try:
            await msg.respond(b"")
        except NatsError as exc:
            log.debug("probe answer failed", extra={"error": repr(exc)})
