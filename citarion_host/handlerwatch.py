"""Notices a bot whose handler has been on one event for too long, and says so.

Why: a handler that never returns (a lost future, a deadlock, a network call without a timeout)
raises nothing, so nothing reported it. On a free-running host that bot's backlog grows and its drops
are counted; in deterministic mode every bot waits for it, and the run stood still at "0/s" without a
word. Cancelling it is not possible in deterministic mode (it runs inside the sequencer's task, with
every other handler), so the watch reports it: one error line, ``system.bot.stuck`` (a
``BotLifecycle``), and the host is not ready while it lasts (:meth:`HandlerWatch.reasons`); when the
handler returns at last, one line says after how long.

How, without a cost per event: every second or so it samples each bot's subscription, whose ``busy``
flag and handled count (``delivered + failed``) the bus keeps anyway. A subscription busy at two
samples with the same count has been on one event at least since the first of them.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .supervisor import BotRunner

__all__ = ["HandlerWatch"]

log = logging.getLogger("citarion_host.host")

#: The longest pause between two samples: a handler is reported at most this late.
_MAX_SAMPLE_S = 1.0


class HandlerWatch:
    """Samples ``runners`` (shared with the host, so bots added by a reload are watched too)."""

    def __init__(self, runners: dict[str, BotRunner]) -> None:
        self._runners = runners
        self._task: asyncio.Task[None] | None = None
        #: Per bot: the handled count when it was first seen busy with it, and since when.
        self._seen: dict[str, tuple[int, float]] = {}
        self._waiting = _EVERY_BOT
        #: Bots reported stuck, and since when they have been on that event (at least).
        self._stuck: dict[str, float] = {}

    def start(self, stuck_s: float, deterministic: bool = True) -> None:
        """(Re)start sampling; ``stuck_s`` 0: never. ``deterministic``: what the report says waits."""
        self.stop()
        self._waiting = _EVERY_BOT if deterministic else _ITS_BACKLOG
        if stuck_s > 0:
            interval = min(_MAX_SAMPLE_S, stuck_s / 4)
            self._task = asyncio.get_running_loop().create_task(
                self._run(stuck_s, interval), name="handler-watch"
            )

    def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
        self._seen.clear()
        self._stuck.clear()

    def reasons(self, now: float | None = None) -> list[str]:
        """Why the host is not ready on this account: one line per bot reported stuck."""
        if not self._stuck:
            return []
        now = asyncio.get_running_loop().time() if now is None else now
        return [
            f"bot {bot_id!r} {self._stuck_for(now - since)}" for bot_id, since in sorted(self._stuck.items())
        ]

    async def _run(self, stuck_s: float, interval: float) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            try:
                self._sample(loop.time(), stuck_s)
            except Exception:  # a bug must not end the watch: logged, the next sample tries again
                log.exception("handler watch failed")

    def _sample(self, now: float, stuck_s: float) -> None:
        for bot_id, runner in list(self._runners.items()):
            subscription = runner.subscription
            busy = subscription is not None and subscription.busy
            count = subscription.delivered + subscription.failed if subscription is not None else -1
            seen = self._seen.get(bot_id)
            if not busy or seen is None or seen[0] != count:  # not on the event of the last sample
                since = self._stuck.pop(bot_id, None)
                if since is not None:
                    runner.unstuck(f"its handler returned after about {now - since:.0f} s on one event")
                if busy:
                    self._seen[bot_id] = (count, now)
                else:
                    self._seen.pop(bot_id, None)
            elif bot_id not in self._stuck and now - seen[1] >= stuck_s:
                self._stuck[bot_id] = seen[1]
                runner.stuck(self._stuck_for(now - seen[1]))
        for gone in (self._seen.keys() | self._stuck.keys()) - self._runners.keys():  # removed by a reload
            self._seen.pop(gone, None)
            self._stuck.pop(gone, None)

    def _stuck_for(self, seconds: float) -> str:
        return (
            f"has been handling one event for {seconds:.0f} s ({self._waiting}): a handler that does"
            " not return"
        )


_EVERY_BOT = "deterministic mode: every bot waits for it"
_ITS_BACKLOG = "its next events wait in its backlog"
