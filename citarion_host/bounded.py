"""Awaiting a bot's own code (``start()``, ``stop()``) for a bounded time, whatever that code does.

``asyncio.timeout`` is not enough for code the host does not control: it cancels the awaited
coroutine and then *waits for it to finish*, so a ``stop()`` that catches ``CancelledError`` and goes
on waiting (a retry loop with a bare ``except``) holds the host for good. Here the coroutine runs as a
task of its own: at the deadline it is cancelled and left behind, and the caller goes on. Code that
blocks the event loop itself (``time.sleep``) cannot be bounded from inside the loop; the shutdown
watchdog (``signals.py``) covers that case, and the loop watch (``loopwatch.py``) says who holds it.

And whatever that code raises: :func:`bot_code` (in :func:`within`, :func:`limited` and
:func:`bot_task`) turns a ``SystemExit`` (a bot's ``sys.exit()``) into
a :class:`~citarion_host.errors.BotExit`, a failure like any other. asyncio lets ``SystemExit`` out of
a task and ends the event loop with it, so one bot's ``sys.exit()`` ended the host.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import BotExit

__all__ = ["Overran", "bot_code", "bot_task", "limited", "within"]

T = TypeVar("T")
log = logging.getLogger("citarion_host.bounded")


class Overran(TimeoutError):
    """A bot's coroutine did not finish in its time; the message names what, the limit and its key."""


async def bot_code(work: Coroutine[Any, Any, T]) -> T:
    """``await work``; a ``SystemExit`` it raises comes out as :class:`BotExit` (a bot's ``handle`` is
    caught where the host calls it, without this coroutine)."""
    try:
        return await work
    except SystemExit as exc:
        raise BotExit.of(exc) from exc


def bot_task(
    work: Coroutine[Any, Any, T], spawn: Callable[[Coroutine[Any, Any, T]], asyncio.Task[T]]
) -> asyncio.Task[T]:
    """``work`` as :func:`bot_code` in a task ``spawn`` makes. A task cancelled before its first step
    never starts :func:`bot_code`, so nothing would await ``work``: it is closed when the task ends
    (a no-op once it ran), as asyncio closes a task's own coroutine."""
    task = spawn(bot_code(work))
    task.add_done_callback(lambda _: work.close())
    return task


async def within(work: Coroutine[Any, Any, T], timeout: float, what: str, key: str) -> T:
    """``await work`` in a task of its own, at most ``timeout`` seconds; raises :class:`Overran`
    ("``what`` did not return within ``timeout``s (``key``)") after cancelling it. Its own exceptions
    propagate unchanged, but a ``SystemExit``, which comes out as :class:`BotExit`."""
    task = bot_task(work, asyncio.ensure_future)
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
    for (:func:`within` would leave it behind; the shutdown watchdog bounds that case). A
    ``SystemExit`` comes out as :class:`BotExit`."""
    scope = asyncio.timeout(timeout)
    try:
        async with scope:
            return await bot_code(work)
    except TimeoutError:
        if scope.expired():
            raise Overran(f"{what} did not return within {timeout:g}s ({key})") from None
        raise


def _abandoned(task: asyncio.Future[Any]) -> None:
    """Retrieve what an abandoned task ended with, so asyncio does not report it as never retrieved."""
    if not task.cancelled() and task.exception() is not None:
        log.debug("abandoned bot coroutine ended with an error", extra={"error": repr(task.exception())})
