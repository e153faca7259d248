"""The bus contract. Every backend in ``conftest.BACKENDS`` must pass all of it.

Points: delivery and round trip, publish order, wildcards, queue groups, request/reply, handler
isolation, priority overtaking, bounded backlog with reported overflow, dead-lettering of malformed
input, unsubscribe, close with drain. Then the declared capabilities (``EventBus.capabilities``): each
is either honoured or its arguments are refused, never quietly replaced by something else.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime

import pytest

from citarion_host.bus import EventBus
from citarion_host.errors import BusClosedError, NoRespondersError, RequestTimeoutError
from citarion_host.events import Event, encode_event, make_event
from citarion_host.payloads import HandlerFailure, Signal

from .conftest import Collector, eventually, sibling

SIGNAL = {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.5}


def signal(n: int = 0, topic: str = "trading.signal.generated", priority: str = "normal") -> Event:
    return make_event(
        topic,
        {**SIGNAL, "entryPrice": 100.0 + n},
        source="GRD",
        priority=priority,  # type: ignore[arg-type]
        metadata={"n": n},
    )


def numbers(events: list[Event]) -> list[int]:
    return [event.metadata["n"] for event in events]


async def test_delivers_the_same_event(bus: EventBus) -> None:
    got = Collector()
    await bus.subscribe("trading.signal.generated", got)
    sent = signal(1)
    await bus.publish(sent)
    (received,) = await got.wait_for(1)
    assert received == sent
    assert isinstance(received.payload, Signal)
    assert encode_event(received) == encode_event(sent)


async def test_publish_order_is_kept_per_subscriber(bus: EventBus) -> None:
    first, second = Collector(), Collector()
    await bus.subscribe("trading.signal.*", first)
    await bus.subscribe("trading.>", second)
    await bus.publish_many(signal(n) for n in range(500))
    assert numbers(await first.wait_for(500)) == list(range(500))
    assert numbers(await second.wait_for(500)) == list(range(500))


async def test_wildcards_follow_nats_rules(bus: EventBus) -> None:
    topics = [
        "trading.signal.generated",
        "trading.signal.generated.binance",
        "trading.note.filled",
        "market.quote.updated.binance.BTCUSDT",
        "market.quote.updated.kraken.ETHUSDT",
    ]
    patterns = {
        "trading.signal.*": ["trading.signal.generated"],
        "trading.signal.>": ["trading.signal.generated", "trading.signal.generated.binance"],
        "trading.*.filled": ["trading.note.filled"],
        "market.quote.updated.*.BTCUSDT": ["market.quote.updated.binance.BTCUSDT"],
        "market.>": ["market.quote.updated.binance.BTCUSDT", "market.quote.updated.kraken.ETHUSDT"],
        "*.*.*": ["trading.signal.generated", "trading.note.filled"],
    }
    collectors = {pattern: Collector(pattern) for pattern in patterns}
    for pattern, collector in collectors.items():
        await bus.subscribe(pattern, collector)
    for topic in topics:  # "note" and "quote" carry plain dict payloads
        await bus.publish(signal(0, topic) if ".signal." in topic else make_event(topic, {}, source="LUM"))
    for pattern, expected in patterns.items():
        await collectors[pattern].wait_for(len(expected))
    for pattern, expected in patterns.items():
        assert (await collectors[pattern].settle()) and collectors[pattern].topics == expected, pattern


async def test_queue_group_delivers_each_event_to_one_member(bus: EventBus) -> None:
    members = [Collector(f"member-{i}") for i in range(3)]
    for member in members:
        await bus.subscribe("trading.signal.>", member, queue="workers")
    everyone = Collector()
    await bus.subscribe("trading.signal.>", everyone)
    await bus.publish_many(signal(n) for n in range(300))
    await everyone.wait_for(300)
    await eventually(lambda: sum(len(m.events) for m in members) >= 300, what="group deliveries")
    await asyncio.gather(*(m.settle() for m in members))
    delivered = sorted(n for m in members for n in numbers(m.events))
    assert delivered == list(range(300)), "each event exactly once across the group"
    assert sum(1 for m in members if m.events) >= 2, "the group shares the work"


async def test_request_reply_carries_correlation(bus: EventBus) -> None:
    async def responder(request: Event) -> None:
        answer = make_event("analytics.quote.answered", {"echo": request.metadata["n"]}, source="ORA")
        await bus.reply(request, answer)

    await bus.subscribe("analytics.quote.requested", responder)
    request = make_event("analytics.quote.requested", {"q": "BTC"}, source="GRD", metadata={"n": 7})
    reply = await bus.request(request, timeout=5)
    assert reply.payload == {"echo": 7}
    assert reply.correlation_id == request.id
    assert reply.causation_id == request.id


async def test_request_errors_are_clear(bus: EventBus) -> None:
    lonely = make_event("analytics.quote.requested", {"q": "BTC"}, source="GRD")
    with pytest.raises(NoRespondersError, match=r"analytics\.quote\.requested"):
        await bus.request(lonely, timeout=1)

    async def silent(request: Event) -> None:
        pass

    await bus.subscribe("analytics.quote.requested", silent)
    with pytest.raises(RequestTimeoutError, match=r"no reply within 0\.2s"):
        await bus.request(lonely, timeout=0.2)


async def test_failing_handler_is_isolated_and_reported(bus: EventBus) -> None:
    failures, healthy = Collector(), Collector()
    await bus.subscribe("system.handler.failed", failures)

    async def broken(event: Event) -> None:
        raise RuntimeError(f"boom {event.metadata['n']}")

    await bus.subscribe("trading.signal.generated", broken, name="broken-bot")
    await bus.subscribe("trading.signal.generated", healthy)
    sent = [signal(n) for n in range(3)]
    await bus.publish_many(sent)
    assert numbers(await healthy.wait_for(3)) == [0, 1, 2]
    reports = await failures.wait_for(3)
    payloads = [report.payload for report in reports]
    assert all(isinstance(p, HandlerFailure) for p in payloads)
    assert [p.event_id for p in payloads] == [e.id for e in sent]
    assert payloads[0].subscriber == "broken-bot"
    assert payloads[0].error == "boom 0" and payloads[0].error_type == "RuntimeError"
    assert all(r.priority == "high" for r in reports)
    await bus.publish(signal(9))
    assert numbers(await healthy.wait_for(4))[-1] == 9, "the bus keeps running"


async def test_critical_overtakes_queued_lower_priority(bus: EventBus) -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def slow(event: Event) -> None:
        seen.append(f"{event.metadata['n']}:{event.priority}")
        await gate.wait()

    subscription = await bus.subscribe("trading.signal.>", slow)
    await bus.publish(signal(0))
    await eventually(lambda: len(seen) == 1, what="first event in the handler")
    for n, priority in enumerate(["low", "normal", "normal", "high", "critical", "low"], start=1):
        await bus.publish(signal(n, priority=priority))
    await eventually(lambda: subscription.pending == 6, what="backlog of 6")
    gate.set()
    await eventually(lambda: len(seen) == 7, what="all 7 handled")
    assert seen == ["0:normal", "5:critical", "4:high", "2:normal", "3:normal", "1:low", "6:low"]


async def test_overflow_drops_low_first_never_critical_and_reports(bus: EventBus) -> None:
    gate = asyncio.Event()
    seen: list[int] = []

    async def slow(event: Event) -> None:
        seen.append(event.metadata["n"])
        await gate.wait()

    reports = Collector()
    await bus.subscribe("system.bus.overflow", reports)
    subscription = await bus.subscribe("trading.signal.>", slow, max_pending=4, name="slowpoke")
    await bus.publish(signal(0))
    await eventually(lambda: seen == [0], what="first event in the handler")
    plan = ["low", "low", "normal", "normal", "normal", "critical", "high", "low"]
    for n, priority in enumerate(plan, start=1):
        await bus.publish(signal(n, priority=priority))
    await eventually(
        lambda: subscription.pending + sum(subscription.dropped) >= len(plan), what="all 8 queued or dropped"
    )
    # Queue of 4: [1L,2L,3N,4N] -> 5N drops 1L -> 6C, 7H admitted past the bound -> 8L drops 2L.
    assert subscription.dropped[3] == 2 and subscription.dropped[2] == 0
    assert subscription.overflow_admitted == 2
    report = (await reports.wait_for(1))[0].payload
    assert report.subscriber == "slowpoke" and report.dropped_low >= 1
    gate.set()
    await eventually(lambda: len(seen) == 7, what="survivors handled")
    assert seen == [0, 6, 7, 3, 4, 5, 8]


async def test_malformed_input_is_dead_lettered_and_counted(bus: EventBus) -> None:
    dead, good = Collector(), Collector()
    await bus.subscribe("system.deadletter.>", dead)
    await bus.subscribe("trading.signal.>", good)
    bad_json = b"{not json"
    bad_schema = encode_event(signal(1)).replace(b'"confidence":0.5', b'"confidence":7')
    contradiction = encode_event(signal(2)).replace(b'"domain":"trading"', b'"domain":"market"')
    for raw in (bad_json, bad_schema, contradiction):
        assert await bus.publish_raw(raw) is None
    assert await bus.publish_raw(encode_event(signal(3))) is not None
    letters = await dead.wait_for(3)
    assert [d.topic for d in letters] == ["system.deadletter.malformed"] * 3
    assert letters[0].payload.original == "{not json"
    assert "payload.confidence" in letters[1].payload.error
    assert "'domain'" in letters[2].payload.error
    assert numbers(await good.wait_for(1)) == [3]
    assert bus.malformed == 3


async def test_unsubscribe_stops_delivery_to_that_subscriber_only(bus: EventBus) -> None:
    leaving, staying = Collector(), Collector()
    subscription = await bus.subscribe("trading.signal.>", leaving)
    await bus.subscribe("trading.signal.>", staying)
    await bus.publish(signal(1))
    await leaving.wait_for(1)
    await subscription.unsubscribe()
    assert subscription.closed and subscription not in bus.subscriptions
    await bus.publish(signal(2))
    assert numbers(await staying.wait_for(2)) == [1, 2]
    assert numbers(await leaving.settle()) == [1]


async def test_close_drains_backlog_then_refuses(bus: EventBus) -> None:
    handled: list[int] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.001)
        handled.append(event.metadata["n"])

    subscription = await bus.subscribe("trading.signal.>", slow)
    await bus.publish_many(signal(n) for n in range(50))
    await eventually(lambda: subscription.pending + len(handled) >= 49, what="events in the backlog")
    await bus.close(drain=True)
    assert handled == list(range(50))
    with pytest.raises(BusClosedError):
        await bus.publish(signal(99))
    with pytest.raises(BusClosedError):
        await bus.subscribe("trading.>", slow)


# -- capabilities ---------------------------------------------------------------------------------


async def test_durable_subscriptions_resume_where_they_stopped_or_are_refused(bus: EventBus) -> None:
    if not bus.capabilities.durable:
        with pytest.raises(ValueError, match="durable"):
            await bus.subscribe("trading.signal.>", Collector(), durable="conformance")
        return
    first = Collector()
    subscription = await bus.subscribe("trading.signal.>", first, durable="conformance")
    await bus.publish(signal(1))
    assert numbers(await first.wait_for(1)) == [1]
    await subscription.unsubscribe()
    for n in (2, 3):
        await bus.publish(signal(n))
    resumed = Collector()
    await bus.subscribe("trading.signal.>", resumed, durable="conformance")
    assert numbers(await resumed.wait_for(2)) == [2, 3]
    assert numbers(await resumed.settle()) == [2, 3]


async def test_replay_from_a_sequence_or_a_time_or_refused(bus: EventBus) -> None:
    if not bus.capabilities.replay:
        with pytest.raises(ValueError, match="jetstream|replay"):
            await bus.subscribe("trading.signal.>", Collector(), start_sequence=1)
        with pytest.raises(ValueError, match="jetstream|replay"):
            await bus.subscribe("trading.signal.>", Collector(), start_time=datetime.now(UTC))
        return
    await bus.publish(signal(0))
    await asyncio.sleep(0.05)
    between = datetime.now(UTC)
    await asyncio.sleep(0.05)
    await bus.publish(signal(1))
    from_start, from_time = Collector(), Collector()
    await bus.subscribe("trading.signal.>", from_start, start_sequence=1)
    await bus.subscribe("trading.signal.>", from_time, start_time=between)
    await bus.publish(signal(2))
    assert numbers(await from_start.wait_for(3)) == [0, 1, 2]
    assert numbers(await from_time.wait_for(2)) == [1, 2]


async def test_events_outlive_their_publisher_only_when_persistent(bus: EventBus) -> None:
    async with sibling(bus) as other:
        await other.publish(signal(1))  # nobody is subscribed yet
    later = Collector()
    if bus.capabilities.persistent:
        assert bus.capabilities.replay, "a persistent backend must let subscribers read what it kept"
        await bus.subscribe("trading.signal.>", later, start_sequence=1)
        assert numbers(await later.wait_for(1)) == [1]
    else:
        await bus.subscribe("trading.signal.>", later)
        await bus.publish(signal(2))
        assert numbers(await later.wait_for(1)) == [2]
        assert numbers(await later.settle()) == [2]


async def test_other_hosts_see_the_events_only_when_cross_process(bus: EventBus) -> None:
    async with sibling(bus) as other:
        theirs, ours = Collector(), Collector()
        await other.subscribe("trading.signal.>", theirs)
        await bus.subscribe("trading.signal.>", ours)
        await bus.publish(signal(1))
        assert numbers(await ours.wait_for(1)) == [1]
        expected = [1] if bus.capabilities.cross_process else []
        if expected:
            await theirs.wait_for(1)
        assert numbers(await theirs.settle()) == expected


# -- one ordered inbox per subscriber (several patterns, one subscription) ---------------------------


def inbox_kinds(bus: EventBus) -> list[dict[str, bool]]:
    """The ways a subscriber can read: live (every backend), and from the store where there is one."""
    return [{}, {"stored": True}] if bus.capabilities.persistent else [{}]


def mixed(n: int) -> Event:
    """Events on three topics in turn: a ticker, an order and a signal, numbered in publish order."""
    if n % 3 == 0:
        return make_event(
            "market.ticker.binance.BTCUSDT",
            {"symbol": "BTCUSDT", "exchange": "binance", "bid": 1.0, "ask": 2.0, "last": 1.5},
            source="LUM",
            metadata={"n": n},
        )
    if n % 3 == 1:
        order = {
            "orderId": f"o-{n}",
            "symbol": "BTCUSDT",
            "exchange": "binance",
            "side": "BUY",
            "type": "MARKET",
            "quantity": 1.0,
            "status": "NEW",
        }
        return make_event("trading.order.submitted", order, source="GRD", metadata={"n": n})
    return signal(n)


async def test_several_patterns_are_one_inbox_in_publish_order(bus: EventBus) -> None:
    for options in inbox_kinds(bus):
        got = Collector()
        sub = await bus.subscribe(
            ["market.ticker.>", "trading.order.*", "trading.signal.generated"], got, **options
        )
        await bus.publish_many(mixed(n) for n in range(300))
        assert numbers(await got.wait_for(300)) == list(range(300)), options
        assert sub.patterns == ("market.ticker.>", "trading.order.*", "trading.signal.generated")
        await sub.unsubscribe()


async def test_an_event_matching_several_patterns_is_delivered_once(bus: EventBus) -> None:
    for options in inbox_kinds(bus):
        got, reference = Collector(), Collector()
        # nested (trading.> contains trading.signal.*) and partly overlapping (*.signal.generated)
        patterns = ["trading.signal.*", "trading.>", "*.signal.generated", "market.>"]
        sub = await bus.subscribe(patterns, got, **options)
        ref = await bus.subscribe(">", reference)
        await bus.publish_many(mixed(n) for n in range(90))
        await reference.wait_for(90)
        await got.wait_for(90)
        assert numbers(await got.settle()) == list(range(90)), options
        await sub.unsubscribe()
        await ref.unsubscribe()


async def test_critical_overtakes_on_a_several_pattern_inbox(bus: EventBus) -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def slow(event: Event) -> None:
        seen.append(f"{event.metadata['n']}:{event.priority}")
        await gate.wait()

    sub = await bus.subscribe(["trading.signal.>", "risk.>"], slow)
    await bus.publish(signal(0))
    await eventually(lambda: len(seen) == 1, what="first event in the handler")
    await bus.publish(signal(1, priority="low"))
    alert = {"botId": "x", "kind": "drawdown", "severity": "critical", "message": "stop"}
    await bus.publish(
        make_event("risk.alert.raised", alert, source="RSK", priority="critical", metadata={"n": 2})
    )
    await bus.publish(signal(3))
    await eventually(lambda: sub.pending == 3, what="backlog of 3")
    gate.set()
    await eventually(lambda: len(seen) == 4, what="all 4 handled")
    assert seen == ["0:normal", "2:critical", "3:normal", "1:low"]


async def test_a_queue_group_over_several_patterns_splits_without_loss(bus: EventBus) -> None:
    members = [Collector(f"member-{i}") for i in range(3)]
    for member in members:
        await bus.subscribe(
            ["market.ticker.>", "trading.order.*", "trading.signal.>"], member, queue="workers"
        )
    everyone = Collector()
    await bus.subscribe(">", everyone)
    await bus.publish_many(mixed(n) for n in range(300))
    await everyone.wait_for(300)
    await eventually(lambda: sum(len(m.events) for m in members) >= 300, what="group deliveries")
    await asyncio.gather(*(m.settle() for m in members))
    delivered = sorted(n for m in members for n in numbers(m.events))
    assert delivered == list(range(300)), "each event exactly once across the group"
    assert sum(1 for m in members if m.events) >= 2, "the group shares the work"


async def test_repattern_changes_an_inbox_without_losing_or_doubling(bus: EventBus) -> None:
    for options in inbox_kinds(bus):
        got = Collector()
        sub = await bus.subscribe(["trading.signal.*", "market.ticker.>"], got, **options)
        await bus.publish_many(mixed(n) for n in range(30))  # 0..29: tickers and signals wanted
        await bus.repattern(sub, ["trading.>", "market.ticker.>"])  # orders too, signals still
        await bus.publish_many(mixed(n) for n in range(30, 60))  # everything wanted
        expected = [n for n in range(30) if n % 3 != 1] + list(range(30, 60))
        await got.wait_for(len(expected))
        assert numbers(await got.settle()) == expected, options
        assert sub.patterns == ("trading.>", "market.ticker.>")
        await sub.unsubscribe()


# -- deterministic mode: one handler at a time, in publish order, on every backend --------------------


async def test_deterministic_mode_orders_reactions_by_subscriber_not_by_timing(det_bus: EventBus) -> None:
    """Two subscribers react to each event; the second one's reaction is the quicker to publish. The
    third sees each event's whole cascade before the next event, the reactions in the order the
    reactors were created, every time, on every backend."""
    record: list[str] = []

    async def first(event: Event) -> None:
        await asyncio.sleep(0.002)  # slower: concurrent delivery would let the second overtake
        await det_bus.publish(signal(event.metadata["n"], topic="trading.signal.first"))

    async def second(event: Event) -> None:
        await det_bus.publish(signal(event.metadata["n"], topic="trading.signal.second"))

    async def observer(event: Event) -> None:
        record.append(f"{event.topic.rsplit('.', 1)[1]}{event.metadata['n']}")

    await det_bus.subscribe("trading.signal.tick", first)
    await det_bus.subscribe("trading.signal.tick", second)
    await det_bus.subscribe("trading.signal.*", observer)
    for n in range(3):
        await det_bus.publish(signal(n, topic="trading.signal.tick"))
    await det_bus.settle()
    assert record == [
        "tick0",
        "first0",
        "second0",
        "tick1",
        "first1",
        "second1",
        "tick2",
        "first2",
        "second2",
    ]


async def test_settle_returns_when_everything_published_is_handled(det_bus: EventBus) -> None:
    handled: list[int] = []

    async def chain(event: Event) -> None:
        n = event.metadata["n"]
        handled.append(n)
        if n < 20:
            await det_bus.publish(signal(n + 1))

    await det_bus.subscribe("trading.signal.generated", chain)
    await det_bus.publish(signal(0))
    await det_bus.settle()
    assert handled == list(range(21)), "settle waited for the whole causal chain"
    assert det_bus.stats()["deterministic"] is True


async def test_free_running_settle_waits_for_every_subscriber(bus: EventBus) -> None:
    done: list[int] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.001)
        done.append(event.metadata["n"])

    await bus.subscribe(
        ["trading.signal.*", "market.>"], slow, **({"stored": True} if bus.capabilities.persistent else {})
    )
    await bus.publish_many(signal(n) for n in range(20))
    await bus.settle()
    assert done == list(range(20))


async def test_requests_are_answered_inside_a_deterministic_handler(det_bus: EventBus) -> None:
    answers: list[str] = []

    async def responder(event: Event) -> None:
        await det_bus.reply(event, make_event("analytics.answer.given", {"text": "42"}, source="ORA"))

    async def asker(event: Event) -> None:
        reply = await det_bus.request(
            make_event("analytics.question.asked", {"q": "?"}, source="GRD"), timeout=5
        )
        answers.append(reply.payload["text"])

    await det_bus.subscribe("analytics.question.*", responder)
    await det_bus.subscribe("trading.signal.generated", asker)
    await det_bus.publish(signal(0))
    await det_bus.settle()
    assert answers == ["42"]


async def test_a_catch_all_subscriber_sees_each_event_once_beside_stream_readers(bus: EventBus) -> None:
    """On NATS a stream consumer's deliveries are routed by its deliver subject, which ``>`` matches,
    but carry the event's own subject: a catch-all subscriber must not take them for new events."""
    everything, reader = Collector(), Collector()
    await bus.subscribe(">", everything)
    await bus.subscribe("trading.>", reader, **({"stored": True} if bus.capabilities.persistent else {}))
    await bus.publish_many(signal(n) for n in range(50))
    await reader.wait_for(50)
    await everything.wait_for(50)
    assert numbers(await everything.settle()) == list(range(50))


async def test_a_stored_delivery_knows_its_stream_position(bus: EventBus) -> None:
    """Stream-backed deliveries carry their stream sequence (checkpoints, SSE ids); others have none."""
    from citarion_host.bus import delivery_position

    seen: list[int | None] = []

    async def handler(event: Event) -> None:
        seen.append(delivery_position())

    await bus.subscribe("trading.>", handler, **({"stored": True} if bus.capabilities.persistent else {}))
    await bus.publish_many(signal(n) for n in range(5))
    await eventually(lambda: len(seen) == 5, what="5 deliveries")
    if bus.capabilities.persistent:
        assert all(isinstance(p, int) for p in seen) and seen == sorted(seen) and len(set(seen)) == 5
    else:
        assert seen == [None] * 5
    assert delivery_position() is None, "never leaks out of the handler"


async def test_every_kind_of_handler_gets_every_event_in_order_and_its_position(bus: EventBus) -> None:
    """A coroutine function, a plain function, a plain function returning an awaitable that waits, and
    one that raises: each gets every event in order (stored where the backend stores, so each delivery
    is settled with its outcome); the delivery's position is visible inside all of them; the failures
    are reported and the others go on."""
    from citarion_host.bus import delivery_position

    seen: dict[str, list[tuple[int, int | None]]] = {"coroutine": [], "plain": [], "awaiting": []}
    failures = Collector()
    await bus.subscribe("system.handler.failed", failures)

    async def coroutine(event: Event) -> None:
        seen["coroutine"].append((event.metadata["n"], delivery_position()))

    def plain(event: Event) -> None:
        seen["plain"].append((event.metadata["n"], delivery_position()))

    def awaiting(event: Event) -> Awaitable[None]:
        position = delivery_position()

        async def later() -> None:
            await asyncio.sleep(0.001)
            seen["awaiting"].append((event.metadata["n"], position))

        return later()

    def broken(event: Event) -> None:
        raise RuntimeError(f"plain boom {event.metadata['n']}")

    stored = {"stored": True} if bus.capabilities.persistent else {}
    for name, handler in (("coroutine", coroutine), ("plain", plain), ("awaiting", awaiting)):
        await bus.subscribe("trading.>", handler, name=name, **stored)
    await bus.subscribe("trading.>", broken, name="broken", **stored)
    await bus.publish_many(signal(n) for n in range(20))
    await eventually(lambda: all(len(got) == 20 for got in seen.values()), what="20 events each")
    assert len(await failures.wait_for(20)) == 20
    for name, got in seen.items():
        assert [n for n, _ in got] == list(range(20)), name
        positions = [p for _, p in got]
        if bus.capabilities.persistent:
            assert all(isinstance(p, int) for p in positions) and positions == sorted(positions), name
        else:
            assert positions == [None] * 20, name
    assert seen["plain"] == seen["coroutine"] == seen["awaiting"], "the same positions for every kind"
    await bus.settle()
