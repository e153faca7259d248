"""The lean path (``bus/nats/_client.py``): in use with this nats-py, same behaviour as the public API.

The conformance suite runs on core NATS and on JetStream both ways (``nats``/``nats-public``,
``nats-core``/``nats-core-public``); these tests cover what is particular to the lean path: the
internals check, nats-py's stats, subjects it refuses, payloads over the server's limit, headers and
replies on received messages, a full pending buffer, routes removed on unsubscribe, and for
JetStream: stored publishes with their dedup header, acks, and status messages.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import nats
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NotJSMessageError, ProtocolError
from nats.protocol.parser import Parser

from citarion_host.bus import NatsSettings
from citarion_host.bus.nats import NatsBus
from citarion_host.bus.nats._client import LeanParser, Wire
from citarion_host.bus.nats.connection import sync_with_server
from citarion_host.bus.nats.feeds import stream_sequence
from citarion_host.bus.position import delivery_position
from citarion_host.errors import PublishError
from citarion_host.events import Event, encode_event, make_event
from citarion_host.natsserver import NatsServer

from .conftest import Collector, delete_stream

pytestmark = pytest.mark.nats

SIGNAL = {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.5}


def signal(n: int, **metadata: Any) -> Event:
    return make_event("trading.signal.generated", SIGNAL, source="GRD", metadata={"n": n, **metadata})


def numbers(events: list[Event]) -> list[int]:
    return [event.metadata["n"] for event in events]


@pytest.fixture
async def bus(shared_nats_server: NatsServer) -> AsyncIterator[NatsBus]:
    async with NatsBus(NatsSettings(servers=[shared_nats_server.url], jetstream=False)) as instance:
        yield instance


async def test_the_lean_path_is_used_and_keeps_nats_py_stats(bus: NatsBus) -> None:
    """If a nats-py upgrade changes the internals, this fails (the bus would quietly be slower)."""
    assert bus._wire.lean
    collector = Collector()
    await bus.subscribe("trading.signal.>", collector)
    before = dict(bus.nc.stats)
    for n in range(100):
        await bus.publish(signal(n))
    assert numbers(await collector.wait_for(100)) == list(range(100))
    assert bus.nc.stats["out_msgs"] - before["out_msgs"] == 100
    assert bus.nc.stats["in_msgs"] - before["in_msgs"] == 100
    size = len(encode_event(collector.events[0]))
    assert bus.nc.stats["in_bytes"] - before["in_bytes"] == pytest.approx(100 * size, rel=0.05)


async def test_a_client_without_the_expected_internals_gets_the_public_api(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class OtherClient(Client):
        async def _process_msg(self, sid: int, subject: bytes, *rest: Any) -> None:  # type: ignore[override]
            pass

    with caplog.at_level(logging.WARNING, logger="citarion_host.bus.nats"):
        wire = Wire.for_client(OtherClient())
    assert not wire.lean
    assert "nats-py internals differ" in caplog.text
    assert "_process_msg(sid, subject, reply, data, headers)" in str(caplog.records[-1].__dict__["missing"])
    assert Wire.for_client(Client()).lean
    assert not Wire.for_client(Client(), lean=False).lean


async def test_lean_wire_off_uses_the_public_api(shared_nats_server: NatsServer) -> None:
    settings = NatsSettings(servers=[shared_nats_server.url], jetstream=False, lean_wire=False)
    async with NatsBus(settings) as bus:
        assert not bus._wire.lean
        # only the reader's guard (guard_reader) wraps nats-py's own _process_msg, no lean routing
        assert getattr(bus.nc._process_msg, "__self__", None) is not bus._wire
        assert bus.nc._process_msg.__qualname__.startswith("guard_reader")


async def test_a_topic_that_is_not_a_subject_is_refused_and_the_connection_lives(bus: NatsBus) -> None:
    collector = Collector()
    await bus.subscribe("trading.signal.>", collector)
    for topic in ("trading.signal.two words", "trading.signal.*", "trading..generated"):
        bad = Event(
            id="x", topic=topic, domain="trading", entity="signal", action="x", timestamp=1, source="GRD",
            priority="normal", payload=SIGNAL,
        )  # fmt: skip
        with pytest.raises(PublishError, match="publish on .* failed"):
            await bus.publish(bad)
    await bus.publish(signal(1))
    assert numbers(await collector.wait_for(1)) == [1]
    assert bus.nc.is_connected


async def test_a_payload_over_the_server_limit_fails_clearly(bus: NatsBus) -> None:
    collector = Collector()
    await bus.subscribe("trading.signal.>", collector)
    huge = signal(1, blob="x" * (bus.nc.max_payload + 1))
    with pytest.raises(PublishError, match="MaxPayloadError|payload"):
        await bus.publish(huge)
    await bus.publish(signal(2))
    assert numbers(await collector.wait_for(1)) == [2]


async def test_messages_with_headers_and_replies_reach_core_subscribers(
    bus: NatsBus, shared_nats_server: NatsServer
) -> None:
    collector = Collector()
    await bus.subscribe("trading.signal.>", collector)
    other = await nats.connect(shared_nats_server.url)
    try:
        await other.publish("trading.signal.generated", encode_event(signal(1)), headers={"Nats-Msg-Id": "a"})
        await other.publish("trading.signal.generated", encode_event(signal(2)), reply="somewhere.else")
        await other.publish("trading.signal.generated", encode_event(signal(3)))
        await sync_with_server(other, timeout=5)
    finally:
        await other.close()
    assert numbers(await collector.wait_for(3)) == [1, 2, 3]


async def test_a_full_pending_buffer_waits_for_the_flusher_and_loses_nothing(bus: NatsBus) -> None:
    """~6 MB published without yielding to the loop: over nats-py's 2 MB pending limit, in order."""
    collector = Collector()
    await bus.subscribe("trading.signal.>", collector)
    padding = "p" * 2_000
    await bus.publish_many(signal(n, padding=padding) for n in range(3_000))
    assert numbers(await collector.wait_for(3_000, timeout=20)) == list(range(3_000))


async def test_unsubscribing_removes_the_route(bus: NatsBus) -> None:
    leaving, staying = Collector(), Collector()
    subscription = await bus.subscribe("trading.signal.>", leaving)
    await bus.subscribe("trading.>", staying)
    assert len(bus._wire._routes) == 2
    await subscription.unsubscribe()
    assert len(bus._wire._routes) == 1
    await bus.publish(signal(1))
    assert numbers(await staying.wait_for(1)) == [1]
    assert await leaving.settle() == []


# -- JetStream ------------------------------------------------------------------------------------


@pytest.fixture
async def js_bus(shared_nats_server: NatsServer) -> AsyncIterator[NatsBus]:
    settings = NatsSettings(servers=[shared_nats_server.url], stream="wire-js", publish_timeout_s=30)
    try:
        async with NatsBus(settings) as instance:
            yield instance
    finally:
        await delete_stream(shared_nats_server.url, settings.stream)


async def test_jetstream_publishes_and_acks_take_the_lean_path(js_bus: NatsBus) -> None:
    """Stored with their dedup id, delivered, acked: and nats-py's ``publish`` never called for it."""
    assert js_bus.wire.lean
    public_calls: list[str] = []
    original = js_bus.nc.publish

    async def counting(subject: str, *args: Any, **kwargs: Any) -> None:
        public_calls.append(subject)
        await original(subject, *args, **kwargs)

    js_bus.nc.publish = counting  # type: ignore[method-assign]
    collector = Collector()
    await js_bus.subscribe("trading.signal.>", collector, durable="wire-durable")
    before = dict(js_bus.nc.stats)
    events = [signal(n) for n in range(200)]
    await js_bus.publish_many(events)
    assert numbers(await collector.wait_for(200)) == list(range(200))
    jsm = js_bus.nc.jsm()
    for _ in range(100):  # our acks reach the server: nothing left waiting for one
        if (await jsm.consumer_info("wire-js", "wire-durable")).num_ack_pending == 0:
            break
        await sync_with_server(js_bus.nc, timeout=5)
    assert (await jsm.consumer_info("wire-js", "wire-durable")).num_ack_pending == 0
    assert any(subject.startswith("$JS.API.") for subject in public_calls), "the spy sees API calls"
    assert [subject for subject in public_calls if subject.startswith(("$JS.ACK.", "trading."))] == []
    stats = js_bus.nc.stats
    assert stats["out_msgs"] - before["out_msgs"] >= 400  # 200 publishes and 200 acks
    assert stats["in_msgs"] - before["in_msgs"] >= 400  # 200 publish acks and 200 deliveries
    stored = await jsm.get_msg("wire-js", 7)
    assert stored.headers == {"Nats-Msg-Id": events[6].id}
    await js_bus.publish(events[6])  # the same event again: deduplicated by that header
    assert (await jsm.stream_info("wire-js")).state.messages == 200
    assert js_bus.stats()["nats"]["duplicates"] == 1


async def test_a_stored_publish_over_the_limit_fails_at_once(js_bus: NatsBus) -> None:
    """The server counts the dedup header too; over the limit it would drop the connection."""
    limit = js_bus.nc.max_payload
    with pytest.raises(PublishError, match="max_payload"):  # at once, not after publish_timeout_s (30 s)
        await js_bus.publish(signal(1, blob="x" * limit))
    with pytest.raises(PublishError, match="max_payload"):  # the body fits, the body + header does not
        await js_bus.publish(signal(1, blob="x" * (limit - len(encode_event(signal(1))) - 30)))
    assert js_bus.nc.is_connected
    collector = Collector()
    await js_bus.subscribe("trading.signal.>", collector)
    await js_bus.publish(signal(2))
    assert numbers(await collector.wait_for(1)) == [2]


async def test_an_event_id_with_a_line_break_is_refused_not_sent(js_bus: NatsBus) -> None:
    """The id becomes the ``Nats-Msg-Id`` header line; a line break would inject protocol."""
    collector = Collector()
    await js_bus.subscribe("trading.signal.>", collector)
    bad = msgspec.structs.replace(signal(1), id="x\r\nPUB trading.signal.generated 2\r\n{}")
    with pytest.raises(PublishError, match="line breaks"):
        await js_bus.publish(bad)
    await js_bus.publish(signal(2))
    assert numbers(await collector.wait_for(1)) == [2]
    assert js_bus.nc.is_connected and await collector.settle() == collector.events[:1]


async def test_message_routes_get_body_and_reply_and_status_messages_get_their_headers(
    js_bus: NatsBus, shared_nats_server: NatsServer
) -> None:
    received: list[Any] = []
    inbox = js_bus.nc.new_inbox()
    await js_bus.wire.subscribe_msgs(inbox + ".*", None, received.append)
    other = await nats.connect(shared_nats_server.url)
    try:
        await other.publish(inbox + ".1", b"body", reply="the.reply", headers={"Nats-Msg-Id": "m1"})
        await sync_with_server(other, timeout=5)
    finally:
        await other.close()
    # a request nobody listens to: the server answers "no responders" (503), headers and no body
    await js_bus.nc.publish("nobody.listens.here", b"?", reply=inbox + ".2")
    await sync_with_server(js_bus.nc, timeout=5)
    for _ in range(100):
        if len(received) == 2:
            break
        await sync_with_server(js_bus.nc, timeout=5)
    first, status = sorted(received, key=lambda msg: msg.subject)
    assert (first.subject, first.reply, first.data, first.headers) == (
        inbox + ".1",
        "the.reply",
        b"body",
        None,
    )
    assert status.data == b"" and status.headers is not None and status.headers.get("Status") == "503"


async def _ack_pending(bus: NatsBus, stream: str) -> int:
    """Deliveries of every consumer on ``stream`` still waiting for our ack, once the server saw ours."""
    jsm = bus.nc.jsm()
    for _ in range(100):
        pending = sum(info.num_ack_pending or 0 for info in await jsm.consumers_info(stream))
        if pending == 0:
            return 0
        await sync_with_server(bus.nc, timeout=5)
    return pending


async def test_a_post_that_need_not_wait_is_sent_at_once_in_order_and_confirmed(js_bus: NatsBus) -> None:
    """``post_now``: a free-running bot's publish with no coroutine. Declined for a topic not checked
    yet (``post`` checks it); then taken at once, stored in call order with its dedup id, confirmed in
    the background; the host inbox's deliveries are acked at once too (``Wire.ack_now``)."""
    awaited: list[Any] = []  # acks that took the awaited path
    ack = js_bus.wire.ack

    async def counting(msg: Any) -> None:
        awaited.append(msg)
        await ack(msg)

    js_bus.wire.ack = counting
    collector = Collector()
    await js_bus.subscribe("trading.signal.>", collector, stored=True)
    assert not js_bus.post_now(signal(0)), "a topic the stream was not asked about yet"
    await js_bus.post(signal(0))
    events = [signal(n) for n in range(1, 100)]
    assert all(js_bus.post_now(event) for event in events)  # no await in between: nothing acked yet
    assert js_bus.stats()["nats"]["in_flight"] >= 99
    await js_bus.flush()
    assert js_bus.stats()["nats"]["in_flight"] == 0 and js_bus.unstored == 0
    assert numbers(await collector.wait_for(100)) == list(range(100))
    jsm = js_bus.nc.jsm()
    assert (await jsm.stream_info("wire-js")).state.messages == 100
    assert (await jsm.get_msg("wire-js", 51)).headers == {"Nats-Msg-Id": events[49].id}
    assert await _ack_pending(js_bus, "wire-js") == 0
    assert awaited == [], "every delivery acked at once"


async def _stored_after_one_post(bus: NatsBus) -> Collector:
    """A stored subscription to every signal, and signal 0 posted and confirmed: a bus with an ack behind
    it and a reader, where a test's own posts start."""
    collector = Collector()
    await bus.subscribe("trading.signal.>", collector, stored=True)
    await bus.post(signal(0))
    await bus.flush()
    return collector


async def test_a_resend_whose_first_copy_is_still_being_stored_is_retried_not_reported_lost(
    shared_nats_server: NatsServer,
) -> None:
    """A replicated stream answers a resend that arrives while its first copy is still being stored
    with 409 / 10158, "duplicate message id is in process" (seen after a node kill in
    ``tests/test_cluster_kill.py``, reported there as a lost post). The message is not lost: the post is
    sent again later with the same ``Nats-Msg-Id`` and gets the duplicate ack, never ``unstored``.
    The answer is handed to the publisher as the server words it, here for a message that is stored."""
    settings = NatsSettings(servers=[shared_nats_server.url], stream="wire-in-process")
    try:
        async with NatsBus(settings) as bus:
            collector = await _stored_after_one_post(bus)
            publisher: Any = bus._publisher
            assert bus.post_now(signal(1))
            ((token, _),) = [(token, item) for token, item in publisher._pending.items() if not item.acked]
            in_process = (
                b'{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}'
            )
            # Handed over before the real ack, which then finds nothing to confirm and is ignored.
            publisher._on_ack(publisher._prefix + token, in_process)
            await asyncio.wait_for(bus.flush(), 10)
            assert bus.unstored == 0 and publisher.resent == 1 and publisher.duplicates == 1
            assert numbers(await collector.wait_for(2)) == [0, 1]
            assert (await bus.nc.jsm().stream_info("wire-in-process")).state.messages == 2, "stored once"
    finally:
        await delete_stream(shared_nats_server.url, settings.stream)


@pytest.mark.parametrize("durable", [True, False], ids=["inbox-and-durable", "inbox-only"])
async def test_sequenced_stored_deliveries_keep_position_order_and_outcome(
    shared_nats_server: NatsServer, durable: bool
) -> None:
    """Deterministic mode on JetStream: every delivery has a receipt and the sequencer runs it without a
    coroutine when the handler finishes at once (``Subscription.run_now``). The position is there for a
    plain handler, and still after a coroutine handler suspends; the order is the publish order, one
    handler at a time; a failure is counted and settled by the retry policy (a durable consumer's:
    dead-lettered at ``max_deliver = 1``, a settle the sequencer awaits), and a success acked, so
    nothing is left pending. ``inbox-only``: every event's members arrive together in one host inbox
    message, whose position the sequencer sets once for all of them (``_Entry.together``)."""
    stream = f"wire-sequenced-{'durable' if durable else 'inbox'}"
    settings = NatsSettings(servers=[shared_nats_server.url], stream=stream, max_deliver=1)
    seen: list[tuple[str, int, int | None]] = []

    def plain(event: Event) -> None:
        seen.append(("plain", event.metadata["n"], delivery_position()))

    async def suspends(event: Event) -> None:
        await asyncio.sleep(0)
        seen.append(("suspends", event.metadata["n"], delivery_position()))

    async def fails(event: Event) -> None:
        seen.append(("fails", event.metadata["n"], delivery_position()))
        if event.metadata["n"] == 1:
            raise RuntimeError("boom")

    try:
        async with NatsBus(settings, deterministic=True) as bus:
            # Members of the host inbox, and a durable subscription (a consumer of its own) or a third
            # member.
            subscriptions = [
                await bus.subscribe("trading.signal.>", plain, stored=True),
                await bus.subscribe("trading.signal.>", suspends, stored=True),
                await (
                    bus.subscribe("trading.signal.>", fails, durable="sequenced-fails")
                    if durable
                    else bus.subscribe("trading.signal.>", fails, stored=True)
                ),
            ]
            for n in range(3):
                await bus.publish(signal(n))
            await bus.settle()
            expected = [(name, n, n + 1) for n in range(3) for name in ("plain", "suspends", "fails")]
            assert seen == expected, "publish order, subscribers in creation order, the stream position each"
            assert [s.delivered for s in subscriptions] == [3, 3, 2]
            assert [s.failed for s in subscriptions] == [0, 0, 1]
            # A durable's failure follows its retry policy; an inbox member's is reported, then acked.
            assert bus.dead_lettered == ({"failed": 1} if durable else {})
            assert delivery_position() is None, "the position never leaks out of a delivery"
            assert await _ack_pending(bus, stream) == 0
    finally:
        await delete_stream(shared_nats_server.url, settings.stream)


async def test_a_post_that_would_wait_is_declined_and_posted_after_the_others(
    shared_nats_server: NatsServer,
) -> None:
    """A full in-flight window: ``post_now`` declines (nothing sent), the awaited ``post`` waits for
    room and is stored after the ones before it. Deterministic mode posts at once too, announcing the
    event to the sequencer in the same call (its place in the order), and declines while the sequencer
    has no room for an outside publisher; core NATS never posts at once."""
    settings = NatsSettings(servers=[shared_nats_server.url], stream="wire-window", publish_max_in_flight=3)
    try:
        async with NatsBus(settings) as bus:
            collector = await _stored_after_one_post(bus)
            assert [bus.post_now(signal(n)) for n in (1, 2, 3, 4)] == [True, True, True, False]
            await bus.post(signal(4))  # waits for an ack to free the window
            await bus.flush()
            assert numbers(await collector.wait_for(5)) == [0, 1, 2, 3, 4]
            assert bus.unstored == 0
        async with NatsBus(settings, deterministic=True) as sequenced:
            ordered = Collector()
            await sequenced.subscribe("trading.signal.>", ordered, stored=True)
            await sequenced.post(signal(5))
            assert sequenced.post_now(signal(6))
            assert sequenced.sequencer is not None and sequenced.sequencer.pending == 2
            await sequenced.post(signal(7))
            await sequenced.settle()
            assert numbers(ordered.events) == [5, 6, 7] and sequenced.unstored == 0
            sequenced.sequencer.external_limit = 0  # a feed far ahead: it must wait in admit()
            assert not sequenced.post_now(signal(8))
        core = NatsSettings(servers=[shared_nats_server.url], jetstream=False)
        async with NatsBus(core) as plain:
            assert not plain.post_now(signal(7))
    finally:
        await delete_stream(shared_nats_server.url, settings.stream)


# -- the lean parser against nats-py's own ---------------------------------------------------------


class _Recorder:
    """A stand-in client: records what a parser hands over, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self._ps = Parser(self)

    async def _process_msg(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), data, headers))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: Any) -> None:
        self.calls.append(("info", info))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))


_token = st.from_regex(rb"[A-Za-z0-9_.$>*-]{1,16}", fullmatch=True)
_body = st.binary(max_size=40) | st.sampled_from([b"\r\n", b"MSG x 1 2\r\n", b"PING\r\n"])
_message = st.tuples(_token, st.integers(1, 99), st.none() | _token, _body)


def _op() -> st.SearchStrategy[bytes]:
    def msg(parts: tuple[bytes, int, bytes | None, bytes]) -> bytes:
        subject, sid, reply, body = parts
        middle = b"" if reply is None else reply + b" "
        return b"MSG %b %d %b%d\r\n%b\r\n" % (subject, sid, middle, len(body), body)

    def hmsg(parts: tuple[tuple[bytes, int, bytes | None, bytes], bytes]) -> bytes:
        (subject, sid, reply, body), value = parts
        headers = b"NATS/1.0\r\nNats-Msg-Id: %b\r\n\r\n" % value
        middle = b"" if reply is None else reply + b" "
        size = len(headers)
        return b"HMSG %b %d %b%d %d\r\n%b%b\r\n" % (
            subject,
            sid,
            middle,
            size,
            size + len(body),
            headers,
            body,
        )

    return st.one_of(
        _message.map(msg),
        st.tuples(_message, _token).map(hmsg),
        st.sampled_from([b"PING\r\n", b"PONG\r\n", b"+OK\r\n", b"-ERR 'Stale Connection'\r\n"]),
        st.just(b'INFO {"server_id":"x","max_payload":1048576}\r\n'),
    )


async def _parse_all(chunks: list[bytes], lean: bool) -> tuple[list[tuple[Any, ...]], str | None]:
    recorder = _Recorder()
    if lean:

        def dispatch(sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> bool:
            if sid % 2:  # odd subscriptions are not taken here: they go to _process_msg
                return False
            recorder.calls.append(("msg", sid, bytes(subject), bytes(reply), data, headers))
            return True

        LeanParser.install(recorder, dispatch)  # type: ignore[arg-type]
    try:
        for chunk in chunks:
            await recorder._ps.parse(chunk)
    except ProtocolError as exc:
        return recorder.calls, str(exc)
    return recorder.calls, None


@given(
    ops=st.lists(_op(), max_size=12),
    tail=st.sampled_from(
        [b"", b"MSG a 1 x\r\nzz\r\n", b"HMSG a 1 5 3\r\nabc\r\n", b"MSG a b\r\n", b"MSG a 1 2\r\nabcd\r\n"]
    ),
    cuts=st.lists(st.integers(0, 2000), max_size=6),
    between=st.lists(st.integers(0, 200), max_size=4),
)
@hsettings(max_examples=300, deadline=None)
def test_the_lean_parser_hands_over_exactly_what_nats_py_parser_does(
    ops: list[bytes], tail: bytes, cuts: list[int], between: list[int]
) -> None:
    """Any stream of protocol operations, split into reads anywhere (``between``: right after a
    ``\r``, the likeliest place to get wrong), with a malformed or incomplete message at its end: the
    same calls in the same order, the same protocol error (if any)."""
    stream = b"".join(ops) + tail
    returns = [i + 1 for i, byte in enumerate(stream) if byte == 13]
    splits = [returns[b % len(returns)] for b in between] if returns else []
    points = sorted({0, len(stream), *splits, *(c % (len(stream) + 1) for c in cuts)})
    chunks = [stream[a:b] for a, b in itertools.pairwise(points)]
    assert asyncio.run(_parse_all(chunks, lean=True)) == asyncio.run(_parse_all(chunks, lean=False))


async def test_the_lean_parser_is_installed_once_on_the_lean_path(js_bus: NatsBus) -> None:
    parse = js_bus.nc._ps.parse
    assert getattr(js_bus.nc._ps, "_citarion_lean", False)
    LeanParser.install(js_bus.nc)
    assert js_bus.nc._ps.parse is parse


@pytest.mark.parametrize(
    "reply",
    [
        "$JS.ACK.demo.inbox-1.1.4711.12.1764500000000000000.3",  # stream, consumer, ...
        "$JS.ACK._.ACCHASH.demo.inbox-1.2.4711.12.1764500000000000000.3",  # domain, account first
        "$JS.ACK.hub.ACCHASH.demo.inbox-1.2.4711.12.1764500000000000000.3.tok",  # and a token after
    ],
)
def test_a_stream_sequence_is_read_from_the_reply_as_nats_py_reads_it(reply: str) -> None:
    msg = Msg(None, "trading.signal.generated", reply, b"{}")  # type: ignore[arg-type]
    assert stream_sequence(msg) == msg.metadata.sequence.stream == 4711


def test_a_reply_that_is_not_a_jetstream_ack_is_refused_as_nats_py_refuses_it() -> None:
    with pytest.raises(NotJSMessageError):
        stream_sequence(Msg(None, "x", "_INBOX.abc.1", b"{}"))  # type: ignore[arg-type]


async def test_a_member_that_joins_later_gets_only_what_is_published_after(js_bus: NatsBus) -> None:
    """The host inbox compares each delivery's stream sequence with when a member joined (read from
    the reply subject): the early member gets everything, the late one only what came after it."""
    early, late = Collector(), Collector()
    await js_bus.subscribe("trading.signal.>", early, stored=True)
    await js_bus.publish_many([signal(n) for n in range(5)])
    assert numbers(await early.wait_for(5)) == list(range(5))
    await js_bus.subscribe("trading.>", late, stored=True)
    await js_bus.publish_many([signal(n) for n in range(5, 10)])
    assert numbers(await early.wait_for(10)) == list(range(10))
    assert numbers(await late.wait_for(5)) == list(range(5, 10))
    assert numbers(await late.settle()) == list(range(5, 10))
