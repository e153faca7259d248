"""The dashboard's live feed: a host observer that keeps the last events, numbered, for the browsers.

It is a :class:`~citarion_host.host.BusObserver`: the host attaches it to its bus before any bot
starts and moves it along when a reload switches the backend. On the memory bus it is a passive
*tap* (``EventBus.tap``): called as each event is routed, it is not one more subscriber, so the
deterministic mode's sequencer neither runs nor waits for it (a subscription on ``>`` cost every
event an awaited handler and an arrival to sort). On a bus with stored events it subscribes to the
stream, which is where the positions come from. Either way it does the least it can per event:
number it, put it in the ring, update the :class:`~.book.Book`, wake the streams if they sleep.
Encoding to JSON happens later, once per event, in whichever browser stream needs it first.

**Taken in in batches.** On the memory bus the tap only appends the event to a short list and wakes
the streams; the numbering, the ring, the indexes and the book take the list in at once when it
holds ``INGEST_BATCH`` events, or sooner when anything reads the feed (a stream, a page's request,
a scrape: every reader goes through :meth:`LiveFeed.flush`, which the properties below call). The
work is the same; done a few hundred events at a time instead of one event between two bots'
handlers, the feed's data stays in the CPU's caches and the bots' data stays in theirs, and the
per-event calls and bookkeeping are paid once per batch (``docs/ui.md``, "Cost", has the figures).
What a reader sees is never stale: it flushes first. The events are immutable, and the list is
bounded, so the delay costs no memory that the window would not hold anyway.

**Positions (SSE ids).** On a bus with stored events (JetStream) the feed reads the stream itself
(``stored=True``) and numbers each event with its stream sequence (``delivery_position()``): the
same number every reader of the stream sees, stable across a restart of the host. On the memory bus
it counts. Browsers get the events in the feed's order (the ring's), and a browser that reconnects
with ``Last-Event-ID: N`` gets exactly what came after ``N`` in that order: no gap, no duplicate, as
long as ``N`` is still in the window (``[ui] retain_events``). Resuming looks ``N`` up (position ->
ring index) rather than assuming the positions grow along the ring: in deterministic mode the
sequencer hands this host's own publishes to the feed in program order, which may differ from the
order the stream stored them in. An event that has no stream position (a report the bus delivers
locally while the connection is down) is shown live without an id and is not resumed.

**Never slowing the bus.** Browsers read from the ring at their own pace, each with its own cursor. A
browser that falls further behind than the window loses what fell out: counted per stream and in
total (``dropped``), told to the browser (an SSE ``gap`` event), never waited for. The bots and the
bus never wait for a browser.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from ..bus import EventBus, Subscription
from ..bus.position import delivery_position
from ..events import Event
from .book import Book
from .ring import Ring

__all__ = ["INGEST_BATCH", "LiveFeed", "Retained"]

log = logging.getLogger("citarion_host.ui.feed")

#: Tapped events taken in at once (sooner when read): see "Taken in in batches" above.
INGEST_BATCH = 512


class Retained(msgspec.Struct, gc=False):
    """One event in the window: its key ``(position, n)`` and, once asked for, its SSE frame.

    ``n`` is 0 for an event with a position (its SSE id is the position) and 1, 2, ... for events
    without one that came after position ``position``. A struct outside the garbage collector's
    tracking (it holds an event, a tuple of ints and bytes: no cycle can pass through it): the
    window keeps up to ``[ui] retain_events`` of them, which the collector would otherwise walk on
    every full collection.
    """

    key: tuple[int, int]
    event: Event
    _wire: bytes | None = None
    _frame: bytes | None = None

    @property
    def position(self) -> int | None:
        return self.key[0] if self.key[1] == 0 else None

    def wire(self, encode: Callable[[Event], bytes]) -> bytes:
        """The event's wire JSON (encoded once, shared by every reader)."""
        if self._wire is None:
            self._wire = encode(self.event)
        return self._wire

    def frame(self, encode: Callable[[Event], bytes]) -> bytes:
        """The SSE frame: ``id:`` (when there is a position) and ``data:`` lines."""
        if self._frame is None:
            position = self.position
            head = b"" if position is None else b"id: %d\n" % position
            self._frame = head + b"data: " + self.wire(encode) + b"\n\n"
        return self._frame


def _key(entry: Retained) -> tuple[int, int]:
    return entry.key


class LiveFeed:
    """Keeps the last ``retain`` events of the host's bus and wakes the browser streams."""

    def __init__(self, book: Book, *, retain: int = 50_000) -> None:
        self._book = book
        self._ring: Ring[Retained] = Ring(retain)
        self._by_id: dict[str, Retained] = {}
        self._index: dict[int, int] = {}  # position -> absolute ring index
        self._highest = 0  # the highest position seen (out-of-order arrivals do not lower it)
        self.bus: EventBus | None = None
        self.stored = False
        self._events = 0  # events seen
        self.duplicates = 0  # stream redeliveries of a position already seen (skipped)
        self.dropped = 0  # events browsers lost because they fell out of the window while they lagged
        self._counts: dict[tuple[str, str], int] = {}  # (source, topic) -> events: the metrics' input
        self._pending: list[Event] = []  # tapped, not yet taken in (flush)
        self.generation = 0  # bumped by cut(): streams of an older generation end
        self.closed = False
        self._last: tuple[int, int] = (0, 0)
        self._counter = 0
        self._subscription: Subscription | None = None
        self._untap: Callable[[], None] | None = None
        self._encode: Callable[[Event], bytes] = lambda event: b"{}"
        self._signal: asyncio.Future[None] | None = None

    # -- what readers see: always after a flush --------------------------------------------------------

    @property
    def book(self) -> Book:
        self.flush()
        return self._book

    @property
    def ring(self) -> Ring[Retained]:
        self.flush()
        return self._ring

    @property
    def by_id(self) -> dict[str, Retained]:
        self.flush()
        return self._by_id

    @property
    def events(self) -> int:
        """Events seen."""
        self.flush()
        return self._events

    @property
    def counts(self) -> dict[tuple[str, str], int]:
        """(source, topic) -> events: the metrics' input."""
        self.flush()
        return self._counts

    # -- observer -----------------------------------------------------------------------------------

    async def attach(self, bus: EventBus) -> None:
        """Watch ``bus``: from its stream where it has one (positions = stream sequences)."""
        self.bus = bus
        self._encode = bus.catalog.encode
        self.stored = bus.capabilities.persistent
        if bus.tappable and not self.stored:
            self._untap = bus.tap(self._on_tap)
            return
        self._subscription = await bus.subscribe(
            ">", self._on_event, name="host:ui", max_pending=1 << 20, stored=self.stored
        )
        if bus.sequencer is not None:  # it only reads, as the run monitor: the bots never wait for it
            bus.sequencer.observe(self._subscription)

    async def detach(self) -> None:
        untap, self._untap = self._untap, None
        if untap is not None:
            untap()
            self.flush()
        subscription, self._subscription = self._subscription, None
        if subscription is not None and not subscription.closed:
            await subscription.unsubscribe(drain=True)

    def _on_tap(self, event: Event) -> None:
        """An event the bus routed (memory): kept for the next flush, numbered then by the feed's counter."""
        pending = self._pending
        pending.append(event)
        if len(pending) >= INGEST_BATCH:
            self.flush()
            return
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    def flush(self) -> None:
        """Take in what the tap kept: number, window, indexes, book, in the order it was routed.

        :meth:`_take` for a run of counted events, with the per-event bookkeeping that does not
        depend on the event (last key, highest position, total, waking the streams) done once.
        """
        pending = self._pending
        if not pending:
            return
        self._pending = []
        ring, by_id, index, counts = self._ring, self._by_id, self._index, self._counts
        on_event = self._book.on_event
        counter = self._counter
        for event in pending:
            counter += 1
            entry = Retained((counter, 0), event)
            evicted = ring.append(entry)
            index[counter] = ring.end - 1
            if evicted is not None:
                self._forget(evicted)
            by_id[event.id] = entry
            counted = (event.source, event.topic)
            counts[counted] = counts.get(counted, 0) + 1
            on_event(event)
        self._counter = counter
        self._last = (counter, 0)
        self._highest = max(self._highest, counter)
        self._events += len(pending)
        self.wake()

    def _forget(self, evicted: Retained) -> None:
        """Drop an event that fell out of the window from the indexes (unless a newer entry took over)."""
        if self._by_id.get(evicted.event.id) is evicted:
            del self._by_id[evicted.event.id]
        if evicted.key[1] == 0 and self._index.get(evicted.key[0]) == self._ring.start - 1:
            del self._index[evicted.key[0]]

    async def _on_event(self, event: Event) -> None:
        """An event of a subscription: numbered by its stream position where it has one."""
        self.flush()
        if self.stored:
            position = delivery_position()
            if position is None:
                key = (self._last[0], self._last[1] + 1)
            elif position in self._index:  # a redelivery of what the window holds
                self.duplicates += 1
                return
            else:
                key = (position, 0)
        else:
            self._counter += 1
            key = (self._counter, 0)
        self._take(event, key)

    def _take(self, event: Event, key: tuple[int, int]) -> None:
        self._last = key
        entry = Retained(key, event)
        ring = self._ring
        evicted = ring.append(entry)
        if key[1] == 0:
            self._index[key[0]] = ring.end - 1
            self._highest = max(self._highest, key[0])
        if evicted is not None:
            self._forget(evicted)
        self._by_id[event.id] = entry
        self._events += 1
        counted = (event.source, event.topic)
        counts = self._counts
        counts[counted] = counts.get(counted, 0) + 1
        self._book.on_event(event)
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    # -- readers ------------------------------------------------------------------------------------

    @property
    def last_position(self) -> int:
        """The position of the last event the feed took in (0 before any): a new stream starts after it."""
        self.flush()
        return self._last[0]

    def encode(self, entry: Retained) -> bytes:
        return entry.frame(self._encode)

    def wire(self, entry: Retained) -> bytes:
        return entry.wire(self._encode)

    def resume_at(self, last_event_id: str | None) -> tuple[int, str | None, int]:
        """Where a stream starts: right after ``Last-Event-ID`` when given, else at the live end.

        Returns the absolute ring index, a note for the browser when it cannot resume exactly, and
        how many events it lost. ``gap``: the id fell out of the window (the count is exact on the
        memory bus, at most that on a stream with deleted messages); ``reset``: an id the feed cannot
        place (newer than anything seen, e.g. from before a restart on memory; not a number): the
        browser gets the whole window and should start over.
        """
        ring = self.ring  # flushed
        if last_event_id is None:
            return ring.end, None, 0
        try:
            last = int(last_event_id)
        except ValueError:
            return ring.start, "reset", 0
        found = self._index.get(last)
        if found is not None:
            return found + 1, None, 0
        if last > self._highest:
            return ring.start, "reset", 0
        first = next((i for i in range(ring.start, ring.end) if ring.get(i).key[1] == 0), ring.end)
        oldest = ring.get(first).key[0] if first < ring.end else self._highest + 1
        if last < oldest:
            lost = oldest - last - 1
            return ring.start, "gap" if lost else None, lost
        # a position in the window's range that never reached this feed: resume after what preceded it
        return ring.first_after(_key, (last, 1 << 62)), None, 0

    async def wait(self, index: int, timeout: float) -> None:
        """Until an event past absolute ``index`` exists, the feed closes, or ``timeout`` passes."""
        if index < self.ring.end or self.closed:  # flushed
            return
        signal = self._signal
        if signal is None or signal.done():
            signal = self._signal = asyncio.get_running_loop().create_future()
        await asyncio.wait((signal,), timeout=timeout)

    def wake(self) -> None:
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    def cut(self) -> None:
        """End every open stream (browsers reconnect and resume with ``Last-Event-ID``)."""
        self.generation += 1
        self.wake()

    def close(self) -> None:
        """End every stream for good (the server is stopping)."""
        self.closed = True
        self.wake()

    def find(self, event_id: str) -> Retained | None:
        return self.by_id.get(event_id)

    def stats(self) -> dict[str, Any]:
        self.flush()
        return {
            "events": self.events,
            "retained": len(self.ring),
            "window": self.ring.capacity,
            "first": self.ring.get(self.ring.start).key[0] if len(self.ring) else None,
            "last": self._last[0],
            "highest": self._highest,
            "positions": "stream sequence" if self.stored else "counter",
            "duplicates": self.duplicates,
            "dropped": self.dropped,
        }
