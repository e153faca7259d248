"""Which asyncio event loop a process runs on: ``[host] event_loop`` and ``bench --loop``.

Why a choice at all: the event loop is the one piece every event passes through twice (the
publisher's send and the subscriber's wake-up), and uvloop (libuv) does that work in C. Whether it
pays off here is measured, not assumed: ``citarion-host bench --case loop`` runs the core NATS path and
the demo on both loops, interleaved, and ``docs/performance.md`` holds the figures behind the default.

* ``auto`` (the default): uvloop when it is importable (Linux and macOS wheels), else asyncio's loop.
* ``asyncio``: the standard library's loop, always available.
* ``uvloop``: uvloop or a clear error (it is not installed, or the platform has none).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from .errors import ConfigError

__all__ = ["EVENT_LOOPS", "EventLoopChoice", "loop_factory", "loop_name", "run"]

EventLoopChoice = Literal["auto", "asyncio", "uvloop"]
EVENT_LOOPS: tuple[EventLoopChoice, ...] = ("auto", "asyncio", "uvloop")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
T = TypeVar("T")
log = logging.getLogger("citarion_host.loops")


def loop_factory(choice: EventLoopChoice = "auto") -> LoopFactory | None:
    """The factory for ``choice``; None means asyncio's default loop.

    Raises :class:`~citarion_host.errors.ConfigError` when ``uvloop`` is asked for explicitly and
    cannot be imported, naming the key and the fix.
    """
    if choice not in EVENT_LOOPS:
        raise ConfigError(f"event_loop: must be one of {', '.join(EVENT_LOOPS)}, got {choice!r}")
    if choice == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError as exc:
        if choice == "uvloop":
            raise ConfigError(
                f"[host] event_loop = 'uvloop', but uvloop cannot be imported ({exc}); install it"
                " (pip install uvloop; Linux and macOS only) or set event_loop = 'auto'"
            ) from None
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(coro: Coroutine[Any, Any, T], choice: EventLoopChoice = "auto") -> T:
    """``asyncio.run(coro)`` on the loop ``choice`` names (``asyncio.run`` takes no factory on 3.11)."""
    try:
        factory = loop_factory(choice)
    except ConfigError:
        coro.close()  # never awaited: say so quietly rather than with a RuntimeWarning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(_announced(coro, choice))


async def _announced(coro: Coroutine[Any, Any, T], choice: EventLoopChoice) -> T:
    log.info("event loop", extra={"event_loop": loop_name(), "choice": choice})
    return await coro


def loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """``uvloop`` or ``asyncio``: what the running (or given) loop is, for logs and benchmark output."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
