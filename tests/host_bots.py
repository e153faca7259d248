"""Small bots for host tests, referenced from test configs as ``tests.host_bots:<Name>``."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sys
import threading
import time
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from citarion_host.bot import Bot
from citarion_host.events import Event


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Numbers(Bot):
    """Publishes ``{"n": 0..count-1}`` on ``topic`` from a supervised background task.

    ``pace`` yields to the loop between events; ``gate`` (class-level, per test) lets a test hold
    the stream until it is ready.
    """

    type_name = "test-numbers"
    gate: ClassVar[asyncio.Event | None] = None
    sent: ClassVar[int] = 0

    class Params(_Params):
        topic: str = "analytics.number.emitted"
        count: int = Field(default=100, ge=0)
        pace_s: float = 0.0
        announce_done: str | None = None

    params: Params

    async def start(self) -> None:
        self.ctx.spawn(self._run(), "numbers")  # type: ignore[attr-defined]

    async def _run(self) -> None:
        for n in range(self.params.count):
            if Numbers.gate is not None:
                await Numbers.gate.wait()
            await self.ctx.publish(self.params.topic, {"n": n})
            Numbers.sent = n + 1
            await asyncio.sleep(self.params.pace_s)
        if self.params.announce_done:
            await self.ctx.publish(
                self.params.announce_done, {"feed": self.ctx.bot_id, "bars": self.params.count}
            )


class Bars(Bot):
    """A replayed feed in miniature: ``{"bar": 0..count-1}``, one event a bar, ``ctx.settle(lag=True)``
    before each new bar, as ``lumi`` paces itself; ``sent`` counts the bars handed over (class-level)."""

    type_name = "test-bars"
    sent: ClassVar[int] = 0

    class Params(_Params):
        topic: str = "analytics.number.emitted"
        count: int = Field(default=10, ge=0)

    params: Params

    async def start(self) -> None:
        self.ctx.spawn(self._run(), "bars")

    async def _run(self) -> None:
        for n in range(self.params.count):
            if n:
                await self.ctx.settle(lag=True)
            await self.ctx.publish(self.params.topic, {"bar": n})
            Bars.sent = n + 1


class Held(Bot):
    """Keeps the bars it handles (class-level ``seen``); its handler of bar 0 waits for ``gate``."""

    type_name = "test-held"
    seen: ClassVar[list[int]] = []
    gate: ClassVar[asyncio.Event | None] = None

    async def handle(self, event: Event) -> None:
        Held.seen.append(event.payload["bar"])
        if event.payload["bar"] == 0 and Held.gate is not None:
            await Held.gate.wait()


class Ledger(Bot):
    """Publishes ``{"n": 0..count-1}`` like :class:`Numbers`, and keeps per bot id (class-level, for the
    test to read) the ids of the events whose ``ctx.publish`` returned and the errors of those that
    raised: what the feed was told, to hold against what the store has."""

    type_name = "test-ledger"
    posted: ClassVar[dict[str, list[str]]] = {}
    failed: ClassVar[dict[str, list[str]]] = {}

    class Params(_Params):
        topic: str = "analytics.number.emitted"
        count: int = Field(default=100, ge=0)
        pace_s: float = 0.0

    params: Params

    async def start(self) -> None:
        self.ctx.spawn(self._run(), "ledger")

    async def _run(self) -> None:
        posted = Ledger.posted.setdefault(self.ctx.bot_id, [])
        failed = Ledger.failed.setdefault(self.ctx.bot_id, [])
        for n in range(len(posted) + len(failed), self.params.count):  # a restart goes on, not over
            try:
                event = await self.ctx.publish(self.params.topic, {"n": n})
            except Exception as exc:  # what the feed was told is the point
                failed.append(f"{n}: {exc!r}")
            else:
                posted.append(event.id)
            await asyncio.sleep(self.params.pace_s)


class Recorder(Bot):
    """Keeps every event it gets, in a class-level dict by bot id (survives restarts)."""

    type_name = "test-recorder"
    seen: ClassVar[dict[str, list[Event]]] = {}
    instances: ClassVar[dict[str, int]] = {}

    class Params(_Params):
        label: str = ""

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        Recorder.instances[ctx.bot_id] = Recorder.instances.get(ctx.bot_id, 0) + 1
        Recorder.seen.setdefault(ctx.bot_id, [])

    async def handle(self, event: Event) -> None:
        Recorder.seen[self.ctx.bot_id].append(event)

    def stats(self) -> dict[str, Any]:
        return {"seen": len(Recorder.seen[self.ctx.bot_id])}


class Crasher(Bot):
    """Raises on every event (``fail_on_start``: already in ``start``)."""

    type_name = "test-crasher"
    starts: ClassVar[int] = 0

    class Params(_Params):
        fail_on_start: bool = False

    params: Params

    async def start(self) -> None:
        Crasher.starts += 1
        if self.params.fail_on_start:
            raise RuntimeError("cannot start")

    async def handle(self, event: Event) -> None:
        raise RuntimeError(f"crash on {event.topic}")


class Exiter(Bot):
    """Calls ``sys.exit(3)`` in ``where``: ``handle`` (every event), ``start``, ``stop`` or a task it
    spawns; ``starts`` counts its starts (class-level)."""

    type_name = "test-exiter"
    starts: ClassVar[int] = 0

    class Params(_Params):
        where: Literal["handle", "start", "stop", "task"] = "handle"

    params: Params

    async def start(self) -> None:
        Exiter.starts += 1
        if self.params.where == "start":
            sys.exit(3)
        if self.params.where == "task":
            self.ctx.spawn(self._exit(), "exits")

    async def _exit(self) -> None:
        await asyncio.sleep(0)
        sys.exit(3)

    async def handle(self, event: Event) -> None:
        if self.params.where == "handle":
            sys.exit(3)

    async def stop(self) -> None:
        if self.params.where == "stop":
            sys.exit(3)


class Blocker(Bot):
    """Holds the event loop: a synchronous ``time.sleep(sleep_s)`` in ``handle`` (``how``), once, on
    its event number ``after`` (from 0): a bot making a blocking call in async code."""

    type_name = "test-blocker"

    class Params(_Params):
        sleep_s: float = 1.0
        how: Literal["sleep", "queue"] = "sleep"
        after: int = 0

    params: Params

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.seen = 0

    async def handle(self, event: Event) -> None:
        self.seen += 1
        if self.seen != self.params.after + 1:
            return
        if self.params.how == "sleep":
            time.sleep(self.params.sleep_s)  # sleep: the line the loop watch names
        else:
            with contextlib.suppress(queue.Empty):
                queue.Queue[None]().get(timeout=self.params.sleep_s)  # queue: the line the loop watch names


class Looper(Bot):
    """Publishes what it receives while ``looping`` (class-level): a loop between bots in one bot."""

    type_name = "test-looper"
    looping: ClassVar[bool] = True

    async def handle(self, event: Event) -> None:
        if Looper.looping:
            await self.ctx.publish("analytics.loop.echoed", {})


class PlainHandle(Bot):
    """A ``handle`` written as a plain ``def``: refused when loaded (the host awaits it)."""

    type_name = "test-plain-handle"
    handled: ClassVar[int] = 0

    def handle(self, event: Event) -> None:  # type: ignore[override]
        PlainHandle.handled += 1


class Trespasser(Bot):
    """Tries to publish outside its declared patterns on every event."""

    type_name = "test-trespasser"
    refusals: ClassVar[list[str]] = []

    class Params(_Params):
        topic: str = "trading.order.submitted"

    params: Params

    async def handle(self, event: Event) -> None:
        try:
            await self.ctx.publish(self.params.topic, {"x": 1})
        except Exception as exc:
            Trespasser.refusals.append(str(exc))
            raise


class FileRecorder(Bot):
    """Appends each event's ``n`` to a file, flushed per event (for tests that run the host in a
    subprocess and must see exactly what was handled before it exited)."""

    type_name = "test-file-recorder"

    class Params(_Params):
        path: str

    params: Params

    async def start(self) -> None:
        self._file = open(self.params.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in stop

    async def handle(self, event: Event) -> None:
        self._file.write(f"{event.payload['n']}\n")
        self._file.flush()

    async def stop(self) -> None:
        self._file.close()


#: Released by tests that make a plugin module hang at import (``import_hangs`` below), so the
#: import thread left behind ends with the test.
IMPORT_GATE = threading.Event()


def import_hangs(seconds: float = 30.0) -> None:
    """Called at module level by a test plugin: blocks its import until IMPORT_GATE is set."""
    IMPORT_GATE.wait(seconds)


class Picky(Bot):
    """Fails on every delivery of the number ``fail_on`` and handles the rest; counts calls per number
    in a class-level dict (survives the restarts the failures cause)."""

    type_name = "test-picky"
    calls: ClassVar[dict[int, int]] = {}

    class Params(_Params):
        fail_on: int = 2

    params: Params

    async def handle(self, event: Event) -> None:
        n = int(event.payload["n"])
        Picky.calls[n] = Picky.calls.get(n, 0) + 1
        if n == self.params.fail_on:
            raise RuntimeError(f"cannot take {n}")
