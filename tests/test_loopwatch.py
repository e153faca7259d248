"""The loop watch (``loopwatch.py``): a bot that holds the event loop is named from a thread while it
holds it, then counted and reported once the loop runs again.

Before it, a ``time.sleep(25)`` in one bot's ``handle`` stopped the host for 25 s without a line, and
the summary said "running, ok, 0 errors". (A process paused as a whole is not such a block: that
case, which needs a process to stop, is in ``test_lifecycle.py``.)
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from citarion_host.events import Event
from citarion_host.loopwatch import held_since
from tests.bus.conftest import eventually
from tests.host_bots import Blocker, Recorder
from tests.test_host import bot, start_host, write


@pytest.fixture(autouse=True)
def _reset_test_bots() -> Iterator[None]:
    Recorder.seen.clear()
    Recorder.instances.clear()
    yield


def _blocking_line(how: str) -> str:
    """Where the watch names :class:`Blocker` (its file relative to the working directory, as logged)."""
    lines, first = inspect.getsourcelines(Blocker.handle)
    line = first + next(n for n, text in enumerate(lines) if f"# {how}:" in text)
    return f"{os.path.relpath(inspect.getfile(Blocker))}:{line} in handle"


@pytest.mark.parametrize("how", ["sleep", "queue"])
async def test_a_bot_holding_the_loop_is_named_while_it_holds_it_and_reported_after(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """``sleep``: ``time.sleep`` (C code: the bot's own line is the innermost); ``queue``: a blocking
    ``queue.Queue.get``, whose innermost line is the standard library's, named after the bot's."""
    caplog.set_level(logging.WARNING, "citarion_host.host")
    path = write(
        tmp_path,
        "[host]\nloop_blocked_s = 0.4\n",
        bot("numbers", "Numbers", publish='["analytics.number.>"]', count=5),
        bot("blocker", "Blocker", subscribe='["analytics.number.>"]', sleep_s=1.5, how=how),
        bot("watch", "Recorder", subscribe='["system.bot.>"]'),
    )
    host = await start_host(path)
    try:
        await eventually(lambda: host.runners["blocker"].errors == 1, timeout=10, what="the block counted")
        records = [r for r in caplog.records if getattr(r, "bot", None) == "blocker"]
        [held] = [r for r in records if r.getMessage().startswith("event loop blocked")]
        # said by the watch's thread while the loop was held, naming the bot and its line
        assert held.levelname == "ERROR" and held.threadName == "citarion-loop-watch"
        where = _blocking_line(how)
        if how == "sleep":
            assert held.where == where  # type: ignore[attr-defined]
        else:
            assert held.where.startswith(f"{where} (now in ")  # type: ignore[attr-defined]
            assert held.where.endswith(" in wait)")  # type: ignore[attr-defined]  # threading.Condition.wait
        [again] = [r for r in records if r.getMessage() == "event loop running again"]
        assert again.levelname == "WARNING" and again.seconds >= 1.0  # type: ignore[attr-defined]

        def reports() -> list[Event]:
            return [
                e
                for e in Recorder.seen.get("watch", [])
                if e.topic == "system.bot.error" and e.payload.bot_id == "blocker"
            ]

        await eventually(lambda: len(reports()) == 1, what="the report on system.bot.error")
        reason = reports()[0].payload.reason
        assert reason.startswith("held the event loop for about ") and f" s at {where}" in reason
        assert host.stats()["loop"]["blocks"] >= 1 and host.stats()["loop"]["longest_s"] >= 1.0
    finally:
        await host.stop()


async def test_no_watch_with_loop_blocked_s_0(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "citarion_host.host")
    path = write(
        tmp_path,
        "[host]\nloop_blocked_s = 0\n",
        bot("numbers", "Numbers", publish='["analytics.number.>"]', count=3),
        bot("blocker", "Blocker", subscribe='["analytics.number.>"]', sleep_s=0.6),
    )
    host = await start_host(path)
    try:
        await eventually(lambda: host.runners["blocker"].handled == 3, timeout=10, what="the numbers")
    finally:
        await host.stop()
    assert not [r for r in caplog.records if "event loop" in r.getMessage()]
    assert host.stats()["loop"] == {"blocked_s": 0.0, "blocks": 0, "longest_s": 0.0}
    assert host.final_stats["blocker"]["errors"] == 0


def test_a_look_after_the_whole_process_stood_still_is_skipped() -> None:
    """The thread looks every 0.125 s (``loop_blocked_s`` 0.5): a beat 0.6 s old seen on time is a
    held loop; the same beat seen by a thread that woke 2.5 s after its last look (``SIGSTOP``, a
    suspended VM: the loop stood still with it, and has had no turn yet to beat) is not. The process
    case, whose outcome depends on which thread runs first after ``SIGCONT``, is in
    ``test_lifecycle.py``."""
    assert held_since(now=10.0, looked=9.875, beat=9.4, interval=0.125, blocked_s=0.5)
    assert not held_since(now=10.0, looked=9.875, beat=9.6, interval=0.125, blocked_s=0.5)  # 0.4 s
    assert not held_since(now=10.0, looked=7.5, beat=7.45, interval=0.125, blocked_s=0.5)  # paused
    assert held_since(now=10.0, looked=9.0, beat=7.45, interval=1.0, blocked_s=2.0)  # a look 1 s late
