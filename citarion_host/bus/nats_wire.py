"""The core hot path between the bus and nats-py's connection: publish bytes, receive bytes.

Why not just ``nc.publish`` and a subscription callback: on the core benchmark (one process,
``citarion-host bench --backend nats --mode core``) the public API costs more than our whole envelope.
``nc.publish`` goes through three coroutines (``publish``, ``_send_publish``, ``_send_command``) and
re-checks what we know already; each received message becomes a ``Msg`` (two ``bytes.decode``, a
dataclass, an ``await`` of ``_process_headers``) before nats-py looks at the subscription. The lean
path does the same work with none of that, and measured in one run (5 interleaved rounds, 100,000
typed events each): public API 125,885 ev/s (0.65 of raw nats-py), lean receive 149,140, lean publish
143,594, both 174,662 (0.91).

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
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription as NatsSubscription

from ..topics import split_topic
from .nats_dispatch import subscribe_direct

__all__ = ["OnMessage", "Wire"]

log = logging.getLogger("citarion_host.bus.nats")

#: ``on_message(subject, data)``: synchronous, must not raise (see ``nats_dispatch``).
OnMessage = Callable[[str, bytes], None]

_CONNECTED = Client.CONNECTED
_CLIENT_ATTRIBUTES = (
    "_pending",
    "_pending_data_size",
    "_max_pending_size",
    "_max_payload",
    "_flush_queue",
    "_flush_pending",
    "_status",
    "_subs",
    "stats",
)
_PROCESS_MSG_PARAMETERS = ["self", "sid", "subject", "reply", "data", "headers"]
_SUBJECT_CACHE = 65_536


class Wire:
    """Publishing and core subscriptions for one connected nats-py client (lean or public path)."""

    def __init__(self, nc: Client, *, lean: bool) -> None:
        self._nc = nc
        self.lean = lean
        self._routes: dict[int, OnMessage] = {}
        self._subjects: dict[str, bytes] = {}  # topic -> its validated bytes
        #: ``await publish(subject, data)``: send on core NATS; errors are nats-py's.
        self.publish: Callable[[str, bytes], Awaitable[None]] = self._publish_public
        if lean:
            self._original_process_msg = nc._process_msg
            nc._process_msg = self._process_msg  # type: ignore[method-assign]
            self.publish = self._publish_lean

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
        encoded = self._subjects.get(subject) or self._remember(subject)
        command = b"PUB %b %d\r\n%b\r\n" % (encoded, size, data)
        nc._pending.append(command)
        nc._pending_data_size += len(command)
        stats = nc.stats
        stats["out_msgs"] += 1
        stats["out_bytes"] += size
        if 0 < nc._max_pending_size < nc._pending_data_size:
            await nc._flush_pending(force_flush=True)  # a full buffer waits for the flusher
        if nc._flush_queue is not None and nc._flush_queue.empty():
            await nc._flush_pending()  # kick the flusher once per loop turn, as nc.publish does

    def _remember(self, subject: str) -> bytes:
        """Validate a subject once (a space or a wildcard would break the protocol) and cache its bytes."""
        split_topic(subject)
        if len(self._subjects) >= _SUBJECT_CACHE:
            self._subjects.clear()
        encoded = self._subjects[subject] = subject.encode()
        return encoded

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

    async def unsubscribe(self, sub: NatsSubscription) -> None:
        self._routes.pop(getattr(sub, "_id", -1), None)
        await sub.unsubscribe()

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        """Stands in for ``Client._process_msg``: routed subscriptions get subject and data, no ``Msg``."""
        on_message = self._routes.get(sid)
        if on_message is None:
            await self._original_process_msg(sid, subject, reply, data, headers)
            return
        stats = self._nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            on_message(subject.decode(), data)
        except Exception:  # pragma: no cover - must never end nats-py's read loop
            log.exception("dispatching a NATS message failed", extra={"subject": subject})


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
    return missing
