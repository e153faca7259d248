"""Memory bus benchmarks: one-to-one and fan-out, every side building its typed events.

* **one-to-one**: build a typed event (``make_event``: validation, id, timestamp) and hand it to one
  handler. The baseline awaits the handler directly; the bus publishes it to one subscriber; the bot
  row publishes through ``ctx.publish`` of a real host (publish guard and bookkeeping included).
* **fan-out**: one publisher, 10 wildcard subscribers among 100 subscribed patterns. The baseline
  builds the event and awaits the 10 handlers directly. "repeated topic" publishes on one topic (the
  bus's route is cached after the first event); "fresh topics" publishes every event on a topic never
  seen before, so every event pays the route lookup in the pattern index (and the catalog's topic
  parsing), which is what high-cardinality topics (one per order, per instrument) cost.
"""

from __future__ import annotations

import gc
import itertools
import tracemalloc

from .bench import SIGNAL, TOPIC, Counter, Figures, Stopwatch, Table, median_figures, paired, ratio, rounds
from .bench_host import bench_host
from .bus import MemoryBus
from .events import Event, make_event

__all__ = ["run_memory"]

#: Ten patterns that all match ``trading.signal.generated.<anything>``.
_FAN_PATTERNS = (
    "trading.signal.>",
    "trading.>",
    ">",
    "trading.*.generated.>",
    "*.signal.generated.*",
    "trading.signal.generated.*",
    "*.*.*.*",
    "trading.signal.*.*",
    "*.signal.>",
    "trading.*.*.>",
)
_NOISE = 90  # other subscribed patterns, next to the matching ones in the index, never matched


async def _direct(count: int) -> Figures:
    received = 0

    async def handler(event: Event) -> None:
        nonlocal received
        received += 1

    build = make_event
    watch = Stopwatch()
    for _ in range(count):
        await handler(build(TOPIC, SIGNAL, source="GRD"))
    return watch.figures(count)


async def _bus(count: int) -> Figures:
    async with MemoryBus() as bus:
        counter = Counter(count)

        async def handler(event: Event) -> None:
            counter.note()

        await bus.subscribe("trading.signal.>", handler)
        build, publish = make_event, bus.publish
        watch = Stopwatch()
        for _ in range(count):
            await publish(build(TOPIC, SIGNAL, source="GRD"))
        await counter.wait("memory bus one-to-one")
        return watch.figures(count)


async def _bot(count: int) -> Figures:
    async with bench_host({"type": "memory"}) as (host, bot):
        counter = Counter(count)

        async def handler(event: Event) -> None:
            counter.note()

        await host.bus.subscribe("trading.signal.>", handler)
        watch = Stopwatch()
        await bot.burst(count)
        await counter.wait("memory bot one-to-one")
        return watch.figures(count)


async def _fan_direct(count: int) -> Figures:
    received = 0

    async def handler(event: Event) -> None:
        nonlocal received
        received += 1

    handlers = [handler] * len(_FAN_PATTERNS)
    build, topic = make_event, f"{TOPIC}.fixed"
    watch = Stopwatch()
    for _ in range(count):
        event = build(topic, SIGNAL, source="GRD")
        for call in handlers:
            await call(event)
    return _fan_figures(count, watch)


async def _fan_bus(count: int, *, fresh: bool, serial: itertools.count[int]) -> Figures:
    async with MemoryBus() as bus:
        counter = Counter(count * len(_FAN_PATTERNS))

        async def handler(event: Event) -> None:
            counter.note()

        async def never(event: Event) -> None:
            raise AssertionError(f"noise pattern matched {event.topic}")

        for pattern in _FAN_PATTERNS:
            await bus.subscribe(pattern, handler)
        for index in range(_NOISE):
            await bus.subscribe(f"{TOPIC}.noise{index}", never)
        # Fresh topics are new to the whole process (the catalog caches topics too): a serial
        # shared by every round.
        topics = [f"{TOPIC}.t{next(serial)}" for _ in range(count)] if fresh else [f"{TOPIC}.fixed"] * count
        build, publish = make_event, bus.publish
        watch = Stopwatch()
        for topic in topics:
            await publish(build(topic, SIGNAL, source="GRD"))
        await counter.wait("memory bus fan-out")
        return _fan_figures(count, watch)


def _fan_figures(count: int, watch: Stopwatch) -> Figures:
    figures = watch.figures(count)
    return {**figures, "deliveries_per_s": figures["events_per_s"] * len(_FAN_PATTERNS)}


async def run_memory(count: int = 200_000, fanout_count: int = 50_000, rounds_: int = 3) -> list[Table]:
    """The one-to-one and fan-out tables (medians of ``rounds_`` interleaved rounds)."""
    await _bus(min(count, 10_000))  # warm-up: caches, allocator
    one = await rounds(
        {
            "direct call (baseline)": lambda: _direct(count),
            "bus.publish -> subscriber": lambda: _bus(count),
            "bot ctx.publish -> subscriber": lambda: _bot(count),
        },
        rounds_,
    )
    one_table = Table(
        "memory: one-to-one, typed events built on both sides",
        "make_event + handler: awaited directly (baseline) / through the memory bus / from a bot's"
        " ctx.publish (real host)",
        ["events_per_s", "us_per_event", "cpu_us_per_event", "spread_pct"],
        [{"name": name, **median_figures(results)} for name, results in one.items()],
    )
    bus, base, bot = "bus.publish -> subscriber", "direct call (baseline)", "bot ctx.publish -> subscriber"
    one_table.ratios = [
        ratio("bus / baseline (events/s)", paired(one, bus, base)),
        ratio("bus events/s (thousands)", one_table.row(bus)["events_per_s"] / 1000, at_least=400),
        ratio("bot / bus (events/s)", paired(one, bot, bus)),
    ]

    serial = itertools.count()
    fan = await rounds(
        {
            "direct calls (baseline)": lambda: _fan_direct(fanout_count),
            "bus, repeated topic": lambda: _fan_bus(fanout_count, fresh=False, serial=serial),
            "bus, fresh topic per event": lambda: _fan_bus(fanout_count, fresh=True, serial=serial),
        },
        rounds_,
    )
    fan_table = Table(
        f"memory: fan-out to {len(_FAN_PATTERNS)} wildcard subscribers among"
        f" {len(_FAN_PATTERNS) + _NOISE} patterns",
        "one make_event per event, then each of the 10 handlers: awaited directly / through the bus on"
        " one topic (cached route) / on a new topic per event (route looked up every time)",
        ["events_per_s", "deliveries_per_s", "us_per_event", "cpu_us_per_event", "spread_pct"],
        [{"name": name, **median_figures(results)} for name, results in fan.items()],
    )
    repeated = "bus, repeated topic"
    fan_table.ratios = [
        ratio("repeated topic / baseline", paired(fan, repeated, "direct calls (baseline)")),
        ratio("fresh topics / repeated topic", paired(fan, "bus, fresh topic per event", repeated)),
    ]
    return [one_table, fan_table, await subscription_memory()]


async def subscription_memory(count: int = 10_000) -> Table:
    """Bytes one idle subscription costs on the memory bus (tracemalloc, everything it allocates:
    the subscription, its index entries, the bus's bookkeeping)."""

    async def handler(event: Event) -> None:
        pass

    async with MemoryBus() as bus:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = [await bus.subscribe(f"trading.signal.s{i}", handler) for i in range(count)]
            gc.collect()
            used = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        per = used / len(kept)
    table = Table(
        "memory: bytes per idle subscription",
        f"{count:,} subscriptions on distinct topics, nothing published (backlogs are made on first use)",
        ["bytes"],
        [{"name": "memory bus subscription", "bytes": round(per)}],
    )
    table.ratios = [ratio("bytes per idle subscription", per, at_most=1536)]
    return table
