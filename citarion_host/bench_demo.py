"""The demo as a benchmark: the ``configs/dev.toml`` topology on memory and on JetStream, one run.

Both backends run the same topology (every bot of ``configs/paper-trading.toml``, the same seeded
replay), through :func:`~citarion_host.app.run_host` as ``make demo`` does, in interleaved rounds;
only ``[backend]`` differs. JetStream uses a ``nats-server`` the benchmark started (file storage, a
fresh stream per round). The record (every event as JSON lines, part of the demo) goes to a
temporary file; progress lines and the summary are off.

Figures: events/s through the bus (the monitor's count over its run time, what the demo prints), and
CPU per event: this process's CPU time over the run divided by the events, plus the NATS server's
when it is a local child (``/proc``): on JetStream some of the work moves to the server. With the
server's monitoring port, also the NATS messages per event between the host and the server.

**The client's floor** (``raw nats-py: the demo's NATS traffic``): raw nats-py, through its public API,
moving exactly the NATS traffic a JetStream demo run moves, with none of the host around it: the run's
own events (the JSON bytes a memory round recorded, on their topics) published with ``publish_async``
and a ``Nats-Msg-Id`` (the store's acks collected in the background), read back through one push
consumer (the host inbox's: the monitor reads ``>`` from the store with the bots, so it takes every
event; each delivery acked). Free-running and pipelined: the least CPU
per event nats-py spends on that traffic. **The bus alone** (``bus alone: the demo's NATS traffic``)
moves the same events through ``NatsBus.post_now`` (``post`` when it declines) and a stored
subscription to ``>``: the bus's own NATS path, typed events included, with no host and no bots.

**The store's round trip** (``bus alone: one event at a time``): the bus alone posting one event and
waiting until a stored subscription has it back before the next: median and tenth percentile. The
same through raw nats-py (``raw nats-py: one event at a time``: ``publish_async`` with a
``Nats-Msg-Id``, a push consumer, each delivery acked) is the round trip the client library itself
allows, with no bus at all.

The bounds printed under the table: the host cannot spend less on JetStream than the memory run's CPU
per event (the same bots, the same host) plus the bus alone's, so a CPU-bound host's JetStream events/s
cannot exceed memory's times ``memory CPU / (memory CPU + bus alone CPU)``. A deterministic run waits
for the store at every hop of a cascade (a bot handles an event once the stream delivers it, which is
the proof that it is stored), so the host and the server take turns: ``(host + server CPU per event) x
events/s`` near 1 shows it, and its bound adds the server's CPU for that traffic. The tighter
bound counts the waits themselves: the sequencer's ``sequencer_waits`` of the deterministic JetStream
run (each hop of a cascade waits for the store, the host idle meanwhile), each at least a store round
trip, on top of the memory run's time for the same handlers; taken at raw nats-py's round trip, it
bounds any deterministic run on this client library and machine, whatever the bus costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js import api

from .app import run_host
from .bench import BenchError, Figures, Table, median_figures, paired, ratio, rounds
from .bench_nats import ASYNC_WINDOW, drop_stream, jetstream_settings, make_stream
from .bus.nats import NatsBus
from .bus.nats.stream import reduce_filters
from .events import Event, catalog, make_event
from .hookspecs import hookimpl
from .plugins import Plugins
from .settings import LoadedConfig, load_config, parse_config
from .topics import matches

#: A monitoring endpoint of the NATS server the rounds use (``NatsServer.monitor``): ``varz`` counts.
Monitor = Callable[[str], Any]

__all__ = [
    "DEMO_CONFIG",
    "demo_config",
    "demo_round",
    "jetstream_round",
    "process_cpu_seconds",
    "raw_round_trip_round",
    "recorded_events",
    "run_demo",
    "store_round_trip_round",
    "traffic_floor_round",
]

#: The row of raw nats-py moving the demo's NATS traffic (the module docstring's "client's floor").
FLOOR = "raw nats-py: the demo's NATS traffic"
#: The row of the bus alone (no host, no bots) moving the same traffic.
BUS_ALONE = "bus alone: the demo's NATS traffic"
#: The row of the store's round trip for one event (the bus alone, one event at a time).
ROUND_TRIP = "bus alone: one event at a time (store round trip)"
#: The row of the same round trip through raw nats-py (no bus).
RAW_ROUND_TRIP = "raw nats-py: one event at a time (store round trip)"

#: ``configs/dev.toml`` of a source checkout (the demo's config).
DEMO_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dev.toml"


def demo_config(
    path: Path, backend: dict[str, Any], record: Path, state: dict[str, Any] | None = None
) -> LoadedConfig:
    """``path``'s config on ``backend``; no reload, progress or summary; records to ``record``;
    ``state`` overrides keys of ``[state]``."""
    loaded = load_config(path)
    data = loaded.config.model_dump(mode="json")
    data["host"].update(
        reload=False, watch_plugins=False, progress_interval_s=0, summary=False, record=str(record)
    )
    data["backend"] = {**backend, "max_pending": data["backend"]["max_pending"]}
    data["state"].update(state or {})
    return parse_config(data, loaded.path, files=loaded.files, bot_origins=list(loaded.bot_origins))


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` from ``/proc`` (None where there is no ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _messages(monitor: Monitor | None) -> int | None:
    """Messages into and out of the server so far (every connection), from its ``varz``."""
    if monitor is None:
        return None
    varz = monitor("varz")
    return int(varz["in_msgs"]) + int(varz["out_msgs"])


async def demo_round(
    path: Path,
    backend: dict[str, Any],
    server_pid: int | None = None,
    state: dict[str, Any] | None = None,
    *,
    monitor: Monitor | None = None,
    keep_record: Path | None = None,
) -> Figures:
    """One demo run on ``backend``: events/s, wall time, CPU us per event (this process, the server),
    NATS messages per event (with ``monitor``). ``keep_record``: where to leave the run's record."""
    with tempfile.TemporaryDirectory(prefix="citarion-bench-") as tmp:
        loaded = demo_config(path, backend, keep_record or Path(tmp) / "events.jsonl", state)
        meter = _Meter(server_pid, monitor)
        # The plugins as the host finds them (measured, as in any run), and what reads the sequencer's
        # waits for the store when the host stops.
        plugins = Plugins.discover(import_timeout_s=loaded.config.host.plugin_import_timeout_s)
        waits = _SequencerWaits()
        plugins.register(waits, "bench-sequencer-waits")
        summary = await run_host(
            loaded, reload=False, out=io.StringIO(), handle_signals=False, plugins=plugins
        )
        meter.stop()
    events = summary["events"]
    failing = [row["bot"] for row in summary["bots"] if row["errors"] or row["state"] != "running"]
    if not events or failing:
        raise BenchError(f"demo on {backend['type']}: {events} events, bots with errors: {failing or 'none'}")
    figures = meter.figures(events, summary["events_per_s"])
    if waits.count is not None:
        figures["sequencer_waits"] = waits.count
    return figures


class _SequencerWaits:
    """Reads how often the deterministic mode's sequencer waited for deliveries, as the host stops
    (``bus.stats()["sequencer_waits"]``: on JetStream, each a wait for the store)."""

    def __init__(self) -> None:
        self.count: int | None = None

    @hookimpl
    def citarion_host_stopping(self, host: Any) -> None:
        sequencer = host.bus.sequencer
        self.count = sequencer.waits if sequencer is not None else None


async def jetstream_round(
    path: Path,
    url: str,
    stream: str,
    server_pid: int | None,
    deterministic: bool = True,
    monitor: Monitor | None = None,
) -> Figures:
    backend = {
        "type": "nats",
        "deterministic": deterministic,
        "nats": jetstream_settings(url, stream).model_dump(mode="json"),
    }
    # A bucket of its own, as the stream: with the default one, every round after the first resumed
    # the bots' snapshots of the round before (the feed at its end: a run of a few dozen events).
    bucket = f"{stream}-state"
    try:
        return await demo_round(path, backend, server_pid, state={"bucket": bucket}, monitor=monitor)
    finally:
        await drop_stream(url, stream)
        await drop_stream(url, f"KV_{bucket}")


def recorded_events(record: Path) -> list[tuple[str, bytes]]:
    """A run's events as the bus sends them: (topic, JSON body) from its record (one event per line,
    written by the same codec the NATS bus publishes with)."""
    events = []
    for line in record.read_bytes().splitlines():
        if line:
            events.append((json.loads(line)["topic"], line))
    return events


async def traffic_floor_round(
    url: str,
    stream: str,
    events: list[tuple[str, bytes]],
    filters: list[str],
    server_pid: int | None = None,
    monitor: Monitor | None = None,
) -> Figures:
    """Raw nats-py moving a JetStream demo run's NATS traffic (see the module docstring): ``events``
    stored with ``publish_async``, read back through a push consumer on ``filters`` (each delivery
    acked). CPU us per event of this process from the first publish until every delivery arrived and
    every ack was sent."""
    await make_stream(url, stream)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=ASYNC_WINDOW)
        expected = sum(1 for topic, _ in events if any(matches(p, topic) for p in filters))
        arrived = 0
        done = asyncio.get_running_loop().create_future()

        def note() -> None:
            nonlocal arrived
            arrived += 1
            if arrived == expected and not done.done():
                done.set_result(None)

        await _push_consumer(nc, stream, filters, note)
        await nc.flush()
        meter = _Meter(server_pid, monitor)
        for serial, (topic, data) in enumerate(events):
            await js.publish_async(topic, data, headers={"Nats-Msg-Id": f"floor-{serial}"})
        await js.publish_async_completed()
        await asyncio.wait_for(done, 60.0)
        await nc.flush()  # the last acks are on the wire
        meter.stop()
        return meter.figures(len(events))
    finally:
        await nc.close()
        await drop_stream(url, stream)


async def _push_consumer(nc: Client, stream: str, filters: list[str], note: Callable[[], None]) -> None:
    """Raw nats-py reading ``stream`` back: a push consumer on ``filters`` (new events only, explicit
    acks), each delivery acked, then ``note()`` called."""

    async def from_consumer(msg: Any) -> None:
        await msg.ack()
        note()

    inbox = nc.new_inbox()
    await nc.subscribe(inbox, cb=from_consumer)
    await nc.jsm().add_consumer(
        stream,
        api.ConsumerConfig(
            deliver_subject=inbox,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.NEW,
            filter_subjects=reduce_filters(filters),
            max_ack_pending=ASYNC_WINDOW,
        ),
    )


async def bus_traffic_round(
    url: str,
    stream: str,
    events: list[tuple[str, bytes]],
    server_pid: int | None = None,
    monitor: Monitor | None = None,
) -> Figures:
    """The bus alone moving the same traffic as :func:`traffic_floor_round`: the run's events (decoded
    beforehand, as a bot hands them over) posted as the host posts a bot's (``NatsBus.post_now``, else
    ``NatsBus.post``: encoded, stored, acks in the background) and read back by a stored subscription
    to ``>`` (the host inbox: decoded, handed to a handler that counts, acked). Free-running, no bots:
    what the bus's own NATS path costs per event."""
    decoded = [catalog.decode(data, topic) for topic, data in events]
    expected = len(decoded)
    async with NatsBus(jetstream_settings(url, stream)) as bus:
        arrived = 0
        done = asyncio.get_running_loop().create_future()

        async def count(event: Event) -> None:
            nonlocal arrived
            arrived += 1
            if arrived == expected and not done.done():
                done.set_result(None)

        await bus.subscribe(">", count, stored=True, max_pending=expected)
        meter = _Meter(server_pid, monitor)
        for event in decoded:
            if not bus.post_now(event):  # as the host posts a bot's event: at once when it can
                await bus.post(event)
        await asyncio.wait_for(done, 60.0)
        await bus.settle()  # every store ack in, every delivery handled and acked
        meter.stop()
    try:
        return meter.figures(expected)
    finally:
        await drop_stream(url, stream)


def _trip_event(n: int) -> Event:
    """The event of round trip ``n``: a signal, as a strategy bot posts one."""
    return make_event(
        "trading.signal.generated",
        {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.5},
        source="BEN",
        metadata={"n": n},
    )


async def store_round_trip_round(url: str, stream: str, count: int = 500) -> Figures:
    """The bus alone, one event at a time: posted as the host posts a bot's (``post_now``, else
    ``post``), and the next one only once a stored subscription (the host inbox) got it back: the
    store's round trip, the least a deterministic run waits at each hop of a cascade. Median and tenth
    percentile of ``count`` trips, after 50 to warm up."""
    trips = _Trips(count)
    async with NatsBus(jetstream_settings(url, stream)) as bus:
        arrived = asyncio.Event()

        def got(event: Event) -> None:
            arrived.set()

        await bus.subscribe("trading.signal.>", got, stored=True)
        for n in range(count + _WARM_TRIPS):
            event = _trip_event(n)
            arrived.clear()
            with trips.trip(n):
                if not bus.post_now(event):
                    await bus.post(event)
                await asyncio.wait_for(arrived.wait(), 10.0)
    try:
        return trips.figures()
    finally:
        await drop_stream(url, stream)


async def raw_round_trip_round(url: str, stream: str, count: int = 500) -> Figures:
    """Raw nats-py, one event at a time, doing what :func:`store_round_trip_round` has the bus do:
    the event's JSON published with ``publish_async`` and a ``Nats-Msg-Id`` (its store ack collected in
    the background), read back through a push consumer with explicit acks (each delivery acked), and
    the next one only once it came back. No bus, no typed events: the round trip the client library
    itself allows, which bounds any deterministic run on it (the second waits bound)."""
    await make_stream(url, stream)
    trips = _Trips(count)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=ASYNC_WINDOW)
        arrived = asyncio.Event()
        await _push_consumer(nc, stream, ["trading.signal.>"], arrived.set)
        await nc.flush()
        for n in range(count + _WARM_TRIPS):
            event = _trip_event(n)
            arrived.clear()
            with trips.trip(n):
                data = catalog.encode(event)  # as the bus encodes before it posts
                await js.publish_async(event.topic, data, headers={"Nats-Msg-Id": event.id})
                await asyncio.wait_for(arrived.wait(), 10.0)
        await js.publish_async_completed()
        return trips.figures()
    finally:
        await nc.close()
        await drop_stream(url, stream)


_WARM_TRIPS = 50  # round trips before the measured ones (connections, consumers, caches warm)


class _Trips:
    """Round trips timed one by one (wall and CPU), after :data:`_WARM_TRIPS` unmeasured ones."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.walls: list[float] = []
        self.cpu = 0.0

    @contextlib.contextmanager
    def trip(self, n: int) -> Iterator[None]:
        started, started_cpu = time.perf_counter(), time.process_time()
        yield
        if n >= _WARM_TRIPS:
            self.walls.append(time.perf_counter() - started)
            self.cpu += time.process_time() - started_cpu

    def figures(self) -> Figures:
        """Trips per second, CPU us per trip, median and tenth-percentile round trip."""
        walls = sorted(self.walls)
        return {
            "events": self.count,
            "events_per_s": round(self.count / sum(walls)),
            "cpu_us_per_event": self.cpu * 1e6 / self.count,
            "round_trip_us": walls[len(walls) // 2] * 1e6,
            "round_trip_p10_us": walls[len(walls) // 10] * 1e6,
        }


class _Meter:
    """What a round measures around its work, from its creation to :meth:`stop`: this process's CPU and
    wall time, the server's CPU (``server_pid``: a local child) and the messages through the server
    (``monitor``)."""

    def __init__(self, server_pid: int | None, monitor: Monitor | None) -> None:
        self._pid, self._monitor = server_pid, monitor
        self._server = process_cpu_seconds(server_pid) if server_pid else None
        self._messages = _messages(monitor)
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def stop(self) -> None:
        self._cpu, self._wall = time.process_time() - self._cpu, time.perf_counter() - self._wall
        after = process_cpu_seconds(self._pid) if self._pid else None
        self._server = after - self._server if after is not None and self._server is not None else None
        messages = _messages(self._monitor)
        self._messages = (
            messages - self._messages if messages is not None and self._messages is not None else None
        )

    def figures(self, events: int, events_per_s: float | None = None) -> Figures:
        """The round's figures for ``events``: events/s (``events_per_s``, or over the wall time), wall
        time, CPU us per event of this process and of the server, NATS messages per event."""
        figures: Figures = {
            "events": events,
            "events_per_s": events_per_s if events_per_s is not None else round(events / self._wall),
            "seconds": self._wall,
            "cpu_us_per_event": self._cpu * 1e6 / events,
        }
        if self._server is not None:
            figures["server_cpu_us_per_event"] = self._server * 1e6 / events
        if self._messages is not None:
            figures["nats_msgs_per_event"] = self._messages / events
        return figures


def _inbox_patterns(path: Path) -> list[str]:
    """What the host inbox's consumer reads: every pattern the config's enabled bots subscribe to, and
    the monitor's ``>``."""
    config = load_config(path).config
    return list(dict.fromkeys([">", *(p for bot in config.bots if bot.enabled for p in bot.subscribe)]))


async def run_demo(
    url: str,
    path: Path = DEMO_CONFIG,
    rounds_: int = 3,
    server_pid: int | None = None,
    monitor: Monitor | None = None,
) -> list[Table]:
    """The demo on memory and on JetStream, deterministic (the default) and free-running, and raw
    nats-py moving the same NATS traffic, interleaved; the JetStream/memory ratios, what the
    deterministic mode costs on each, and the bound the client's floor puts on JetStream/memory."""
    if not path.is_file():
        raise BenchError(f"{path}: no such config (the demo case needs a source checkout, or --config)")
    with tempfile.TemporaryDirectory(prefix="citarion-bench-") as tmp:
        record = Path(tmp) / "events.jsonl"
        await demo_round(path, {"type": "memory"}, keep_record=record)  # also warms every import up
        recorded = recorded_events(record)
    filters = _inbox_patterns(path)
    serial = iter(range(1_000_000))
    results = await rounds(
        {
            "memory": lambda: demo_round(path, {"type": "memory"}),
            "JetStream": lambda: jetstream_round(
                path, url, f"bench-demo-{next(serial)}", server_pid, monitor=monitor
            ),
            "memory, free-running": lambda: demo_round(path, {"type": "memory", "deterministic": False}),
            "JetStream, free-running": lambda: jetstream_round(
                path, url, f"bench-demo-{next(serial)}", server_pid, deterministic=False, monitor=monitor
            ),
            FLOOR: lambda: traffic_floor_round(
                url, f"bench-demo-{next(serial)}", recorded, filters, server_pid, monitor
            ),
            BUS_ALONE: lambda: bus_traffic_round(
                url, f"bench-demo-{next(serial)}", recorded, server_pid, monitor
            ),
            ROUND_TRIP: lambda: store_round_trip_round(url, f"bench-demo-{next(serial)}"),
            RAW_ROUND_TRIP: lambda: raw_round_trip_round(url, f"bench-demo-{next(serial)}"),
        },
        rounds_,
    )
    # Like with like: deterministic runs of one seed are the same run on every backend (issue 9), so
    # a round that moved another number of events did other work, and its speed means nothing.
    counts = {
        f"{name} #{i + 1}": r["events"]
        for name in ("memory", "JetStream")
        for i, r in enumerate(results[name])
    }
    if len(set(counts.values())) > 1:
        raise BenchError(f"demo: the deterministic rounds moved different numbers of events: {counts}")
    table = Table(
        f"demo: the {path.name} topology, memory vs JetStream, deterministic vs free-running",
        "the same bots and seeded replay through run_host, only [backend] differs (type, deterministic);"
        " events/s through the bus; CPU us per event of this process (and of the local nats-server)",
        [
            "events",
            "events_per_s",
            "cpu_us_per_event",
            "server_cpu_us_per_event",
            "nats_msgs_per_event",
            "sequencer_waits",
            "round_trip_us",
            "round_trip_p10_us",
            "spread_pct",
        ],
        [{"name": name, **median_figures(r)} for name, r in results.items()],
    )
    memory_cpu, floor_cpu = table.row("memory")["cpu_us_per_event"], table.row(FLOOR)["cpu_us_per_event"]
    bus_cpu, jetstream = table.row(BUS_ALONE)["cpu_us_per_event"], table.row("JetStream")
    free_memory, free_jetstream = "memory, free-running", "JetStream, free-running"
    table.ratios = [
        ratio("JetStream / memory (events/s)", paired(results, "JetStream", "memory"), at_least=0.5),
        ratio("free-running: JetStream / memory", paired(results, free_jetstream, free_memory)),
        ratio("memory: deterministic / free-running", paired(results, "memory", free_memory), at_least=0.7),
        ratio("JetStream: deterministic / free-running", paired(results, "JetStream", free_jetstream)),
        ratio("memory CPU us/event", memory_cpu, at_most=25),
        ratio("bus alone / raw nats-py (CPU per event, the same traffic)", bus_cpu / floor_cpu),
        ratio(
            "JetStream / memory bound by the NATS path: memory CPU / (memory CPU + bus alone CPU)",
            memory_cpu / (memory_cpu + bus_cpu),
        ),
        ratio(
            "JetStream deterministic: (host + server CPU per event) x events/s (1: they take turns)",
            (jetstream["cpu_us_per_event"] + jetstream.get("server_cpu_us_per_event", 0.0))
            * jetstream["events_per_s"]
            / 1e6,
        ),
        ratio(
            "deterministic JetStream / memory bound when they take turns:"
            " memory CPU / (memory CPU + bus alone CPU + its server CPU)",
            memory_cpu / (memory_cpu + bus_cpu + table.row(BUS_ALONE).get("server_cpu_us_per_event", 0.0)),
        ),
        ratio(
            "deterministic JetStream / memory bound by its waits for the store:"
            " memory time / (memory time + sequencer waits x store round trip p10)",
            _waits_bound(table.row("memory"), jetstream, table.row(ROUND_TRIP)),
        ),
        ratio(
            "deterministic JetStream / memory bound by its waits at raw nats-py's round trip:"
            " memory time / (memory time + sequencer waits x raw store round trip p10)",
            _waits_bound(table.row("memory"), jetstream, table.row(RAW_ROUND_TRIP)),
        ),
    ]
    return [table]


def _waits_bound(memory: Figures, jetstream: Figures, trip: Figures) -> float:
    """The most a deterministic JetStream run can do against memory's events/s: it does at least the
    memory run's work (the same handlers, one at a time), and at each of its ``sequencer_waits`` the
    host is idle for at least a store round trip (``trip``'s tenth percentile, a floor: the bus alone's,
    or raw nats-py's for what the client library allows whatever the bus does)."""
    memory_s = float(memory["events"] / memory["events_per_s"])
    waiting_s = float(jetstream.get("sequencer_waits", 0) * trip["round_trip_p10_us"] / 1e6)
    return memory_s / (memory_s + waiting_s)
