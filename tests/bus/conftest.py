"""The ``bus`` fixture: one started bus per test, parametrized over every backend.

The conformance suite (``test_conformance.py``) runs once per parameter, so a new backend only has
to add itself here to be held to the whole contract.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable

import nats
import pytest
from nats.js.errors import NotFoundError

from citarion_host.bus import EventBus, MemoryBus, NatsSettings
from citarion_host.events import Event
from citarion_host.natsserver import NatsServer

BACKENDS = [
    "memory",
    pytest.param("nats", marks=pytest.mark.nats),  # JetStream: every event stored
    pytest.param("nats-public", marks=pytest.mark.nats),  # JetStream, nats-py's public API (lean_wire off)
    pytest.param("nats-core", marks=pytest.mark.nats),  # core NATS only
    pytest.param("nats-core-public", marks=pytest.mark.nats),  # core, nats-py's public API (lean_wire off)
]
_streams = itertools.count(1)


@pytest.fixture(params=BACKENDS)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    if request.param == "memory":
        async with MemoryBus() as memory:
            yield memory
    elif request.param in ("nats", "nats-public", "nats-core", "nats-core-public"):
        # A fresh stream per test on the session's server (a fresh server costs ~0.3 s per test).
        from citarion_host.bus.nats import NatsBus

        server: NatsServer = request.getfixturevalue("shared_nats_server")
        settings = NatsSettings(
            servers=[server.url],
            stream=f"conformance-{next(_streams)}",
            jetstream=request.param in ("nats", "nats-public"),
            lean_wire=not request.param.endswith("-public"),
        )
        try:
            async with NatsBus(settings) as instance:
                yield instance
        finally:
            await delete_stream(server.url, settings.stream)
    else:  # pragma: no cover - backends added by their own issue
        raise AssertionError(request.param)


async def delete_stream(url: str, stream: str) -> None:
    """Remove a test's stream so the next test can create one on the same subjects."""
    nc = await nats.connect(url)
    try:
        await nc.jsm().delete_stream(stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


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


def sibling(bus: EventBus) -> EventBus:
    """Another bus of the same backend and settings: to the backend, another host."""
    if isinstance(bus, MemoryBus):
        return MemoryBus()
    from citarion_host.bus.nats import NatsBus

    assert isinstance(bus, NatsBus), f"no sibling for {type(bus).__name__}: add it here"
    return NatsBus(bus.settings)


@pytest.fixture(params=BACKENDS)
async def det_bus(request: pytest.FixtureRequest) -> AsyncIterator[EventBus]:
    """The same backends in deterministic mode (``bus/sequencer.py``)."""
    if request.param == "memory":
        async with MemoryBus(deterministic=True) as memory:
            yield memory
        return
    from citarion_host.bus.nats import NatsBus

    server: NatsServer = request.getfixturevalue("shared_nats_server")
    settings = NatsSettings(
        servers=[server.url],
        stream=f"conformance-{next(_streams)}",
        jetstream=request.param in ("nats", "nats-public"),
        lean_wire=not request.param.endswith("-public"),
    )
    try:
        async with NatsBus(settings, deterministic=True) as instance:
            yield instance
    finally:
        await delete_stream(server.url, settings.stream)
