"""NATS benchmarks: core NATS and JetStream, each bus path against raw nats-py doing the same work.

Every path is a small async context manager yielding a ``send()`` (publish one event) around a
:class:`~citarion_host.bench.Counter` that the receiving side notes into, so the throughput tables here
and the fixed-rate latency table (``bench_latency``) drive exactly the same code.

Core NATS (``NatsBus(jetstream=false)``; publisher and subscriber in one process, one server):

* ``bus``: build a typed event, encode, publish; the subscription decodes it (typed) and calls the
  handler.
* ``raw nats-py + codec``: the same codec work by hand around nats-py's public API: ``make_event`` and
  ``catalog.encode`` before ``nc.publish``, ``catalog.decode`` in the subscription callback. The like-
  for-like baseline.
* ``raw nats-py, bytes``: pre-encoded bytes, a callback that decodes nothing. The floor of nats-py's
  public API, not a like-for-like baseline: the difference is the price of typed events.

JetStream (publish side: from the first publish until the server holds every event, checked on the
stream itself, the same end for every variant):

* per event: a bot's ``ctx.publish`` through a real host, against raw nats-py publishing the same
  bytes one call per event: ``js.publish`` (waits for each ack) and ``js.publish_async`` (acks
  collected in the background, ``publish_async_completed`` at the end).
* batch: ``bus.publish_many`` of pre-built events against raw ``publish_async`` of the same events,
  encoded in the loop, and ``gather`` of the ack futures.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import nats
from nats.errors import Error as NatsError

from .bench import (
    SIGNAL,
    TOPIC,
    BenchError,
    Counter,
    Figures,
    Stopwatch,
    Table,
    median_figures,
    paired,
    ratio,
    rounds,
)
from .bench_host import bench_host
from .bus import MemoryBus
from .bus.config import NatsSettings
from .bus.nats import NatsBus
from .events import Event, catalog, make_event

__all__ = [
    "ASYNC_WINDOW",
    "CORE_PATHS",
    "core_bus",
    "core_raw_bytes",
    "core_raw_codec",
    "core_round",
    "drop_stream",
    "jetstream_settings",
    "make_stream",
    "memory_bus",
    "run_core",
    "run_jetstream",
]

Send = Callable[[], Awaitable[Any]]
PathFactory = Callable[[str, Counter], Any]  # (url, counter) -> async context manager yielding Send
_MAX_PENDING = (
    1_000_000  # raw subscriptions: never drop for lack of room (the bus's own bound is the default)
)
ASYNC_WINDOW = 4096  # raw publish_async in-flight window = NatsSettings.publish_max_in_flight's default


# -- paths -----------------------------------------------------------------------------------------


@asynccontextmanager
async def memory_bus(url: str, counter: Counter) -> AsyncIterator[Send]:
    """The memory bus (``url`` unused): build, publish, deliver to one subscriber."""
    async with MemoryBus() as bus:
        await bus.subscribe("trading.signal.>", _noting(counter))
        publish = bus.publish

        async def send() -> None:
            await publish(make_event(TOPIC, SIGNAL, source="GRD"))

        yield send


@asynccontextmanager
async def core_bus(url: str, counter: Counter) -> AsyncIterator[Send]:
    async with NatsBus(NatsSettings(servers=[url], jetstream=False)) as bus:
        await bus.subscribe("trading.signal.>", _noting(counter))
        publish = bus.publish

        async def send() -> None:
            await publish(make_event(TOPIC, SIGNAL, source="GRD"))

        yield send


@asynccontextmanager
async def core_raw_codec(url: str, counter: Counter) -> AsyncIterator[Send]:
    nc = await nats.connect(url)
    try:
        decode, encode, note = catalog.decode, catalog.encode, counter.note

        async def callback(msg: Any) -> None:
            decode(msg.data, msg.subject)
            note()

        await nc.subscribe("trading.signal.>", cb=callback, pending_msgs_limit=_MAX_PENDING)
        await nc.flush()
        publish = nc.publish

        async def send() -> None:
            await publish(TOPIC, encode(make_event(TOPIC, SIGNAL, source="GRD")))

        yield send
    finally:
        await nc.close()


@asynccontextmanager
async def core_raw_bytes(url: str, counter: Counter) -> AsyncIterator[Send]:
    nc = await nats.connect(url)
    try:
        data = catalog.encode(make_event(TOPIC, SIGNAL, source="GRD"))
        note = counter.note

        async def callback(msg: Any) -> None:
            note()

        await nc.subscribe("trading.signal.>", cb=callback, pending_msgs_limit=_MAX_PENDING)
        await nc.flush()
        publish = nc.publish

        async def send() -> None:
            await publish(TOPIC, data)

        yield send
    finally:
        await nc.close()


CORE_PATHS: dict[str, PathFactory] = {
    "bus (typed events)": core_bus,
    "raw nats-py + codec": core_raw_codec,
    "raw nats-py, bytes": core_raw_bytes,
}


def _noting(counter: Counter) -> Callable[[Event], Awaitable[None]]:
    note = counter.note

    async def handler(event: Event) -> None:
        note()

    return handler


# -- core ------------------------------------------------------------------------------------------


async def core_round(url: str, factory: PathFactory, count: int) -> Figures:
    """``count`` events through one core path as fast as it goes, until the last one is handled."""
    counter = Counter(count)
    async with factory(url, counter) as send:
        watch = Stopwatch()
        for _ in range(count):
            await send()
        await counter.wait(f"core NATS {factory.__name__}")
        return watch.figures(count)


async def run_core(url: str, count: int = 100_000, rounds_: int = 3) -> list[Table]:
    """Core NATS throughput: the bus, raw nats-py with the same codec work, raw bytes."""
    await core_round(url, core_bus, min(count, 5_000))  # warm-up: caches, allocator, the server
    results = await rounds(
        {name: partial(core_round, url, factory, count) for name, factory in CORE_PATHS.items()},
        rounds_,
    )
    table = Table(
        "core NATS: one publisher, one subscriber, one process",
        "bus (build+encode+publish, decode+dispatch) vs raw nats-py doing the same codec work vs raw"
        " nats-py moving pre-encoded bytes (the floor, not like for like)",
        ["events_per_s", "us_per_event", "cpu_us_per_event", "spread_pct"],
        [{"name": name, **median_figures(r)} for name, r in results.items()],
    )
    bus = "bus (typed events)"
    table.ratios = [
        ratio("bus / raw nats-py + codec", paired(results, bus, "raw nats-py + codec")),
        ratio("bus / raw nats-py bytes", paired(results, bus, "raw nats-py, bytes")),
    ]
    return [table]


# -- JetStream -------------------------------------------------------------------------------------


def jetstream_settings(url: str, stream: str) -> NatsSettings:
    """The stream every JetStream variant writes to: file storage, as in ``configs/prod.toml``."""
    return NatsSettings(servers=[url], stream=stream, storage="file")


async def make_stream(url: str, stream: str) -> None:
    """Create ``stream`` exactly as the bus would (the raw variants use the bus's own stream config)."""
    async with NatsBus(jetstream_settings(url, stream)):
        pass


async def drop_stream(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jsm().delete_stream(stream)
    except NatsError:
        pass  # never created (a failed round): nothing to drop
    finally:
        await nc.close()


@asynccontextmanager
async def _stored(url: str, stream: str) -> AsyncIterator[Callable[[int], Awaitable[None]]]:
    """Yields ``wait(expected)``: returns when ``stream`` holds ``expected`` events on the bench topic,
    as the server reports it (its own connection, opened before the timing starts)."""
    nc = await nats.connect(url)
    try:
        jsm = nc.jsm()

        async def wait(expected: int, timeout: float = 60.0) -> None:
            deadline = time.monotonic() + timeout
            while True:
                info = await jsm.stream_info(stream, subjects_filter=TOPIC)
                stored = (info.state.subjects or {}).get(TOPIC, 0)
                if stored >= expected:
                    return
                if time.monotonic() > deadline:
                    raise BenchError(
                        f"JetStream: {stored} of {expected} events stored in {stream!r} after {timeout:g}s"
                    )
                await asyncio.sleep(0.001)

        yield wait
    finally:
        await nc.close()


async def _flush(bus: Any) -> None:
    """Wait for outstanding publish acks where the bus has a way to (issue 12: ``bus.flush()``)."""
    flush = getattr(bus, "flush", None)
    if flush is not None:
        await flush()


async def _js_bot(url: str, stream: str, count: int) -> Figures:
    backend = {"type": "nats", "nats": jetstream_settings(url, stream).model_dump()}
    async with bench_host(backend) as (host, bot), _stored(url, stream) as wait_stored:
        watch = Stopwatch()
        await bot.burst(count)
        await _flush(host.bus)
        await wait_stored(count)
        return watch.figures(count)


async def _js_raw(
    url: str, stream: str, count: int, *, pipelined: bool, ids: itertools.count[int]
) -> Figures:
    await make_stream(url, stream)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=ASYNC_WINDOW)
        data = catalog.encode(make_event(TOPIC, SIGNAL, source="GRD"))
        async with _stored(url, stream) as wait_stored:
            watch = Stopwatch()
            if pipelined:
                for _ in range(count):
                    await js.publish_async(TOPIC, data, headers={"Nats-Msg-Id": f"raw-{next(ids)}"})
                await js.publish_async_completed()
            else:
                for _ in range(count):
                    await js.publish(TOPIC, data, headers={"Nats-Msg-Id": f"raw-{next(ids)}"})
            await wait_stored(count)
            return watch.figures(count)
    finally:
        await nc.close()


async def _js_batch_bus(url: str, stream: str, count: int) -> Figures:
    async with NatsBus(jetstream_settings(url, stream)) as bus, _stored(url, stream) as wait_stored:
        events = [make_event(TOPIC, SIGNAL, source="GRD") for _ in range(count)]
        watch = Stopwatch()
        await bus.publish_many(events)
        await wait_stored(count)
        return watch.figures(count)


async def _js_batch_raw(url: str, stream: str, count: int) -> Figures:
    await make_stream(url, stream)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=ASYNC_WINDOW)
        events = [make_event(TOPIC, SIGNAL, source="GRD") for _ in range(count)]
        encode = catalog.encode
        async with _stored(url, stream) as wait_stored:
            watch = Stopwatch()
            futures = [
                await js.publish_async(event.topic, encode(event), headers={"Nats-Msg-Id": event.id})
                for event in events
            ]
            await asyncio.gather(*futures)  # every ack (an error raises)
            await wait_stored(count)
            return watch.figures(count)
    finally:
        await nc.close()


def _in_fresh_stream(
    url: str, run: Callable[[str], Awaitable[Figures]], serial: itertools.count[int]
) -> Callable[[], Awaitable[Figures]]:
    """A variant that writes into a new stream of its own, dropped afterwards: every round starts from
    an empty store, and no dedup window or leftover consumer carries over."""

    async def variant() -> Figures:
        stream = f"bench-js-{next(serial)}"
        try:
            return await run(stream)
        finally:
            await drop_stream(url, stream)

    return variant


async def run_jetstream(url: str, count: int = 10_000, rounds_: int = 3) -> list[Table]:
    """JetStream publish throughput: per event (bot vs raw, one call per event) and batch vs batch."""
    serial, ids = itertools.count(), itertools.count()
    await _in_fresh_stream(url, lambda s: _js_bot(url, s, min(count, 1_000)), serial)()  # warm-up
    per_event = await rounds(
        {
            "bot ctx.publish (host)": _in_fresh_stream(url, lambda s: _js_bot(url, s, count), serial),
            "raw js.publish (awaits each ack)": _in_fresh_stream(
                url, lambda s: _js_raw(url, s, count, pipelined=False, ids=ids), serial
            ),
            "raw js.publish_async": _in_fresh_stream(
                url, lambda s: _js_raw(url, s, count, pipelined=True, ids=ids), serial
            ),
        },
        rounds_,
    )
    one = Table(
        "JetStream: per-event publish, stored (file storage)",
        "one publish call per event until the server holds them all: a bot's ctx.publish (builds and"
        " encodes each event) vs raw nats-py sending the same pre-encoded bytes",
        ["events_per_s", "us_per_event", "cpu_us_per_event", "spread_pct"],
        [{"name": name, **median_figures(r)} for name, r in per_event.items()],
    )
    bot = "bot ctx.publish (host)"
    one.ratios = [
        ratio("bot / raw publish_async", paired(per_event, bot, "raw js.publish_async"), at_least=0.8),
        ratio("bot / raw js.publish", paired(per_event, bot, "raw js.publish (awaits each ack)")),
    ]
    batch_count = count * 2
    batch = await rounds(
        {
            "bus.publish_many": _in_fresh_stream(url, lambda s: _js_batch_bus(url, s, batch_count), serial),
            "raw publish_async + gather": _in_fresh_stream(
                url, lambda s: _js_batch_raw(url, s, batch_count), serial
            ),
        },
        rounds_,
    )
    many = Table(
        "JetStream: batch publish, stored (file storage)",
        f"{batch_count:,} pre-built events encoded and stored in one go: bus.publish_many vs raw nats-py"
        " publish_async for each + waiting for every ack",
        ["events_per_s", "us_per_event", "cpu_us_per_event", "spread_pct"],
        [{"name": name, **median_figures(r)} for name, r in batch.items()],
    )
    many.ratios = [
        ratio("publish_many / raw", paired(batch, "bus.publish_many", "raw publish_async + gather"))
    ]
    return [one, many]
