"""Automatic lineage: what a bot publishes while handling an event carries that event as its cause.

The host sets the event being handled in a context variable before each call of ``Bot.handle`` (its
runner inline, :func:`handling` elsewhere); :func:`stamp` fills ``causationId``, ``correlationId`` and
the data time of what the bot publishes from it, unless the bot set them itself. A context variable,
because it follows the handler into everything it awaits and into tasks it spawns (asyncio copies the
context into a new task), and never reaches the publisher (a delivery runs in the sequencer's task or
in a copy of the publisher's context). The runner does not reset it after the handler: every runner
sets it before its bot's handler runs, so no handler reads what another one set, and an event handed
to several bots in a row is set once (a set and reset per delivery was a tenth of the host's path).

What travels:

* ``causationId`` = the handled event's id (the chain ``explain`` follows back to the market event);
* ``correlationId`` = the handled event's, when it has one (a conversation, a request);
* ``metadata.dataTime`` = the handled event's, when it has one: the data time of the bar a decision
  was made on goes with the signal, the order and the fill it leads to, so the paper exchange can fill
  at that bar's price (``docs/bots.md``).
"""

from __future__ import annotations

import contextvars
from typing import Any

from .events import Event

__all__ = ["CURRENT_EVENT", "DATA_TIME", "current_event", "handling", "stamp"]

#: The metadata key of an event's data time (Unix ms of the bar it belongs to).
DATA_TIME = "dataTime"

_current: contextvars.ContextVar[Event | None] = contextvars.ContextVar("citarion_event", default=None)

#: The variable :class:`handling` sets, for the host's runner: it sets and resets it inline on every
#: event's path (no object per handled event; :class:`handling` elsewhere).
CURRENT_EVENT = _current


def current_event() -> Event | None:
    """The event the calling code is handling (None outside a handler)."""
    return _current.get()


class handling:
    """Mark ``event`` as the one being handled for the duration of the block.

    A class rather than a ``@contextmanager`` generator: it wraps every handler call, and a generator
    context manager costs about four times as much per use."""

    __slots__ = ("_event", "_token")

    def __init__(self, event: Event) -> None:
        self._event = event

    def __enter__(self) -> None:
        self._token = _current.set(self._event)

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


def stamp(
    causation_id: str | None, correlation_id: str | None, metadata: dict[str, Any] | None
) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """The lineage fields of a new event: what the publisher gave, completed from the handled event."""
    cause = _current.get()
    if cause is None:
        return causation_id, correlation_id, metadata
    if causation_id is None:
        causation_id = cause.id
    if correlation_id is None:
        correlation_id = cause.correlation_id
    data_time = cause.metadata.get(DATA_TIME)
    if data_time is not None and (metadata is None or DATA_TIME not in metadata):
        metadata = {**metadata, DATA_TIME: data_time} if metadata else {DATA_TIME: data_time}
    return causation_id, correlation_id, metadata
