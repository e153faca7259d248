"""Server-Sent Events from the live feed: ``GET /events?topic=<pattern>[&topic=...]``.

One stream per browser, each with its own cursor into the feed's ring (``feed.py``). A stream sends
what arrived since its last batch in one write, every ``BATCH_DELAY_S`` at most, so a fast run costs
a few writes a second per browser, not one per event. A browser that does not read fills its TCP
buffers; the write then waits, only that stream waits, and once the browser is further behind than
the ring it loses the oldest events, counted and told (``event: gap``). SSE frames::

    retry: 1000                      at the start: reconnect after 1 s
    id: 1200                         a new stream: where it starts (sets the browser's last id, no event)
    id: 1234                         the event's position (stream sequence / counter)
    data: {...the event's JSON...}

    event: gap                       events lost (too slow, or resumed from too old an id)
    data: {"lost": 17}

    event: reset                     Last-Event-ID unknown here: the window follows from its start

    : keep-alive                     a comment every [ui] heartbeat_s on a quiet stream
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..topics import matches
from .feed import LiveFeed

__all__ = ["BATCH", "BATCH_DELAY_S", "Streams", "TopicFilter"]

BATCH = 2_000  # events per write at most
BATCH_DELAY_S = 0.02  # pause after a write, so the next one carries what came meanwhile
RETRY_MS = 1_000
_CACHE_LIMIT = 10_000


class TopicFilter:
    """Does a topic match any of the stream's patterns? Answers cached per topic (bounded)."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self.patterns = tuple(patterns)
        self.everything = ">" in self.patterns
        self._cache: dict[str, bool] = {}

    def __call__(self, topic: str) -> bool:
        if self.everything:
            return True
        answer = self._cache.get(topic)
        if answer is None:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            answer = self._cache[topic] = any(matches(p, topic) for p in self.patterns)
        return answer


@dataclass
class StreamInfo:
    """One open stream, for ``/api/bus`` and the metrics."""

    id: int
    patterns: tuple[str, ...]
    client: str
    started: float = field(default_factory=time.time)
    sent: int = 0
    dropped: int = 0
    resumed_from: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "patterns": list(self.patterns),
            "client": self.client,
            "started": self.started,
            "sent": self.sent,
            "dropped": self.dropped,
            "resumedFrom": self.resumed_from,
        }


class Streams:
    """The open SSE streams of one feed, and the counters that outlive them."""

    def __init__(self, feed: LiveFeed, heartbeat_s: float) -> None:
        self.feed = feed
        self.heartbeat_s = heartbeat_s
        self.open: dict[int, StreamInfo] = {}
        self.opened = 0
        self.sent = 0
        self._ids = itertools.count(1)

    async def stream(
        self, patterns: Sequence[str], last_event_id: str | None, client: str
    ) -> AsyncIterator[bytes]:
        feed = self.feed
        info = StreamInfo(next(self._ids), tuple(patterns), client, resumed_from=last_event_id)
        self.open[info.id] = info
        self.opened += 1
        try:
            index, note, lost = feed.resume_at(last_event_id)
            yield b"retry: %d\n\n" % RETRY_MS
            if last_event_id is None:  # where this stream starts: a browser cut before any event resumes here
                yield b"id: %d\n\n" % feed.last_position
            if note is not None:
                info.dropped += lost
                feed.dropped += lost
                yield _notice(note, lost)
            async for chunk in self._follow(info, index, TopicFilter(patterns)):
                yield chunk
        finally:
            del self.open[info.id]

    async def _follow(self, info: StreamInfo, index: int, wanted: TopicFilter) -> AsyncIterator[bytes]:
        feed, ring = self.feed, self.feed.ring
        generation = feed.generation
        while not feed.closed and feed.generation == generation:
            feed.flush()  # what the bus's tap handed the feed since: into the ring
            if index < ring.start:  # fell out of the window while this browser lagged
                lost = ring.start - index
                info.dropped += lost
                feed.dropped += lost
                index = ring.start
                yield _notice("gap", lost)
            end = ring.end
            if index >= end:
                await feed.wait(index, self.heartbeat_s)
                if index >= feed.ring.end and not feed.closed and feed.generation == generation:
                    yield b": keep-alive\n\n"
                continue
            stop = min(end, index + BATCH)
            encode = feed.encode
            if wanted.everything:
                frames = [encode(e) for e in ring.slice(index, stop)]
            else:
                frames = [encode(e) for e in ring.slice(index, stop) if wanted(e.event.topic)]
            index = stop
            if frames:
                info.sent += len(frames)
                self.sent += len(frames)
                yield b"".join(frames)
            await asyncio.sleep(BATCH_DELAY_S)

    def stats(self) -> dict[str, Any]:
        return {
            "open": len(self.open),
            "opened": self.opened,
            "sent": self.sent,
            "streams": [info.to_dict() for info in self.open.values()],
        }


def _notice(kind: str, lost: int) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), json.dumps({"lost": lost}).encode())
