"""Bots for the replica tests, referenced from test configs as ``tests.replica_bots:<Name>``.

Both publish, for every event they handle, what they handled and in which process: the tests read
that back from the stream to count events per host process, across kills.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from citarion_host.bot import Bot
from citarion_host.events import Event


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sleep_s: float = Field(default=0.0, ge=0)  # awaited in each handle: a kill lands mid-run


class Echo(Bot):
    """No state: publishes ``{"n", "pid"}`` on ``analytics.replica.handled`` for each ``{"n"}``."""

    type_name = "test-replica-echo"
    Params = _Params
    params: _Params

    async def handle(self, event: Event) -> None:
        if self.params.sleep_s:
            await asyncio.sleep(self.params.sleep_s)
        await self.ctx.publish("analytics.replica.handled", {"n": event.payload["n"], "pid": os.getpid()})


class CounterState(msgspec.Struct):
    count: int = 0
    total: int = 0
    last_n: int = -1
    gaps: int = 0
    repeats: int = 0


class Counter(Bot):
    """State: counts ``{"n"}`` events (gaps and repeats too); publishes ``{"n", "count", "pid"}`` on
    ``analytics.replica.counted`` for each, so a test sees which process counted what, from where."""

    type_name = "test-replica-counter"
    State = CounterState
    Params = _Params
    params: _Params

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.count = self.total = self.gaps = self.repeats = 0
        self.last_n = -1

    async def handle(self, event: Event) -> None:
        n = int(event.payload["n"])
        if self.params.sleep_s:
            await asyncio.sleep(self.params.sleep_s)
        self.count += 1
        self.total += n
        if n <= self.last_n:
            self.repeats += 1
        elif n != self.last_n + 1:
            self.gaps += 1
        self.last_n = max(self.last_n, n)
        await self.ctx.publish("analytics.replica.counted", {"n": n, "count": self.count, "pid": os.getpid()})

    def stats(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in CounterState.__struct_fields__}
