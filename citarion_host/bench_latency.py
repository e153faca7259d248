"""One-way latency at fixed rates (1k, 5k, 20k events/s): p50, p99, max, from publish call to handler.

Why fixed rates: a latency taken while publishing as fast as possible measures the queue in front of
each event, which grows with the run's length. At a fixed rate below saturation the figure is the
delivery time a bot sees. The pacer (:func:`~citarion_host.bench.paced`) reports the rate it held;
a path that cannot keep up shows an achieved rate below the target.

Rows per rate, all in one run, interleaved:

* memory bus; core NATS bus, raw nats-py + codec (like for like) and raw bytes (the floor of nats-py);
* JetStream: a bot's ``ctx.publish`` (real host) into a durable subscription on the same bus, against
  raw nats-py ``publish_async`` into a manual-ack push consumer, both building, encoding and decoding;
* the machine's floor: a TCP round trip on loopback through a tiny asyncio echo server in another
  process, the same hop a NATS message makes (client -> server process -> client), with nothing done
  on the way. No NATS path can beat it; how far above it a path is, is what that path costs;
* the server's share: the same events as bare NATS protocol (``PUB`` out, ``MSG`` in, parsed by hand
  on an asyncio protocol), so what remains between it and the bus is the client side.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, cast

import nats
from nats.js import api

from .bench import (
    SIGNAL,
    TOPIC,
    BenchError,
    Counter,
    Figures,
    Table,
    latency_figures,
    median_figures,
    paced,
    paired,
    ratio,
    rounds,
)
from .bench_host import bench_host
from .bench_nats import (
    core_bus,
    core_raw_bytes,
    core_raw_codec,
    drop_stream,
    jetstream_settings,
    make_stream,
    memory_bus,
)
from .events import catalog, make_event

__all__ = ["RATES", "EchoServer", "nats_protocol", "run_latency", "tcp_echo"]

RATES: tuple[int, ...] = (1_000, 5_000, 20_000)
PathFactory = Callable[[str, Counter], Any]

_ECHO = """
import asyncio

class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

async def main():
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


class EchoServer:
    """A TCP echo server in a child process (stopped by its PID), for the loopback round-trip floor."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _ECHO], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise BenchError(f"the echo server did not start: {line!r}")
        self.port = int(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class _EchoClient(asyncio.Protocol):
    def __init__(self, size: int, counter: Counter) -> None:
        self.size = size
        self.counter = counter
        self.buffered = 0

    def data_received(self, data: bytes) -> None:
        self.buffered += len(data)
        while self.buffered >= self.size:  # several echoes can arrive in one read
            self.buffered -= self.size
            self.counter.note()


def tcp_echo(port: int) -> PathFactory:
    @asynccontextmanager
    async def path(url: str, counter: Counter) -> AsyncIterator[Callable[[], Awaitable[None]]]:
        data = catalog.encode(make_event(TOPIC, SIGNAL, source="GRD"))  # an event's size
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(
            lambda: _EchoClient(len(data), counter), "127.0.0.1", port
        )
        write = transport.write

        async def send() -> None:
            write(data)

        try:
            yield send
        finally:
            transport.close()

    return path


class _NatsWireClient(asyncio.Protocol):
    """Bare NATS protocol, no client library: PUB frames out, fixed-size MSG frames counted in."""

    def __init__(self, frame: int, counter: Counter) -> None:
        self.frame = frame
        self.counter = counter
        self.buffer = bytearray()
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        while buffer:
            if buffer.startswith(b"MSG "):
                if len(buffer) < self.frame:
                    return
                del buffer[: self.frame]
                self.counter.note()
                continue
            end = buffer.find(b"\r\n")
            if end < 0:
                return
            line = bytes(buffer[:end])
            del buffer[: end + 2]
            if line == b"PING" and self.transport is not None:
                self.transport.write(b"PONG\r\n")
            elif line == b"PONG" and not self.ready.done():
                self.ready.set_result(None)
            elif line.startswith(b"-ERR") and not self.ready.done():
                self.ready.set_exception(BenchError(f"nats-server refused the bare client: {line!r}"))


@asynccontextmanager
async def nats_protocol(url: str, counter: Counter) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """The server's share of a NATS hop: PUB and MSG written and parsed by hand on an asyncio
    protocol, so nothing of nats-py or the bus is in the way."""
    data = catalog.encode(make_event(TOPIC, SIGNAL, source="GRD"))
    frame = len(f"MSG {TOPIC} 1 {len(data)}\r\n") + len(data) + 2
    host, _, port = url.removeprefix("nats://").rpartition(":")
    loop = asyncio.get_running_loop()
    transport, client = await loop.create_connection(lambda: _NatsWireClient(frame, counter), host, int(port))
    try:
        transport.write(
            b'CONNECT {"verbose":false,"pedantic":false,"protocol":1}\r\nSUB trading.signal.> 1\r\nPING\r\n'
        )
        async with asyncio.timeout(10):
            await client.ready
        packet = f"PUB {TOPIC} {len(data)}\r\n".encode() + data + b"\r\n"
        write = transport.write

        async def send() -> None:
            write(packet)

        yield send
    finally:
        transport.close()


@asynccontextmanager
async def _js_raw(url: str, counter: Counter, stream: str) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    await make_stream(url, stream)
    nc = await nats.connect(url)
    try:
        js = nc.jetstream(publish_async_max_pending=4096)
        decode, encode, note = catalog.decode, catalog.encode, counter.note

        async def callback(msg: Any) -> None:
            decode(msg.data, msg.subject)
            note()
            await msg.ack()

        config = api.ConsumerConfig(max_ack_pending=10_000, deliver_policy=api.DeliverPolicy.NEW)
        await js.subscribe(
            "trading.signal.>",
            stream=stream,
            durable="bench-latency",
            cb=callback,
            manual_ack=True,
            config=config,
        )
        await nc.flush()

        async def send() -> None:
            event = make_event(TOPIC, SIGNAL, source="GRD")
            await js.publish_async(TOPIC, encode(event), headers={"Nats-Msg-Id": event.id})

        yield send
    finally:
        await nc.close()


async def _path_round(factory: PathFactory, url: str, rate: float, count: int, what: str) -> Figures:
    counter = Counter(count, stamps=True)
    async with factory(url, counter) as send:
        sent: list[int] = []
        pace = await paced(send, rate, count, sent)
        await counter.wait(what)
    return {**pace, **latency_figures(sent, counter.stamps)}


async def _js_raw_round(url: str, rate: float, count: int, serial: itertools.count[int]) -> Figures:
    stream = f"bench-lat-{next(serial)}"
    try:
        return await _path_round(lambda u, c: _js_raw(u, c, stream), url, rate, count, "JetStream raw")
    finally:
        await drop_stream(url, stream)


async def _js_bot_round(url: str, rate: float, count: int, serial: itertools.count[int]) -> Figures:
    stream = f"bench-lat-{next(serial)}"
    backend = {"type": "nats", "nats": jetstream_settings(url, stream).model_dump()}
    try:
        async with bench_host(backend) as (host, bot):
            counter = Counter(count, stamps=True)
            note = counter.note

            async def handler(event: Any) -> None:
                note()

            await host.bus.subscribe("trading.signal.>", handler, durable="bench-latency")
            pace = await bot.paced(count, rate)
            await counter.wait("JetStream bot")
            return {**pace, **latency_figures(bot.sent, counter.stamps)}
    finally:
        await drop_stream(url, stream)


async def run_latency(
    url: str, rates: Sequence[int] = RATES, seconds: float = 1.0, rounds_: int = 3
) -> list[Table]:
    """One table per rate: every path's median p50/p99/max over ``rounds_`` interleaved rounds."""
    serial = itertools.count()
    tables = []
    with EchoServer() as echo:
        paths: dict[str, PathFactory] = {
            "TCP echo round trip (floor)": tcp_echo(echo.port),
            "NATS protocol, no client library": nats_protocol,
            "memory bus": memory_bus,
            "core NATS bus": core_bus,
            "core raw nats-py + codec": core_raw_codec,
            "core raw nats-py, bytes": core_raw_bytes,
        }
        for rate in rates:
            count = max(int(rate * seconds), 100)
            variants: dict[str, Callable[[], Awaitable[Figures]]] = {
                name: partial(_path_round, factory, url, rate, count, name) for name, factory in paths.items()
            }
            variants["JetStream bot ctx.publish -> durable"] = partial(
                _js_bot_round, url, rate, count, serial
            )
            variants["JetStream raw publish_async -> push consumer"] = partial(
                _js_raw_round, url, rate, count, serial
            )
            await _path_round(core_bus, url, rate, min(count, 500), "warm-up")
            results = await rounds(variants, rounds_)
            table = Table(
                f"latency at {rate:,} events/s ({count:,} events per round)",
                "publish call to handler entry, one publisher, one subscriber, one process; medians of the"
                " rounds' p50/p99/max",
                ["achieved_per_s", "p50_us", "p99_us", "max_us", "spread_pct"],
                [{"name": name, **median_figures(r, main="p50_us")} for name, r in results.items()],
            )
            bus, floor = "core NATS bus", "TCP echo round trip (floor)"
            table.ratios = [
                ratio(
                    "core bus p50 / raw nats-py + codec p50",
                    paired(results, bus, "core raw nats-py + codec", "p50_us"),
                    at_most=1.0,
                ),
                ratio("core bus p50 (us)", table.row(bus)["p50_us"], at_most=100),
                ratio("core bus p50 / TCP echo p50", paired(results, bus, floor, "p50_us")),
                ratio(
                    "core bus p50 / bare NATS protocol p50",
                    paired(results, bus, "NATS protocol, no client library", "p50_us"),
                ),
            ]
            tables.append(table)
    return tables
