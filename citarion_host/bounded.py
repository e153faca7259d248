"""Awaiting a bot's own code (``start()``, ``stop()``) for a bounded time, whatever that code does.

``asyncio.timeout`` is not enough for code the host does not control: it cancels the awaited
coroutine and then *waits for it to finish*, so a ``stop()`` that catches ``CancelledError`` and goes
on waiting (a retry loop with a bare ``except``) holds the host for good. Here the coroutine runs as a
task of its own: at the deadline it is cancelled and left behind, and the caller goes on. Code that
blocks the event loop itself (``time.sleep``) cannot be bounded from inside the loop; the shutdown
watchdog (``signals.py``) covers that case, and the loop watch (``loopwatch.py``) says who holds it.

And whatever that code raises: :func:`bot_code` turns a ``SystemExit`` (a bot's ``sys.exit()``) into
a :class:`~citarion_host.errors.BotExit`, a failure like any other. asyncio lets ``SystemExit`` out of
a task and ends the event loop with it, so one bot's ``sys.exit()`` ended the host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from .errors import BotExit

__all__ = ["Overran", "bot_code", "limited", "within"]

T = TypeVar("T")
log = logging.getLogger("citarion_host.bounded")


class Overran(TimeoutError):
    """A bot's coroutine did not finish in its time; the message names what, the limit and its key."""


async def bot_code(work: Coroutine[Any, Any, T]) -> T:
    """``await work``; a ``SystemExit`` it raises comes out as :class:`BotExit` (for a bot's
    ``start()``, ``stop()`` and spawned tasks; its ``handle`` is caught where the host calls it)."""
    try:
        return await work
    except SystemExit as exc:
        raise BotExit.of(exc) from exc


async def within(work: Coroutine[Any, Any, T], timeout: float, what: str, key: str) -> T:
    """``await work``, at most ``timeout`` seconds; raises :class:`Overran` ("``what`` did not return
    within ``timeout``s (``key``)") after cancelling it. Its own exceptions propagate unchanged."""
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=timeout)
    except asyncio.CancelledError:
        task.cancel()  # the caller is cancelled: so is the work it was waiting for
        raise
    if not done:
        task.cancel()
        task.add_done_callback(_abandoned)
        raise Overran(f"{what} did not return within {timeout:g}s ({key})")
    return task.result()


async def limited(work: Coroutine[Any, Any, T], timeout: float, what: str, key: str) -> T:
    """``await work`` in the caller's own task, cancelled after ``timeout`` seconds (:class:`Overran`).

    For a bot's ``start()``: it costs nothing when the start does not wait (no task, no extra turn
    of the loop, so a start stays what it was), but a start that swallows its cancellation is waited
    for (:func:`within` would leave it behind; the shutdown watchdog bounds that case)."""
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await work
    except TimeoutError:
        if scope.expired():
            raise Overran(f"{what} did not return within {timeout:g}s ({key})") from None
        raise


def _abandoned(task: asyncio.Future[Any]) -> None:
    """Retrieve what an abandoned task ended with, so asyncio does not report it as never retrieved."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned bot coroutine ended with an error", extra={"error": repr(task.exception())})
