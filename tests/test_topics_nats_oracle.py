"""Differential tests: ``topics.matches`` / ``PatternIndex.match`` against a real nats-server.

The server is the oracle: each distinct pattern is subscribed once, each distinct subject published
once (payload = subject), and the whole cross product (pattern x subject) is compared, without sleeps.

Completeness uses a barrier, not ``nc.flush()``: after the data, a message on ``SENTINEL`` is published
on the same connection and awaited on its own subscription. The server handles one connection's
commands in order and writes its MSGs in order, and the client parses them in order, so when the
sentinel arrives every earlier delivery is already queued. (``flush()`` is NOT enough with nats-py
2.16: it writes its PING straight to the socket, ahead of PUBs still buffered for the flusher task,
so the PONG can come back before the server has even seen them.)
"""

from __future__ import annotations

import asyncio
import random

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.aio.subscription import Subscription

from citarion_host.natsserver import NatsServer
from citarion_host.topics import PatternIndex, TopicError, matches, split_pattern, split_topic

SEED = 20_260_601
ALPHABET = ("a", "b", "c")
WEIGHTS = (6, 3, 1)
N_SUBJECTS = 300
N_PATTERNS = 400


def _subject(rng: random.Random) -> str:
    return ".".join(rng.choices(ALPHABET, WEIGHTS, k=rng.randint(1, 6)))


def _pattern(rng: random.Random, subjects: list[str]) -> str:
    """Half derived from a subject (so long patterns match too), half fully random."""
    if rng.random() < 0.5:
        tokens = [t if rng.random() > 0.5 else "*" for t in rng.choice(subjects).split(".")]
        if rng.random() < 0.5:
            tokens = [*tokens[: rng.randint(0, len(tokens) - 1)], ">"]
        return ".".join(tokens)
    length = rng.randint(1, 6)
    tokens = rng.choices((*ALPHABET, "*"), (5, 3, 1, 8), k=length)
    if rng.random() < 0.5:
        tokens[-1] = ">"
    return ".".join(tokens)


def _dataset() -> tuple[list[str], list[str]]:
    rng = random.Random(SEED)
    subjects: dict[str, None] = {}
    while len(subjects) < N_SUBJECTS:
        subjects[_subject(rng)] = None
    subject_list = list(subjects)
    patterns: dict[str, None] = {}
    while len(patterns) < N_PATTERNS:
        patterns[_pattern(rng, subject_list)] = None
    return list(patterns), subject_list


SENTINEL = "sync"  # not spelled over ALPHABET, so no generated subject equals it


async def _drain(sub: Subscription) -> list[str]:
    subjects = []
    while sub.pending_msgs:
        msg = await sub.next_msg(timeout=5)
        assert msg.data == msg.subject.encode() or msg.subject == SENTINEL
        subjects.append(msg.subject)
    return subjects


async def _barrier(nc: NATS, barrier: Subscription) -> None:
    """Return once the server has handled, and we have received, everything published before."""
    await nc.publish(SENTINEL, b"")
    await barrier.next_msg(timeout=10)


async def _server_deliveries(url: str, patterns: list[str], subjects: list[str]) -> dict[str, list[str]]:
    """pattern -> subjects the server delivered to a subscription on it (in arrival order)."""
    nc = await nats.connect(url, allow_reconnect=False)
    try:
        subs = {pattern: await nc.subscribe(pattern) for pattern in patterns}
        barrier = await nc.subscribe(SENTINEL)
        await _barrier(nc, barrier)  # every SUB is registered before the first PUB
        for sub in subs.values():
            await _drain(sub)  # '*' and '>' got the sentinel
        for subject in subjects:
            await nc.publish(subject, subject.encode())
        await _barrier(nc, barrier)
        received = {pattern: await _drain(sub) for pattern, sub in subs.items()}
        await _barrier(nc, barrier)
        late = {pattern: got for pattern, sub in subs.items() if set(got := await _drain(sub)) - {SENTINEL}}
        assert not late, f"deliveries after the barrier: {late}"
        return {pattern: [s for s in got if s != SENTINEL] for pattern, got in received.items()}
    finally:
        await nc.close()


async def test_matches_agrees_with_nats_server(nats_server: NatsServer) -> None:
    patterns, subjects = _dataset()
    received = await _server_deliveries(nats_server.url, patterns, subjects)

    duplicates = {p: got for p, got in received.items() if len(got) != len(set(got))}
    assert not duplicates, f"server delivered a subject twice to one subscription: {duplicates}"
    delivered = {pattern: set(got) for pattern, got in received.items()}
    assert set().union(*delivered.values()) <= set(subjects)

    pairs = [(p, s) for p in patterns for s in subjects]
    disagreements = [
        (p, s, f"matches={matches(p, s)}", f"server={s in delivered[p]}")
        for p, s in pairs
        if matches(p, s) is not (s in delivered[p])
    ]
    assert not disagreements, f"{len(disagreements)} disagreements, first 50:\n" + "\n".join(
        map(str, disagreements[:50])
    )

    # The data set must exercise both outcomes in bulk, and long and wildcard patterns on both sides.
    matching = [(p, s) for p, s in pairs if s in delivered[p]]
    missing = [(p, s) for p, s in pairs if s not in delivered[p]]
    assert len(matching) >= 5_000 and len(missing) >= 5_000, (len(matching), len(missing))
    assert sum(len(p.split(".")) >= 5 for p, _ in matching) >= 500
    assert sum(p.endswith(">") for p, _ in matching) >= 500
    assert sum("*" in p.split(".") for p, _ in matching) >= 500
    assert sum(p.endswith(">") for p, _ in missing) >= 500
    assert sum(len(p.split(".")) == len(s.split(".")) and ">" not in p for p, s in missing) >= 500

    index: PatternIndex[str] = PatternIndex(cache_limit=64)
    for pattern in patterns:
        index.add(pattern, pattern)
    for _ in range(2):  # second pass: partly cached
        for subject in subjects:
            expected = tuple(p for p in patterns if subject in delivered[p])
            assert index.match(subject) == expected, subject


async def _raw_session(port: int, commands: list[str]) -> tuple[list[tuple[int, str]], list[str]]:
    """Speak the raw protocol (no client-side subject checks); return (MSG (sid, subject)s, -ERR lines)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await reader.readline()  # INFO
        lines = ['CONNECT {"verbose":false,"pedantic":false}', *commands, "PING", ""]
        writer.write("\r\n".join(lines).encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.readuntil(b"PONG\r\n"), timeout=10)
    finally:
        writer.close()
        await writer.wait_closed()
    msgs: list[tuple[int, str]] = []
    errors: list[str] = []
    replies = iter(data.decode().split("\r\n"))
    for line in replies:
        if line.startswith("MSG "):
            _, subject, sid, _size = line.split(" ")
            msgs.append((int(sid), subject))
            next(replies)  # payload
        elif line.startswith("-ERR"):
            errors.append(line)
    return msgs, errors


CANDIDATES = [
    *("a", "a.b", "*", ">", "a.*", "a.>", "*.*", "*.>", "a.*.>"),
    *("a*", "*a", "a>", ">a", "**", ">>", "a.b*", "a.>b", "*.a*", "a*.>"),  # wildcard chars inside tokens
    *("a..b", ".a", "a.", ".", "..", "a.>.b", ">.a", ">.>", "a.>.*"),  # invalid
]


EMBEDDED_WILDCARDS = {"a*", "*a", "a>", ">a", "**", ">>", "a.b*", "a.>b", "*.a*", "a*.>"}


async def test_pattern_validity_agrees_with_nats_server(nats_server: NatsServer) -> None:
    """What topics.py accepts, the server accepts; what it refuses, the server refuses too, except
    tokens with embedded wildcard characters, which the server takes as literals but NATS clients
    (nats-py, nats.js) refuse: topics.py sides with the clients."""
    for candidate in CANDIDATES:
        valid = _is_valid_pattern(candidate)
        _, errors = await _raw_session(nats_server.port, [f"SUB {candidate} 1"])
        if candidate in EMBEDDED_WILDCARDS:
            assert not valid and not errors, candidate
        else:
            assert (not errors) is valid, (candidate, valid, errors)


@pytest.mark.parametrize("text", sorted(EMBEDDED_WILDCARDS))
def test_embedded_wildcard_characters_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(TopicError, match="wildcards must be whole tokens"):
        split_pattern(text)
    with pytest.raises(TopicError):
        split_topic(text)


def _is_valid_pattern(text: str) -> bool:
    try:
        split_pattern(text)
    except TopicError:
        return False
    return True
