"""Stateful bots for the state tests, referenced from test configs as ``tests.state_bots:<Name>``.

``Tally`` is the subject: it folds a numbered stream into figures whose every bit depends on each event
being applied exactly once and in order (a count, a sum, an order-sensitive checksum, gaps, repeats),
and numbers the orders it publishes from a counter in its state, as a strategy numbers its orders.
``Ticks`` is a deterministic feed whose position is its state.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from citarion_host.bot import Bot
from citarion_host.events import Event

MODULUS = 2**61 - 1


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TallyState(msgspec.Struct):
    count: int = 0
    total: int = 0
    checksum: int = 0
    last_n: int = -1
    gaps: int = 0
    repeats: int = 0
    next_order: int = 1


class Tally(Bot):
    """Folds ``{"n": ...}`` events into figures; every ``publish_every`` events publishes an order
    numbered from its state (``<prefix>-<k>``); ``crash_every``: raises on every such call of
    ``handle`` in this process (half-way: after counting and publishing, so a crash leaves the
    instance's state half-updated and an output out)."""

    type_name = "test-tally"
    State = TallyState
    calls: ClassVar[int] = 0

    class Params(_Params):
        crash_every: int = Field(default=0, ge=0)
        publish_every: int = Field(default=0, ge=0)
        prefix: str = "t"
        label: str = ""
        sleep_s: float = 0.0  # awaited in each handle: a slower bot, for a kill to land mid-run

    params: Params

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.count = self.total = self.checksum = self.gaps = self.repeats = 0
        self.last_n = -1
        self.next_order = 1

    async def handle(self, event: Event) -> None:
        n = int(event.payload["n"])
        if self.params.sleep_s:
            await asyncio.sleep(self.params.sleep_s)
        Tally.calls += 1
        self.count += 1
        if self.params.publish_every and self.count % self.params.publish_every == 0:
            await self.ctx.publish(
                "analytics.tally.order",
                {"id": f"{self.params.prefix}-{self.next_order}", "count": self.count, "n": n},
            )
            self.next_order += 1
        if self.params.crash_every and Tally.calls % self.params.crash_every == 0:
            raise RuntimeError(f"injected crash at call {Tally.calls}")
        if n <= self.last_n:
            self.repeats += 1
        elif n != self.last_n + 1:
            self.gaps += 1
        self.last_n = max(self.last_n, n)
        self.total += n
        self.checksum = (self.checksum * 1_000_003 + n + 1) % MODULUS

    def figures(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in TallyState.__struct_fields__}

    def stats(self) -> dict[str, Any]:
        return self.figures()


class SeenTally(Tally):
    """:class:`Tally` that also notes, outside its state, the id of every event it is handed (per bot
    id, class-level): what was delivered to a stateful bot, counted by event id."""

    type_name = "test-seen-tally"
    seen: ClassVar[dict[str, list[str]]] = {}

    async def handle(self, event: Event) -> None:
        SeenTally.seen.setdefault(self.ctx.bot_id, []).append(event.id)
        await super().handle(event)


class TallyEventsState(msgspec.Struct):
    events: int  # was ``count``: no default, so a version-1 state does not fit without migration
    total: int = 0
    checksum: int = 0
    last_n: int = -1
    gaps: int = 0
    repeats: int = 0
    next_order: int = 1


class TallyRenamed(Tally):
    """Tally after a change of its state model (``count`` renamed ``events``), without a migration."""

    State = TallyEventsState  # type: ignore[assignment]
    state_version = 2

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.events = 0

    async def handle(self, event: Event) -> None:
        await super().handle(event)
        self.events = self.count

    def restore(self, state: Any) -> None:
        super().restore(state)
        self.count = self.events


class TallyMigrated(TallyRenamed):
    """The same change, with the migration that carries a version-1 state over."""

    @classmethod
    def migrate_state(cls, data: dict[str, Any], from_version: int) -> dict[str, Any]:
        if from_version == 1:
            data = {**data, "events": data.pop("count")}
        return data


class TallyModel(BaseModel):
    count: int = 0
    total: int = 0


class PydanticTally(Bot):
    """State as a pydantic model, and a deque window that keeps its bound across a restore."""

    type_name = "test-pydantic-tally"

    class State(BaseModel):
        count: int = 0
        window: list[int] = []

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        from collections import deque

        self.count = 0
        self.window: deque[int] = deque(maxlen=3)

    async def handle(self, event: Event) -> None:
        self.count += 1
        self.window.append(int(event.payload["n"]))


class Ticks(Bot):
    """Publishes ``{"n": next}`` for next in ``[next, count)``; ``next`` is its state, so a restarted
    feed goes on where it stopped. ``pause_at``: stops before that number until ``Ticks.resume`` is set."""

    type_name = "test-ticks"
    resume: ClassVar[asyncio.Event | None] = None

    class State(msgspec.Struct):
        next: int = 0

    class Params(_Params):
        topic: str = "analytics.number.emitted"
        count: int = Field(default=100, ge=0)
        pace_s: float = 0.0
        pause_at: int | None = None
        announce_done: str | None = None

    params: Params

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.next = 0

    async def start(self) -> None:
        self.ctx.spawn(self._run(), "ticks")

    async def _run(self) -> None:
        while self.next < self.params.count:
            if self.params.pause_at == self.next and Ticks.resume is not None:
                await Ticks.resume.wait()
            await self.ctx.publish(self.params.topic, {"n": self.next})
            self.next += 1
            await asyncio.sleep(self.params.pace_s)
        if self.params.announce_done:
            await self.ctx.publish(self.params.announce_done, {"feed": self.ctx.bot_id, "bars": self.next})
