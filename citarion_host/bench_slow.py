"""``bench --case slow-subscriber``: a slow subscriber under a flood of mixed priorities.

Why: a subscriber that cannot keep up used to hold every ``critical``/``high`` event it was sent (they
are never dropped), so one slow bot grew the process without bound (one million events: 565 MB) and
its drops of ``normal``/``low`` events were under-reported. This case checks the three things the
bus now promises (``docs/events.md``, "Bounded backlog and overflow policy"):

* memory stays bounded: the publisher waits for room once ``max_urgent`` urgent events wait;
* no ``critical``/``high`` event is lost, and each priority arrives in publish order;
* drops are exact: for every priority, published = delivered + dropped.

Each variant runs in a fresh interpreter (``python -m citarion_host.bench_slow``), so the peak RSS it
reports (``resource.getrusage``'s ``ru_maxrss``) is that run's alone. The "unbounded" variant sets
``max_pending_urgent`` above the event count: what the bus did before, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from typing import Any

from . import loops
from .bench import Table, ratio
from .bus import MemoryBus, Subscription
from .events import PRIORITIES, Event, Priority, make_event

__all__ = ["MIX", "run_slow_subscriber", "slow_subscriber", "slow_subscriber_tables"]

#: Out of every 100 events: how many of each priority (critical, high, normal, low).
MIX = (5, 45, 30, 20)
_TOPIC = "analytics.tick.done"
_YIELD_EVERY = 100  # the publisher lets the loop run every this many events, as a live feed would


def _priority_of(n: int) -> Priority:
    slot = n % 100
    for priority, share in zip(PRIORITIES, _bounds(), strict=True):
        if slot < share:
            return priority
    raise AssertionError("the mix covers 100 slots")  # pragma: no cover


def _bounds() -> tuple[int, ...]:
    total, bounds = 0, []
    for share in MIX:
        total += share
        bounds.append(total)
    return tuple(bounds)


class _SlowCounter:
    """The slow subscriber's handler: suspends once per event (so events queue behind it), counts
    what arrives per priority, checks each priority's order, watches the urgent backlog's size."""

    def __init__(self) -> None:
        self.delivered = dict.fromkeys(PRIORITIES, 0)
        self.last = dict.fromkeys(PRIORITIES, -1)
        self.out_of_order = 0
        self.max_urgent_pending = 0
        self.subscription: Subscription | None = None

    async def __call__(self, event: Event) -> None:
        n = event.metadata["n"]
        if n <= self.last[event.priority]:
            self.out_of_order += 1
        self.last[event.priority] = n
        self.delivered[event.priority] += 1
        if self.subscription is not None:
            self.max_urgent_pending = max(self.max_urgent_pending, self.subscription.urgent_pending)
        await asyncio.sleep(0)  # slow: one event per loop iteration at best


async def slow_subscriber(
    events: int, *, max_pending: int = 10_000, max_pending_urgent: int | None = None
) -> dict[str, Any]:
    """Publish ``events`` events of the :data:`MIX` to one slow subscriber on the memory bus; its
    figures per priority (published, delivered, dropped), the bus's stats and the run's peak RSS."""
    counter = _SlowCounter()
    published: dict[str, int] = dict.fromkeys(PRIORITIES, 0)
    async with MemoryBus(max_pending=max_pending, max_pending_urgent=max_pending_urgent) as bus:
        subscription = await bus.subscribe(_TOPIC, counter, name="slow")
        counter.subscription = subscription
        started = time.perf_counter()
        for n in range(events):
            priority = _priority_of(n)
            await bus.publish(make_event(_TOPIC, {}, source="LOG", priority=priority, metadata={"n": n}))
            published[priority] += 1
            if n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
        await bus.settle()
        seconds = time.perf_counter() - started
        stats = bus.stats()
    dropped = stats["by_subscriber"]["slow"]["dropped"]
    return {
        "events": events,
        "seconds": round(seconds, 2),
        "max_pending": max_pending,
        "max_urgent": subscription.max_urgent,
        "published": published,
        "delivered": counter.delivered,
        "dropped": dropped,
        "lost_untold": {p: published[p] - counter.delivered[p] - dropped[p] for p in PRIORITIES},
        "out_of_order": counter.out_of_order,
        "max_urgent_pending": counter.max_urgent_pending,
        "backpressure_waits": stats["backpressure_waits"],
        "backpressure_timeouts": stats["backpressure_timeouts"],
        "peak_rss_mb": round(_peak_rss_mb(), 1),
    }


def _peak_rss_mb() -> float:
    """This process's peak resident set (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def run_slow_subscriber(
    events: int, *, max_pending_urgent: int | None = None, loop: loops.EventLoopChoice = "auto"
) -> dict[str, Any]:
    """:func:`slow_subscriber` in a fresh interpreter, so its peak RSS is its own."""
    command = [sys.executable, "-m", "citarion_host.bench_slow", "--events", str(events), "--loop", loop]
    if max_pending_urgent is not None:
        command += ["--max-pending-urgent", str(max_pending_urgent)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"slow-subscriber run failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    figures: dict[str, Any] = json.loads(done.stdout)
    return figures


def slow_subscriber_tables(events: int, loop: loops.EventLoopChoice = "auto") -> list[Table]:
    """The bounded bus (default bound) against the unbounded behaviour, one fresh process each."""
    bounded = run_slow_subscriber(events, loop=loop)
    unbounded = run_slow_subscriber(events, max_pending_urgent=events + 1, loop=loop)
    rows = [
        _row("bounded (max_urgent = max_pending)", bounded),
        _row("unbounded (the old behaviour)", unbounded),
    ]
    urgent_lost = sum(bounded["published"][p] - bounded["delivered"][p] for p in ("critical", "high"))
    untold = sum(abs(n) for n in bounded["lost_untold"].values())
    table = Table(
        f"slow subscriber: {events:,} events (critical/high/normal/low = {'/'.join(map(str, MIX))} %),"
        " memory bus",
        "one subscriber that handles one event per loop iteration; each variant in a fresh process",
        ["peak_rss_mb", "seconds", "delivered", "dropped", "max_urgent_pending", "backpressure_waits"],
        rows,
    )
    table.ratios = [
        ratio("critical/high events lost (bounded)", urgent_lost, at_most=0),
        ratio("drops not accounted for (published - delivered - dropped)", untold, at_most=0),
        ratio("peak RSS bounded / unbounded", bounded["peak_rss_mb"] / unbounded["peak_rss_mb"]),
    ]
    table.notes = [
        f"{p}: published {bounded['published'][p]:,}, delivered {bounded['delivered'][p]:,},"
        f" dropped {bounded['dropped'][p]:,}"
        for p in PRIORITIES
    ]
    return [table]


def _row(name: str, figures: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "peak_rss_mb": figures["peak_rss_mb"],
        "seconds": figures["seconds"],
        "delivered": sum(figures["delivered"].values()),
        "dropped": sum(figures["dropped"].values()),
        "max_urgent_pending": figures["max_urgent_pending"],
        "backpressure_waits": figures["backpressure_waits"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m citarion_host.bench_slow", description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--max-pending-urgent", type=int, default=None)
    parser.add_argument("--loop", choices=["auto", "asyncio", "uvloop"], default="auto")
    args = parser.parse_args(argv)
    if args.events < 1:
        parser.error(f"--events must be >= 1, got {args.events}")
    coro = slow_subscriber(args.events, max_pending_urgent=args.max_pending_urgent)
    figures = loops.run(coro, args.loop)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
