"""The NATS backend beyond the common contract: stream management, dedup, durable consumers, acks and
dead letters, replay, request/reply across connections, TypeScript interoperability, faults, clusters.

Every test runs against real nats-server processes started by the fixtures (never the shared :4222).
Most share the session's server with a stream of their own (``stream`` fixture, deleted afterwards);
the ones that kill servers get their own.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal as signals
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.js import api

from citarion_host.bus import NatsSettings, create_bus
from citarion_host.bus.nats import NatsBus, feeds
from citarion_host.bus.nats.connection import sync_with_server
from citarion_host.errors import BusError, ConfigError, NoRespondersError, PublishError, RequestTimeoutError
from citarion_host.events import Event, encode_event, make_event
from citarion_host.natsserver import NatsCluster, NatsServer, free_ports
from citarion_host.payloads import ConnectionStatus, DeadLetter, Signal
from citarion_host.replay import replay

from .conftest import Collector, delete_stream, eventually

pytestmark = pytest.mark.nats

SIGNAL = {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.5}
_names = itertools.count(1)


def signal(n: int, topic: str = "trading.signal.generated") -> Event:
    return make_event(topic, {**SIGNAL, "entryPrice": 100.0 + n}, source="GRD", metadata={"n": n})


def numbers(events: list[Event]) -> list[int]:
    return [event.metadata["n"] for event in events]


@pytest.fixture
def stream(shared_nats_server: NatsServer) -> Iterator[NatsSettings]:
    """Settings for a stream of this test's own on the session's server; the stream is deleted after."""
    settings = NatsSettings(
        servers=[shared_nats_server.url],
        stream=f"test-{next(_names)}",
        nak_backoff_s=[0.01],
        max_deliver=3,
    )
    yield settings
    asyncio.run(delete_stream(shared_nats_server.url, settings.stream))


@pytest.fixture
async def bus(stream: NatsSettings) -> AsyncIterator[NatsBus]:
    async with NatsBus(stream) as instance:
        yield instance


async def stream_info(settings: NatsSettings) -> api.StreamInfo:
    nc = await nats.connect(settings.servers)
    try:
        return await nc.jsm().stream_info(settings.stream)
    finally:
        await nc.close()


# -- stream management ----------------------------------------------------------------------------


async def test_stream_is_created_from_the_settings(stream: NatsSettings) -> None:
    settings = stream.model_copy(update={"max_age_s": 3600.0, "duplicate_window_s": 30.0})
    async with NatsBus(settings) as bus:
        assert bus.capabilities.persistent and bus.capabilities.replay and bus.capabilities.durable
        info = await stream_info(settings)
    assert sorted(info.config.subjects or []) == [f"{d}.>" for d in sorted(bus.catalog.domains)]
    assert info.config.storage == api.StorageType.FILE
    assert info.config.max_age == pytest.approx(3600.0)
    assert info.config.duplicate_window == pytest.approx(30.0)


async def test_stream_config_drift_is_updated_and_the_data_kept(stream: NatsSettings) -> None:
    async with NatsBus(stream) as bus:
        await bus.publish_many(signal(n) for n in range(10))
    changed = stream.model_copy(
        update={"max_age_s": 7200.0, "subjects": ["trading.>", "system.>"], "manage_stream": True}
    )
    async with NatsBus(changed):
        info = await stream_info(stream)
    assert info.config.max_age == pytest.approx(7200.0)
    assert sorted(info.config.subjects or []) == ["system.>", "trading.>"]
    assert info.state.messages == 10, "updating the stream must never drop data"


async def test_a_host_that_does_not_manage_the_stream_refuses_a_different_one(stream: NatsSettings) -> None:
    async with NatsBus(stream.model_copy(update={"max_age_s": 3600.0})) as bus:
        await bus.publish(signal(1))
    other = stream.model_copy(update={"max_age_s": 7200.0, "replicas": 1, "duplicate_window_s": 60.0})
    with pytest.raises(ConfigError) as refused:
        await NatsBus(other).start()
    message = str(refused.value)
    assert "max_age_s: server 3600.0, this host 7200.0" in message
    assert "duplicate_window_s: server 120.0, this host 60.0" in message
    assert "replicas" not in message and "manage_stream = true" in message
    info = await stream_info(stream)
    assert info.config.max_age == pytest.approx(3600.0), "a refusing host must not touch the stream"
    assert info.state.messages == 1


async def test_a_stream_storing_more_than_a_host_wants_is_no_difference_for_it(stream: NatsSettings) -> None:
    async with NatsBus(stream) as bus:  # every domain
        domains = sorted(bus.catalog.domains)
    narrow = stream.model_copy(update={"subjects": ["trading.signal.>", "system.>"]})
    async with NatsBus(narrow) as bus:
        await bus.publish(signal(1))
    assert sorted((await stream_info(stream)).config.subjects or []) == [f"{d}.>" for d in domains]
    wider = stream.model_copy(update={"subjects": ["trading.>", "other.>"]})
    with pytest.raises(ConfigError, match=r"subjects: server \[.*\], this host \['trading\.>', 'other\.>'\]"):
        await NatsBus(wider).start()


async def test_storage_type_change_is_refused_not_recreated(stream: NatsSettings) -> None:
    async with NatsBus(stream) as bus:
        await bus.publish(signal(1))
    with pytest.raises(ConfigError, match=r"file storage but the settings ask for memory"):
        await NatsBus(stream.model_copy(update={"storage": "memory"})).start()
    assert (await stream_info(stream)).state.messages == 1


async def test_republishing_an_event_stores_it_once(bus: NatsBus, stream: NatsSettings) -> None:
    got = Collector()
    await bus.subscribe("trading.>", got, durable="dedup")
    event = signal(1)
    await bus.publish(event)
    await bus.publish(event)  # a retry by the caller: same id, same Nats-Msg-Id
    await bus.publish_many([event, signal(2)])
    assert numbers(await got.wait_for(2)) == [1, 2]
    assert numbers(await got.settle(0.2)) == [1, 2]
    assert (await stream_info(stream)).state.messages == 2
    assert bus.stats()["nats"]["duplicates"] == 2


async def test_publish_many_keeps_order_in_the_stream(bus: NatsBus, stream: NatsSettings) -> None:
    got = Collector()
    await bus.subscribe("trading.>", got, start_sequence=1)
    await bus.publish_many(
        signal(n, "trading.signal.generated" if n % 2 else "trading.note.added") for n in range(2000)
    )
    assert numbers(await got.wait_for(2000)) == list(range(2000))


# -- posting: pipelined publishes ---------------------------------------------------------------------


async def test_posts_return_before_the_ack_keep_their_order_and_flush_waits_for_all(
    bus: NatsBus, stream: NatsSettings
) -> None:
    got = Collector()
    await bus.subscribe("trading.>", got, start_sequence=1)
    for n in range(3000):
        await bus.post(signal(n))
    await bus.flush()
    assert bus.stats()["nats"]["in_flight"] == 0
    assert (await stream_info(stream)).state.messages == 3000, "flush returned: everything is stored"
    assert numbers(await got.wait_for(3000)) == list(range(3000)), "stored in the order posted"
    assert bus.stats()["nats"]["unstored"] == 0


async def test_a_post_the_store_never_confirms_is_reported_and_counted(nats_server: NatsServer) -> None:
    """The server freezes (SIGSTOP) after the posts were written: no ack comes; after the publish
    timeout the events are reported on system.bus.unstored and counted, never silently dropped."""
    import os
    import signal as signals

    settings = NatsSettings(servers=[nats_server.url], stream="frozen", publish_timeout_s=1.0,
                            publish_ack_timeout_s=0.3)  # fmt: skip
    reports = Collector()
    async with NatsBus(settings) as bus:

        async def keep(event: Event) -> None:
            await reports(event)

        await bus.subscribe("system.bus.unstored", keep)
        os.kill(nats_server.pid, signals.SIGSTOP)
        try:
            for n in range(5):
                await bus.post(signal(n))  # returns: written to the connection's buffer
            await asyncio.wait_for(bus.flush(), 10)
            assert bus.unstored == 5
        finally:
            os.kill(nats_server.pid, signals.SIGCONT)
        await eventually(lambda: sum(r.payload["count"] for r in reports.events) == 5, timeout=10)
        assert all(r.priority == "critical" and "not stored" in r.payload["reason"] for r in reports.events)
        ids = [i for r in reports.events for i in r.payload["eventIds"]]
        assert len(ids) == len(set(ids)) == 5, "each lost event named once"


# -- durable consumers ------------------------------------------------------------------------------


async def test_durable_subscriber_resumes_exactly_where_it_stopped(stream: NatsSettings) -> None:
    first_run = Collector()
    async with NatsBus(stream) as publisher:
        subscriber = NatsBus(stream)
        await subscriber.start()
        await subscriber.subscribe("trading.signal.>", first_run, durable="resume")
        sent = [signal(n) for n in range(1500)]

        async def publish_in_chunks() -> None:
            for start in range(0, 500, 50):
                await publisher.publish_many(sent[start : start + 50])

        publishing = asyncio.create_task(publish_in_chunks())
        await first_run.wait_for(100)
        await subscriber.close()  # mid-stream: the publisher is still going
        await publishing
        await publisher.publish_many(sent[500:])  # 1,000 more from another bus instance, nobody listening
    handled_before = numbers(first_run.events)
    assert 100 <= len(handled_before) < 500
    second_run = Collector()
    async with NatsBus(stream) as restarted:
        await restarted.subscribe("trading.signal.>", second_run, durable="resume")
        missed = [n for n in range(1500) if n not in set(handled_before)]
        assert numbers(await second_run.wait_for(len(missed), timeout=20)) == missed
        assert numbers(await second_run.settle(0.3)) == missed, "every missed event exactly once"


async def test_queue_group_members_share_one_durable(stream: NatsSettings) -> None:
    members = [Collector(f"member-{i}") for i in range(2)]
    async with NatsBus(stream) as host_a, NatsBus(stream) as host_b:
        await host_a.subscribe("trading.>", members[0], queue="workers", durable="workers")
        await host_b.subscribe("trading.>", members[1], queue="workers", durable="workers")
        await host_a.publish_many(signal(n) for n in range(300))
        await eventually(lambda: sum(len(m.events) for m in members) >= 300, what="300 group deliveries")
        await asyncio.gather(*(m.settle(0.2) for m in members))
        assert sorted(n for m in members for n in numbers(m.events)) == list(range(300))
        assert all(m.events for m in members), "both hosts take part"
        await host_b.close()  # one member leaves: the other gets everything
        await host_a.publish_many(signal(n) for n in range(300, 400))
        await eventually(
            lambda: sum(len(m.events) for m in members) >= 400, what="the remaining member takes over"
        )
    assert sorted(n for m in members for n in numbers(m.events)) == list(range(400))


async def test_durable_names_and_positions_are_checked(bus: NatsBus) -> None:
    async def handler(event: Event) -> None:
        pass

    with pytest.raises(ValueError, match=r"durable name 'a\.b' may only contain"):
        await bus.subscribe("trading.>", handler, durable="a.b")
    with pytest.raises(ValueError, match=r"needs a durable name"):
        await bus.subscribe("trading.>", handler, queue="q", start_sequence=1)
    with pytest.raises(ValueError, match=r"timezone-aware"):
        await bus.subscribe("trading.>", handler, start_time=datetime(2024, 1, 1))
    await bus.subscribe("trading.>", handler, durable="once")
    with pytest.raises(ValueError, match=r"already being consumed"):
        await bus.subscribe("trading.>", handler, durable="once")


# -- acks, naks, dead letters -----------------------------------------------------------------------


async def test_poisoned_messages_are_dead_lettered_and_the_consumer_goes_on(
    bus: NatsBus, stream: NatsSettings
) -> None:
    dead, good = Collector(), Collector()
    await bus.subscribe("system.deadletter.>", dead)
    await bus.subscribe("trading.signal.>", good, durable="poisoned")
    bad_schema = encode_event(signal(1)).replace(b'"confidence":0.5', b'"confidence":7')
    nc = await nats.connect(stream.servers)
    try:
        js = nc.jetstream()
        await js.publish("trading.signal.generated", b"\xff not json")
        await js.publish("trading.signal.generated", bad_schema)
    finally:
        await nc.close()
    await bus.publish_many([signal(2), signal(3)])
    assert numbers(await good.wait_for(2)) == [2, 3]
    letters = await dead.wait_for(2)
    assert [letter.topic for letter in letters] == ["system.deadletter.malformed"] * 2
    assert all(isinstance(letter.payload, DeadLetter) for letter in letters)
    # each is parked by a task of its own: in either order
    not_json, bad = sorted(letters, key=lambda letter: "payload.confidence" in letter.payload.error)
    assert not_json.payload.subject == "trading.signal.generated"
    assert not_json.payload.original.endswith(" not json")
    assert "payload.confidence" in bad.payload.error
    # counted once each letter's store ack came back, which may be after its delivery to `dead`
    await eventually(lambda: bus.malformed == 2, what="both malformed messages counted")
    for _ in range(100):  # the terms travel asynchronously; poll the consumer's state
        info = await consumer_info(stream, "poisoned")
        if info.num_ack_pending == 0:
            break
        await asyncio.sleep(0.02)
    assert info.num_ack_pending == 0 and info.num_redelivered == 0, "poison is terminated, not retried"


async def test_always_failing_handler_dead_letters_after_max_deliver(bus: NatsBus) -> None:
    dead, failures = Collector(), Collector()
    await bus.subscribe("system.deadletter.failed", dead)
    await bus.subscribe("system.handler.failed", failures)
    attempts: dict[int, int] = {}

    async def picky(event: Event) -> None:
        n = event.metadata["n"]
        attempts[n] = attempts.get(n, 0) + 1
        if n == 3 or (n == 5 and attempts[n] == 1):  # 3 always fails, 5 fails once
            raise RuntimeError(f"cannot handle {n}")

    await bus.subscribe("trading.signal.>", picky, durable="picky", name="picky-bot")
    sent = [signal(n) for n in range(10)]
    await bus.publish_many(sent)
    (letter,) = await dead.wait_for(1)
    await eventually(lambda: set(attempts) == set(range(10)) and attempts[5] == 2, what="all handled")
    assert attempts[3] == 3, "max_deliver = 3 deliveries, then parked"
    assert isinstance(letter.payload, DeadLetter)
    assert letter.payload.event_id == sent[3].id and letter.payload.deliveries == 3
    assert letter.payload.error == "RuntimeError: cannot handle 3"
    assert msgspec.json.decode(letter.payload.original)["id"] == sent[3].id
    assert all(attempts[n] == 1 for n in range(10) if n not in (3, 5)), "others flow meanwhile"
    assert len(await failures.wait_for(4)) == 4, "every failed delivery is reported"
    assert len(await dead.settle(0.3)) == 1


async def consumer_info(settings: NatsSettings, name: str) -> api.ConsumerInfo:
    nc = await nats.connect(settings.servers)
    try:
        info: api.ConsumerInfo = await nc.jsm().consumer_info(settings.stream, name)
        return info
    finally:
        await nc.close()


# -- replay ---------------------------------------------------------------------------------------


async def test_subscribe_from_a_sequence_or_a_time(bus: NatsBus, stream: NatsSettings) -> None:
    await bus.publish_many(signal(n) for n in range(5))
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)  # the stream's clock must move past ``middle``
    await bus.publish_many(signal(n) for n in range(5, 10))
    from_sequence, from_time, from_both = Collector(), Collector(), Collector()
    await bus.subscribe("trading.>", from_sequence, start_sequence=4)
    await bus.subscribe("trading.>", from_time, start_time=middle)
    await bus.subscribe("trading.>", from_both, start_sequence=9, durable="late-joiner")
    await bus.publish(signal(10))
    assert numbers(await from_sequence.wait_for(8)) == list(range(3, 11))
    assert numbers(await from_time.wait_for(6)) == list(range(5, 11))
    assert numbers(await from_both.wait_for(3)) == [8, 9, 10]


async def test_replay_yields_a_window_of_stored_events(bus: NatsBus, stream: NatsSettings) -> None:
    await bus.publish_many(signal(n) for n in range(5))
    await bus.publish(make_event("market.quote.updated", {"bid": 1}, source="LUM", metadata={"n": -1}))
    await asyncio.sleep(0.01)
    middle = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await bus.publish_many(signal(n) for n in range(5, 8))
    assert numbers([e async for e in replay(stream, "trading.>")]) == list(range(8))
    assert numbers([e async for e in replay(stream, "trading.>", since=middle)]) == [5, 6, 7]
    assert numbers([e async for e in replay(stream, ">", until=middle)]) == [0, 1, 2, 3, 4, -1]
    assert numbers([e async for e in replay(stream, "trading.>", start_sequence=7)]) == [5, 6, 7]
    assert [e async for e in replay(stream, "risk.>")] == []
    replayed = [e async for e in replay(stream, "market.>")]
    assert [e.topic for e in replayed] == ["market.quote.updated"]


# -- request / reply ------------------------------------------------------------------------------


async def test_request_reply_between_two_hosts(stream: NatsSettings) -> None:
    async with NatsBus(stream) as requester, NatsBus(stream) as responder:

        async def answer(request: Event) -> None:
            response = make_event("analytics.quote.answered", {"q": request.payload["q"]}, source="ORA")
            await responder.reply(request, response)

        await responder.subscribe("analytics.quote.requested", answer, durable="quotes")
        request = make_event("analytics.quote.requested", {"q": "BTC"}, source="GRD")
        reply = await requester.request(request, timeout=5)
        assert reply.payload == {"q": "BTC"} and reply.correlation_id == request.id
        with pytest.raises(NoRespondersError, match=r"risk\.limit\.requested"):
            await requester.request(make_event("risk.limit.requested", {}, source="GRD"), timeout=2)


async def test_a_raw_nats_responder_can_answer_through_reply_to(bus: NatsBus, stream: NatsSettings) -> None:
    """What a TypeScript service does: read ``metadata.replyTo``, publish a JSON event there."""
    nc = await nats.connect(stream.servers)
    try:

        async def typescript_like(msg: nats.aio.msg.Msg) -> None:
            request = json.loads(msg.data)
            response = make_event("analytics.quote.answered", {"ok": True}, source="TS")
            wire = json.loads(encode_event(response))
            wire["correlationId"] = request["correlationId"]
            await nc.publish(request["metadata"]["replyTo"], json.dumps(wire).encode())

        async def here(msg: nats.aio.msg.Msg) -> None:  # answers "is anybody there?" probes
            await msg.respond(b"")

        await nc.subscribe("analytics.quote.requested", cb=typescript_like)
        await nc.subscribe("_CIT.responders.analytics.quote.requested", cb=here)
        await sync_with_server(nc, timeout=5)
        request = make_event("analytics.quote.requested", {"q": "ETH"}, source="GRD")
        reply = await bus.request(request, timeout=5)
        assert reply.payload == {"ok": True} and reply.source == "TS"
    finally:
        await nc.close()


async def test_request_times_out_with_a_clear_error(bus: NatsBus) -> None:
    async def silent(event: Event) -> None:
        pass

    await bus.subscribe("analytics.quote.requested", silent, durable="silent")
    with pytest.raises(RequestTimeoutError, match=r"no reply within 0\.3s"):
        await bus.request(make_event("analytics.quote.requested", {}, source="GRD"), timeout=0.3)


# -- interoperability -----------------------------------------------------------------------------


async def test_typescript_services_see_camel_case_json_and_we_read_theirs(
    bus: NatsBus, stream: NatsSettings
) -> None:
    got = Collector()
    await bus.subscribe("trading.signal.generated", got)
    nc = await nats.connect(stream.servers)
    try:
        raw = await nc.subscribe("trading.signal.generated")
        await sync_with_server(nc, timeout=5)  # the server has our interest before the bus publishes
        sent = make_event(
            "trading.signal.generated",
            {**SIGNAL, "entryPrice": 50000.0, "stopLoss": 48000.0},
            source="GRD",
            correlation_id="corr-1",
        )
        await bus.publish(sent)
        wire = json.loads((await raw.next_msg(timeout=5)).data)
        assert wire["correlationId"] == "corr-1" and wire["payload"]["entryPrice"] == 50000.0
        assert wire["payload"]["stopLoss"] == 48000.0 and "entry_price" not in wire["payload"]
        assert {"id", "topic", "domain", "entity", "action", "timestamp", "source", "priority"} <= set(wire)
        assert wire["timestamp"] == sent.timestamp  # Unix milliseconds, as in BaseEvent
        from_typescript = {
            "id": "ts-1",
            "topic": "trading.signal.generated",
            "domain": "trading",
            "entity": "signal",
            "action": "generated",
            "timestamp": 1_700_000_000_000,
            "source": "TSB",
            "priority": "high",
            "payload": {"symbol": "ETHUSDT", "exchange": "kraken", "direction": "SHORT", "confidence": 0.9},
        }
        await nc.jetstream().publish("trading.signal.generated", json.dumps(from_typescript).encode())
    finally:
        await nc.close()
    received = (await got.wait_for(2))[1]
    assert received.id == "ts-1" and isinstance(received.payload, Signal)
    assert received.payload.direction == "SHORT" and received.priority == "high"


async def test_a_subscription_is_live_for_other_connections_when_subscribe_returns(
    shared_nats_server: NatsServer,
) -> None:
    """No "not there yet" window: with nats-py's ``flush()`` alone, 3 runs in 4 of this test failed.

    Each round subscribes to a subject nobody used before and at once sends it a request from
    another connection; the server answers "no responders" if our interest had not reached it.
    """
    settings = NatsSettings(servers=[shared_nats_server.url], jetstream=False)
    async with NatsBus(settings) as bus:
        nc = await nats.connect(settings.servers)
        try:
            for round_ in range(1000):
                topic = f"analytics.probe{round_}.requested"
                subscription = await bus.subscribe(topic, Collector())
                await nc.request(f"_CIT.responders.{topic}", b"", timeout=5)  # NoRespondersError if not
                await subscription.unsubscribe()
        finally:
            await nc.close()


# -- modes and factory --------------------------------------------------------------------------


async def test_core_mode_stores_nothing_and_refuses_durables(shared_nats_server: NatsServer) -> None:
    settings = NatsSettings(servers=[shared_nats_server.url], jetstream=False, stream="never-created")
    bus = create_bus({"type": "nats", "nats": settings.model_dump()})
    assert isinstance(bus, NatsBus)
    async with bus:
        assert not bus.capabilities.persistent and bus.capabilities.cross_process
        got = Collector()
        await bus.subscribe("trading.>", got)
        await bus.publish_many(signal(n) for n in range(100))
        assert numbers(await got.wait_for(100)) == list(range(100))
        with pytest.raises(ValueError, match="jetstream"):
            await bus.subscribe("trading.>", got, durable="nope")
    nc = await nats.connect(settings.servers)
    try:
        names = [info.config.name for info in await nc.jsm().streams_info()]
    finally:
        await nc.close()
    assert "never-created" not in names


async def test_starting_without_a_reachable_server_fails_clearly() -> None:
    (port,) = free_ports(1)
    settings = NatsSettings(
        servers=[f"nats://127.0.0.1:{port}"], connect_timeout_s=0.2, reconnect_wait_s=0.05
    )
    async with asyncio.timeout(5):
        with pytest.raises(BusError, match=rf"cannot connect to NATS at nats://127\.0\.0\.1:{port}"):
            await NatsBus(settings).start()


async def test_publish_fails_clearly_when_the_server_is_gone(nats_server: NatsServer) -> None:
    settings = NatsSettings(servers=[nats_server.url], publish_timeout_s=0.5, reconnect_wait_s=0.05)
    async with NatsBus(settings) as bus:
        await bus.publish(signal(1))
        nats_server.stop()
        with pytest.raises(PublishError, match=r"not stored|connection"):
            await bus.publish(signal(2))
        assert not bus.closed, "the bus survives and would go on after a reconnection"


async def test_closing_while_the_server_is_gone_drops_the_buffer_loudly(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    settings = NatsSettings(servers=[nats_server.url], jetstream=False, reconnect_wait_s=0.05)
    bus = NatsBus(settings)
    await bus.start()
    nats_server.stop()
    await eventually(lambda: not bus.nc.is_connected, what="the client notices the server is gone")
    await bus.nc.publish("_INBOX.somebody", b"{}")  # what a reply or an ack leaves in nats-py's buffer
    await bus.close()  # must not raise, must not hang
    assert bus.nc.is_closed and bus.closed
    dropped = [r for r in caplog.records if r.getMessage().startswith("closing while disconnected")]
    assert dropped and dropped[0].__dict__["bytes"] > 0


async def test_a_topic_outside_the_stream_is_refused_at_once(stream: NatsSettings) -> None:
    narrow = stream.model_copy(update={"subjects": ["trading.>"]})
    async with NatsBus(narrow) as bus:
        with pytest.raises(PublishError, match=r"topic 'market\.quote\.updated' is not stored by stream"):
            await bus.publish(make_event("market.quote.updated", {}, source="LUM"))
        await bus.publish(signal(1))


def quick_reconnects(server: NatsServer, **settings: Any) -> NatsSettings:
    """Settings for ``server`` that retry a lost connection every 50 ms (tests of outages)."""
    return NatsSettings(
        servers=[server.url],
        reconnect_wait_s=0.05,
        reconnect_wait_max_s=0.05,
        connect_timeout_s=0.2,
        **settings,
    )


async def test_giving_up_on_the_connection_is_reported_and_publishes_fail_fast(
    nats_server: NatsServer,
) -> None:
    settings = quick_reconnects(nats_server, max_reconnect_attempts=1, publish_timeout_s=30)
    async with NatsBus(settings) as bus:
        status = Collector()
        await bus.subscribe("system.connection.>", status)
        await asyncio.to_thread(nats_server.stop)
        await eventually(
            lambda: any(e.payload.state == "closed" for e in status.events), timeout=10, what="closed report"
        )
        closed = next(e for e in status.events if e.payload.state == "closed")
        assert closed.priority == "critical" and bus.stats()["nats"]["connection"] == "closed"
        async with asyncio.timeout(2):  # not after publish_timeout_s: the connection is gone for good
            with pytest.raises(PublishError, match="closed"):
                await bus.publish(signal(1))


# -- faults and clusters ---------------------------------------------------------------------------


async def test_kill_9_during_a_publish_stream_loses_no_acknowledged_event(nats_server: NatsServer) -> None:
    settings = NatsSettings(
        servers=[nats_server.url],
        ack_wait_s=2.0,
        reconnect_wait_s=0.05,
        reconnect_wait_max_s=0.2,
        publish_timeout_s=15.0,
    )
    stored: list[str] = []
    refused: list[PublishError] = []
    received: set[str] = set()
    status = Collector()

    async def consume(event: Event) -> None:
        received.add(event.id)

    async with NatsBus(settings) as publisher, NatsBus(settings) as subscriber:
        await subscriber.subscribe("trading.>", consume, durable="survivor")
        await subscriber.subscribe("system.connection.>", status)

        async def steady() -> None:  # one at a time
            for n in range(3000):
                event = signal(n)
                try:
                    await publisher.publish(event)
                    stored.append(event.id)
                except PublishError as exc:
                    refused.append(exc)

        async def batches() -> None:  # and pipelined batches, concurrently
            for start in range(10_000, 30_000, 500):
                chunk = [signal(n) for n in range(start, start + 500)]
                try:
                    await publisher.publish_many(chunk)
                    stored.extend(event.id for event in chunk)
                except PublishError as exc:
                    refused.append(exc)

        publishing = asyncio.gather(steady(), batches())
        await eventually(lambda: len(stored) >= 2000, timeout=20, what="events stored before the crash")
        await asyncio.to_thread(nats_server.kill)
        await asyncio.sleep(0.3)  # an outage, with publishes piling up
        await asyncio.to_thread(nats_server.restart)
        await asyncio.wait_for(publishing, timeout=60)
        assert refused == [], "the outage is shorter than publish_timeout_s: every publish succeeds"
        assert len(stored) == 3000 + 20_000
        await eventually(lambda: received >= set(stored), timeout=30, what="every stored event delivered")
        states = await status.wait_for(2, timeout=10)
        assert {e.payload.state for e in states} >= {"disconnected", "reconnected"}
        assert all(isinstance(e.payload, ConnectionStatus) for e in states)
        assert not publisher.closed and not subscriber.closed
        await publisher.publish(signal(9999))  # and the bus goes on


@pytest.mark.parametrize("how", ["restarted", "deleted"])
async def test_a_stream_gone_from_the_server_is_reported_and_read_from_its_start_once_made_again(
    nats_server: NatsServer, how: str
) -> None:
    """The stream gone: memory storage does not outlive a server restart (found after the
    reconnection), or an operator deleted it while the host stayed connected (found by the consumer
    check). The bus says so, once, and is not fit to run (its connection problems, the host's
    readiness) instead of a traceback per consumer; once the stream is there again (made by an
    operator, here another bus starting), the consumers are made again and read it from its start:
    its sequence numbers began anew, so going on "after the last event seen" would skip its first."""
    settings = NatsSettings(
        servers=[nats_server.url],
        storage="memory",
        reconnect_wait_s=0.05,
        reconnect_wait_max_s=0.2,
        publish_timeout_s=2.0,
        consumer_check_s=0.2,
    )
    async with NatsBus(settings) as bus:
        status, got = Collector(), Collector()
        await bus.subscribe("system.connection.>", status)
        await bus.subscribe("trading.signal.>", got, stored=True)
        for n in range(5):
            await bus.publish(signal(n))
        await eventually(lambda: len(got.events) == 5, timeout=10, what="the first five events")
        if how == "restarted":
            await asyncio.to_thread(nats_server.kill)
            await asyncio.to_thread(nats_server.restart)
        else:
            await delete_stream(nats_server.url, settings.stream)
        await eventually(lambda: bus.connection_problems() != [], timeout=20, what="the stream reported gone")
        [problem] = bus.connection_problems()
        assert problem.startswith(
            f"JetStream stream {settings.stream!r} is gone from the server (storage 'memory'"
        )
        assert bus.stats()["nats"]["stream_missing"] is True
        await asyncio.sleep(0.5)  # looked for again and again meanwhile: still one report
        [missing] = [e for e in status.events if e.topic == "system.connection.stream_missing"]
        assert missing.priority == "critical" and missing.payload.detail == problem
        async with NatsBus(settings):  # an operator makes it again (a host starting does)
            pass
        await eventually(lambda: bus.connection_problems() == [], timeout=10, what="the stream found again")
        await bus.publish(signal(5))  # stored first in the new stream
        await eventually(lambda: len(got.events) == 6, timeout=10, what="the first event of the new stream")
        assert numbers(got.events) == [0, 1, 2, 3, 4, 5] and bus.stats()["nats"]["stream_missing"] is False


async def test_a_consumer_deleted_while_connected_is_reported_and_made_again(nats_server: NatsServer) -> None:
    """An operator deletes the host's consumers while the connection stays up (no reconnection makes
    them again): within ``consumer_check_s`` each is reported and made again after the last event its
    feed saw, so nothing published meanwhile is lost and nothing is delivered twice."""
    settings = NatsSettings(servers=[nats_server.url], consumer_check_s=0.2, durable_start="all")
    async with NatsBus(settings) as bus:
        status, inbox, durable = Collector(), Collector(), Collector()
        await bus.subscribe("system.connection.>", status)
        await bus.subscribe("trading.signal.>", inbox, stored=True)  # the host inbox's consumer
        await bus.subscribe("trading.signal.>", durable, durable="keeper")
        for n in range(3):
            await bus.publish(signal(n))
        await eventually(lambda: len(inbox.events) == len(durable.events) == 3, timeout=10, what="3 events")
        nc = await nats.connect(nats_server.url)
        try:
            jsm = nc.jsm()
            consumers = [info.name for info in await jsm.consumers_info(settings.stream)]
            assert len(consumers) == 2
            for name in consumers:
                await jsm.delete_consumer(settings.stream, name)
            for n in range(3, 6):  # stored while nobody reads them
                await bus.publish(signal(n))
            await eventually(
                lambda: bus.stats()["nats"]["consumers_lost"] == 2, timeout=10, what="both made again"
            )
            assert len(await jsm.consumers_info(settings.stream)) == 2
        finally:
            await nc.close()
        await eventually(lambda: len(inbox.events) == len(durable.events) == 6, timeout=10, what="6 events")
        assert numbers(inbox.events) == numbers(durable.events) == [0, 1, 2, 3, 4, 5]
        reports = [e for e in status.events if e.topic == "system.connection.consumer_missing"]
        assert len(reports) == 2 and all(e.priority == "critical" for e in reports)
        assert {r.payload.detail.split("'")[1] for r in reports} == set(consumers)
        assert all(r.payload.detail.endswith("after stream sequence 3") for r in reports)


@pytest.mark.slow
async def test_three_node_cluster_with_replicas_survives_losing_the_stream_leader(
    nats_cluster: NatsCluster,
) -> None:
    settings = NatsSettings(
        servers=nats_cluster.urls, replicas=3, reconnect_wait_s=0.05, publish_timeout_s=30
    )
    got = Collector()
    async with NatsBus(settings) as bus:
        assert bus.stream_info is not None and bus.stream_info.config.num_replicas == 3
        await bus.subscribe("trading.>", got, durable="replicated")
        await bus.publish_many(signal(n) for n in range(200))
        await got.wait_for(200, timeout=20)
        nc = await nats.connect(settings.servers)
        try:
            cluster = (await nc.jsm().stream_info(settings.stream)).cluster
        finally:
            await nc.close()
        assert cluster is not None and len(cluster.replicas or []) == 2
        # The stream's leader, unless we are connected to it (then any other node): either way the
        # stream must go on with 2 of 3 replicas, through a leader election if it lost its leader.
        leader = next(server for server in nats_cluster if server.server_name == cluster.leader)
        victim = leader if leader.url != _connected(bus) else nats_cluster.servers[0]
        if victim.url == _connected(bus):
            victim = nats_cluster.servers[1]
        await asyncio.to_thread(victim.kill)
        await bus.publish_many(signal(n) for n in range(200, 400))
        await got.wait_for(400, timeout=30)
    assert sorted(set(numbers(got.events))) == list(range(400))


def _connected(bus: NatsBus) -> str | None:
    return bus.stats()["nats"]["server"]


async def test_the_host_inbox_routes_each_topic_to_its_current_members(bus: NatsBus) -> None:
    """Stored subscriptions share one consumer (the host inbox), which remembers each topic's members:
    a member that joins later gets only what is published after it joined, one that leaves gets
    nothing more, and a member's new patterns route the topics they match from then on."""
    first, late, moved = Collector("first"), Collector("late"), Collector("moved")
    await bus.subscribe("trading.signal.>", first, stored=True)
    moving = await bus.subscribe("trading.order.>", moved, stored=True)
    await bus.publish(signal(1))  # routes trading.signal.generated before the late member joins
    await first.wait_for(1)
    joined = await bus.subscribe("trading.signal.>", late, stored=True)
    await bus.publish(signal(2))
    await first.wait_for(2)
    await late.wait_for(1)
    assert numbers(late.events) == [2], "a late member gets what was published after it joined"

    await bus.repattern(moving, "trading.signal.>")
    await bus.publish(signal(3))
    await moved.wait_for(1)
    assert numbers(moved.events) == [3], "the new pattern routes the topic from then on"

    await joined.unsubscribe()
    await bus.publish(signal(4))
    await first.wait_for(4)
    await moved.wait_for(2)
    await late.settle()
    assert numbers(first.events) == [1, 2, 3, 4]
    assert numbers(late.events) == [2, 3], "a member that left gets nothing more"


async def test_the_host_inbox_hands_back_the_object_this_process_posted(
    bus: NatsBus, stream: NatsSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An event this process posts comes back from the store as the object it posted (not decoded
    again: ``HostInbox.expect_echo``); one published from another connection is decoded; a topic no
    member takes is not kept, and echoes that never come are forgotten oldest first."""
    got = Collector()
    await bus.subscribe("trading.signal.generated", got, stored=True)
    mine = signal(1)
    await bus.post(mine)
    await got.wait_for(1)
    assert got.events[0] is mine
    theirs = signal(2)
    nc = await nats.connect(stream.servers)
    try:
        await nc.jetstream().publish(theirs.topic, encode_event(theirs))
    finally:
        await nc.close()
    await got.wait_for(2)
    assert got.events[1] == theirs and got.events[1] is not theirs
    inbox = bus._inbox
    assert inbox is not None and not inbox.echoes, "every echo came back"

    await bus.post(signal(3, "trading.signal.expired"))  # no member takes it: nothing to wait for
    await bus.flush()
    assert not inbox.echoes

    monkeypatch.setattr(feeds, "ECHOES_KEPT", 2)
    kept = [signal(n) for n in (4, 5, 6)]
    for event in kept:
        inbox.expect_echo(event, encode_event(event))
    assert list(inbox.echoes.values()) == kept[1:]


async def test_a_store_without_storage_left_is_reported_and_the_bus_unfit_until_it_stores_again(
    tmp_path: Path,
) -> None:
    """The server's JetStream storage limit reached (``max_file_store``): every publish is answered
    "insufficient resources" (503, like an election) and was resent at info level until it gave up,
    the host ready all along; the JetStream demo crawled at a few events a minute without saying why.
    Now the first refusal is one error line, ``system.connection.store_refused``, a connection problem
    (the host is not ready) and ``stats()["nats"]["store_refused"]``; the first event stored once
    space is freed ends it (``system.connection.store_ok``)."""
    limit = tmp_path / "limit.conf"
    limit.write_text("jetstream { max_file_store: 256KB }\n")
    with NatsServer(config_file=limit) as server:
        settings = NatsSettings(servers=[server.url], publish_timeout_s=1.0)
        async with NatsBus(settings) as bus:
            status = Collector()
            await bus.subscribe("system.connection.>", status)
            padding = "x" * 4000
            refused: PublishError | None = None
            for _ in range(200):  # 200 x 4 KB: far past 256 KB
                try:
                    await bus.publish(
                        make_event("trading.signal.generated", {**SIGNAL, "reason": padding}, source="GRD")
                    )
                except PublishError as exc:
                    refused = exc
                    break
            assert refused is not None and "insufficient resources" in str(refused)
            [problem] = bus.connection_problems()
            assert (
                problem
                == "JetStream refuses to store this host's events: insufficient resources (err_code 10023)"
            )
            assert bus.stats()["nats"]["store_refused"] is True
            await status.wait_for(1, timeout=5)
            [report] = status.events
            assert report.topic == "system.connection.store_refused" and report.payload.detail in problem
            nc = await nats.connect(server.url)
            try:
                await nc.jsm().purge_stream(settings.stream)  # an operator frees space
            finally:
                await nc.close()
            await bus.publish(signal(1))
            assert bus.connection_problems() == [] and bus.stats()["nats"]["store_refused"] is False
            await status.wait_for(2, timeout=5)
            assert status.events[1].topic == "system.connection.store_ok"


async def test_a_server_that_stops_answering_is_found_dead_by_its_pings(nats_server: NatsServer) -> None:
    """A server that stops answering without closing the connection (frozen here with SIGSTOP: the
    kernel keeps the socket open; a dead link or a NAT that forgot the connection look the same) went
    unnoticed for nats-py's 2 x 120 s of pings: the bus "connected", every publish unstored. With
    ``ping_interval_s`` and ``max_outstanding_pings`` it is taken as dead within a few pings (reported
    on ``system.connection.disconnected``), and reconnected once the server answers again."""
    settings = quick_reconnects(nats_server, ping_interval_s=0.2, max_outstanding_pings=1)
    async with NatsBus(settings) as bus:
        status = Collector()
        await bus.subscribe("system.connection.>", status)
        os.kill(nats_server.pid, signals.SIGSTOP)
        try:
            await eventually(
                lambda: bus.connection_state != "connected", timeout=10, what="the frozen server found dead"
            )
        finally:
            os.kill(nats_server.pid, signals.SIGCONT)
        await eventually(lambda: bus.connection_state == "connected", timeout=20, what="reconnected")
        await status.wait_for(2, timeout=10)
        assert [e.payload.state for e in status.events[:2]] == ["disconnected", "reconnected"]
        await bus.publish(signal(1))  # and the bus goes on
