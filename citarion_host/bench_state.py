"""What bot state costs: per event at the default snapshot interval, and on the demo's throughput.

Tables comparing the same run with ``[state] enabled`` on and off, in interleaved rounds:

* **per event**: a feed publishes ``events`` numbers to one stateful bot (:class:`BenchStrategy`, a
  strategy-sized state: counters, a position, cash, a 50-price window, 20 open orders), through the
  host as a run would (deterministic mode), on memory (snapshots kept in the process) and on JetStream
  (snapshots in the key-value bucket, file storage). The difference of the per-event times is what state
  costs per event, and divided by the snapshots taken, what one snapshot costs.
* **the parts**: encoding one snapshot, the bookkeeping of one event, one key-value put, each timed
  alone: steadier than the end-to-end runs on a shared machine.
* **the demo**: ``configs/dev.toml`` (``--config``: another) on memory with state on and off: every
  first-party bot keeps its state, so this is what state costs a real topology (the bookkeeping of
  each handled event, the snapshots of the exchange's books and price history, the strategies'
  windows, the feed's position).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

import msgspec

from .app import run_host
from .bench import BenchError, Figures, Table, median_figures, paired, ratio, rounds
from .bench_demo import DEMO_CONFIG, demo_config
from .bench_nats import drop_stream
from .bot import Bot
from .checkpoint import Checkpoints
from .events import Event, catalog
from .host import Host
from .plugins import Plugins
from .settings import LoadedConfig, StateSettings, parse_config
from .state import encode_snapshot, state_spec
from .statestore import StateKeeper

__all__ = ["BenchFeed", "BenchStrategy", "run_state_bench", "state_demo_round", "state_round"]


class BenchFeed(Bot):
    """Publishes ``{"n": i}`` for i in range(count), yielding to the loop between events."""

    type_name = "bench-state-feed"

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.count = int(ctx.bot_id.rsplit("-", 1)[-1])

    async def start(self) -> None:
        self.ctx.spawn(self._run(), "feed")

    async def _run(self) -> None:
        for n in range(self.count):
            await self.ctx.publish("analytics.number.emitted", {"n": n})
            if n % 64 == 0:
                await asyncio.sleep(0)


class Order(msgspec.Struct):
    order_id: str
    price: float
    quantity: float


class BenchStrategy(Bot):
    """A strategy-sized state, updated on every event."""

    type_name = "bench-state-strategy"

    class State(msgspec.Struct):
        handled: int = 0
        next_order: int = 1
        position: float = 0.0
        cash: float = 10_000.0
        window: list[float] = []
        orders: dict[str, Order] = {}

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.handled, self.next_order, self.position, self.cash = 0, 1, 0.0, 10_000.0
        self.window: deque[float] = deque(maxlen=50)
        self.orders: dict[str, Order] = {}

    async def handle(self, event: Event) -> None:
        n = event.payload["n"]
        price = 100.0 + (n % 97) / 10
        self.handled += 1
        self.window.append(price)
        if n % 5 == 0:
            order_id = f"o-{self.next_order}"
            self.next_order += 1
            self.orders[order_id] = Order(order_id, price, 0.1)
            if len(self.orders) > 20:
                filled = self.orders.pop(next(iter(self.orders)))
                self.position += filled.quantity
                self.cash -= filled.price * filled.quantity


def _config(events: int, backend: dict[str, Any], enabled: bool, bucket: str) -> LoadedConfig:
    spec = f"{__name__}:"
    data = {
        "host": {"progress_interval_s": 0, "summary": False},
        "backend": backend,
        "state": {"enabled": enabled, "bucket": bucket},
        "bots": [
            {
                "id": f"feed-{events}",
                "code": "ORA",
                "plugin": spec + "BenchFeed",
                "publish": ["analytics.number.>"],
            },
            {
                "id": "strategy",
                "code": "ORA",
                "plugin": spec + "BenchStrategy",
                "subscribe": ["analytics.number.>"],
            },
        ],
    }
    return parse_config(data, Path("bench-state.toml"), environ={})


async def state_round(
    events: int, backend: dict[str, Any], enabled: bool, bucket: str = "bench-state"
) -> Figures:
    """One run: ``events`` through the stateful bot; events/s, us per event, snapshots taken."""
    host = Host(_config(events, backend, enabled, bucket), plugins=Plugins())
    await host.start()
    started = time.perf_counter()  # the feed has just begun: the start (state loading too) is not counted
    try:
        runner = host.runners["strategy"]
        deadline = started + 600
        while runner.handled < events:
            if time.perf_counter() > deadline:
                raise BenchError(f"state bench: {runner.handled} of {events} events handled in time")
            await asyncio.sleep(0.005)
        seconds = time.perf_counter() - started
        snapshots = runner.checkpoints.taken if runner.checkpoints is not None else 0
    finally:
        await host.stop()
    return {
        "events": events,
        "events_per_s": events / seconds,
        "us_per_event": seconds * 1e6 / events,
        "snapshots": snapshots,
    }


async def state_demo_round(path: Path, enabled: bool) -> Figures:
    """The demo (``path``) on memory with ``[state] enabled``: events/s through the bus."""
    with tempfile.TemporaryDirectory(prefix="citarion-bench-") as tmp:
        loaded = demo_config(path, {"type": "memory"}, Path(tmp) / "events.jsonl")
        state = StateSettings(enabled=enabled)
        loaded = dataclasses.replace(loaded, config=loaded.config.model_copy(update={"state": state}))
        summary = await run_host(loaded, reload=False, out=io.StringIO(), handle_signals=False)
    failing = [row["bot"] for row in summary["bots"] if row["errors"] or row["state"] != "running"]
    if not summary["events"] or failing:
        raise BenchError(f"demo with state {enabled}: {summary['events']} events, failing bots: {failing}")
    return {"events": summary["events"], "events_per_s": summary["events_per_s"]}


def _time_per_call(call: Any, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - started) * 1e6 / count


async def parts_round(url: str | None, count: int = 2_000) -> Figures:
    """Each part of the cost alone, stable where the end-to-end runs are noisy: encoding one snapshot
    of the strategy's state, the bookkeeping of one handled event, one key-value put of the snapshot."""
    strategy = BenchStrategy(_Quiet(), None)
    for n in range(200):
        await strategy.handle(catalog.make("analytics.number.emitted", {"n": n}, source="ORA"))
    spec = state_spec(BenchStrategy)

    def encode() -> bytes:
        return encode_snapshot("s", spec, strategy.snapshot(), handled=1, seq=1, stream="s", event_id="e")[1]

    data = encode()
    figures: Figures = {"bytes": len(data), "snapshot_us": _time_per_call(encode, count)}
    never = StateSettings(every_events=10**9, every_s=1e9)
    checkpoints = Checkpoints("s", BenchStrategy, spec, StateKeeper(), never, None)
    event = catalog.make("analytics.number.emitted", {"n": 1}, source="ORA")

    def applied() -> None:
        checkpoints.applied(strategy, event, None)
        if len(checkpoints.journal) >= 100:  # as a snapshot would
            checkpoints.journal.clear()

    figures["per_event_us"] = _time_per_call(applied, count * 50)
    if url is not None:
        import nats

        from .bus.config import NatsSettings
        from .statekv import open_kv_store

        connection = await nats.connect(url)
        bucket = f"bench-state-parts-{time.monotonic_ns()}"
        try:
            store = await open_kv_store(connection, NatsSettings(servers=[url]), bucket)
            assert store is not None
            started = time.perf_counter()
            for _ in range(count // 10):
                await store.save("s", data)
            figures["kv_put_us"] = (time.perf_counter() - started) * 1e6 / (count // 10)
        finally:
            await connection.close()
            await drop_stream(url, f"KV_{bucket}")
    return figures


class _Quiet:
    bot_id = "bench"


def _per_event_table(results: dict[str, list[Figures]], backend: str, events: int) -> Table:
    on, off = f"{backend}, state on", f"{backend}, state off"
    table = Table(
        f"state: one stateful bot, {events:,} events, {backend}",
        "the same feed and strategy bot through the host (deterministic mode), [state] enabled on vs off;"
        " default interval (a snapshot per 1,000 events or per second, spaced by max_share)",
        ["events", "events_per_s", "us_per_event", "snapshots", "spread_pct"],
        [{"name": name, **median_figures(r)} for name, r in results.items()],
    )
    extra = table.row(on)["us_per_event"] - table.row(off)["us_per_event"]
    snapshots = table.row(on)["snapshots"] or 1
    table.ratios = [
        ratio("state on / off (events/s)", paired(results, on, off), at_least=0.9),
        ratio("state cost per event (us)", extra),
        ratio("per snapshot (us, incl. the store write)", extra * events / snapshots),
    ]
    return table


async def run_state_bench(
    url: str | None, events: int, jetstream_events: int, rounds_: int = 3, path: Path = DEMO_CONFIG
) -> list[Table]:
    """Both tables (JetStream only with a server ``url``); see the module docstring."""
    parts = await rounds({"parts": lambda: parts_round(url)}, rounds_)
    row = median_figures(parts["parts"], main="snapshot_us")
    table = Table(
        "state: the parts, per call",
        "encoding one snapshot of a strategy-sized state; the bookkeeping of one handled event (journal,"
        " position, cadence); one JetStream key-value put of that snapshot (file storage, awaited)",
        ["bytes", "snapshot_us", "per_event_us", "kv_put_us"],
        [{"name": "BenchStrategy", **row}],
    )
    every = StateSettings().every_events
    table.ratios = [
        ratio(
            f"per event at every_events = {every}, memory (us)",
            row["per_event_us"] + row["snapshot_us"] / every,
        ),
    ]
    if "kv_put_us" in row:
        table.ratios.append(
            ratio(
                f"KV puts per event at every_events = {every} (us, in the background)",
                row["kv_put_us"] / every,
            )
        )
    tables = [table]
    memory = {"type": "memory"}
    results = await rounds(
        {
            "memory, state on": lambda: state_round(events, memory, True),
            "memory, state off": lambda: state_round(events, memory, False),
        },
        rounds_,
    )
    tables.append(_per_event_table(results, "memory", events))
    if url is not None:
        serial = iter(range(1_000_000))

        async def jetstream(enabled: bool) -> Figures:
            stream = f"bench-state-{next(serial)}"
            backend = {"type": "nats", "nats": {"servers": [url], "stream": stream, "storage": "file"}}
            try:
                return await state_round(jetstream_events, backend, enabled, bucket=stream)
            finally:
                await drop_stream(url, stream)
                await drop_stream(url, f"KV_{stream}")

        results = await rounds(
            {
                "JetStream, state on": lambda: jetstream(True),
                "JetStream, state off": lambda: jetstream(False),
            },
            rounds_,
        )
        tables.append(_per_event_table(results, "JetStream", jetstream_events))
    if path.is_file():
        demo = await rounds(
            {
                "demo, state on": lambda: state_demo_round(path, True),
                "demo, state off": lambda: state_demo_round(path, False),
            },
            rounds_,
        )
        table = Table(
            f"state: the {path.name} demo on memory",
            "every bot of the demo keeps its state (the exchange's books, the strategies' windows, the"
            " feed's position) with [state] enabled on vs off; events/s through the bus",
            ["events", "events_per_s", "spread_pct"],
            [{"name": name, **median_figures(r)} for name, r in demo.items()],
        )
        table.ratios = [
            ratio(
                "state on / off (events/s)", paired(demo, "demo, state on", "demo, state off"), at_least=0.9
            )
        ]
        tables.append(table)
    return tables
