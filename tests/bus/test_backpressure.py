"""Backpressure that tells the truth: a slow subscriber's backlog of ``critical``/``high`` events is
bounded (their publisher waits, then fails loudly), nothing urgent is lost, and every drop of a
``normal``/``low`` event is counted exactly, per subscriber and across resubscriptions.

On the memory bus: the only backend whose publisher is in the same process as every subscriber (on
NATS the conformance suite checks the overflow policy; the hard ceiling is checked here through
``Subscription.deliver``, the call every backend's feed makes)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from citarion_host.bench_slow import slow_subscriber
from citarion_host.bus import MemoryBus, create_bus
from citarion_host.errors import BackpressureTimeoutError
from citarion_host.events import PRIORITIES, Event, make_event

from .conftest import Collector, eventually


def event(n: int, priority: str = "normal") -> Event:
    return make_event("analytics.tick.done", {"n": n}, source="LOG", priority=priority)  # type: ignore[arg-type]


class Blocked:
    """A handler that records what it gets and then waits at a gate: the slowest subscriber."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.seen: list[int] = []

    async def __call__(self, e: Event) -> None:
        self.seen.append(e.payload["n"])
        await self.gate.wait()


async def publish_all(bus: MemoryBus, events: Sequence[Event]) -> None:
    for each in events:
        await bus.publish(each)


async def test_a_slow_subscribers_urgent_backlog_is_bounded_its_publisher_waits() -> None:
    handler = Blocked()
    async with MemoryBus(max_pending=4) as bus:
        subscription = await bus.subscribe("analytics.>", handler, name="slowpoke")
        plan = [event(n, "critical" if n % 3 == 0 else "high") for n in range(20)]
        publisher = asyncio.create_task(publish_all(bus, plan))
        await eventually(lambda: publisher.done() or subscription.pending >= 4, what="a full backlog")
        for _ in range(10):  # give the publisher every chance to run on
            await asyncio.sleep(0)
        assert not publisher.done(), "the publisher waits for room instead of growing the backlog"
        assert subscription.pending == subscription.urgent_pending == 4
        assert subscription.backpressure_waits == 1
        handler.gate.set()
        await publisher
        await subscription.wait_idle()
    assert sorted(handler.seen) == list(range(20)), "no critical/high event lost"
    assert subscription.dropped == [0, 0, 0, 0] and subscription.delivered == 20


async def test_a_publisher_that_waits_too_long_gets_an_error_naming_subscriber_and_topic() -> None:
    handler, other = Blocked(), Collector()
    async with MemoryBus(max_pending=2, backpressure_timeout=0.05) as bus:
        stuck = await bus.subscribe("analytics.>", handler, name="stuck-bot")
        await bus.subscribe("analytics.>", other)
        for n in range(3):  # one in the handler, two waiting: full
            await bus.publish(event(n, "critical"))
        with pytest.raises(BackpressureTimeoutError, match="'stuck-bot'") as raised:
            await bus.publish(event(3, "critical"))
        assert raised.value.subscriber == "stuck-bot" and raised.value.topic == "analytics.tick.done"
        assert "'analytics.tick.done'" in str(raised.value) and "was not published" in str(raised.value)
        assert stuck.backpressure_timeouts == 1 and bus.stats()["backpressure_timeouts"] == 1
        assert [e.payload["n"] for e in other.events] == [0, 1, 2], "nobody got the event that failed"
        await bus.publish(event(4, "normal"))  # normal never waits: dropped, counted
        assert stuck.dropped[PRIORITIES.index("normal")] == 1
        handler.gate.set()
    assert handler.seen == [0, 1, 2]


async def test_the_timeout_is_configurable_in_the_backend_settings() -> None:
    bus = create_bus({"max_pending_urgent": 3, "backpressure_timeout_s": 0.5})
    async with bus:
        subscription = await bus.subscribe("analytics.>", Blocked(), max_pending=100)
        assert bus.backpressure_timeout == 0.5
        assert subscription.max_urgent == 3 and subscription.max_pending == 100
        await bus.close(drain=False)


async def test_arrivals_that_cannot_wait_are_admitted_to_a_hard_ceiling_then_counted_drops() -> None:
    """A feed (core NATS from another process, the bus's own reports) calls ``deliver``, which cannot
    wait: up to twice ``max_urgent`` are admitted, past that each one is dropped and counted."""
    handler = Blocked()
    async with MemoryBus(max_pending=2) as bus:
        subscription = await bus.subscribe("analytics.>", handler, name="flooded")
        await bus.publish(event(0, "high"))  # in the handler
        for n in range(1, 7):
            subscription.deliver(event(n, "high"))
        assert subscription.urgent_pending == 4, "bounded: twice max_urgent"
        assert subscription.dropped[PRIORITIES.index("high")] == 2
        assert bus.stats()["dropped"]["high"] == 2
        handler.gate.set()
    assert handler.seen == [0, 1, 2, 3, 4]


async def test_a_handler_publishing_to_its_own_full_inbox_does_not_deadlock() -> None:
    seen: list[int] = []
    async with MemoryBus(max_pending=2, backpressure_timeout=30) as bus:

        async def handler(e: Event) -> None:
            seen.append(e.payload["n"])
            await asyncio.sleep(0)  # from here on in the subscription's own task
            if e.payload["n"] == 0:
                for n in range(1, 4):
                    await bus.publish(event(n, "high"))

        subscription = await bus.subscribe("analytics.>", handler)
        await bus.publish(event(0, "high"))
        await subscription.wait_idle()
    assert seen == [0, 1, 2, 3]
    assert subscription.backpressure_waits == 0 and subscription.dropped == [0, 0, 0, 0]


async def test_a_queue_group_waits_only_when_every_member_is_full() -> None:
    first, second = Blocked(), Blocked()
    async with MemoryBus(max_pending=1) as bus:
        a = await bus.subscribe("analytics.>", first, queue="workers", name="a")
        b = await bus.subscribe("analytics.>", second, queue="workers", name="b")
        publisher = asyncio.create_task(publish_all(bus, [event(n, "high") for n in range(6)]))
        await eventually(lambda: publisher.done() or a.pending + b.pending == 2, what="both members full")
        for _ in range(10):
            await asyncio.sleep(0)
        assert not publisher.done() and a.pending == b.pending == 1
        first.gate.set()
        second.gate.set()
        await publisher
    assert sorted(first.seen + second.seen) == list(range(6))


async def test_normal_drops_are_counted_exactly_and_the_last_report_says_so() -> None:
    handler, reports = Blocked(), Collector()
    async with MemoryBus(max_pending=10) as bus:
        await bus.subscribe("system.bus.overflow", reports)
        subscription = await bus.subscribe("analytics.>", handler, name="slow")
        for n in range(1000):
            await bus.publish(event(n))
        lost = 1000 - 1 - 10  # one in the handler, ten waiting
        assert subscription.dropped[PRIORITIES.index("normal")] == lost
        await eventually(
            lambda: bool(reports.events) and reports.events[-1].payload.dropped_normal == lost,
            what=f"a report with all {lost} drops (reports carry running totals)",
        )
        stats = bus.stats()
        assert stats["dropped"]["normal"] == lost
        assert stats["by_subscriber"]["slow"]["dropped_total"] == lost
        handler.gate.set()
    assert len(handler.seen) + lost == 1000


async def test_drops_per_subscriber_name_outlive_a_resubscription() -> None:
    """A bot's subscription is replaced on a rewire: what the old one dropped stays counted."""
    async with MemoryBus(max_pending=1) as bus:
        for _ in range(2):
            handler = Blocked()
            subscription = await bus.subscribe("analytics.>", handler, name="bot-a")
            for n in range(5):  # one handled, one waiting, three dropped
                await bus.publish(event(n, "low"))
            handler.gate.set()
            await subscription.unsubscribe(drain=True)
        totals = bus.stats()["by_subscriber"]["bot-a"]
    assert totals["dropped"]["low"] == 6 and totals["delivered"] == 4 and totals["dropped_total"] == 6


async def test_a_closed_subscription_releases_waiting_publishers() -> None:
    handler = Blocked()
    async with MemoryBus(max_pending=1) as bus:
        subscription = await bus.subscribe("analytics.>", handler, name="leaving")
        await bus.publish(event(0, "high"))
        await bus.publish(event(1, "high"))
        publisher = asyncio.create_task(bus.publish(event(2, "high")))
        await eventually(lambda: subscription.backpressure_waits == 1, what="the publisher waiting")
        await subscription.unsubscribe(drain=False)
        await publisher  # no subscriber left that needs room: published (to nobody)
    assert handler.seen == [0]


async def test_a_flood_of_mixed_priorities_loses_no_urgent_event_and_counts_every_drop() -> None:
    """The load case (``bench --case slow-subscriber``) scaled down: 50,000 events to a subscriber
    that handles one per loop iteration, with a bound small enough that the publisher has to wait."""
    figures = await slow_subscriber(50_000, max_pending=1_000)
    published, delivered, dropped = figures["published"], figures["delivered"], figures["dropped"]
    print(figures)
    for priority in PRIORITIES:
        assert published[priority] == delivered[priority] + dropped[priority], priority
    assert delivered["critical"] == published["critical"] == 2_500
    assert delivered["high"] == published["high"] == 22_500
    assert dropped["normal"] + dropped["low"] > 0 and figures["out_of_order"] == 0
    assert figures["max_urgent_pending"] <= 1_000 and figures["backpressure_waits"] > 0


async def test_post_now_posts_only_what_would_not_wait() -> None:
    """``MemoryBus.post_now`` (what a bot's publish tries first) delivers at once when nothing has to
    wait, and does nothing (False) when ``publish`` would wait: an urgent event for a subscriber
    without room, a closed bus; the caller then posts it the waiting way."""
    handler = Blocked()
    async with MemoryBus(max_pending=1) as bus:
        subscription = await bus.subscribe("analytics.>", handler, name="slowpoke")
        assert bus.post_now(event(0, "high")), "an idle subscriber: handed over at once"
        assert bus.post_now(event(1, "high")), "queued: one urgent event may wait"
        assert subscription.needs_room()
        assert not bus.post_now(event(2, "high")), "no room for an urgent event: not posted"
        assert bus.post_now(event(3, "low")), "a low event never waits (the overflow policy drops it)"
        handler.gate.set()
        await subscription.wait_idle()
        assert handler.seen == [0, 1]
    assert not bus.post_now(event(4)), "a closed bus posts nothing (its post raises)"
