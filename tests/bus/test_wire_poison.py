"""Malformed messages on the wire: every kind dead-lettered once, counted by kind, terminated, on every
subscription kind and both wire paths; the limits (nesting depth, ``max_event_bytes``); dead letters
cut to size; replies confined to their requester's inbox.

Poison is published raw (``wire_helpers.raw_publish``): bytes no well-behaved client would send.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from citarion_host.bus import MemoryBus, NatsSettings
from citarion_host.bus.base import DEAD_LETTER_MAX_ORIGINAL
from citarion_host.bus.nats import NatsBus
from citarion_host.bus.nats.feeds import HostInbox, StreamFeed
from citarion_host.errors import PublishError
from citarion_host.events import MAX_EVENT_DEPTH, Event, InvalidEventError, catalog, encode_event, make_event
from citarion_host.host import Host
from citarion_host.natsserver import NatsServer
from citarion_host.payloads import DeadLetter
from citarion_host.plugins import Plugins
from citarion_host.settings import load_config

from .conftest import Collector, delete_stream, eventually
from .wire_helpers import TOPIC, nested, numbers, poison, raw_publish, settled, signal

MAX_EVENT_BYTES = 16 * 1024
_names = itertools.count(1)


# -- the decoder's limits (no server) ----------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_EVENT_DEPTH - 1, MAX_EVENT_DEPTH, 200, 1_000, 100_000])
def test_nesting_deeper_than_the_limit_is_refused_as_malformed(depth: int) -> None:
    data = nested(depth - 2)  # the envelope and its metadata are two levels
    if depth <= MAX_EVENT_DEPTH:
        assert catalog.decode(data, TOPIC).metadata["deep"] is not None
        return
    for topic in (TOPIC, None):  # also when the topic is read from the message first
        with pytest.raises(InvalidEventError, match=f"nested deeper than {MAX_EVENT_DEPTH}") as caught:
            catalog.decode(data, topic)
        assert caught.value.kind == "too_deep"


def test_an_untyped_payload_is_depth_checked_too() -> None:
    base = encode_event(make_event("analytics.answer.given", {"text": "x"}, source="ORA"))
    ok = base.replace(b'"text":"x"', b'"text":' + b"[" * 62 + b"]" * 62)
    deep = base.replace(b'"text":"x"', b'"text":' + b"[" * 63 + b"]" * 63)
    assert catalog.decode(ok).topic == "analytics.answer.given"
    with pytest.raises(InvalidEventError) as caught:
        catalog.decode(deep)
    assert caught.value.kind == "too_deep"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = "[" * 200 + '{"\\"[' * 50
    event = make_event("analytics.answer.given", {"text": text}, source="ORA")
    assert catalog.decode(encode_event(event)).payload["text"] == text


def test_a_subject_that_is_not_utf8_is_refused_as_a_topic() -> None:
    subject = b"trading.signal.\xff".decode("utf-8", "surrogateescape")  # as the wire hands it over
    with pytest.raises(InvalidEventError, match="not valid UTF-8") as caught:
        catalog.decode(encode_event(signal(1)), subject)
    assert caught.value.kind == "subject"
    assert "\\xff" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "kind"),
    [(b"{not json", "not_json"), (encode_event(signal(1)).replace(b"0.5", b"7"), "schema")],
)
def test_every_refusal_says_its_kind(data: bytes, kind: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        catalog.decode(data)
    assert caught.value.kind == kind


# -- memory: publish_raw ----------------------------------------------------------------------------


async def test_memory_publish_raw_dead_letters_every_kind_and_counts_it() -> None:
    async with MemoryBus(max_event_bytes=MAX_EVENT_BYTES) as bus:
        dead, good = Collector(), Collector()
        await bus.subscribe("system.deadletter.>", dead)
        await bus.subscribe("trading.signal.>", good)
        messages = [
            (subject, body, kind) for subject, body, kind in poison(MAX_EVENT_BYTES) if kind != "subject"
        ]
        for _, body, _ in messages:
            assert await bus.publish_raw(body) is None
        assert await bus.publish_raw(encode_event(signal(1))) is not None
        letters = await dead.wait_for(len(messages))
        assert [letter.metadata["kind"] for letter in letters] == [kind for _, _, kind in messages]
        assert bus.malformed_kinds == {"too_deep": 2, "oversized": 1, "schema": 1, "not_json": 1}
        assert bus.stats()["malformed_kinds"] == bus.malformed_kinds
        assert numbers(good.events) == [1]


async def test_a_dead_letter_too_big_to_store_keeps_id_reason_and_a_prefix() -> None:
    async with MemoryBus() as bus:
        dead = Collector()
        await bus.subscribe("system.deadletter.>", dead)
        huge = b"x" * (3 * DEAD_LETTER_MAX_ORIGINAL)
        await bus.dead_letter(huge, reason="failed", error="boom", event_id="evt-1")
        (letter,) = await dead.wait_for(1)
        payload = letter.payload
        assert isinstance(payload, DeadLetter)
        assert (payload.reason, payload.event_id, payload.truncated) == ("failed", "evt-1", len(huge))
        assert payload.original == "x" * DEAD_LETTER_MAX_ORIGINAL
        assert len(encode_event(letter)) < 2 * DEAD_LETTER_MAX_ORIGINAL


# -- NATS: every subscription kind, both wire paths --------------------------------------------------


@pytest.fixture(params=[True, False], ids=["lean", "public"])
def settings(request: pytest.FixtureRequest, shared_nats_server: NatsServer) -> Iterator[NatsSettings]:
    settings = NatsSettings(
        servers=[shared_nats_server.url],
        stream=f"poison-{next(_names)}",
        lean_wire=request.param,
        nak_backoff_s=[0.01],
        max_deliver=3,
        ack_wait_s=2.0,
    )
    yield settings
    asyncio.run(delete_stream(shared_nats_server.url, settings.stream))


@pytest.fixture
async def bus(settings: NatsSettings) -> AsyncIterator[NatsBus]:
    async with NatsBus(settings, max_event_bytes=MAX_EVENT_BYTES) as instance:
        yield instance


KINDS: dict[str, dict[str, Any]] = {
    "core": {},
    "core-queue": {"queue": "q"},
    "stored": {"stored": True},
    "ephemeral": {"start_sequence": 1},
    "durable": {"durable": "poisoned"},
    "durable-queue": {"durable": "poisoned-q", "queue": "poisoned-q"},
}


def consumer_of(bus: NatsBus, subscription: Any) -> str | None:
    """The JetStream consumer feeding ``subscription`` (None: a core subscription)."""
    feed = bus._feeds[subscription]
    if isinstance(feed, StreamFeed):
        return feed.consumer
    inbox = getattr(feed, "_inbox", None)
    if isinstance(inbox, HostInbox) and inbox._feed is not None:
        return inbox._feed.consumer
    return None


@pytest.mark.parametrize("kind", list(KINDS))
async def test_poison_is_dead_lettered_and_terminated_on_every_subscription_kind(
    bus: NatsBus, settings: NatsSettings, kind: str
) -> None:
    dead, good = Collector(), Collector()
    await bus.subscribe("system.deadletter.>", dead)
    subscription = await bus.subscribe("trading.signal.>", good, **KINDS[kind])
    messages = poison(MAX_EVENT_BYTES)
    await raw_publish(settings.servers[0], [(subject, body) for subject, body, _ in messages])
    await bus.publish_many([signal(1), signal(2), signal(3)])
    assert numbers(await good.wait_for(3, timeout=10)) == [1, 2, 3]
    letters = await dead.wait_for(len(messages), timeout=10)
    assert sorted(letter.metadata["kind"] for letter in letters) == sorted(k for _, _, k in messages)
    kinds = {"too_deep": 2, "subject": 1, "oversized": 1, "schema": 1, "not_json": 1}
    await eventually(lambda: bus.malformed_kinds == kinds, what=f"counted by kind: {bus.malformed_kinds}")
    (bad_subject,) = [letter.payload for letter in letters if letter.metadata["kind"] == "subject"]
    assert bad_subject.subject == "trading.signal.\\xff\\xfe"
    consumer = consumer_of(bus, subscription)
    if consumer is not None:  # stream-backed: every poison message terminated, nothing redelivered
        info = await settled(settings, consumer)
        assert info.num_redelivered == 0, "poison is terminated, not retried"
    assert bus.nc.is_connected and bus.connection_state == "connected"
    await bus.publish(signal(4))  # the read loop still runs
    assert numbers(await good.wait_for(4, timeout=10))[-1] == 4
    assert len(await dead.settle(0.1)) == len(messages), "each dead-lettered once"


async def test_a_durable_consumer_never_stalls_on_poison(bus: NatsBus, settings: NatsSettings) -> None:
    """Issue 10: 50 poison messages filled max_pending = 50, and the 20 valid ones behind never came."""
    good = Collector()
    await bus.subscribe("trading.signal.>", good, durable="stalled", max_pending=50)
    deep = [(TOPIC.encode(), nested(1_000)) for _ in range(25)]
    not_utf8 = [(b"trading.signal.\xff%d" % n, encode_event(signal(-n))) for n in range(25)]
    await raw_publish(settings.servers[0], deep + not_utf8)
    await bus.publish_many([signal(n) for n in range(20)])
    assert numbers(await good.wait_for(20, timeout=15)) == list(range(20))
    kinds = {"too_deep": 25, "subject": 25}
    await eventually(lambda: bus.malformed_kinds == kinds, what=f"counted by kind: {bus.malformed_kinds}")
    info = await settled(settings, "stalled")
    assert info.num_redelivered == 0


async def test_a_publish_over_max_event_bytes_is_refused_with_a_clear_error(bus: NatsBus) -> None:
    good = Collector()
    await bus.subscribe("trading.signal.>", good)
    big = signal(1, blob="x" * MAX_EVENT_BYTES)
    for publish in (bus.publish, bus.post, lambda event: bus.publish_many([event])):
        with pytest.raises(PublishError, match=r"over \[backend\] max_event_bytes \(16384"):
            await publish(big)
    await bus.publish(signal(2))
    assert numbers(await good.wait_for(1)) == [2]


async def test_a_dead_letter_of_an_oversized_message_is_cut_and_the_original_terminated(
    shared_nats_server: NatsServer,
) -> None:
    """The original is over what a letter may hold (``DEAD_LETTER_MAX_ORIGINAL``), under max_payload."""
    settings = NatsSettings(servers=[shared_nats_server.url], stream=f"poison-{next(_names)}")
    try:
        async with NatsBus(settings) as bus:  # the default max_event_bytes: the message is over it
            dead, good = Collector(), Collector()
            await bus.subscribe("system.deadletter.>", dead)
            await bus.subscribe("trading.signal.>", good, durable="big")
            body = b'{"x":"' + b"y" * (bus.max_event_bytes + 10) + b'"}'
            await raw_publish(settings.servers[0], [(TOPIC.encode(), body)])
            await bus.publish(signal(1))
            assert numbers(await good.wait_for(1, timeout=10)) == [1]
            (letter,) = await dead.wait_for(1, timeout=10)
            assert letter.metadata["kind"] == "oversized"
            assert letter.payload.truncated == len(body)
            assert len(letter.payload.original) == DEAD_LETTER_MAX_ORIGINAL
            info = await settled(settings, "big")
            assert info.num_redelivered == 0
    finally:
        await delete_stream(shared_nats_server.url, settings.stream)


# -- replies ----------------------------------------------------------------------------------------


def forged_request(reply_to: str) -> Event:
    return make_event("analytics.test.asked", {"q": "x"}, source="X", metadata={"replyTo": reply_to})


async def test_memory_reply_goes_only_to_a_request_of_this_bus() -> None:
    async with MemoryBus() as bus:
        answer = make_event("trading.note.made", {"x": 1}, source="ORA")
        with pytest.raises(PublishError, match="not a request of this bus"):
            await bus.reply(forged_request("trading.order.submitted"), answer)


@pytest.mark.parametrize(
    "reply_to",
    ["trading.order.submitted", "$JS.API.STREAM.DELETE.x", "_INBOX.*", "_INBOX.a b", "_INBOXES.x", ""],
)
async def test_nats_reply_goes_only_to_a_reply_inbox(
    bus: NatsBus, settings: NatsSettings, reply_to: str
) -> None:
    stored = Collector()
    await bus.subscribe("trading.>", stored, stored=True)
    answer = make_event("trading.note.made", {"x": 1}, source="ORA")
    if reply_to:
        with pytest.raises(PublishError, match="replyTo .* is .*a reply goes to its requester only"):
            await bus.reply(forged_request(reply_to), answer)
    else:
        await bus.reply(forged_request(reply_to), answer)  # not a request: logged, nothing sent
    await bus.publish(signal(1))
    assert [event.topic for event in await stored.wait_for(1)] == [TOPIC]
    assert len(await stored.settle(0.2)) == 1, "nothing landed on an event topic"


async def test_a_request_reply_still_works_through_the_inbox(bus: NatsBus) -> None:
    async def respond(event: Event) -> None:
        await bus.reply(event, make_event("analytics.answer.given", {"a": 1}, source="ORA"))

    await bus.subscribe("analytics.test.>", respond)
    reply = await bus.request(make_event("analytics.test.asked", {"q": 1}, source="X"), timeout=5)
    assert reply.payload == {"a": 1}


HOST_WITH_ORA = """
[[bots]]
id = "oracle"
code = "ORA"
plugin = "citarion_bots.oracle.bot:OracleBot"
publish = ["analytics.query.answered"]
subscribe = ["analytics.query.asked"]
"""


@pytest.mark.parametrize("backend", ["memory", "nats"])
async def test_ctx_reply_of_a_hosted_bot_goes_only_to_its_requester(
    backend: str, tmp_path: Path, shared_nats_server: NatsServer
) -> None:
    """ORA answers every query with ``ctx.reply()``: a query whose ``replyTo`` names an event topic
    makes its handler fail (reported on ``system.bot.error``), and nothing is published there; a real request is answered."""
    stream = f"poison-{next(_names)}"
    backend_toml = (
        '[backend]\ntype = "memory"\n'
        if backend == "memory"
        else f'[backend]\ntype = "nats"\n[backend.nats]\nservers = ["{shared_nats_server.url}"]\n'
        f'stream = "{stream}"\n'
    )
    path = tmp_path / "host.toml"
    path.write_text(backend_toml + HOST_WITH_ORA)
    host = Host(load_config(path), plugins=Plugins())
    await host.start()
    try:
        failures, orders = Collector(), Collector()
        await host.bus.subscribe("system.bot.error", failures)
        await host.bus.subscribe("trading.order.>", orders)
        query = {"question": "who publishes trading.order.submitted?"}
        forged = make_event(
            "analytics.query.asked", query, source="X", metadata={"replyTo": "trading.order.submitted"}
        )
        await host.bus.publish(forged)
        # on NATS a failed event is retried (nak with backoff): the same failure may be reported again
        failed = await failures.wait_for(1, timeout=10)
        for failure in failed:
            assert failure.payload.bot_id == "oracle"
            assert failure.payload.reason.startswith("PublishError: reply to request")
            assert "'trading.order.submitted'" in failure.payload.reason
        answer = await host.bus.request(make_event("analytics.query.asked", query, source="X"), timeout=10)
        assert answer.topic == "analytics.query.answered"
        assert await orders.settle(0.2) == [], "nothing landed on an order topic"
    finally:
        await host.stop()
        if backend == "nats":
            await delete_stream(shared_nats_server.url, stream)
