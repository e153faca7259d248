"""Request/reply, what every backend shares: marking a request, waiting for its reply, the errors.

A request is an event with ``metadata.replyTo`` (where the answer goes) and a correlation id (its own
id unless set); a reply carries that correlation id and the request as its cause. The backends only
move them: the memory bus matches replies by correlation id, NATS sends them to the requester's inbox.
"""

from __future__ import annotations

import asyncio

import msgspec

from ..errors import NoRespondersError, RequestTimeoutError
from ..events import Event

__all__ = ["as_reply", "as_request", "await_reply", "no_responders", "timeout_error"]


def as_request(event: Event, reply_to: str) -> Event:
    """``event`` as a request: its correlation id and ``metadata.replyTo``, which also lets it past the
    deterministic mode's order (its requester is waiting inside a handler)."""
    return msgspec.structs.replace(
        event,
        correlation_id=event.correlation_id or event.id,
        metadata={**event.metadata, "replyTo": reply_to},
    )


def as_reply(request: Event, response: Event) -> Event:
    """``response`` carrying the request's correlation id and the request as its cause."""
    return msgspec.structs.replace(
        response,
        correlation_id=request.correlation_id or request.id,
        causation_id=response.causation_id or request.id,
    )


def no_responders(event: Event) -> NoRespondersError:
    return NoRespondersError(f"request {event.id} on {event.topic!r}: no subscriber")


def timeout_error(event: Event, timeout: float) -> RequestTimeoutError:
    return RequestTimeoutError(f"request {event.id} on {event.topic!r}: no reply within {timeout:g}s")


async def await_reply(future: asyncio.Future[Event], event: Event, deadline: float, timeout: float) -> Event:
    """The reply, or :class:`RequestTimeoutError` at ``deadline`` (loop time) naming the request."""
    try:
        async with asyncio.timeout_at(deadline):
            return await future
    except TimeoutError:
        raise timeout_error(event, timeout) from None
