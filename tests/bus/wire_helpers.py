"""Helpers for the wire tests: raw NATS publishing (bytes a nats-py client would refuse to send) and the
poison messages every subscription kind must dead-letter and terminate.

Raw, because the point is what a foreign or hostile client can put on the wire: nats-py encodes a
subject with ``str.encode()`` and cannot send one that is not UTF-8, which nats-server accepts.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlparse

import nats
from nats.js import api

from citarion_host.bus import NatsSettings
from citarion_host.events import Event, encode_event, make_event

SIGNAL = {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.5}
TOPIC = "trading.signal.generated"
_counter = itertools.count(1)


def signal(n: int, **metadata: Any) -> Event:
    return make_event(TOPIC, SIGNAL, source="GRD", metadata={"n": n, **metadata})


def numbers(events: list[Event]) -> list[int]:
    return [event.metadata["n"] for event in events]


def nested(depth: int) -> bytes:
    """A valid signal whose metadata nests ``depth`` lists deep (each message distinct)."""
    body = encode_event(signal(-next(_counter)))
    return body.replace(b'"metadata":{', b'"metadata":{"deep":' + b"[" * depth + b"]" * depth + b",", 1)


def poison(max_event_bytes: int) -> list[tuple[bytes, bytes, str]]:
    """One message of every malformed kind: (subject, body, kind)."""
    good = encode_event(signal(-next(_counter)))
    return [
        (TOPIC.encode(), nested(1_000), "too_deep"),
        (TOPIC.encode(), nested(70), "too_deep"),
        (b"trading.signal.\xff\xfe", encode_event(signal(-next(_counter))), "subject"),
        (TOPIC.encode(), good[:-1] + b' ,"pad":"' + b"x" * max_event_bytes + b'"}', "oversized"),
        (TOPIC.encode(), good.replace(b'"confidence":0.5', b'"confidence":7'), "schema"),
        (TOPIC.encode(), b"\xff not json " + next_token(), "not_json"),
    ]


def next_token() -> bytes:
    return str(next(_counter)).encode()


async def raw_publish(url: str, messages: Iterable[tuple[bytes, bytes]]) -> None:
    """``PUB`` each (subject, body) on a plain TCP connection, then wait for the server's ``PONG``
    (every message processed: stored, for a subject the stream captures)."""
    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    try:
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"pedantic":false,"protocol":1,"headers":true}\r\n')
        for subject, body in messages:
            writer.write(b"PUB %b %d\r\n%b\r\n" % (subject, len(body), body))
        writer.write(b"PING\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line == b"PONG\r\n", f"the server refused a raw publish: {line!r}"
    finally:
        writer.close()


async def consumer_state(settings: NatsSettings, consumer: str) -> api.ConsumerInfo:
    nc = await nats.connect(settings.servers)
    try:
        info: api.ConsumerInfo = await nc.jsm().consumer_info(settings.stream, consumer)
        return info
    finally:
        await nc.close()


async def settled(settings: NatsSettings, consumer: str, timeout: float = 10.0) -> api.ConsumerInfo:
    """The consumer's state once nothing is left unacknowledged (acks and terms travel asynchronously)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        info = await consumer_state(settings, consumer)
        if info.num_ack_pending == 0 and not info.num_pending:
            return info
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"consumer {consumer} never settled: {info}")
        await asyncio.sleep(0.02)
