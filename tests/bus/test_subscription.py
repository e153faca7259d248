"""Local dispatch details that the conformance suite does not pin down: eager runs, re-entrancy,
plain-function handlers, cancellation."""

from __future__ import annotations

import asyncio

import pytest

from citarion_host.bus import MemoryBus, Subscription
from citarion_host.events import Event, make_event

from .conftest import eventually


def event(n: int, priority: str = "normal") -> Event:
    return make_event("analytics.tick.done", {"n": n}, source="LOG", priority=priority)  # type: ignore[arg-type]


async def test_idle_subscriber_runs_inside_the_publish_call() -> None:
    seen: list[int] = []

    async def handler(e: Event) -> None:
        seen.append(e.payload["n"])

    async with MemoryBus() as bus:
        subscription = await bus.subscribe("analytics.>", handler)
        await bus.publish(event(1))
        assert seen == [1], "no task hop: handled before publish returned"
        assert subscription.delivered == 1 and not subscription.busy


async def test_suspending_handler_does_not_block_the_publisher() -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def handler(e: Event) -> None:
        await gate.wait()
        seen.append(e.payload["n"])

    async with MemoryBus() as bus:
        subscription = await bus.subscribe("analytics.>", handler)
        for n in range(5):
            await bus.publish(event(n))
        assert seen == [] and subscription.busy and subscription.pending == 4
        gate.set()
        await subscription.wait_idle()
        assert seen == [0, 1, 2, 3, 4]


async def test_handler_publishing_to_itself_is_queued_not_recursive() -> None:
    seen: list[int] = []

    async with MemoryBus() as bus:

        async def handler(e: Event) -> None:
            seen.append(e.payload["n"])
            if e.payload["n"] < 3:
                await bus.publish(event(e.payload["n"] + 1))
                seen.append(-e.payload["n"])  # runs before the re-published event is handled

        subscription = await bus.subscribe("analytics.>", handler)
        await bus.publish(event(0))
        await subscription.wait_idle()
    assert seen == [0, 0, 1, -1, 2, -2, 3]


async def test_plain_function_and_awaitable_returning_handlers() -> None:
    seen: list[str] = []

    def plain(e: Event) -> None:
        seen.append("plain")

    class Callable:
        async def __call__(self, e: Event) -> None:
            seen.append("object")

    def returns_future(e: Event) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        seen.append("future")
        return future

    async with MemoryBus() as bus:
        subs = [await bus.subscribe("analytics.>", h) for h in (plain, Callable(), returns_future)]
        await bus.publish(event(1))
        for sub in subs:
            await sub.wait_idle()
    assert sorted(seen) == ["future", "object", "plain"]


async def test_not_callable_handler_is_refused() -> None:
    async with MemoryBus() as bus:
        with pytest.raises(TypeError, match="must be callable"):
            await bus.subscribe("analytics.>", "nope")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="max_pending must be >= 1"):
            await bus.subscribe("analytics.>", print, max_pending=0)


async def test_unsubscribe_without_drain_discards_and_counts() -> None:
    gate = asyncio.Event()

    async def handler(e: Event) -> None:
        await gate.wait()

    async with MemoryBus() as bus:
        subscription = await bus.subscribe("analytics.>", handler)
        for n in range(4):
            await bus.publish(event(n, "low"))
        await subscription.unsubscribe(drain=False)
        assert subscription.dropped[3] == 3 and subscription.pending == 0
        await eventually(lambda: not subscription.busy, what="the running handler to be cancelled")


async def test_close_gives_up_draining_after_timeout() -> None:
    async def stuck(e: Event) -> None:
        await asyncio.Event().wait()

    bus = MemoryBus()
    async with bus:
        subscription: Subscription = await bus.subscribe("analytics.>", stuck)
        await bus.publish(event(1))
        await bus.publish(event(2))
        await bus.close(timeout=0.05)
    assert bus.closed and subscription.closed and subscription.pending == 0


async def test_queue_group_prefers_an_idle_member() -> None:
    gate = asyncio.Event()
    busy_seen: list[int] = []
    idle_seen: list[int] = []

    async def busy(e: Event) -> None:
        busy_seen.append(e.payload["n"])
        await gate.wait()

    async def idle(e: Event) -> None:
        idle_seen.append(e.payload["n"])

    async with MemoryBus() as bus:
        await bus.subscribe("analytics.>", busy, queue="q")
        await bus.subscribe("analytics.>", idle, queue="q")
        for n in range(6):
            await bus.publish(event(n))
        gate.set()
    assert busy_seen == [0] and idle_seen == [1, 2, 3, 4, 5]


async def test_routes_follow_subscription_changes_and_count_unrouted() -> None:
    seen: list[str] = []

    async def handler(e: Event) -> None:
        seen.append(e.topic)

    async with MemoryBus() as bus:
        await bus.publish(event(0))
        assert bus.unrouted == 1
        subscription = await bus.subscribe("analytics.tick.*", handler)
        await bus.publish(event(1))
        await subscription.unsubscribe()
        await bus.publish(event(2))
    assert seen == ["analytics.tick.done"]
    assert bus.stats()["published"] == 3


async def test_a_suspended_handler_that_finishes_alone_leaves_no_failed_task() -> None:
    """The backlog is made on first use: a handler that suspends and finishes with nothing queued
    behind it must not end its task in an error (it surfaced as "Task exception was never retrieved")."""
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    finished: list[asyncio.Task[object]] = []
    try:

        async def handler(e: Event) -> None:
            await asyncio.sleep(0)  # from here on, the subscription's own task runs it
            finished.append(asyncio.current_task())  # type: ignore[arg-type]

        async with MemoryBus() as bus:
            subscription = await bus.subscribe("analytics.>", handler)
            await bus.publish(event(1))
            await subscription.wait_idle()
            assert subscription.delivered == 1
        task = finished[0]
        assert task.done() and not task.cancelled() and task.exception() is None
        assert errors == []
    finally:
        loop.set_exception_handler(None)


async def test_a_discarded_subscription_is_still_detached_by_unsubscribe() -> None:
    """A bot given up discards its subscription (``BotRunner._give_up``); stopping it later must still
    take it off the bus (on NATS: stop its consumer feed), not return early because it is closed."""
    seen: list[int] = []

    async def handler(e: Event) -> None:
        seen.append(e.payload["n"])

    async with MemoryBus() as bus:
        subscription = await bus.subscribe("analytics.>", handler)
        subscription.discard()
        await subscription.unsubscribe()
        assert subscription not in bus.subscriptions
        await bus.publish(event(1))
        assert seen == [] and bus.unrouted == 1
        await subscription.unsubscribe()  # twice: nothing more
