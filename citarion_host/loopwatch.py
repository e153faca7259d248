"""Notices an event loop that stands still, and says so from a thread of its own.

Why: a bot that makes a synchronous call in async code (``time.sleep``, ``requests.get``, a blocking
socket, a long computation) holds the event loop, and then nothing else runs: not the other bots, not
the handler watch (a task on that loop), not the signal handlers, not ``/readyz``, not the NATS
client's pings. Measured before this watch: a ``time.sleep(25)`` in one bot's ``handle`` stopped the
host for 25 s without a line (a Ctrl-C in the middle waited for it too), and the summary then said
"running, ok, 0 errors".

How, at no cost per event: the loop *beats* (a timer callback every ``interval``); a daemon thread
looks at the last beat. A beat older than ``blocked_s`` is reported from the thread, while the loop is
still held: one error line naming the bot whose code holds it and the line it is on (the loop
thread's stack, ``sys._current_frames``). When the loop beats again, one more line says for how
long; the bot's ``errors`` count it and ``system.bot.error`` reports it (published from the loop,
once it runs). A process paused as a whole (``SIGSTOP``, a suspended VM) stops the thread as well:
a thread that wakes far later than it asked was paused with the loop, so that sample is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from .bot import Bot

if TYPE_CHECKING:
    from .supervisor import BotRunner

__all__ = ["LoopWatch", "held_since", "holder"]

log = logging.getLogger("citarion_host.host")

#: The longest pause between two looks at the beat: a block is reported at most this late.
_MAX_SAMPLE_S = 1.0


@dataclass
class _Block:
    """A block the thread reported: the beat it saw last, who holds the loop and where."""

    beat: float
    bot: str | None
    where: str


class LoopWatch:
    """Watches the running loop for ``runners``' bots (shared with the host, so bots a reload adds are
    named too). :meth:`start` on the loop, :meth:`stop` when the host stops."""

    def __init__(self, runners: dict[str, BotRunner]) -> None:
        self._runners = runners
        self._stopped = threading.Event()
        self._timer: asyncio.TimerHandle | None = None
        #: ``time.monotonic()`` of the loop's last beat: written by the loop, read by the thread (a
        #: float attribute: one atomic store and load).
        self._beat = 0.0
        #: Blocks seen since the start, and the longest (seconds): ``Host.stats()["loop"]``.
        self.blocks = 0
        self.longest_s = 0.0
        self.blocked_s = 0.0

    def start(self, blocked_s: float) -> None:
        """(Re)start watching the running loop; ``blocked_s`` 0: never."""
        self.stop()
        self.blocked_s = blocked_s
        if blocked_s <= 0:
            return
        loop = asyncio.get_running_loop()
        interval = min(_MAX_SAMPLE_S, blocked_s / 4)
        stopped = self._stopped = threading.Event()
        self._beat = time.monotonic()

        def beat() -> None:
            self._beat = time.monotonic()
            self._timer = loop.call_later(interval, beat)

        self._timer = loop.call_later(interval, beat)
        threading.Thread(
            target=self._watch,
            args=(loop, threading.get_ident(), blocked_s, interval, stopped),
            name="citarion-loop-watch",
            daemon=True,
        ).start()

    def stop(self) -> None:
        self._stopped.set()
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def stats(self) -> dict[str, Any]:
        return {"blocked_s": self.blocked_s, "blocks": self.blocks, "longest_s": round(self.longest_s, 3)}

    # -- the thread -------------------------------------------------------------------------------

    def _watch(
        self,
        loop: asyncio.AbstractEventLoop,
        loop_thread: int,
        blocked_s: float,
        interval: float,
        stopped: threading.Event,
    ) -> None:
        last = time.monotonic()
        block: _Block | None = None
        while not stopped.wait(interval):
            if loop.is_closed():
                return
            now, looked = time.monotonic(), last
            last, beat = now, self._beat
            if block is not None:
                if beat != block.beat:  # the loop runs again
                    held, block = (beat - block.beat, block), None
                    self._call(loop, self._resumed, *held)
                continue
            if held_since(now, looked, beat, interval, blocked_s):
                block = self._held(loop_thread, beat, now)

    def _held(self, loop_thread: int, beat: float, now: float) -> _Block:
        """Say, from the thread, that the loop has been held since ``beat``, by whom and where."""
        bot, where = holder(sys._current_frames().get(loop_thread))
        log.error(
            "event loop blocked: nothing else runs (a synchronous call in async code?)",
            extra={"bot": bot, "seconds": round(now - beat, 1), "where": where},
        )
        return _Block(beat, bot, where)

    @staticmethod
    def _call(loop: asyncio.AbstractEventLoop, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nothing to report to
            loop.call_soon_threadsafe(callback, *args)

    # -- back on the loop -------------------------------------------------------------------------

    def _resumed(self, seconds: float, block: _Block) -> None:
        """The loop runs again after ``seconds`` (at least; to the beat's interval): count the block,
        say so, and report it against the bot that held it."""
        self.blocks += 1
        self.longest_s = max(self.longest_s, seconds)
        log.warning(
            "event loop running again",
            extra={"bot": block.bot, "seconds": round(seconds, 1), "where": block.where},
        )
        runner = self._runners.get(block.bot) if block.bot is not None else None
        if runner is not None:
            runner.held_loop(
                f"held the event loop for about {seconds:.0f} s at {block.where}: a synchronous call in async"
                " code stops every bot, the signals and the health checks meanwhile"
            )


def held_since(now: float, looked: float, beat: float, interval: float, blocked_s: float) -> bool:
    """Has the loop been held for ``blocked_s``, seen ``now`` by a thread that looked last at
    ``looked`` and asked to wake every ``interval``? Its last beat is that old, and the thread woke
    about when it asked. A thread that woke far later stood still with the whole process (stopped,
    suspended, starved of CPU), the loop with it: that look is skipped (the loop's beat is due at
    once, the next look sees it)."""
    paused = now - looked > interval + max(interval, 1.0)
    return not paused and now - beat >= blocked_s


def holder(frame: FrameType | None) -> tuple[str | None, str]:
    """Whose code ``frame`` (the loop thread's innermost) is in: the id of the innermost bot among its
    callers (a frame whose ``self`` is a :class:`Bot`), and where: that bot's line, with the innermost
    line when it is elsewhere (a library's socket read, ``time.sleep`` has none)."""
    if frame is None:
        return None, "an unknown place"
    innermost = _line(frame)
    caller: FrameType | None = frame
    while caller is not None:
        code = caller.f_code
        if code.co_argcount and code.co_varnames[0] == "self":
            owner = caller.f_locals.get("self")
            if isinstance(owner, Bot):
                line = _line(caller)
                bot_id = getattr(getattr(owner, "ctx", None), "bot_id", None)
                return bot_id, line if line == innermost else f"{line} (now in {innermost})"
        caller = caller.f_back
    return None, innermost


def _line(frame: FrameType) -> str:
    path = frame.f_code.co_filename
    try:
        shown = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        shown = path
    if shown.startswith(".."):
        shown = path
    return f"{shown}:{frame.f_lineno} in {frame.f_code.co_name}"
