"""Wire fuzz on JetStream: random and mutated messages published raw, behind them valid events.

For plain (core), stored (the host inbox's consumer) and durable subscriptions, on both wire paths
(``lean_wire`` true and false): every message the decoder refuses is dead-lettered (or was already:
dead letters are deduplicated by message) and, on a stream-backed subscription, terminated; every
valid one is delivered; nothing stalls (a sentinel published after each batch arrives, the consumer is
left with nothing pending or unacknowledged and nothing redelivered); the connection stays up.

Examples per case: ``CITARION_FUZZ_EXAMPLES`` (default 60, which keeps the module well under 30 s on a
loaded CI machine; run with a few hundred to dig deeper).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from citarion_host.bus import NatsSettings
from citarion_host.bus.base import printable_subject
from citarion_host.bus.nats import NatsBus
from citarion_host.events import InvalidEventError, catalog, encode_event
from citarion_host.natsserver import NatsServer

from .conftest import Collector, delete_stream, eventually
from .test_wire_poison import consumer_of
from .wire_helpers import TOPIC, nested, raw_publish, settled, signal

EXAMPLES = int(os.environ.get("CITARION_FUZZ_EXAMPLES", "60"))
MAX_EVENT_BYTES = 16 * 1024
_streams = itertools.count(1)
_ns = itertools.count(1_000_000)

#: Subject bytes a NATS protocol line can carry in a token (no whitespace, control bytes, dots or
#: wildcards), including every byte that is not UTF-8 on its own.
_TOKEN_BYTES = [b for b in range(0x21, 0x100) if b not in b".*>\x7f"]


def _valid() -> st.SearchStrategy[bytes]:
    return st.builds(lambda n: encode_event(signal(n)), st.integers(0, 10**9))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    body = bytearray(draw(_valid()))
    how = draw(st.sampled_from(["flip", "insert", "truncate", "nest", "pad", "field"]))
    at = draw(st.integers(0, len(body) - 1))
    if how == "flip":
        body[at] = draw(st.integers(0, 255))
    elif how == "insert":
        body[at:at] = draw(st.binary(min_size=1, max_size=8))
    elif how == "truncate":
        del body[at:]
    elif how == "nest":
        return nested(draw(st.integers(55, 1_500)))
    elif how == "pad":
        return bytes(body[:-1]) + b',"pad":"' + b"x" * draw(st.integers(0, 2 * MAX_EVENT_BYTES)) + b'"}'
    else:
        value = draw(st.sampled_from([b"7", b'"x"', b"null", b"[]", b"{}", b"-1e999"]))
        return bytes(body).replace(b'"confidence":0.5', b'"confidence":' + value)
    return bytes(body)


def _subjects() -> st.SearchStrategy[bytes]:
    token = st.lists(st.sampled_from(_TOKEN_BYTES), min_size=1, max_size=6).map(bytes)
    return st.one_of(
        st.just(TOPIC.encode()),
        st.just(TOPIC.encode()),
        token.map(lambda t: b"trading.signal." + t),
        st.just(b"trading.signal.other"),
    )


MESSAGES = st.tuples(_subjects(), st.one_of(_valid(), _mutated(), st.binary(max_size=300)))


def refused(subject: bytes, body: bytes) -> bool:
    """What the bus must make of the message: True for a malformed one. Anything but an
    ``InvalidEventError`` out of the decoder fails the test (it would be a crash on the wire)."""
    if len(body) > MAX_EVENT_BYTES:
        return True
    try:
        catalog.decode(body, subject.decode("utf-8", "surrogateescape"))
    except InvalidEventError:
        return True
    return False


def dead_key(subject: bytes, body: bytes) -> str:
    """The key a malformed message is dead-lettered under (``feeds._malformed``)."""
    shown = printable_subject(subject.decode("utf-8", "surrogateescape")) or ""
    return "malformed-" + hashlib.blake2b(shown.encode() + b"\0" + body, digest_size=12).hexdigest()


class Harness:
    """One bus and subscription for every example of a case."""

    def __init__(self, bus: NatsBus, settings: NatsSettings, subscription: Any, good: Collector) -> None:
        self.bus = bus
        self.settings = settings
        self.subscription = subscription
        self.good = good
        self.examples = 0
        self.malformed = 0

    @classmethod
    async def start(cls, settings: NatsSettings, kind: str) -> Harness:
        bus = NatsBus(settings, max_event_bytes=MAX_EVENT_BYTES)
        await bus.start()
        good = Collector()
        options: dict[str, Any] = {"plain": {}, "stored": {"stored": True}, "durable": {"durable": "fuzz"}}[
            kind
        ]
        subscription = await bus.subscribe("trading.signal.>", good, **options)
        return cls(bus, settings, subscription, good)

    async def check(self, batch: list[tuple[bytes, bytes]]) -> None:
        bus = self.bus
        self.examples += 1
        expected_bad = [message for message in batch if refused(*message)]
        valid = len(batch) - len(expected_bad)
        before = len(self.good.events)
        await raw_publish(self.settings.servers[0], batch)
        sentinel = signal(next(_ns))
        await bus.publish(sentinel)
        await self.good.wait_for(before + valid + 1, timeout=15)  # a stall times out here
        arrived = self.good.events[before:]
        assert arrived[-1].id == sentinel.id, "every valid event, then the sentinel, nothing else"
        assert len(arrived) == valid + 1
        keys = {dead_key(*message) for message in expected_bad}
        await eventually(lambda: keys <= bus._dead_keys.keys(), timeout=15, what="every poison dead-lettered")
        self.malformed += len(expected_bad)
        consumer = consumer_of(bus, self.subscription)
        if consumer is not None:
            info = await settled(self.settings, consumer, timeout=15)
            assert info.num_redelivered == 0, "poison terminated, valid events acked: nothing comes back"
        assert bus.nc.is_connected and bus.connection_state == "connected"


@pytest.mark.parametrize("kind", ["plain", "stored", "durable"])
@pytest.mark.parametrize("lean", [True, False], ids=["lean", "public"])
def test_wire_fuzz(shared_nats_server: NatsServer, lean: bool, kind: str) -> None:
    settings = NatsSettings(
        servers=[shared_nats_server.url],
        stream=f"fuzz-{next(_streams)}",
        lean_wire=lean,
        nak_backoff_s=[0.01],
        max_deliver=3,
        ack_wait_s=5.0,
    )
    loop = asyncio.new_event_loop()
    try:
        harness = loop.run_until_complete(Harness.start(settings, kind))

        @hsettings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(batch=st.lists(MESSAGES, min_size=1, max_size=6))
        def run(batch: list[tuple[bytes, bytes]]) -> None:
            loop.run_until_complete(harness.check(batch))

        run()
        stats = harness.bus.stats()
        print(
            f"wire fuzz {kind}/{'lean' if lean else 'public'}: {harness.examples} batches, "
            f"{len(harness.good.events)} events delivered, {harness.malformed} malformed sent, "
            f"dead-lettered by kind {stats['malformed_kinds']}"
        )
        loop.run_until_complete(harness.bus.close())
    finally:
        loop.run_until_complete(delete_stream(shared_nats_server.url, settings.stream))
        loop.close()
