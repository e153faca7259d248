"""Background tasks with an owner: named, kept alive, their failures reported, cancelled together.

asyncio keeps only a weak reference to a task, so a task nobody holds may vanish mid-run, and an
exception in one nobody awaits is only reported when it is garbage collected ("Task exception was never
retrieved"). Every owner of background work (a bot's supervisor, the test harness's context) therefore
needs the same few lines: a set of strong references, a done-callback that drops the task and reports
its failure, a cancel-and-wait on shutdown. :class:`Tasks` is those lines, written once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

__all__ = ["Tasks"]

log = logging.getLogger("citarion_host.tasks")

#: Called with a task that ended by raising, and what it raised (after the failure is logged).
OnError = Callable[[asyncio.Task[Any], BaseException], None]


class Tasks:
    """The running background tasks of one owner (``owner`` names it in task names and logs).

    A task is held until it ends; a task that raises is logged (with ``owner`` and the task's name)
    and handed to ``on_error`` (the host restarts the bot, the harness records it). Cancellation is not
    a failure.
    """

    __slots__ = ("_on_error", "_running", "owner")

    def __init__(self, owner: str, on_error: OnError | None = None) -> None:
        self.owner = owner
        self._on_error = on_error
        self._running: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._running)

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(list(self._running))

    def spawn(self, work: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """Run ``work`` as a task named ``<owner>:<name>`` (``task`` when unnamed), held until it ends."""
        task = asyncio.get_running_loop().create_task(work, name=f"{self.owner}:{name or 'task'}")
        self._running.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        where = {"owner": self.owner, "task": task.get_name()}
        log.error("background task failed", extra=where, exc_info=exc)
        if self._on_error is not None:
            self._on_error(task, exc)

    async def cancel_all(self, timeout: float | None = None) -> set[asyncio.Task[Any]]:
        """Cancel every running task and wait until they have ended (at most ``timeout`` seconds; None:
        as long as they take). Returns the tasks still running after the timeout (they ignored the
        cancellation); they stay held."""
        running = list(self._running)
        for task in running:
            task.cancel()
        return await self._wait(running, timeout)

    async def wait(self, timeout: float | None = None) -> set[asyncio.Task[Any]]:
        """Wait until every running task has ended on its own (at most ``timeout`` seconds). Returns the
        tasks still running then."""
        return await self._wait(list(self._running), timeout)

    @staticmethod
    async def _wait(tasks: list[asyncio.Task[Any]], timeout: float | None) -> set[asyncio.Task[Any]]:
        if not tasks:
            return set()
        _, pending = await asyncio.wait(tasks, timeout=timeout)
        return pending
