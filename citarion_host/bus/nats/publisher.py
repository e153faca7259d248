"""Publishing to JetStream: pipelined, acknowledged, deduplicated, and retried across connection faults.

Why not ``js.publish`` per event: it is a request/response round trip, so a publisher that awaits each
one is capped by latency (a few thousand events/s). Why not ``js.publish_async``: it costs a future, a
NUID and an ``asyncio.wait_for`` per message. Here every message is sent with a reply subject under one
inbox (``<inbox>.<n>``); the acks are matched by that token, and one waiter per *batch* is woken when
the batch is fully stored. ``publish_many`` sends a whole batch before waiting, so it costs one round trip
per batch instead of one per event, and the server stores the messages in the order they were written.

Every message carries ``Nats-Msg-Id: <event id>``. That makes a resend safe: within the stream's
duplicate window the server stores the first copy and acks the others as duplicates. Resends happen when
no ack came within ``publish_ack_timeout_s``, after a reconnection (acks of messages in flight at the
time of the fault are lost with the connection, the messages maybe too), and after "JetStream temporarily
unavailable" answers. A batch that is not fully stored within ``publish_timeout_s`` raises
:class:`~citarion_host.errors.PublishError`: a publish either returns (stored) or raises, never neither.

Posting (:meth:`JetStreamPublisher.post`, what a bot's ``ctx.publish`` uses) does not wait for the ack:
the message is written to the connection in call order and the call returns; consecutive posts gather in
an open batch that a background *settler* confirms as above (acks, resends with the same
``Nats-Msg-Id``, the timeout). Posts wait only when ``publish_max_in_flight`` messages are unconfirmed.
:meth:`JetStreamPublisher.post_now` is the same post without a coroutine, for the common case where
nothing has to wait (a free-running bot's publish: ``NatsBus.post_now``); it declines, and the caller
awaits :meth:`~JetStreamPublisher.post`, whenever a post would wait or another one is waiting.
A post that is never confirmed is handed to ``on_unstored`` (the bus reports and counts it): never
silently lost. :meth:`JetStreamPublisher.flush` waits until everything posted is confirmed or reported.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

from nats.aio.client import Client
from nats.errors import ConnectionClosedError, MaxPayloadError, OutboundBufferLimitError
from nats.errors import Error as NatsError

from ...errors import PublishError
from ._client import Wire
from .stream import INSUFFICIENT_RESOURCES

__all__ = ["JetStreamPublisher", "Outgoing"]

log = logging.getLogger("citarion_host.bus.nats")

_ACK_PREFIX = b'{"stream"'
_RETRY_DELAY_MAX_S = 1.0
#: JetStream's "duplicate message id is in process" (code 409): a resend reached a clustered stream
#: while its first copy was still being stored (after a reconnection, or an ack timeout). Not a refusal:
#: the message is stored, and the next resend gets the duplicate ack.
_DUPLICATE_IN_PROCESS = 10158


class Outgoing:
    """One message to store: subject, bytes, dedup id, what it carries, and its state while in flight."""

    __slots__ = ("acked", "batch", "data", "event", "msg_id", "subject", "token")

    def __init__(self, subject: str, data: bytes, msg_id: str, event: Any = None) -> None:
        self.subject = subject
        self.data = data
        self.msg_id = msg_id
        self.event = event  # the event, for whoever hears it was not stored
        self.token: str | None = None
        self.acked = False
        self.batch: _Batch | None = None


class _Batch:
    """Messages one publish call waits for; woken when all are stored, on error, or to resend.

    ``expired``: the ack timeout passed, so messages still in flight are presumed lost too.
    """

    __slots__ = (
        "attempts",
        "deadline",
        "error",
        "expired",
        "items",
        "reason",
        "remaining",
        "retry_timer",
        "waiter",
    )

    def __init__(self, items: list[Outgoing], deadline: float) -> None:
        self.items = items
        self.remaining = len(items)
        self.deadline = deadline
        self.error: PublishError | None = None
        self.reason = "no acknowledgement yet"
        self.attempts = 0
        self.expired = False
        self.retry_timer: asyncio.TimerHandle | None = None
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        self.retry_timer = None
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def expire(self) -> None:
        self.expired = True
        self.wake()


class JetStreamPublisher:
    """Sends messages to the stream and waits for their acks; shared by every publisher of one bus."""

    def __init__(
        self,
        nc: Client,
        wire: Wire,
        connected: asyncio.Event,
        *,
        timeout: float,
        ack_timeout: float,
        max_in_flight: int,
        on_unstored: Callable[[list[Outgoing], str], None],
        on_refusal: Callable[[str | None], None] | None = None,
    ) -> None:
        self._nc = nc
        self._wire = wire
        self._connected = connected
        self._timeout = timeout
        self._ack_timeout = ack_timeout
        self._max_in_flight = max_in_flight
        self._pending: dict[str, Outgoing] = {}
        self._batches: set[_Batch] = set()
        self._tokens = itertools.count(1)
        self._space = asyncio.Event()
        self._drained = asyncio.Event()  # set while no publish or post is waiting for acks
        self._drained.set()
        self._on_unstored = on_unstored
        self._open: _Batch | None = None  # posts not yet taken up by the settler
        self._settler: asyncio.Task[None] | None = None
        self._waiting = 0  # sends waiting for room in the window or for the connection
        self._prefix = ""
        self.duplicates = 0
        self.resent = 0
        #: Why the server refuses to store anything (no storage left), from its answer until the next
        #: message is stored; None while it stores. ``on_refusal`` hears each change.
        self.refusal: str | None = None
        self._on_refusal = on_refusal

    async def start(self) -> None:
        """Subscribe to the ack inbox (once per connection; nats-py resubscribes it after reconnects)."""
        self._prefix = self._nc.new_inbox() + "."
        # Acks are handled right in nats-py's reader (no queue hop, no task switch per ack), from the
        # subject and body alone (no ``Msg``): a status message ("no responders") has an empty body.
        await self._wire.subscribe(self._prefix + "*", None, self._on_ack)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def publish(self, items: Sequence[Outgoing]) -> None:
        """Store ``items`` in order; return when all are stored, or raise ``PublishError``."""
        if not items:
            return
        loop = asyncio.get_running_loop()
        batch = _Batch(list(items), loop.time() + self._timeout)
        self._batches.add(batch)
        self._drained.clear()
        try:
            for item in items:
                item.batch = batch
                await self._send(item, batch)
            await self._settle(batch)
        finally:
            self._batches.discard(batch)
            self._forget(batch)
            if not self._batches:
                self._drained.set()

    async def flush(self) -> None:
        """Return once every publish and post under way has been confirmed as stored, or has failed
        (a failed post reported through ``on_unstored``)."""
        while not self._drained.is_set():
            await self._drained.wait()

    def post_now(self, item: Outgoing) -> bool:
        """:meth:`post` without a coroutine, when nothing has to wait: room in the in-flight window,
        connected, and the wire takes the message at once. False: nothing was done, :meth:`post` it."""
        if len(self._pending) >= self._max_in_flight or self._waiting or not self._connected.is_set():
            return False  # a post waiting for room or the connection goes first
        batch = self._open
        if batch is not None and batch.error is not None:
            return False
        token = str(next(self._tokens))
        if not self._wire.publish_stored_now(item.subject, item.data, self._prefix + token, item.msg_id):
            return False
        item.token = token
        self._pending[token] = item
        self._join_open_batch(item)
        self._settle_later()
        return True

    async def post(self, item: Outgoing) -> None:
        """Send ``item`` now, in call order, and return; its ack is awaited in the background.

        Waits only for room in the in-flight window (or a connection to come back), up to the publish
        timeout. Raises ``PublishError`` when it cannot be sent at all (closed connection, over
        ``max_payload``); a later failure goes to ``on_unstored``.
        """
        batch = self._join_open_batch(item)
        try:
            await self._send(item, batch)
        except BaseException:
            if not item.acked:
                batch.items.remove(item)
                batch.remaining -= 1
            if not batch.items and batch is self._open:
                self._open = None
                self._batches.discard(batch)
                if not self._batches:
                    self._drained.set()
            raise
        self._settle_later()

    def _join_open_batch(self, item: Outgoing) -> _Batch:
        """Add a post to the open batch (opened now if there is none): what the settler confirms next."""
        batch = self._open
        if batch is None:
            batch = self._open = _Batch([], asyncio.get_running_loop().time() + self._timeout)
            self._batches.add(batch)
            self._drained.clear()
        item.batch = batch
        batch.items.append(item)
        batch.remaining += 1
        return batch

    def _settle_later(self) -> None:
        """Make sure a settler confirms the open batch."""
        if self._settler is None:
            self._settler = asyncio.get_running_loop().create_task(
                self._settle_posts(), name="jetstream-settler"
            )

    async def _settle_posts(self) -> None:
        """Confirm posts batch by batch (what is posted meanwhile gathers in the next batch)."""
        loop = asyncio.get_running_loop()
        try:
            while self._open is not None:
                batch, self._open = self._open, None
                batch.deadline = loop.time() + self._timeout  # from its last post on
                try:
                    await self._settle(batch)
                except PublishError as exc:
                    lost = [item for item in batch.items if not item.acked]
                    log.error("posted events not stored", extra={"count": len(lost), "error": str(exc)})
                    self._on_unstored(lost, str(exc))
                finally:
                    self._batches.discard(batch)
                    self._forget(batch)
        finally:
            self._settler = None
            if not self._batches:
                self._drained.set()

    def reconnected(self) -> None:
        """Acks of messages in flight when the connection dropped are lost: resend those now.

        Forgetting them also frees the in-flight window, which a publisher may be waiting on.
        """
        self._pending.clear()
        self._space.set()
        for batch in list(self._batches):
            batch.wake()

    def fail_all(self, reason: str) -> None:
        """The connection is gone for good: every waiting publisher raises."""
        for batch in list(self._batches):
            batch.error = PublishError(f"{reason}; {batch.remaining} event(s) not confirmed as stored")
            batch.wake()
        self._space.set()

    def refused(self, subject: str, reason: str) -> None:
        """The server refused a publish on ``subject`` (a permissions violation; lower-case, as the
        error gives it): no message on that subject awaiting an ack will ever be stored, so none is
        resent. A posted one is reported through ``on_unstored`` at once (not after the publish
        timeout: the deterministic mode would wait for it until then); an awaited ``publish`` raises."""
        lost = [item for item in self._pending.values() if item.subject.lower() == subject and not item.acked]
        posted: list[Outgoing] = []
        for item in lost:
            batch = item.batch
            if item.event is None and batch is not None:  # an awaited publish: it raises
                batch.error = PublishError(f"event {item.msg_id} on {item.subject!r}: {reason}")
                batch.wake()
                continue
            if item.token is not None:
                self._pending.pop(item.token, None)
            item.acked = True  # settled: never resent, not counted as lost again
            posted.append(item)
            if batch is not None:
                batch.remaining -= 1
                if batch.remaining == 0:
                    batch.wake()
        if posted:
            self._space.set()
            self._on_unstored(posted, reason)

    # -- sending ----------------------------------------------------------------------------------

    async def _send(self, item: Outgoing, batch: _Batch) -> None:
        if len(self._pending) >= self._max_in_flight:
            await self._wait(self._space, batch, "the in-flight window to free up")
        if not self._connected.is_set():
            await self._wait(self._connected, batch, "the connection to come back")
        if batch.error is not None:
            raise batch.error
        token = str(next(self._tokens))
        if item.token is not None:
            self._pending.pop(item.token, None)
        item.token = token
        self._pending[token] = item
        try:
            await self._wire.publish_stored(item.subject, item.data, self._prefix + token, item.msg_id)
        except ConnectionClosedError as exc:
            self._pending.pop(token, None)
            raise PublishError(f"event {item.msg_id} on {item.subject!r}: NATS connection closed") from exc
        except MaxPayloadError as exc:  # resending would not help
            self._pending.pop(token, None)
            raise PublishError(
                f"event {item.msg_id} on {item.subject!r}: {len(item.data)} bytes, over the server's "
                f"max_payload of {self._nc.max_payload} bytes"
            ) from exc
        except (OutboundBufferLimitError, NatsError, OSError) as exc:
            # Not sent (e.g. disconnected between our check and the write): the next wake resends it.
            self._pending.pop(token, None)
            batch.reason = f"send failed: {exc!r}"

    async def _wait(self, condition: asyncio.Event, batch: _Batch, what: str) -> None:
        if condition is self._space:
            condition.clear()
        remaining = batch.deadline - asyncio.get_running_loop().time()
        self._waiting += 1
        try:
            async with asyncio.timeout(max(remaining, 0)):
                await condition.wait()
        except TimeoutError:
            raise PublishError(
                f"{batch.remaining} event(s) not stored: waited {self._timeout:g}s for {what}"
            ) from None
        finally:
            self._waiting -= 1

    async def _settle(self, batch: _Batch) -> None:
        loop = asyncio.get_running_loop()
        while batch.remaining:
            if batch.error is not None:
                raise batch.error
            now = loop.time()
            if now >= batch.deadline:
                first = next(item for item in batch.items if not item.acked)
                raise PublishError(
                    f"{batch.remaining} event(s) not stored within {self._timeout:g}s "
                    f"(first: {first.msg_id} on {first.subject!r}; last problem: {batch.reason})"
                )
            if self._unsent(batch, everything=False):  # lost to a reconnection while we were sending
                await self._resend(batch, everything=False)
                continue
            batch.waiter = loop.create_future()
            timer = loop.call_later(min(self._ack_timeout, batch.deadline - now), batch.expire)
            try:
                await batch.waiter
            finally:
                timer.cancel()
                batch.waiter = None
            if batch.remaining and batch.error is None and loop.time() < batch.deadline:
                everything, batch.expired = batch.expired, False
                await self._resend(batch, everything=everything)

    def _unsent(self, batch: _Batch, *, everything: bool) -> list[Outgoing]:
        """Unacknowledged messages to send again: those not in flight (their ack can no longer come:
        reconnection, "unavailable" answer), or after the ack timeout all of them."""
        pending = self._pending
        return [
            item
            for item in batch.items
            if not item.acked and (everything or item.token is None or pending.get(item.token) is not item)
        ]

    async def _resend(self, batch: _Batch, *, everything: bool) -> None:
        """Send the unacknowledged messages again; the dedup id makes this safe."""
        unsent = self._unsent(batch, everything=everything)
        if not unsent:
            return
        batch.attempts += 1
        self.resent += len(unsent)
        log.info(
            "resending unacknowledged events",
            extra={"count": len(unsent), "attempt": batch.attempts, "reason": batch.reason},
        )
        for item in unsent:
            if not item.acked:
                await self._send(item, batch)

    def _forget(self, batch: _Batch) -> None:
        if batch.retry_timer is not None:
            batch.retry_timer.cancel()
        for item in batch.items:
            if item.token is not None and self._pending.get(item.token) is item:
                del self._pending[item.token]
        if len(self._pending) < self._max_in_flight:
            self._space.set()

    # -- acks ---------------------------------------------------------------------------------------

    def _on_ack(self, subject: str, data: bytes) -> None:
        item = self._pending.pop(subject[len(self._prefix) :], None)
        if item is None or item.acked or item.batch is None:
            return  # an ack for a message already confirmed (a resend's twin) or abandoned
        batch = item.batch
        if self._waiting and len(self._pending) < self._max_in_flight:
            self._space.set()  # a send waits for room (one that starts waiting clears it first)
        if data.startswith(_ACK_PREFIX) and b'"error"' not in data:
            if data.endswith(b"true}") and b'"duplicate"' in data:  # '"duplicate": true' (server's spacing)
                self.duplicates += 1
            if self.refusal is not None:
                self._refused(None)
            item.acked = True
            batch.remaining -= 1
            if batch.remaining == 0:
                batch.wake()
            return
        if not data:  # a status message: "503 no responders" (the stream is not there, or no leader)
            self._retry_later(batch, "JetStream unavailable (no responders)")
            return
        try:
            error = json.loads(data).get("error", {})
        except ValueError:
            error = {"description": data[:200].decode(errors="replace")}
        if error.get("code") == 503:
            if error.get("err_code") == INSUFFICIENT_RESOURCES and self.refusal is None:
                self._refused(f"{error.get('description')} (err_code {INSUFFICIENT_RESOURCES})")
            self._retry_later(batch, f"JetStream unavailable: {error.get('description')}")
            return
        if error.get("err_code") == _DUPLICATE_IN_PROCESS:
            self._retry_later(batch, f"its first copy is still being stored: {error.get('description')}")
            return
        batch.error = PublishError(
            f"event {item.msg_id} on {item.subject!r} rejected by JetStream: "
            f"{error.get('description', error)} (code {error.get('code')}, err_code {error.get('err_code')})"
        )
        batch.wake()

    def _refused(self, reason: str | None) -> None:
        """The server starts refusing to store for want of storage (``reason``), or stores again
        (None): one line each way, and ``on_refusal`` (the bus: not ready while it lasts)."""
        self.refusal = reason
        if reason is not None:
            log.error(
                "JetStream refuses to store events: its storage is full; they are resent until"
                " publish_timeout_s, then reported as not stored. Free space, raise the server's"
                " max_file_store / max_memory_store, or give the stream a max_bytes it can hold",
                extra={"reason": reason},
            )
        else:
            log.warning("JetStream stores events again")
        if self._on_refusal is not None:
            self._on_refusal(reason)

    def _retry_later(self, batch: _Batch, reason: str) -> None:
        batch.reason = reason
        if batch.retry_timer is None:
            delay = min(0.05 * 2 ** min(batch.attempts, 5), _RETRY_DELAY_MAX_S)
            batch.retry_timer = asyncio.get_running_loop().call_later(delay, batch.wake)
