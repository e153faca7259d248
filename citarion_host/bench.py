"""Benchmarks that print figures (``citarion-host bench``), never assertions.

Machines here are shared and noisy, so every figure comes with a baseline measured in the same run
on the same machine, and the ratio between them.

Latency is "publish call to handler entry": the publisher notes the time just before it calls the
helper (building the event is included), the handler notes the time on entry. Send and receive times
are paired by order (one subscriber sees events in publish order), so the measurement works whether
delivery is immediate or queued.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .api import publish_signal
from .bus import EventBus, MemoryBus
from .events import Event, make_event

__all__ = ["latency_summary", "run_memory_bench"]

_SIGNAL = {
    "symbol": "BTCUSDT",
    "exchange": "binance",
    "direction": "LONG",
    "confidence": 0.85,
    "entryPrice": 50000.0,
    "stopLoss": 48000.0,
    "takeProfit": 55000.0,
}


def latency_summary(sent: list[int], received: list[int]) -> dict[str, float]:
    """p50/p99/max of ``received[i] - sent[i]`` in microseconds."""
    count = min(len(sent), len(received))
    if count == 0:
        return {"latency_p50_us": float("nan"), "latency_p99_us": float("nan")}
    deltas = sorted(received[i] - sent[i] for i in range(count))
    return {
        "latency_p50_us": round(deltas[count // 2] / 1000, 2),
        "latency_p99_us": round(deltas[min(count - 1, int(count * 0.99))] / 1000, 2),
        "latency_max_us": round(deltas[-1] / 1000, 2),
    }


def _figures(count: int, seconds: float, sent: list[int], received: list[int]) -> dict[str, float]:
    return {"events": count, "events_per_s": round(count / seconds), **latency_summary(sent, received)}


async def _baseline(events: list[Event]) -> dict[str, float]:
    """Direct handler call on pre-built events: the floor any bus adds to."""
    received: list[int] = []
    stamp = time.perf_counter_ns
    note = received.append

    async def handler(event: Event) -> None:
        note(stamp())

    sent: list[int] = []
    mark = sent.append
    start = time.perf_counter()
    for event in events:
        mark(stamp())
        await handler(event)
    return _figures(len(events), time.perf_counter() - start, sent, received)


async def _publish_signals(bus: EventBus, count: int) -> list[int]:
    """The publisher of every case: notes the time, then builds and publishes through the helper."""
    sent: list[int] = []
    mark, stamp = sent.append, time.perf_counter_ns
    for _ in range(count):
        mark(stamp())
        await publish_signal("GRD", _SIGNAL, bus=bus)
    return sent


async def _one_to_one(bus: EventBus, count: int) -> dict[str, float]:
    received: list[int] = []
    stamp = time.perf_counter_ns
    note = received.append

    async def handler(event: Event) -> None:
        note(stamp())

    subscription = await bus.subscribe("trading.signal.>", handler, name="bench")
    start = time.perf_counter()
    sent = await _publish_signals(bus, count)
    await subscription.wait_idle()
    seconds = time.perf_counter() - start
    await subscription.unsubscribe()
    return _figures(count, seconds, sent, received)


async def _fan_out(bus: EventBus, count: int, subscribers: int = 10, patterns: int = 100) -> dict[str, Any]:
    """1 publisher, ``subscribers`` wildcard subscribers, ``patterns`` patterns in the index."""
    stamp = time.perf_counter_ns
    received: list[list[int]] = [[] for _ in range(subscribers)]
    wildcard = ["trading.signal.*", "trading.*.generated", "trading.>", "*.signal.generated", ">"]
    subs = []
    for index in range(subscribers):
        note = received[index].append

        async def handler(event: Event, note: Callable[[int], None] = note) -> None:
            note(stamp())

        subs.append(await bus.subscribe(wildcard[index % len(wildcard)], handler, name=f"fan-{index}"))

    async def never(event: Event) -> None:  # pragma: no cover - never matched
        raise AssertionError(event.topic)

    for index in range(patterns - subscribers):  # noise that the index must not scan through
        subs.append(await bus.subscribe(f"market.ticker.updated.ex{index}.*", never, name=f"noise-{index}"))
    start = time.perf_counter()
    sent = await _publish_signals(bus, count)
    for sub in subs:
        await sub.wait_idle()
    seconds = time.perf_counter() - start
    for sub in subs:
        await sub.unsubscribe()
    deliveries = sum(len(r) for r in received)
    merged_sent = sent * subscribers
    merged_received = [t for r in received for t in r]
    figures = _figures(count, seconds, merged_sent, merged_received)
    figures.update(subscribers=subscribers, patterns=patterns, deliveries_per_s=round(deliveries / seconds))
    return figures


async def _timed(make: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    gc.collect()
    return await make()


async def run_memory_bench(count: int = 200_000, fanout_count: int = 50_000) -> dict[str, Any]:
    """Memory backend: one-to-one and fan-out, each against the bare baseline."""
    prebuilt = [make_event("trading.signal.generated", _SIGNAL, source="GRD") for _ in range(count)]
    async with MemoryBus() as bus:
        await _one_to_one(bus, min(count, 10_000))  # warm-up: caches, allocator
        baseline = await _timed(lambda: _baseline(prebuilt))
        one = await _timed(lambda: _one_to_one(bus, count))
        fan = await _timed(lambda: _fan_out(bus, fanout_count))
    return {
        "backend": "memory",
        "one_to_one": one,
        "baseline_direct_call": baseline,
        "ratio_events_per_s": round(one["events_per_s"] / baseline["events_per_s"], 3),
        "fan_out": fan,
        "targets": {"events_per_s": 300_000, "latency_p99_us": 100},
    }


def run(coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """Run a bench coroutine on a fresh event loop."""
    return asyncio.run(_wrap(coro))


async def _wrap(coro: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    return await coro
