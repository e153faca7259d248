"""Where the event being handled sits in its source: what a checkpoint or a resumable feed records.

A handler of a stream-backed subscription (``stored``, ``durable`` or positioned, on JetStream) may ask
:func:`delivery_position` for the stream sequence of the event it is handling: the bot state store
records it with a snapshot (to resume right after it), the dashboard uses it as the SSE event id (a
reconnecting browser resumes from it). Elsewhere (memory, core NATS) there is no stored position and it
returns None; such callers keep a counter of their own.

A context variable, set by the backend around the handler call, because the position belongs to one
delivery, not to the event: the same event has one position per stream. It holds a function, so the
position is only parsed when somebody asks.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DurableRewind",
    "PositionFinder",
    "delivery_position",
    "position_finder",
    "reset_delivery_position",
    "set_delivery_position",
]

Token = contextvars.Token
#: Gives the stream sequence of one delivery, parsed when called (see :func:`position_finder`).
PositionFinder = Callable[[], int]

_position: contextvars.ContextVar[Callable[[], int] | None] = contextvars.ContextVar(
    "citarion_delivery_position", default=None
)


def delivery_position() -> int | None:
    """The stream sequence of the event being handled, or None where there is none."""
    find = _position.get()
    return None if find is None else find()


#: ``position_finder()``: what finds the position of the delivery being handled, to call later (None
#: where there is none). The bot state's bookkeeping keeps it for every event and calls it only when a
#: snapshot needs the position: reading the variable costs a few tens of nanoseconds (it is the
#: variable's own ``get``, no Python call around it), parsing the position much more.
position_finder: Callable[[], PositionFinder | None] = _position.get


def set_delivery_position(find: Callable[[], int] | None) -> Token[Callable[[], int] | None]:
    """For backends: ``find()`` gives the position of the delivery about to be handled."""
    return _position.set(find)


def reset_delivery_position(token: Token[Callable[[], int] | None]) -> None:
    """For backends: the handler returned."""
    _position.reset(token)


@dataclass(frozen=True, slots=True)
class DurableRewind:
    """What ``EventBus.rewind_durable`` found and did to a durable consumer before a bot resumes.

    ``kept``: the consumer stood exactly after the position (nothing delivered past it), so it was left
    alone; otherwise it was deleted (or never existed) and the subscription must create it again from
    the position (``start_sequence``). ``acked``: the highest stream sequence the old consumer had
    acknowledged (0: none): every event up to it was handled by an earlier run.
    """

    kept: bool
    acked: int = 0
    delivered: int = 0
    #: The stream's first sequence, when events after the position are already gone (limits): a gap.
    first_available: int | None = None
