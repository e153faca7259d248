"""asyncio's event loop against uvloop, on the paths the choice of ``[host] event_loop`` affects.

Each round runs, on a fresh loop of each kind (rotating which goes first): core NATS throughput
through the bus, core NATS latency at 5,000 events/s (bus and raw nats-py + codec), and the demo on
memory and on JetStream. Every figure is the median of the rounds; the ratios are uvloop / asyncio.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import loops
from .bench import (
    BenchError,
    Counter,
    Figures,
    Table,
    latency_figures,
    median_figures,
    paced,
    paired,
    ratio,
    rounds_sync,
)
from .bench_demo import DEMO_CONFIG, demo_round
from .bench_nats import core_bus, core_raw_codec, core_round, drop_stream, jetstream_settings

__all__ = ["run_loops"]

_LATENCY_RATE = 5_000


async def _latency_p50(url: str, factory: Any, count: int) -> float:
    counter = Counter(count, stamps=True)
    async with factory(url, counter) as send:
        sent: list[int] = []
        await paced(send, _LATENCY_RATE, count, sent)
        await counter.wait("event-loop latency")
    return float(latency_figures(sent, counter.stamps)["p50_us"])


async def _one_loop(
    url: str, count: int, latency_events: int, path: Path, stream: str, pid: int | None
) -> Figures:
    core = await core_round(url, core_bus, count)
    bus_p50 = await _latency_p50(url, core_bus, latency_events)
    raw_p50 = await _latency_p50(url, core_raw_codec, latency_events)
    memory = await demo_round(path, {"type": "memory"})
    backend = {"type": "nats", "nats": jetstream_settings(url, stream).model_dump(mode="json")}
    try:
        jetstream = await demo_round(path, backend, pid)
    finally:
        await drop_stream(url, stream)
    return {
        "core_events_per_s": core["events_per_s"],
        "core_cpu_us": core["cpu_us_per_event"],
        "core_bus_p50_us": bus_p50,
        "core_raw_p50_us": raw_p50,
        "demo_memory_events_per_s": memory["events_per_s"],
        "demo_memory_cpu_us": memory["cpu_us_per_event"],
        "demo_jetstream_events_per_s": jetstream["events_per_s"],
        "demo_jetstream_cpu_us": jetstream["cpu_us_per_event"],
    }


def run_loops(
    url: str,
    count: int = 100_000,
    latency_seconds: float = 1.0,
    rounds_: int = 3,
    path: Path = DEMO_CONFIG,
    server_pid: int | None = None,
) -> list[Table]:
    """The event-loop table; runs outside any loop (each variant starts its own)."""
    if loops.loop_factory("auto") is None:
        raise BenchError(
            "uvloop is not installed: nothing to compare asyncio's loop with (pip install uvloop)"
        )
    serial = itertools.count()
    latency_events = max(int(_LATENCY_RATE * latency_seconds), 100)

    def variant(choice: loops.EventLoopChoice) -> Callable[[], Figures]:
        return lambda: loops.run(
            _one_loop(url, count, latency_events, path, f"bench-loop-{next(serial)}", server_pid), choice
        )

    results = rounds_sync({"asyncio": variant("asyncio"), "uvloop": variant("uvloop")}, rounds_)
    columns = list(results["asyncio"][0])
    table = Table(
        "event loop: asyncio vs uvloop",
        f"each round on a fresh loop of each kind: core NATS bus events/s ({count:,} events), core p50 at"
        f" {_LATENCY_RATE:,}/s (bus and raw nats-py + codec), the demo on memory and JetStream",
        [*columns, "spread_pct"],
        [{"name": name, **median_figures(r, main="core_events_per_s")} for name, r in results.items()],
    )
    table.ratios = [
        ratio(f"uvloop / asyncio: {column}", paired(results, "uvloop", "asyncio", column))
        for column in columns
    ]
    return [table]
