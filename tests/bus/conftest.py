"""The ``bus`` fixture: one started bus per test, parametrized over every backend.

The conformance suite (``test_conformance.py``) runs once per parameter, so a new backend only has
to add itself here to be held to the whole contract.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from citarion_host.bus import EventBus, MemoryBus
from citarion_host.events import Event

BACKENDS = ["memory"]


@pytest.fixture(params=BACKENDS)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "memory":
        instance: EventBus = MemoryBus()
    else:  # pragma: no cover - backends added by their own issue
        raise AssertionError(request.param)
    async with instance:
        yield instance


class Collector:
    """A handler that records events and lets a test await a count, with a deadline."""

    def __init__(self, name: str = "collector") -> None:
        self.name = name
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    @property
    def topics(self) -> list[str]:
        return [event.topic for event in self.events]

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Event]:
        async with asyncio.timeout(timeout):
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.events

    async def settle(self, quiet: float = 0.05) -> list[Event]:
        """Wait until nothing new arrived for ``quiet`` seconds (to prove an absence)."""
        while True:
            before = len(self.events)
            await asyncio.sleep(quiet)
            if len(self.events) == before:
                return self.events


async def eventually(condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
    """Poll ``condition`` until true; fail with ``what`` after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.002)
