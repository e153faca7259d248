"""Bots whose ``start()`` or ``stop()`` never return, for the host's timeout and signal tests
(``tests/test_lifecycle.py``); referenced from configs as ``tests.lifecycle_bots:<Name>``."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from citarion_host.bot import Bot
from citarion_host.events import Event


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: Set by a test when it is done: a ``stubborn`` hang then returns, so the test's event loop can close.
RELEASE = threading.Event()

#: How a hang behaves: ``wait`` awaits forever (cancellable), ``stubborn`` catches its cancellation
#: and keeps waiting, ``block`` blocks the whole event loop (``time.sleep``).
Hang = Literal["wait", "stubborn", "block"]


async def hang(how: Hang) -> None:
    """Never return (see :data:`Hang`); a ``stubborn`` hang returns once :data:`RELEASE` is set."""
    if how == "block":
        time.sleep(1e6)
    while not (how == "stubborn" and RELEASE.is_set()):
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            if how != "stubborn":
                raise


class HangsAtStart(Bot):
    """Its ``start()`` never returns."""

    type_name = "test-hangs-at-start"
    starts: ClassVar[int] = 0

    class Params(_Params):
        how: Hang = "wait"

    params: Params

    async def start(self) -> None:
        HangsAtStart.starts += 1
        await hang(self.params.how)

    async def handle(self, event: Event) -> None:
        raise AssertionError("a bot whose start never returned must not get events")


class HangsAtStop(Bot):
    """Starts, handles nothing, and its ``stop()`` never returns."""

    type_name = "test-hangs-at-stop"

    class Params(_Params):
        how: Hang = "wait"

    params: Params

    async def handle(self, event: Event) -> None:
        return None

    async def stop(self) -> None:
        await hang(self.params.how)


class FailsAtStop(Bot):
    """Starts, handles nothing, and its ``stop()`` raises."""

    type_name = "test-fails-at-stop"

    async def handle(self, event: Event) -> None:
        return None

    async def stop(self) -> None:
        raise RuntimeError("the exchange session could not be closed")
