"""NATS benchmarks (``citarion-host bench --backend nats``): the bus against raw nats-py, same run.

Two paths, each measured as bus *and* baseline on the same server, interleaved round by round so that
noise on a shared 2-core machine hits both alike (the median round of each is reported, plus the ratio):

* ``core``: ``NatsBus`` with ``jetstream = false`` (typed events: build, encode, publish, decode,
  local dispatch) against nats-py publishing pre-encoded bytes to a plain subscription callback.
* ``jetstream``: ``NatsBus`` storing every event (``publish_many``, pipelined, ``Nats-Msg-Id``) and a
  durable subscription (push consumer, explicit acks) against nats-py ``js.publish_async`` with the same
  header and a manual-ack push consumer with the same ``max_ack_pending``.

Publisher and subscriber live in one process (one event loop), like a host whose bots talk to each
other. ``events_per_s`` is end to end: first publish to last handler call. Latency is publish call to
handler entry; the throughput runs report it under load (queueing included), the ``latency`` runs send
one event at a time and wait for it, which is the one-way latency of an idle system.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from typing import Any

import nats
from nats.errors import Error as NatsError
from nats.js import api

from .bench import _SIGNAL, latency_summary
from .bus.config import NatsSettings
from .bus.nats import NatsBus
from .events import Event, encode_event, make_event
from .natsserver import NatsServer

__all__ = ["run_nats_bench"]

_SUBJECT = "trading.signal.generated"
_BENCH_SUBJECTS = "trading.signal.>"  # the bench stream stores only what the bench publishes
_ROUNDS = 3
_LATENCY_EVENTS = 2_000  # at most; a small run (a smoke test) sends count // 10
_TARGETS = {
    "core": {"events_per_s": 100_000, "ratio_events_per_s": 0.70, "latency_p50_ratio_max": 1.2},
    "jetstream": {"events_per_s": 40_000, "ratio_events_per_s": 0.80},
}

Runner = Callable[[], Awaitable[dict[str, Any]]]


def _figures(count: int, seconds: float, sent: list[int], received: list[int]) -> dict[str, Any]:
    return {"events": count, "events_per_s": round(count / seconds), **latency_summary(sent, received)}


class _Counter:
    """Handler stamping arrivals; ``done`` resolves at ``expected``."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.stamps: list[int] = []
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def note(self) -> None:
        self.stamps.append(time.perf_counter_ns())
        if len(self.stamps) >= self.expected and not self.done.done():
            self.done.set_result(None)

    async def wait(self, timeout: float = 120.0) -> None:
        async with asyncio.timeout(timeout):
            await self.done


# -- core -----------------------------------------------------------------------------------------


async def _core_bus(url: str, count: int) -> dict[str, Any]:
    async with NatsBus(NatsSettings(servers=[url], jetstream=False)) as bus:
        counter = _Counter(count)

        async def handler(event: Event) -> None:
            counter.note()

        await bus.subscribe("trading.signal.>", handler)
        sent: list[int] = []
        mark, stamp, build, publish = sent.append, time.perf_counter_ns, make_event, bus.publish
        start = time.perf_counter()
        for _ in range(count):
            mark(stamp())
            await publish(build(_SUBJECT, _SIGNAL, source="GRD"))
        await counter.wait()
        return _figures(count, time.perf_counter() - start, sent, counter.stamps)


async def _core_raw(url: str, count: int) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        data = encode_event(make_event(_SUBJECT, _SIGNAL, source="GRD"))
        counter = _Counter(count)

        async def callback(msg: Any) -> None:
            counter.note()

        await nc.subscribe("trading.signal.>", cb=callback, pending_msgs_limit=1_000_000)
        await nc.flush()
        sent: list[int] = []
        mark, stamp, publish = sent.append, time.perf_counter_ns, nc.publish
        start = time.perf_counter()
        for _ in range(count):
            mark(stamp())
            await publish(_SUBJECT, data)
        await counter.wait()
        return _figures(count, time.perf_counter() - start, sent, counter.stamps)
    finally:
        await nc.close()


async def _paced(publish: Callable[[], Awaitable[Any]], counter: _Counter, count: int) -> dict[str, float]:
    """One event at a time: publish, wait for the handler, next."""
    sent: list[int] = []
    for index in range(count):
        counter.expected = index + 1
        counter.done = asyncio.get_running_loop().create_future()
        sent.append(time.perf_counter_ns())
        await publish()
        await counter.wait(10.0)
    return latency_summary(sent, counter.stamps)


async def _core_latency_bus(url: str, events: int) -> dict[str, float]:
    async with NatsBus(NatsSettings(servers=[url], jetstream=False)) as bus:
        counter = _Counter(1)

        async def handler(event: Event) -> None:
            counter.note()

        await bus.subscribe("trading.signal.>", handler)
        return await _paced(lambda: bus.publish(make_event(_SUBJECT, _SIGNAL, source="GRD")), counter, events)


async def _core_latency_raw(url: str, events: int) -> dict[str, float]:
    nc = await nats.connect(url)
    try:
        data = encode_event(make_event(_SUBJECT, _SIGNAL, source="GRD"))
        counter = _Counter(1)

        async def callback(msg: Any) -> None:
            counter.note()

        await nc.subscribe("trading.signal.>", cb=callback)
        await nc.flush()
        return await _paced(lambda: nc.publish(_SUBJECT, data), counter, events)
    finally:
        await nc.close()


# -- jetstream ----------------------------------------------------------------------------------


async def _js_bus(url: str, count: int, stream: str, durable: str) -> dict[str, Any]:
    settings = NatsSettings(servers=[url], stream=stream, subjects=[_BENCH_SUBJECTS], storage="file")
    async with NatsBus(settings) as bus:
        counter = _Counter(count)

        async def handler(event: Event) -> None:
            counter.note()

        await bus.subscribe("trading.signal.>", handler, durable=durable)
        sent: list[int] = []
        mark, stamp = sent.append, time.perf_counter_ns

        def build() -> Event:
            mark(stamp())
            return make_event(_SUBJECT, _SIGNAL, source="GRD")

        start = time.perf_counter()
        await bus.publish_many(build() for _ in range(count))
        await counter.wait()
        return _figures(count, time.perf_counter() - start, sent, counter.stamps)


async def _js_raw(url: str, count: int, stream: str, durable: str) -> dict[str, Any]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=4096)
        data = encode_event(make_event(_SUBJECT, _SIGNAL, source="GRD"))
        counter = _Counter(count)

        async def callback(msg: Any) -> None:
            counter.note()
            await msg.ack()

        config = api.ConsumerConfig(max_ack_pending=10_000, deliver_policy=api.DeliverPolicy.NEW)
        await js.subscribe(
            "trading.signal.>", stream=stream, durable=durable, cb=callback, manual_ack=True, config=config
        )
        sent: list[int] = []
        mark, stamp = sent.append, time.perf_counter_ns
        start = time.perf_counter()
        for index in range(count):
            mark(stamp())
            await js.publish_async(_SUBJECT, data, headers={"Nats-Msg-Id": f"{durable}-{index}"})
        await js.publish_async_completed()
        await counter.wait()
        return _figures(count, time.perf_counter() - start, sent, counter.stamps)
    finally:
        await nc.close()


# -- driver ---------------------------------------------------------------------------------------


async def _interleaved(bus: Callable[[int], Runner], raw: Callable[[int], Runner]) -> dict[str, Any]:
    """``_ROUNDS`` rounds of raw then bus; the median round of each by throughput."""
    rounds: dict[str, list[dict[str, Any]]] = {"bus": [], "raw": []}
    for index in range(_ROUNDS):
        for label, make in (("raw", raw), ("bus", bus)):
            gc.collect()
            rounds[label].append(await make(index)())
    best = {label: _median(results) for label, results in rounds.items()}
    return {
        "bus": best["bus"],
        "raw_nats_py": best["raw"],
        "ratio_events_per_s": round(best["bus"]["events_per_s"] / best["raw"]["events_per_s"], 3),
        "rounds_events_per_s": {
            label: [r["events_per_s"] for r in results] for label, results in rounds.items()
        },
    }


def _median(results: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(results, key=lambda r: r["events_per_s"])
    return ordered[len(ordered) // 2]


async def _core(url: str, count: int) -> dict[str, Any]:
    await _core_bus(url, min(count, 5_000))  # warm-up: caches, allocator, the connection
    figures = await _interleaved(
        lambda i: lambda: _core_bus(url, count), lambda i: lambda: _core_raw(url, count)
    )
    paced = min(_LATENCY_EVENTS, max(count // 10, 1))
    latency_raw: list[dict[str, float]] = []
    latency_bus: list[dict[str, float]] = []
    for _ in range(2):  # interleaved too
        latency_raw.append(await _core_latency_raw(url, paced))
        latency_bus.append(await _core_latency_bus(url, paced))
    raw_p50 = statistics.median(r["latency_p50_us"] for r in latency_raw)
    bus_p50 = statistics.median(r["latency_p50_us"] for r in latency_bus)
    figures["latency_one_at_a_time"] = {
        "events": paced,
        "bus": latency_bus[-1],
        "raw_nats_py": latency_raw[-1],
        "bus_p50_us": bus_p50,
        "raw_p50_us": raw_p50,
        "ratio_p50": round(bus_p50 / raw_p50, 3),
    }
    figures["targets"] = _TARGETS["core"]
    return figures


async def _jetstream(url: str, count: int) -> dict[str, Any]:
    stream = "bench-events"
    try:
        await _js_bus(url, min(count, 2_000), stream, "warmup")
        figures = await _interleaved(
            lambda i: lambda: _js_bus(url, count, stream, f"bus-{i}"),
            lambda i: lambda: _js_raw(url, count, stream, f"raw-{i}"),
        )
    finally:
        nc = await nats.connect(url)
        try:
            await nc.jsm().delete_stream(stream)
        except NatsError:
            pass
        finally:
            await nc.close()
    figures["targets"] = _TARGETS["jetstream"]
    return figures


async def run_nats_bench(
    count: int = 100_000, mode: str = "both", servers: list[str] | None = None
) -> dict[str, Any]:
    """Run the NATS benchmarks; start a private nats-server unless ``servers`` is given.

    Given servers should be a dedicated test server: the benchmark publishes ``trading.signal.generated``
    events, and in JetStream mode creates (then deletes) a stream ``bench-events`` on ``trading.signal.>``,
    which fails if another stream already stores those subjects.
    """
    with ExitStack() as stack:
        url = servers[0] if servers else stack.enter_context(NatsServer()).url
        result: dict[str, Any] = {
            "backend": "nats",
            "server": "private" if not servers else url,
            "events": count,
        }
        if mode in ("core", "both"):
            result["core"] = await _core(url, count)
        if mode in ("jetstream", "both"):
            result["jetstream"] = await _jetstream(url, count)
        return result
