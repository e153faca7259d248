"""SIGINT/SIGTERM/SIGHUP for ``citarion-host run``: the first stops the host cleanly, within a bound;
the second ends the process at once.

SIGHUP is a stop like the others because its default killed the host where it stood: a closed
terminal or a dropped SSH session lost the state since the last snapshot, the record's last chunk
and the summary, without a word. A host started under ``nohup`` (SIGHUP ignored) keeps ignoring it.

Why two mechanisms:

* The first signal goes through the event loop (``loop.add_signal_handler``): it sets the run's
  ``stop`` event, and the host drains and stops every bot, each ``stop()`` bounded by
  ``[host] stop_timeout_s``. It also starts a *watchdog* thread: if the process is still shutting
  down after ``[host] shutdown_timeout_s``, it exits with status 1.
* A second SIGINT, SIGTERM or SIGHUP exits at once with ``128 + signal number`` (130 for SIGINT,
  143 for SIGTERM, 129 for SIGHUP), as a shell reports a process killed by it.

Why a thread: what overruns may be blocking the event loop itself (a bot calling ``time.sleep`` in
``stop()``), and then nothing in the loop runs, nor does a plain Python signal handler when the
kernel hands the signal to another thread than the main one. The thread waits on the signal wakeup
fd (``signal.set_wakeup_fd``), which the interpreter writes the signal number to from whichever
thread the signal landed on, so the second signal is seen whatever the main thread is doing.

A hard exit skips the summary, the last snapshots and the bus's drain: that is what the operator
asked for by signalling twice. What was acknowledged is in the store (docs/events.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["ShutdownSignals"]

log = logging.getLogger("citarion_host.signals")
_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class ShutdownSignals:
    """Installed for one run (:meth:`install`, :meth:`remove`); see the module docstring."""

    def __init__(
        self, stop: asyncio.Event, *, shutdown_timeout_s: float, exit: Callable[[int], Any] = os._exit
    ) -> None:
        self._stop = stop
        self.shutdown_timeout_s = shutdown_timeout_s
        self._exit = exit
        #: The first signal received (its number), or None.
        self.received: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous: dict[int, Any] = {}
        self._previous_wakeup_fd = -1
        self._pipe: tuple[int, int] | None = None  # the wakeup fd's pipe, after the first signal
        #: The signals handled: each of ``_SIGNALS`` the process does not ignore (``nohup``).
        self._signals: tuple[int, ...] = ()

    def install(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._signals = tuple(each for each in _SIGNALS if signal.getsignal(each) is not signal.SIG_IGN)
        for signum in self._signals:
            self._previous[signum] = signal.getsignal(signum)
            loop.add_signal_handler(signum, self._first, signum)

    def arm(self) -> None:
        """The shutdown begins (a signal, ``stop_on``, a lost bus): from now on the watchdog bounds it
        and a signal ends the process at once. Main thread only; idempotent."""
        if self._pipe is not None:
            return
        assert self._loop is not None
        for each in self._signals:
            self._loop.remove_signal_handler(each)
            # While the main thread is free, this handler runs first; the watchdog sees it anyway.
            signal.signal(each, self._again)
        read, write = self._pipe = os.pipe()
        os.set_blocking(write, False)
        self._previous_wakeup_fd = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
        threading.Thread(target=self._watch, args=(read,), name="citarion-shutdown", daemon=True).start()

    def remove(self) -> None:
        """The run is over: give the signals back and stop the watchdog, unless a signal came. Then
        the process is going down as asked, and what follows the run (the event loop cancelling what
        was left, a bot's task that ignores its cancellation) stays bounded, and interruptible."""
        if self._pipe is None:
            if self._loop is not None:
                for signum in self._signals:
                    self._loop.remove_signal_handler(signum)
            return
        if self.received is not None:
            return
        signal.set_wakeup_fd(self._previous_wakeup_fd)
        for signum in self._signals:
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        with contextlib.suppress(OSError):
            os.write(self._pipe[1], b"\0")  # not a signal number: the watchdog returns
        os.close(self._pipe[1])

    def _first(self, signum: int) -> None:
        """In the loop: the first signal asks for a clean stop (see :meth:`arm`)."""
        self.received = signum
        self.arm()
        name = signal.Signals(signum).name
        log.warning(  # once a second signal is handled (the line tells an operator it is)
            "stopping on %s (send it again to exit at once)",
            name,
            extra={"signal": name, "shutdown_timeout_s": self.shutdown_timeout_s},
        )
        self._stop.set()

    def _watch(self, read: int) -> None:
        """The watchdog thread: a second signal (its number on the wakeup fd) or the deadline."""
        ready, _, _ = select.select([read], [], [], self.shutdown_timeout_s)
        if not ready:
            _say(
                f"error: shutdown did not finish within {self.shutdown_timeout_s:g}s"
                " ([host] shutdown_timeout_s): exiting with status 1\n"
            )
            self._exit(1)
            return
        signum = os.read(read, 1)[0]
        if signum in self._signals:
            self._again(signum, None)
        os.close(read)  # disarmed

    def _again(self, signum: int, frame: FrameType | None) -> None:
        """A second signal (the main thread's handler, or the watchdog's): exit now."""
        name = signal.Signals(signum).name
        _say(f"error: {name} again during shutdown: exiting at once (status {128 + signum})\n")
        self._exit(128 + signum)


def _say(text: str) -> None:
    """One line on stderr without Python's buffered streams (whose lock the interrupted main thread
    may hold); what is buffered on stdout is flushed when that is possible."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    with contextlib.suppress(OSError):
        os.write(2, text.encode())
