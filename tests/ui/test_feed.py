"""The live feed: positions, the window, resume after Last-Event-ID, gaps counted."""

from __future__ import annotations

import asyncio

import pytest

from citarion_host.bus import MemoryBus
from citarion_host.events import make_event
from citarion_host.ui.book import Book
from citarion_host.ui.feed import INGEST_BATCH, LiveFeed


async def fed(count: int, retain: int = 100) -> tuple[LiveFeed, MemoryBus]:
    bus = MemoryBus()
    await bus.start()
    feed = LiveFeed(Book(), retain=retain)
    await feed.attach(bus)
    for n in range(count):
        await bus.publish(make_event("analytics.number.emitted", {"n": n}, source="HOST"))
    await bus.settle()
    return feed, bus


async def test_memory_positions_count_from_one_and_frames_carry_them() -> None:
    feed, bus = await fed(3)
    entries = [feed.ring.get(i) for i in range(feed.ring.start, feed.ring.end)]
    assert [e.position for e in entries] == [1, 2, 3]
    frame = feed.encode(entries[1])
    assert frame.startswith(b"id: 2\ndata: {") and frame.endswith(b"}\n\n")
    assert b'"n":1' in frame
    await bus.close()


@pytest.mark.parametrize(
    ("last", "first_position", "note", "lost"),
    [
        (None, None, None, 0),  # a new browser starts at the live end
        ("7", 8, None, 0),  # inside the window: right after it
        ("10", None, None, 0),  # the newest: nothing to send yet
        ("3", 6, "gap", 2),  # 4 and 5 fell out of the window (it keeps 6..10)
        ("5", 6, None, 0),  # exactly at the window's edge: nothing lost
        ("99", 6, "reset", 0),  # newer than anything here (a restart): the whole window
        ("x", 6, "reset", 0),  # not a position
    ],
)
async def test_resume_at(last: str | None, first_position: int | None, note: str | None, lost: int) -> None:
    feed, bus = await fed(10, retain=5)
    index, got_note, got_lost = feed.resume_at(last)
    position = feed.ring.get(index).position if index < feed.ring.end else None
    assert (position, got_note, got_lost) == (first_position, note, lost)
    await bus.close()


async def test_tapped_events_taken_in_by_batches_are_numbered_in_routing_order_and_never_stale() -> None:
    """The tap keeps events for a batch; any read takes them in first, across batch boundaries."""
    count = 2 * INGEST_BATCH + 3
    feed, bus = await fed(count, retain=count)
    assert feed.events == count  # the last 3 were still pending: reading took them in
    entries = [feed.ring.get(i) for i in range(feed.ring.start, feed.ring.end)]
    assert [e.position for e in entries] == list(range(1, count + 1))
    assert [e.event.payload["n"] for e in entries] == list(range(count))  # routing order
    await bus.publish(make_event("analytics.number.emitted", {"n": count}, source="HOST"))
    await bus.settle()
    last = feed.find(entries[-1].event.id)
    assert last is entries[-1] and feed.last_position == count + 1  # one pending event, seen at once
    assert feed.counts[("HOST", "analytics.number.emitted")] == count + 1
    index, note, lost = feed.resume_at(str(count))
    assert (feed.ring.get(index).position, note, lost) == (count + 1, None, 0)
    await bus.close()


async def test_a_waiting_stream_is_woken_by_one_tapped_event() -> None:
    feed, bus = await fed(1)
    end = feed.ring.end
    waiting = asyncio.create_task(feed.wait(end, timeout=60))
    await asyncio.sleep(0)
    assert not waiting.done()
    await bus.publish(make_event("analytics.number.emitted", {"n": 1}, source="HOST"))
    await asyncio.wait_for(waiting, 30)  # generous: woken by the tap, not by the timeout
    assert feed.ring.end == end + 1
    await bus.close()


async def test_the_book_follows_positions_fills_and_alerts() -> None:
    feed, bus = await fed(0)
    position = {
        "botId": "mesh", "symbol": "BTCUSDT", "exchange": "binance", "quantity": 1.0, "entryPrice": 100.0,
        "markPrice": 110.0, "realizedPnl": 5.0, "unrealizedPnl": 10.0, "feesPaid": 1.0,
    }  # fmt: skip
    fill = {
        "orderId": "mesh-1", "symbol": "BTCUSDT", "exchange": "binance", "side": "BUY", "type": "MARKET",
        "quantity": 1.0, "status": "FILLED", "filledQuantity": 1.0, "averagePrice": 100.0, "fee": 0.1, "botId": "mesh",
    }  # fmt: skip
    alert = {"kind": "drawdown", "severity": "critical", "message": "mesh: too deep", "botId": "mesh"}
    await bus.publish(
        make_event("trading.position.updated", position, source="EXC", metadata={"dataTime": 5})
    )
    await bus.publish(make_event("trading.order.filled", fill, source="EXC"))
    await bus.publish(make_event("risk.alert.triggered", alert, source="RSK"))
    await bus.settle()
    book = feed.book.bots["mesh"]
    assert (book.pnl, book.fills, book.alerts, book.fees) == (15.0, 1, 1, 1.0)
    assert feed.book.total_pnl.to_dict() == {"x": [5], "y": [15.0]}
    assert feed.book.alert_counts[("drawdown", "critical")] == 1
    await bus.close()


async def test_on_memory_the_feed_is_a_tap_not_a_subscriber_the_sequencer_waits_for() -> None:
    """The feed sees every event, yet the deterministic sequencer runs only the real subscribers."""
    bus = MemoryBus(deterministic=True)
    await bus.start()
    feed = LiveFeed(Book())
    await feed.attach(bus)
    got: list[int] = []

    async def handler(event: object) -> None:
        got.append(1)

    await bus.subscribe("analytics.>", handler)
    for n in range(5):
        await bus.publish(make_event("analytics.number.emitted", {"n": n}, source="HOST"))
    await bus.settle()
    assert [s.name for s in bus.subscriptions if s.name == "host:ui"] == []
    assert feed.events == 5 and len(got) == 5
    assert bus.stats()["subscriptions"] and all(s["name"] != "host:ui" for s in bus.stats()["subscriptions"])
    await feed.detach()
    await bus.publish(make_event("analytics.number.emitted", {"n": 5}, source="HOST"))
    await bus.settle()
    assert feed.events == 5 and len(got) == 6  # detached: the tap is gone, the subscriber goes on
    await bus.close()


async def test_a_tap_that_raises_is_logged_and_never_reaches_the_publisher(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = MemoryBus()
    await bus.start()
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("tap broke")

    untap = bus.tap(broken)
    bus.tap(lambda event: seen.append(event.topic))  # type: ignore[attr-defined]
    await bus.publish(make_event("analytics.number.emitted", {"n": 1}, source="HOST"))
    assert seen == ["analytics.number.emitted"]
    assert "a bus tap failed" in caplog.text
    untap()
    caplog.clear()
    await bus.publish(make_event("analytics.number.emitted", {"n": 2}, source="HOST"))
    assert len(seen) == 2 and "a bus tap failed" not in caplog.text
    await bus.close()
