"""Resuming a durable consumer right after a stream position (a bot whose state covers up to it).

JetStream cannot move a durable consumer back in place: its delivered and acknowledged floors only go
forward. A bot whose restored state covers the stream up to sequence ``p`` must see exactly the events
after ``p``, whatever its consumer did meanwhile: a host that died after acknowledging events but before
its next snapshot left the consumer *past* ``p`` (resuming from it would skip events), one that died
after a snapshot but before the acknowledgement left it *before* ``p`` (resuming would apply events
twice). So unless the consumer stands exactly at ``p`` with nothing delivered beyond, it is deleted, and
the subscription creates it again from ``p + 1`` (``opt_start_seq``), in stream order.
"""

from __future__ import annotations

import logging

from nats.js import JetStreamManager
from nats.js.errors import NotFoundError

from ..position import DurableRewind
from .stream import retry_api

__all__ = ["rewind_durable"]

log = logging.getLogger("citarion_host.bus.nats")


async def rewind_durable(
    jsm: JetStreamManager, stream: str, durable: str, after: int, timeout: float
) -> DurableRewind:
    """Leave ``durable`` if it stands exactly at ``after``, else delete it (see the module docstring).

    A durable shared by a queue group cannot be moved for one member: refused with ``ValueError``.
    """
    first = await _first_available(jsm, stream, after, timeout)
    try:
        info = await retry_api(lambda: jsm.consumer_info(stream, durable), timeout)
    except NotFoundError:
        return DurableRewind(kept=False, first_available=first)
    acked = (info.ack_floor.stream_seq if info.ack_floor else 0) or 0
    delivered = (info.delivered.stream_seq if info.delivered else 0) or 0
    if info.config.deliver_group:
        raise ValueError(
            f"durable {durable!r} is shared by queue group {info.config.deliver_group!r}: it cannot be"
            " rewound for one member"
        )
    if acked == after and delivered == after and not info.num_ack_pending and not info.num_redelivered:
        return DurableRewind(kept=True, acked=acked, delivered=delivered, first_available=first)
    if info.push_bound:  # another host is reading it now: never pull it from under that one
        raise ValueError(f"durable {durable!r} is already being consumed by another subscriber")
    await retry_api(lambda: jsm.delete_consumer(stream, durable), timeout)
    log.info(
        "durable consumer rewound",
        extra={"stream": stream, "durable": durable, "after": after, "acked": acked, "delivered": delivered},
    )
    return DurableRewind(kept=False, acked=acked, delivered=delivered, first_available=first)


async def _first_available(jsm: JetStreamManager, stream: str, after: int, timeout: float) -> int | None:
    """The stream's first sequence when it is past ``after + 1`` (events lost to the limits), else None."""
    info = await retry_api(lambda: jsm.stream_info(stream), timeout)
    first = info.state.first_seq or 0
    return first if first > after + 1 and info.state.messages else None
