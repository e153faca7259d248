"""Everything that touches nats-py's internals, in one module at the bottom of the NATS backend.

Two pieces, both checked rather than assumed:

* **direct dispatch** (:func:`subscribe_direct`): with a callback, nats-py puts every message in an
  ``asyncio.Queue`` and a per-subscription task takes it out and awaits the callback: a queue hop, a
  coroutine and a task switch per message. Our ``Subscription.deliver`` never blocks (a handler that has
  to wait continues in its own task), so it can run inside nats-py's read loop, about a tenth faster
  end to end on the core benchmark (docs/performance.md, "Design measurements"). It
  relies on one nats-py internal, checked at subscribe time: ``_process_msg`` hands each message to
  ``sub._pending_queue.put_nowait``; if that is not there, the regular callback path is used.
* **the lean wire** (:class:`Wire`), described below.
* **the reader's guard** (:func:`guard_reader`, on both paths): no message, however malformed (a
  subject that is not UTF-8), ends nats-py's read loop; it reaches the feed, which dead-letters it.

The core hot path between the bus and nats-py's connection: publish bytes, receive bytes.

Why not just ``nc.publish`` and a subscription callback: on the core benchmark (one process,
``citarion-host bench --backend nats --mode core``) the public API costs more than our whole envelope.
``nc.publish`` goes through three coroutines (``publish``, ``_send_publish``, ``_send_command``) and
re-checks what we know already; each received message becomes a ``Msg`` (two ``bytes.decode``, a
dataclass, an ``await`` of ``_process_headers``) before nats-py looks at the subscription. The lean
path does the same work with none of that (the figures, in one run: docs/performance.md, "Design
measurements").

It uses nats-py internals, so it is checked, not assumed: :meth:`Wire.for_client` looks for every
attribute and signature it needs once the client is connected, and if anything differs (another nats-py
version), the bus uses the public API instead (logged once) and works exactly as before, only slower.
``NatsSettings.lean_wire = false`` chooses the public API on purpose. What the lean path keeps from
nats-py's own: the ``PUB`` command bytes, the pending buffer and its size limit (a full buffer waits for
the flusher, as ``nc.publish`` does), the flusher kick, ``nc.stats``. What it leaves out:
``Msg`` objects and header parsing for core event subscriptions (a core feed reads subject and data
only) and per-subscription pending counters (our ``Subscription`` bounds the backlog). Anything not
connected, or a payload over the server's limit, goes through ``nc.publish`` for its errors and its
reconnect buffering.

JetStream has the same three costs per event, twice: the stored publish (``HPUB`` with its
``Nats-Msg-Id``), its ack coming back, the delivery, and our ack of it. So the wire also sends stored
publishes and acks, and hands stream deliveries and publish acks over as a ``Msg`` built directly,
without parsing headers: event messages carry only ``Nats-Msg-Id``, which nobody reads on delivery
(the event id is in the body). A status message (headers and no body: "no responders", flow control)
takes nats-py's own path, headers parsed (about a quarter faster on the JetStream benchmark:
docs/performance.md, "Design measurements").

A stored publish or an ack that has nothing to wait for (connected, room in the buffer, the flusher
running) can also be queued without a coroutine (:meth:`Wire.publish_stored_now`,
:meth:`Wire.ack_now`): the free-running host's every publish and every host-inbox ack go that way,
and fall back to the awaited path when they cannot.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription
from nats.errors import MaxPayloadError
from nats.protocol.parser import AWAITING_CONTROL_LINE as _AWAITING_CONTROL_LINE
from nats.protocol.parser import MAX_CONTROL_LINE_SIZE as _MAX_CONTROL_LINE

from ...errors import PublishError
from ...topics import split_topic

__all__ = ["LeanParser", "OnMessage", "OnMsg", "Wire", "close_connection", "guard_reader", "subscribe_direct"]

log = logging.getLogger("citarion_host.bus.nats")

#: ``on_message(subject, data)``: synchronous, must not raise (see :func:`subscribe_direct`).
OnMessage = Callable[[str, bytes], None]
#: ``dispatch(sid, subject, reply, data, headers)``: a parsed message handed over at once; False: not
#: taken (see :meth:`Wire.dispatch`).
Dispatch = Callable[[int, bytes, bytes, bytes, Any], bool]
#: ``on_msg(msg)``: the same for subscriptions that need the reply subject (JetStream); on the lean
#: path ``msg.headers`` is None unless the message is a status message.
OnMsg = Callable[[Msg], None]

_CONNECTED = Client.CONNECTED
_CLIENT_ATTRIBUTES = (
    "_pending",
    "_pending_data_size",
    "_max_pending_size",
    "_max_payload",
    "_flush_queue",
    "_flush_pending",
    "_flusher_task",
    "_status",
    "_subs",
    "stats",
)
_MSG_FIELDS = {"_client", "subject", "reply", "data", "headers", "_sid", "_ackd"}
_PROCESS_MSG_PARAMETERS = ["self", "sid", "subject", "reply", "data", "headers"]
_SUBJECT_CACHE = 65_536
_MSG_ID = "Nats-Msg-Id"


#: Messages nats-py may hold for one subscription before calling it a slow consumer. Our own
#: ``Subscription`` bounds the real backlog; this only has to absorb bursts between two loop turns.
_NATS_PENDING_MSGS = 1_000_000
_NATS_PENDING_BYTES = 512 * 1024 * 1024


class _DirectDispatch:
    """Stands in for a nats-py subscription's pending queue: the reader hands messages straight to us.

    nats-py's ``_process_msg`` only calls ``put_nowait`` (with no subscription task, nothing else reads
    the queue), so the stand-in is small. It must never raise: an exception there would end nats-py's
    read loop, and with it the connection.
    """

    __slots__ = ("_dispatch", "_sub")

    def __init__(self, sub: NatsSubscription, dispatch: Callable[[Msg], None]) -> None:
        self._sub = sub
        self._dispatch = dispatch

    def put_nowait(self, msg: Msg) -> None:
        self._sub._pending_size -= len(msg.data)
        try:
            self._dispatch(msg)
        except Exception:  # pragma: no cover - dispatchers catch their own errors
            log.exception("dispatching a NATS message failed", extra={"subject": msg.subject})

    def qsize(self) -> int:
        return 0

    def empty(self) -> bool:
        return True

    def task_done(self) -> None:
        pass

    async def join(self) -> None:
        pass


async def subscribe_direct(
    nc: Client, subject: str, queue: str | None, dispatch: Callable[[Msg], None]
) -> NatsSubscription:
    """``nc.subscribe`` whose messages go to ``dispatch(msg)`` synchronously (see ``_DirectDispatch``).

    If this nats-py version lacks the expected internals, the regular callback path is kept.
    """

    async def callback(msg: Msg) -> None:
        dispatch(msg)

    sub = await nc.subscribe(
        subject,
        queue=queue or "",
        cb=callback,
        pending_msgs_limit=_NATS_PENDING_MSGS,
        pending_bytes_limit=_NATS_PENDING_BYTES,
    )
    task = getattr(sub, "_wait_for_msgs_task", None)
    if isinstance(getattr(sub, "_pending_queue", None), asyncio.Queue) and isinstance(task, asyncio.Task):
        sub._pending_queue = _DirectDispatch(sub, dispatch)  # type: ignore[assignment]
        task.cancel()
    return sub


class Wire:
    """Publishing and core subscriptions for one connected nats-py client (lean or public path)."""

    def __init__(self, nc: Client, *, lean: bool) -> None:
        self._nc = nc
        self.lean = lean
        self._routes: dict[int, OnMessage] = {}
        self._msg_routes: dict[int, OnMsg] = {}
        self._subjects: set[str] = set()  # topics validated for the protocol (:meth:`_remember`)
        #: ``await publish(subject, data)``: send on core NATS; errors are nats-py's.
        self.publish: Callable[[str, bytes], Awaitable[None]] = self._publish_public
        #: ``await publish_stored(subject, data, reply, msg_id)``: a JetStream publish whose ack goes
        #: to ``reply``, deduplicated by ``msg_id`` (``Nats-Msg-Id``).
        self.publish_stored: Callable[[str, bytes, str, str], Awaitable[None]] = self._publish_stored_public
        #: ``await ack(msg)``: acknowledge a JetStream delivery.
        self.ack: Callable[[Msg], Awaitable[None]] = _ack_public
        guard_reader(nc)  # both paths: a poison message must not end nats-py's read loop
        self._original_process_msg = nc._process_msg  # the guarded one
        if lean:
            nc._process_msg = self._process_msg  # type: ignore[method-assign]
            LeanParser.install(nc, self.dispatch)
            self.publish = self._publish_lean
            self.publish_stored = self._publish_stored_lean
            self.ack = self._ack_lean

    @property
    def nc(self) -> Client:
        """The nats-py client this wire sends on."""
        return self._nc

    @classmethod
    def for_client(cls, nc: Client, *, lean: bool = True) -> Wire:
        """The lean path if asked for and this nats-py has what it needs, else the public API."""
        missing = _missing_internals(nc)
        if lean and missing:
            log.warning(
                "nats-py internals differ from what the lean wire path expects; using the public API",
                extra={"missing": missing},
            )
        return cls(nc, lean=lean and not missing)

    # -- publish ----------------------------------------------------------------------------------

    async def _publish_public(self, subject: str, data: bytes) -> None:
        await self._nc.publish(subject, data)

    async def _publish_lean(self, subject: str, data: bytes) -> None:
        nc = self._nc
        size = len(data)
        if nc._status != _CONNECTED or size > nc._max_payload:
            await nc.publish(subject, data)  # reconnect buffering, closed/draining and size errors
            return
        if subject not in self._subjects:
            self._remember(subject)
        await self._send(b"".join((f"PUB {subject} {size}\r\n".encode(), data, b"\r\n")), size)

    async def _publish_stored_public(self, subject: str, data: bytes, reply: str, msg_id: str) -> None:
        _check_msg_id(msg_id)
        await self._nc.publish(subject, data, reply=reply, headers={_MSG_ID: msg_id})

    async def _publish_stored_lean(self, subject: str, data: bytes, reply: str, msg_id: str) -> None:
        _check_msg_id(msg_id)
        nc = self._nc
        if nc._status != _CONNECTED:
            await self._publish_stored_public(subject, data, reply, msg_id)
            return
        if subject not in self._subjects:
            self._remember(subject)
        command = _stored_command(subject, data, reply, msg_id, nc._max_payload)
        if command is None:  # the server counts headers too, and would disconnect
            raise MaxPayloadError
        await self._send(command, len(data))

    async def _ack_lean(self, msg: Msg) -> None:
        if self._nc._status != _CONNECTED or not msg.reply or msg._ackd:
            await msg.ack()  # nats-py's errors: not a JetStream message, acked twice, not connected
            return
        await self._send(_ack_command(msg), 0)
        msg._ackd = True

    def publish_stored_now(self, subject: str, data: bytes, reply: str, msg_id: str) -> bool:
        """``publish_stored`` without awaiting anything, when the lean path can (see :meth:`_queue_now`);
        False: nothing was sent (also over ``max_payload``, or a subject not seen before), the caller
        awaits ``publish_stored`` instead, which raises what is wrong."""
        nc = self._nc
        if (
            not self.lean
            or subject not in self._subjects
            or nc._status != _CONNECTED
            or not _msg_id_ok(msg_id)
        ):
            return False
        command = _stored_command(subject, data, reply, msg_id, nc._max_payload)
        return command is not None and self._queue_now(command, len(data))

    def ack_now(self, msg: Msg) -> bool:
        """Acknowledge a JetStream delivery without awaiting anything, when the lean path can (see
        :meth:`_queue_now`). False (nothing done) when the caller must ``await ack(msg)`` instead: the
        public path, not connected, acked before."""
        if not self.lean or self._nc._status != _CONNECTED or not msg.reply or msg._ackd:
            return False
        if not self._queue_now(_ack_command(msg), 0):
            return False
        msg._ackd = True
        return True

    def _queue_now(self, command: bytes, size: int) -> bool:
        """:meth:`_send` when it need not wait: the command joins nats-py's pending buffer and the
        flusher is kicked as ``_flush_pending`` does (once per loop turn: a flush already queued writes
        this too). False (nothing done) when the buffer is full or the flusher is not running: the
        awaited path deals with those."""
        nc = self._nc
        if 0 < nc._max_pending_size < nc._pending_data_size + len(command):
            return False
        queue = nc._flush_queue
        if queue is None:
            return False
        if queue.empty():
            flusher = nc._flusher_task
            if flusher is None or flusher.done() or queue.full():
                return False
            queue.put_nowait(asyncio.get_running_loop().create_future())
        self._append(command, size)
        return True

    def _append(self, command: bytes, size: int) -> None:
        nc = self._nc
        nc._pending.append(command)
        nc._pending_data_size += len(command)
        stats = nc.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size

    async def _send(self, command: bytes, size: int) -> None:
        """Queue ``command`` in nats-py's pending buffer, as ``nc.publish`` would (at once when
        :meth:`_queue_now` can)."""
        if self._queue_now(command, size):
            return
        nc = self._nc
        self._append(command, size)
        if 0 < nc._max_pending_size < nc._pending_data_size:
            await nc._flush_pending(force_flush=True)  # a full buffer waits for the flusher
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()  # kick the flusher once per loop turn, as nc.publish does

    def _remember(self, subject: str) -> None:
        """Validate a subject once (a space or a wildcard would break the protocol) and remember it."""
        split_topic(subject)
        if len(self._subjects) >= _SUBJECT_CACHE:
            self._subjects.clear()
        self._subjects.add(subject)

    # -- receive ----------------------------------------------------------------------------------

    async def subscribe(self, subject: str, queue: str | None, on_message: OnMessage) -> NatsSubscription:
        """A core subscription whose messages go to ``on_message(subject, data)`` synchronously."""

        def on_msg(msg: Msg) -> None:  # the public path (and any message the lean path passes on)
            on_message(msg.subject, msg.data)

        sub = await subscribe_direct(self._nc, subject, queue, on_msg)
        sid = getattr(sub, "_id", None)
        if self.lean and isinstance(sid, int):
            self._routes[sid] = on_message
        return sub

    async def subscribe_msgs(self, subject: str, queue: str | None, on_msg: OnMsg) -> NatsSubscription:
        """A subscription whose messages go to ``on_msg(msg)`` synchronously (see ``OnMsg``)."""
        sub = await subscribe_direct(self._nc, subject, queue, on_msg)
        sid = getattr(sub, "_id", None)
        if self.lean and isinstance(sid, int):
            self._msg_routes[sid] = on_msg
        return sub

    def forget(self, sub: NatsSubscription) -> None:
        """Drop the route of a subscription that is going away (before ``drain`` or ``unsubscribe``)."""
        sid = getattr(sub, "_id", -1)
        self._routes.pop(sid, None)
        self._msg_routes.pop(sid, None)

    async def unsubscribe(self, sub: NatsSubscription) -> None:
        self.forget(sub)
        await sub.unsubscribe()

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        """Stands in for ``Client._process_msg``: routed subscriptions get subject and data, no ``Msg``."""
        if not self.dispatch(sid, subject, reply, data, headers):
            await self._original_process_msg(sid, subject, reply, data, headers)

    def dispatch(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> bool:
        """Hand a message to its route at once (the lean parser calls this without a coroutine per
        message); False when it is not ours or a status message, for nats-py's ``_process_msg``."""
        on_message = self._routes.get(sid)
        if on_message is not None:
            stats = self._nc.stats
            stats["in_msgs"] += 1
            stats["in_bytes"] += len(data)
            try:
                try:
                    text = subject.decode()
                except UnicodeDecodeError:  # refused by the catalog, dead-lettered by the feed
                    text = _text(subject)
                on_message(text, data)
            except Exception:  # pragma: no cover - must never end nats-py's read loop
                log.exception("dispatching a NATS message failed", extra={"subject": subject})
            return True
        on_msg = self._msg_routes.get(sid)
        if on_msg is None or (headers and not data):  # not ours, or a status message
            return False
        stats = self._nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            text, reply_text = subject.decode(_UTF8, _KEEP), reply.decode(_UTF8, _KEEP)  # _text, inline
            on_msg(Msg(self._nc, text, reply_text, data, None, _sid=sid))
        except Exception:  # pragma: no cover - must never end nats-py's read loop
            log.exception("dispatching a NATS message failed", extra={"subject": subject})
        return True


_UTF8, _KEEP = "utf-8", "surrogateescape"


def _text(raw: bytes) -> str:
    """A subject as text. One that is not UTF-8 (the server does not check) keeps its bytes as
    surrogates, so the event catalog refuses it as a topic and the feed dead-letters and terminates the
    message, instead of ``UnicodeDecodeError`` dropping it unsettled (redelivered for ever)."""
    return raw.decode(_UTF8, _KEEP)


def guard_reader(nc: Client) -> None:
    """Keep nats-py's read loop alive whatever a message holds (both wire paths).

    nats-py's reader turns each message into a ``Msg`` with ``subject.decode()``: a subject that is not
    UTF-8 raises there, the read loop ends, and the client still says "connected" while nothing flows.
    So the message builder keeps undecodable bytes as surrogates (see :func:`_text`), and any other
    error out of ``_process_msg`` is logged and the message skipped rather than ending the loop.
    Idempotent; an instance attribute, so other clients are untouched. Checked, like the lean path:
    if this nats-py has no ``_build_message``, only the loop guard applies (logged once).
    """
    if getattr(nc, "_citarion_guarded", False):
        return
    nc._citarion_guarded = True  # type: ignore[attr-defined]
    build = getattr(type(nc), "_build_message", None)
    if build is not None and list(inspect.signature(build).parameters) == _PROCESS_MSG_PARAMETERS:

        def build_message(sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> Msg:
            return nc.msg_class(
                subject=_text(subject), reply=_text(reply), data=data, headers=headers, _client=nc, _sid=sid
            )

        nc._build_message = build_message  # type: ignore[method-assign]
    else:
        log.warning(
            "nats-py has no _build_message(sid, subject, reply, data, headers); non-UTF-8 subjects"
            " are skipped, not dead-lettered"
        )
    process = nc._process_msg

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        try:
            await process(sid, subject, reply, data, headers)
        except Exception:  # must never end nats-py's read loop
            log.exception("a NATS message could not be processed; skipped", extra={"subject": _text(subject)})

    nc._process_msg = process_msg  # type: ignore[method-assign]


def _stored_command(subject: str, data: bytes, reply: str, msg_id: str, max_payload: int) -> bytes | None:
    """The ``HPUB`` of a stored publish with its ``Nats-Msg-Id`` header, in one formatting (an f-string:
    about 200 ns less per publish than ``bytes %``); None when headers and body together are over
    ``max_payload``. ``subject`` was validated (``Wire._remember``)."""
    header_size = (len(msg_id) if msg_id.isascii() else len(msg_id.encode())) + _HEADER_FRAME
    total = header_size + len(data)
    if total > max_payload:
        return None
    head = f"HPUB {subject} {reply} {header_size} {total}\r\nNATS/1.0\r\nNats-Msg-Id: {msg_id}\r\n\r\n"
    return b"".join((head.encode(), data, b"\r\n"))


#: ``NATS/1.0\r\nNats-Msg-Id: \r\n\r\n`` around the id: the header block's size is the id's plus this.
_HEADER_FRAME = len(b"NATS/1.0\r\nNats-Msg-Id: \r\n\r\n")


def _ack_command(msg: Msg) -> bytes:
    """The ``PUB`` that acknowledges a JetStream delivery: an empty message to its reply subject."""
    return f"PUB {msg.reply} 0\r\n\r\n".encode()


def _msg_id_ok(msg_id: str) -> bool:
    """An event id becomes a header line: a line break in it would end the header (or the command)."""
    return "\r" not in msg_id and "\n" not in msg_id


def _check_msg_id(msg_id: str) -> None:
    """:func:`_msg_id_ok`, or ``PublishError``."""
    if not _msg_id_ok(msg_id):
        raise PublishError(f"event id {msg_id!r} cannot be stored: ids must not contain line breaks")


async def _ack_public(msg: Msg) -> None:
    await msg.ack()


class LeanParser:
    """Reads the messages (``MSG``, ``HMSG``) at the head of nats-py's read buffer without regular
    expressions, and leaves everything else to nats-py's own parser.

    nats-py's ``Parser.parse`` tries a regular expression per message (two for a message with
    headers, every JetStream delivery) and cuts the buffer after each one; that was the largest single
    cost of the NATS path left in the demo (valgrind: ~11,000 instructions per event in ``_sre``). Here
    each message's control line is found with ``find`` and split on spaces, and the buffer is cut once
    per read. A message split across reads is kept at the head of the buffer until it is whole (the
    reads in between only extend the buffer). Anything else that is not a well-formed message
    (``PING``, ``INFO``, ``-ERR``, a malformed line) is handed to the original parser at that point,
    buffer and state as it expects them, so errors and the rest of the protocol are nats-py's. It
    behaves exactly as the original on any input (``tests/bus/test_nats_wire.py``, a property test
    against nats-py's parser on random splits).
    """

    __slots__ = ("_dispatch", "_held", "_nc", "_original", "_ps")

    def __init__(self, nc: Client, dispatch: Dispatch | None = None) -> None:
        self._nc = nc
        self._ps = nc._ps
        self._original: Callable[[bytes], Awaitable[None]] = nc._ps.parse
        self._dispatch = dispatch
        #: A message still arriving at the head of the buffer: (that buffer, the size it needs).
        self._held: tuple[bytearray, int] | None = None

    @classmethod
    def install(cls, nc: Client, dispatch: Dispatch | None = None) -> None:
        """Read ``nc``'s messages with a lean parser (idempotent; kept across reconnects, which only
        reset the parser's buffer). ``dispatch``: takes a message at once, or says False and nats-py's
        ``_process_msg`` gets it (without it, every message goes there)."""
        ps = nc._ps
        if not getattr(ps, "_citarion_lean", False):
            ps._citarion_lean = True  # type: ignore[attr-defined]
            ps.parse = cls(nc, dispatch).parse  # type: ignore[method-assign]

    async def parse(self, data: bytes = b"") -> None:
        ps = self._ps
        if ps.state != _AWAITING_CONTROL_LINE:  # the original is in the middle of a message
            await self._original(data)
            return
        buf = ps.buf
        buf.extend(data)
        held = self._held
        if held is not None:
            if held[0] is buf and len(buf) < held[1]:
                return  # the message at the head is still arriving: nothing to read yet
            self._held = None
        # One copy of the buffer as bytes, read by offset: each field is then one slice (one copy),
        # where a slice of the bytearray turned into bytes is two. The buffer itself is cut once.
        view = bytes(buf)
        size = len(view)
        start = 0
        dispatch = self._dispatch
        arriving = 0  # the buffer's size the message at its head needs, when it is still arriving
        try:
            while start < size:
                if view.startswith(b"HMSG ", start):
                    at = start + 5
                elif view.startswith(b"MSG ", start):
                    at = start + 4
                else:
                    break
                end = view.find(b"\r\n", at, at + _MAX_CONTROL_LINE)
                if end < 0:
                    if size - at < _MAX_CONTROL_LINE:  # its control line is still arriving
                        arriving = size - start + 1
                    break
                args = view[at:end].split()
                try:
                    if at - start == 5:  # HMSG subject sid [reply] header_size total_size
                        if len(args) == 5:
                            subject, sid, reply, header_size, total_size = args
                        elif len(args) == 4:
                            (subject, sid, header_size, total_size), reply = args, b""
                        else:
                            break
                        headed = int(header_size)
                    else:  # MSG subject sid [reply] size
                        if len(args) == 4:
                            subject, sid, reply, total_size = args
                        elif len(args) == 3:
                            (subject, sid, total_size), reply = args, b""
                        else:
                            break
                        headed = 0
                    total, number = int(total_size), int(sid)
                except ValueError:
                    break
                if not 0 <= headed <= total:
                    break
                body = end + 2
                after = body + total
                if size < after + 2:  # the rest has not arrived yet
                    arriving = after + 2 - start
                    break
                if not view.startswith(b"\r\n", after):
                    break
                headers = view[body : body + headed] if headed else None
                payload = view[body + headed : after]
                start = after + 2
                if dispatch is None or not dispatch(number, subject, reply, payload, headers):
                    await self._nc._process_msg(number, subject, reply, payload, headers)  # type: ignore[arg-type]
                if ps.buf is not buf:  # the connection was reset meanwhile
                    return
        finally:
            if start and ps.buf is buf:
                del buf[:start]
        if arriving:
            # Kept here until it is whole (the next reads only extend the buffer): handed to nats-py's
            # parser, it would parse all of the next read with its regular expressions.
            self._held = (buf, arriving)
        elif buf:
            await self._original(b"")


def _missing_internals(nc: Client) -> list[str]:
    """What the lean path needs from a connected client and does not find."""
    missing = [name for name in _CLIENT_ATTRIBUTES if not hasattr(nc, name)]
    try:
        parameters = list(inspect.signature(type(nc)._process_msg).parameters)
    except (AttributeError, TypeError, ValueError):
        parameters = []
    if parameters != _PROCESS_MSG_PARAMETERS:
        missing.append("_process_msg(sid, subject, reply, data, headers)")
    if not isinstance(getattr(nc, "_pending", None), list):
        missing.append("_pending: list")
    parser = getattr(nc, "_ps", None)
    if not isinstance(getattr(parser, "buf", None), bytearray) or not hasattr(parser, "state"):
        missing.append("_ps (the protocol parser: buf, state, parse)")
    fields = set(getattr(Msg, "__dataclass_fields__", ()))
    if not fields >= _MSG_FIELDS:
        missing.append(f"Msg fields {sorted(_MSG_FIELDS - fields)}")
    return missing


async def close_connection(nc: Client) -> None:
    """Close ``nc`` even when the server is gone, saying what could not be sent.

    nats-py's ``close()`` writes what is left in its buffer (publishes and acks issued while
    reconnecting) and, if the socket is already dead, raises half way: its subscription tasks
    and transport stay open. Nothing buffered can reach a server we are leaving, so it is dropped
    here first, loudly: core events in it are lost; unacknowledged JetStream events are redelivered.
    """
    if nc.is_closed:
        return
    pending = getattr(nc, "_pending_data_size", 0)
    if not nc.is_connected and pending:
        log.warning(
            "closing while disconnected: buffered commands not sent",
            extra={"bytes": pending, "status": nc._status},
        )
        nc._pending = []
        nc._pending_data_size = 0
    try:
        await nc.close()
    except OSError as exc:  # the socket died between the check above and nats-py's last write
        log.warning("closing the NATS connection failed", extra={"error": repr(exc)})
