"""The sequencer's parts for a split run (``bus/nats/relay.py``): :meth:`Sequencer.claim` puts an event
published by another process where a local handler's publish would have been, :meth:`Sequencer.hold`
starts nothing meanwhile, and a :class:`Follower` holds its bots' deliveries for their turns."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from citarion_host.bus import MemoryBus, Subscription
from citarion_host.bus.nats.relay import Follower, collect
from citarion_host.bus.sequencer import LONG_CASCADE, YIELD_EVERY, Sequencer
from citarion_host.events import Event, make_event

from .conftest import eventually


def event(n: int) -> Event:
    return make_event("analytics.tick.done", {"n": n}, source="LOG")


def subscriber(
    name: str,
    seq: int,
    sequencer: Sequencer,
    seen: list[tuple[str, int]],
    then: Callable[[Event], Any] | None = None,
) -> Subscription:
    async def handler(e: Event) -> None:
        seen.append((name, e.payload["n"]))
        if then is not None:
            await then(e)

    def ignore(*_: Any) -> None:
        return None

    return Subscription(
        ("analytics.>",),
        handler,
        name=name,
        seq=seq,
        on_error=ignore,
        on_overflow=ignore,
        sequencer=sequencer,
    )


async def test_a_claimed_event_takes_the_place_of_a_local_publish_even_when_it_arrived_first() -> None:
    """A's handler stands for a bot on another host: what that bot published (X) reaches B before the
    answer says so. Claimed, X is handled right after E0's handlers, before the next outside event
    E1, and once: as if A had published it here (announced with ``expect`` instead, the sequencer
    would wait for a delivery that came already, and stall)."""
    sequencer = Sequencer(stall_timeout=2.0)
    seen: list[tuple[str, int]] = []
    x = event(99)

    async def remote_turn(e: Event) -> None:
        if e.payload["n"] != 0:
            return
        asyncio.get_running_loop().call_soon(b.deliver, x)  # X arrives from the transport meanwhile
        await asyncio.sleep(0.01)
        sequencer.claim(x, [b])

    a = subscriber("A", 1, sequencer, seen, remote_turn)
    b = subscriber("B", 2, sequencer, seen)
    e0, e1 = event(0), event(1)
    sequencer.expect(e0, [a])
    sequencer.expect(e1, [a, b])
    a.deliver(e0)
    a.deliver(e1)
    b.deliver(e1)
    await sequencer.settle()
    assert seen == [("A", 0), ("B", 99), ("A", 1), ("B", 1)] and sequencer.stalls == 0


async def test_a_claim_before_the_arrival_waits_for_it() -> None:
    sequencer = Sequencer()
    seen: list[tuple[str, int]] = []
    x = event(99)

    async def remote_turn(e: Event) -> None:
        if e.payload["n"] == 0:
            sequencer.claim(x, [b])
            asyncio.get_running_loop().call_later(0.01, b.deliver, x)

    a = subscriber("A", 1, sequencer, seen, remote_turn)
    b = subscriber("B", 2, sequencer, seen)
    e0, e1 = event(0), event(1)
    sequencer.expect(e0, [a])
    sequencer.expect(e1, [b])
    a.deliver(e0)
    b.deliver(e1)
    await sequencer.settle()
    assert seen == [("A", 0), ("B", 99), ("B", 1)]


async def test_hold_starts_nothing_until_released() -> None:
    sequencer = Sequencer()
    seen: list[tuple[str, int]] = []
    a = subscriber("A", 1, sequencer, seen)
    one = event(1)
    async with sequencer.hold():
        sequencer.expect(one, [a])
        a.deliver(one)
        await asyncio.sleep(0.01)
        assert seen == [] and sequencer.pending == 1
    await sequencer.settle()
    assert seen == [("A", 1)]


async def test_a_follower_holds_its_bots_deliveries_for_their_turns() -> None:
    """Deliveries to the bots it drives wait for :meth:`Follower.take_turn` (in the coordinator's order,
    not arrival order); the host's own subscriptions run as they come; a turn returns what the bot
    published; after :meth:`Follower.end` what is still held runs here."""
    follower = Follower(["bot"], stall_timeout=5.0)
    seen: list[tuple[str, int]] = []
    published = event(7)

    async def publish(e: Event) -> None:
        if e.payload["n"] == 2:
            follower.expect(published, [])

    bot = subscriber("bot", 1, follower, seen, publish)
    record = subscriber("host:record", 2, follower, seen)
    follower.begin(0)
    events = [event(n) for n in range(4)]
    for e in events:
        bot.deliver(e)
        record.deliver(e)
    await eventually(lambda: len(seen) == 4)
    assert seen == [("host:record", n) for n in range(4)] and follower.held == 4
    assert await follower.take_turn("bot", events[2].id) == [published]
    assert await follower.take_turn("bot", events[0].id) == []
    assert seen[4:] == [("bot", 2), ("bot", 0)]
    follower.end()
    await follower.settle()
    assert seen[6:] == [("bot", 1), ("bot", 3)] and follower.held == 0
    assert await follower.take_turn("bot", "never-delivered") is None
    assert await collect(asyncio.sleep(0)) == []


class Settled:
    """Receipts that record which receipt was settled (a JetStream ack, in the real backend)."""

    def __init__(self) -> None:
        self.settled: list[Any] = []

    def position(self, receipt: Any) -> int:
        return 0

    async def settle(self, event: Event, receipt: Any, error: BaseException | None) -> None:
        self.settled.append(receipt)

    def give_back(self, receipt: Any) -> None:
        return None


async def test_a_delivery_that_comes_again_before_it_is_handled_keeps_its_place_once() -> None:
    """The store redelivers what was not acknowledged in time (here: while the event waited for B's
    delivery). The second copy to A must not make a second entry: that one would take B's arrival, and
    the first would wait for it forever (a stall on every such event after a cluster node died)."""
    sequencer = Sequencer(stall_timeout=2.0)
    seen: list[tuple[str, int]] = []
    a = subscriber("A", 1, sequencer, seen)
    b = subscriber("B", 2, sequencer, seen)
    receipts = Settled()
    a.receipts = b.receipts = receipts
    e = event(5)
    sequencer.expect(e, [a, b])
    a.deliver(e, "a-first")
    a.deliver(e, "a-again")  # redelivered after ack_wait
    b.deliver(e, "b-first")
    await sequencer.settle()
    assert seen == [("A", 5), ("B", 5)] and sequencer.stalls == 0 and sequencer.redelivered == 1
    assert receipts.settled == ["a-again", "b-first"], "the newest delivery is the one settled"


async def test_one_message_arrives_for_all_its_members_at_once_and_redeliveries_keep_their_place() -> None:
    """``arrived_all`` (a host inbox message's members, one receipt): expected and new, they arrive
    together and run in creation order; a message delivered again (the store's redelivery) or one
    nobody announced goes member by member through ``arrived``: one entry, the newest receipt."""
    sequencer = Sequencer(stall_timeout=2.0)
    seen: list[tuple[str, int]] = []
    a = subscriber("A", 1, sequencer, seen)
    b = subscriber("B", 2, sequencer, seen)
    c = subscriber("C", 3, sequencer, seen)
    receipts = Settled()
    a.receipts = b.receipts = c.receipts = receipts
    announced, unannounced = event(1), event(2)
    sequencer.expect(announced, [a, b, c])
    sequencer.arrived_all([a, b], announced, "ab-first")
    sequencer.arrived_all([a, b], announced, "ab-again")  # redelivered before C's came
    c.deliver(announced, "c-first")
    sequencer.arrived_all([b, c], unannounced, "bc")  # another process's event
    await sequencer.settle()
    assert seen == [("A", 1), ("B", 1), ("C", 1), ("B", 2), ("C", 2)]
    assert sequencer.redelivered == 2 and sequencer.stalls == 0
    assert receipts.settled == ["ab-again", "ab-again", "c-first", "bc", "bc"]


async def test_a_plain_function_handler_is_sequenced_like_a_coroutine_one() -> None:
    """The sequencer calls a plain function handler (the run monitor's) as it is: in creation order
    among the coroutine handlers, counted in ``delivered``, a returned awaitable awaited before the
    next handler, a failure isolated, counted in ``failed`` and reported on ``system.handler.failed``."""
    from citarion_host.bus.memory import MemoryBus

    seen: list[str] = []

    async with MemoryBus(deterministic=True) as bus:

        def plain(e: Event) -> None:
            seen.append(f"plain {e.payload['n']}")
            if e.payload["n"] == 1:
                raise ValueError("boom")

        async def later(e: Event) -> None:
            await asyncio.sleep(0)
            seen.append(f"awaited {e.payload['n']}")

        def returns_awaitable(e: Event) -> Any:
            return later(e)

        async def coroutine(e: Event) -> None:
            seen.append(f"coroutine {e.payload['n']}")

        failures: list[Event] = []

        async def failed(e: Event) -> None:
            failures.append(e)

        await bus.subscribe("system.handler.failed", failed, name="failures")
        first = await bus.subscribe("analytics.>", plain, name="plain")
        second = await bus.subscribe("analytics.>", returns_awaitable, name="awaitable")
        third = await bus.subscribe("analytics.>", coroutine, name="coroutine")
        for n in range(3):
            await bus.publish(event(n))
        await bus.settle()

    assert seen == [f"{kind} {n}" for n in range(3) for kind in ("plain", "awaited", "coroutine")]
    assert (first.delivered, first.failed, second.delivered, third.delivered) == (2, 1, 3, 3)
    assert len(failures) == 1


async def test_a_delivery_that_never_comes_stalls_once_after_the_timeout_and_the_rest_goes_on() -> None:
    """The safety valve: E0 expects A and B, and B's delivery never comes. After ``stall_timeout`` the
    sequencer hands E0 to A alone, counts one stall and reports B; E1 then runs as usual. Events whose
    deliveries do arrive in time (E1, and every event of a waiting period that outlasts several
    timeouts in total) never stall: the deadline is one wait's, not the watchdog's."""
    stalled: list[tuple[int, list[str]]] = []
    sequencer = Sequencer(
        stall_timeout=0.3,
        on_stall=lambda e, missing: stalled.append((e.payload["n"], [s.name for s in missing])),
    )
    seen: list[tuple[str, int]] = []
    a = subscriber("A", 1, sequencer, seen)
    b = subscriber("B", 2, sequencer, seen)
    for n in range(3):  # 3 waits of 0.2 s each: 0.6 s in all, each one within its own timeout
        e = event(10 + n)
        sequencer.expect(e, [a, b])
        a.deliver(e)
        await asyncio.sleep(0.2)
        b.deliver(e)
        await sequencer.settle()
    assert sequencer.stalls == 0 and not stalled
    loop = asyncio.get_running_loop()
    e0, e1 = event(0), event(1)
    sequencer.expect(e0, [a, b])
    sequencer.expect(e1, [a, b])
    started = loop.time()
    a.deliver(e0)
    a.deliver(e1)
    b.deliver(e1)
    async with asyncio.timeout(5):  # a watchdog that never fires would wait here for ever
        await sequencer.settle()
    assert loop.time() - started >= 0.3
    assert seen[-3:] == [("A", 0), ("A", 1), ("B", 1)]
    assert sequencer.stalls == 1 and stalled == [(0, ["B"])]


async def test_reached_returns_once_everything_queued_before_the_mark_is_handled() -> None:
    """``external_mark``/``reached``, what a replayed feed's ``settle(lag=True)`` waits with: the mark
    of an event from outside is reached once the sequencer takes that event, when every event queued
    before it has been handled with everything it caused (the cascade of E0 here), and not before;
    a mark already passed returns at once, one that nothing took yet returns when nothing is left;
    never from inside a handler."""
    from citarion_host.bus.memory import MemoryBus

    seen: list[str] = []
    gate = asyncio.Event()

    async with MemoryBus(deterministic=True) as bus:
        sequencer = bus.sequencer
        assert sequencer is not None

        async def outside(e: Event) -> None:
            n = e.payload["n"]
            seen.append(f"outside {n}")
            if n == 0:  # a cascade of two events: both before E1
                await bus.publish(make_event("analytics.chain.done", {"n": 10}, source="LOG"))
            if n == 1:
                await gate.wait()  # E1's handler is still running when its mark is reached

        async def chain(e: Event) -> None:
            n = e.payload["n"]
            seen.append(f"chain {n}")
            if n == 10:
                await bus.publish(make_event("analytics.chain.done", {"n": 11}, source="LOG"))

        async def inside(e: Event) -> None:
            try:
                await sequencer.reached(0)
            except RuntimeError as exc:
                seen.append(f"refused: {exc}")

        await bus.subscribe("analytics.tick.*", outside, name="outside")
        await bus.subscribe("analytics.chain.*", chain, name="chain")
        marks = []
        for n in range(2):
            marks.append(sequencer.external_mark())
            await bus.publish(event(n))
        assert marks == [0, 1] and sequencer.external_mark() == 2
        await asyncio.wait_for(sequencer.reached(marks[1]), 5)
        assert seen == ["outside 0", "chain 10", "chain 11", "outside 1"], "E0's cascade, then E1 taken"
        await asyncio.wait_for(sequencer.reached(marks[0]), 5)  # passed already: at once
        waiting = asyncio.ensure_future(sequencer.reached(2))  # nothing took it yet: until idle
        await asyncio.sleep(0.01)
        assert not waiting.done()
        gate.set()
        await asyncio.wait_for(waiting, 5)
        await bus.subscribe("analytics.ask.*", inside, name="inside")
        await bus.publish(make_event("analytics.ask.done", {"n": 0}, source="LOG"))
        await bus.settle()
    assert seen[-1].startswith("refused: reached() from inside a handler would wait for itself")


async def test_an_observer_never_holds_the_others_up_and_sees_every_event_in_order() -> None:
    """M only reads (``observe``: the run monitor). A handles E0 and publishes X, which only M takes;
    then comes E1. A handles E1 without waiting for X's delivery to M (on JetStream a store round
    trip each: half of the demo's waits), and M still sees E0, X, E1 in the run's order, E1 only
    after X, once X's delivery is in; every receipt is settled once."""
    sequencer = Sequencer(stall_timeout=5.0)
    seen: list[tuple[str, int]] = []
    x, e1 = event(99), event(1)
    a_saw_e1 = asyncio.Event()

    async def publish_x(e: Event) -> None:
        if e.payload["n"] == 0:
            sequencer.expect(x, [m])  # as the bus announces a handler's publish
        elif e.payload["n"] == 1:
            a_saw_e1.set()

    m = subscriber("M", 1, sequencer, seen)
    a = subscriber("A", 2, sequencer, seen, then=publish_x)
    receipts = Settled()
    m.receipts = a.receipts = receipts
    sequencer.observe(m)
    e0 = event(0)
    sequencer.expect(e0, [m, a])
    sequencer.arrived_all([m, a], e0, "e0")
    sequencer.expect(e1, [m, a])
    sequencer.arrived_all([m, a], e1, "e1")
    async with asyncio.timeout(2):  # before the fix: A waited for X's delivery to M, which waits here
        await a_saw_e1.wait()
    assert ("M", 99) not in seen and ("M", 1) not in seen, "M sees nothing before X's delivery"
    sequencer.arrived_all([m], x, "x")
    async with asyncio.timeout(2):
        await sequencer.settle()
    assert [who for who in seen if who[0] == "M"] == [("M", 0), ("M", 99), ("M", 1)]
    assert [who for who in seen if who[0] == "A"] == [("A", 0), ("A", 1)]
    assert sorted(receipts.settled) == ["e0", "e0", "e1", "e1", "x"]
    assert sequencer.stalls == 0 and sequencer.pending == 0


async def test_an_observers_lost_delivery_stalls_after_the_timeout_while_the_others_run_on() -> None:
    """X, only M's, never arrives; A's events keep coming, one at a time, the sequencer idle in
    between (waiting for X then: a new event of A's must end that wait). A handles every one of them
    before X is given up; after ``stall_timeout`` X is reported missing once and M goes on with what
    came after it, in order."""
    seen: list[tuple[str, int]] = []
    at_stall: list[list[tuple[str, int]]] = []
    stalled: list[tuple[int, list[str]]] = []

    def on_stall(e: Event, missing: list[Subscription]) -> None:
        stalled.append((e.payload["n"], [s.name for s in missing]))
        at_stall.append(list(seen))

    sequencer = Sequencer(stall_timeout=1.0, on_stall=on_stall)
    m = subscriber("M", 1, sequencer, seen)
    a = subscriber("A", 2, sequencer, seen)
    sequencer.observe(m)
    sequencer.expect(event(99), [m])  # lost
    for n in range(8):
        e = event(n)
        sequencer.expect(e, [m, a])
        sequencer.arrived_all([m, a], e, None)
        await asyncio.sleep(0.02)
    async with asyncio.timeout(5):
        await sequencer.settle()
    assert at_stall == [[("A", n) for n in range(8)]], "A was not held up, M saw nothing before"
    assert [n for who, n in seen if who == "M"] == list(range(8))
    assert sequencer.stalls == 1 and stalled == [(99, ["M"])]


async def test_a_loop_between_handlers_leaves_the_event_loop_its_turns_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handler that publishes what it receives (a bot subscribed to its own topic) never waits, and
    the sequencer ran its cascade without giving the event loop a turn: the host held the loop for
    good, SIGINT and SIGTERM (loop callbacks) were never run, and nothing said why. Now a timer of
    the loop fires while the cascade runs (a turn every ``YIELD_EVERY`` events), and a cascade that
    reaches ``LONG_CASCADE`` events is said once, with the event from outside it came from."""
    caplog.set_level(logging.ERROR, "citarion_host.bus.sequencer")
    looping = True
    # Without the turns nothing on the loop can end the cascade: a thread does, so that the test
    # fails (the timer fired only after the cascade) instead of hanging.
    valve = threading.Event()
    opener = threading.Timer(30.0, valve.set)
    async with MemoryBus(deterministic=True) as bus:

        async def echo(e: Event) -> None:
            if looping and not valve.is_set():
                await bus.publish(make_event("analytics.loop.echoed", {}, source="ORA"))

        await bus.subscribe("analytics.loop.>", echo)
        sequencer = bus.sequencer
        assert sequencer is not None
        seen_at: list[tuple[int, bool]] = []  # (events handled, still looping) when the timer fired
        asyncio.get_running_loop().call_later(
            0.05, lambda: seen_at.append((sequencer.handled, looping and not valve.is_set()))
        )
        opener.start()
        try:
            await bus.publish(make_event("analytics.loop.echoed", {}, source="LUM"))
            await eventually(lambda: bus.stats()["long_cascades"] == 1, timeout=60, what="the long cascade")
            looping = False
            await bus.settle()
        finally:
            opener.cancel()
        assert seen_at and seen_at[0][1] and 0 < seen_at[0][0] < LONG_CASCADE, seen_at
        assert sequencer.handled > LONG_CASCADE > YIELD_EVERY
        said = [r for r in caplog.records if "cascade has run to" in r.getMessage()]
        assert len(said) == 1
        assert said[0].origin == "analytics.loop.echoed from LUM"  # type: ignore[attr-defined]
        assert said[0].now == "analytics.loop.echoed from ORA"  # type: ignore[attr-defined]
