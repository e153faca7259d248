"""Watching a run: throughput, per-bot figures, a JSON-lines record, the final summary.

The monitor is an ordinary subscriber to ``>`` (it sees exactly what any bot could see), so the
figures it prints are what went through the bus, not what bots claim. Per-bot figures come from
the events themselves: signals and orders from each runner's publish counters, fills, PnL and
alerts from the ``botId`` fields of orders, positions and risk alerts.

It is a host observer (``Host.observe``): the host attaches it to its bus before any bot starts and
moves it to the new bus when a reload switches the backend, so the record and the figures cover the
whole run. The record file stays open from :meth:`RunMonitor.open` to :meth:`RunMonitor.close`.

What a bot lost is the bus's to tell, not the events': each bot's subscription (named by the bot's
id) counts what it delivered and dropped (``EventBus.subscriber_totals``), so the summary shows the
drops per bot and marks a bot that dropped any event ``LOSSY`` instead of ``ok``: a bot that lost
96 % of its events must not look healthy.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from io import FileIO
from pathlib import Path
from typing import Any

from .bus import EventBus, Subscription
from .events import PRIORITIES, Event
from .payloads import Order, Position, RiskAlert

#: Bytes of record lines gathered before they are written (one write per ~200 events, not two each).
_RECORD_CHUNK = 1 << 16
#: Topics whose ``by_topic`` key is kept built (then the cache starts again).
_KINDS_KEPT = 4096

log = logging.getLogger("citarion_host.monitor")

__all__ = [
    "SUMMARY_COLUMNS",
    "TEXT_COLUMNS",
    "BotFigures",
    "RecordError",
    "RunMonitor",
    "format_summary",
    "health",
    "summary_totals",
]


@dataclass
class BotFigures:
    signals: int = 0
    orders: int = 0
    fills: int = 0
    rejections: int = 0
    alerts: int = 0
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    fees: float = 0.0
    positions: dict[str, Position] = field(default_factory=dict)

    @property
    def pnl(self) -> float:
        return self.realized_pnl + self.unrealized_pnl


class RecordError(OSError):
    """An output the run was asked for cannot be written: the record (``[host] record``: cannot be
    opened, then the run does not start; or it stopped during the run) or ``--summary-json``."""


class RunMonitor:
    """Counts every event on the bus; optionally records them to a JSON-lines file.

    A record that cannot be written any more (a full disk, a removed mount) stops recording, not the
    run: one error line, and the summary says from which event on the record is incomplete
    (``record_error``, ``unrecorded``); ``citarion-host run`` then exits 1. Before, every event raised
    in the monitor's handler (a traceback each) and the run ended without its summary."""

    def __init__(self, record: Path | None = None) -> None:
        self.bus: EventBus | None = None
        self.record_path = record
        self.events = 0
        self.by_topic: Counter[str] = Counter()
        self.bots: dict[str, BotFigures] = {}
        self.alert_kinds: Counter[tuple[str, str]] = Counter()  # (kind, severity) of risk alerts
        self.recent_alerts: deque[str] = deque(maxlen=5)  # the last few, for the live display
        self.started = time.perf_counter()
        self.finished: float | None = None
        self._file: FileIO | None = None
        #: Record lines not written yet (``_RECORD_CHUNK`` bytes at most); None: no record.
        self._lines: bytearray | None = None
        self._subscription: Subscription | None = None
        #: The codec's ``encode_into(event, buffer, -1)``: appends the event's JSON to the record lines.
        self._encode_into: Callable[[Event, bytearray, int], None] = lambda event, buffer, offset: None
        #: What the monitor reads from a payload, by its type (:data:`_ORDER`...), found once per type.
        self._payload_kinds: dict[type, int] = {}
        #: Why the record stopped (None: it did not); events up to ``recorded`` are in the file.
        self.record_error: str | None = None
        self.recorded = 0
        self._size = 0  # bytes written to the record
        #: ``domain.entity.action`` of each topic seen (``by_topic``'s key, built once per topic).
        self._kinds: dict[str, str] = {}
        self._last_report = (self.started, 0)
        #: Delivery counters per subscriber name from buses this run left (a backend switch).
        self._earlier: dict[str, dict[str, Any]] = {}

    def open(self) -> None:
        """Start the clock and the record file (before the host starts). Raises
        :class:`RecordError` naming the file when it cannot be made."""
        path = self.record_path
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                # Kept open for the whole run (closed in close), so no context manager.
                # Binary: the codec appends each event's JSON bytes (UTF-8) to ``_lines``, written in
                # chunks of ``_RECORD_CHUNK`` (no bytes object and no write call per event), unbuffered:
                # what a write call returned is in the file, so a failure knows what the record holds.
                self._file = open(path, "wb", buffering=0)  # noqa: SIM115
            except OSError as exc:
                where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
                raise RecordError(
                    f"[host] record: cannot write {str(path)!r}: {exc.strerror or exc}{where}"
                ) from None
            self._lines = bytearray()
        self.started = time.perf_counter()
        self._last_report = (self.started, 0)

    async def attach(self, bus: EventBus) -> None:
        """Watch ``bus`` (the host calls this before its bots start on it)."""
        if self.bus is not None and self.bus is not bus:  # a backend switch: keep what the old one saw
            self._earlier = _add_totals(self._earlier, self.bus.subscriber_totals())
        self.bus = bus
        self._encode_into = bus.catalog.appender()
        # On a bus that stores events (JetStream) the monitor reads the store, as the bots do: it then
        # shares the host's one consumer with them (``feeds.HostInbox``), so each event reaches this
        # process once, not a second time over a core subscription (one NATS message in five of the
        # JetStream demo's), and the record is in the stream's order. Every event the bus publishes
        # there is stored (it refuses a topic the stream does not cover).
        self._subscription = await bus.subscribe(
            ">", self._on_event, name="host:monitor", max_pending=1 << 20, stored=bus.capabilities.persistent
        )
        if bus.sequencer is not None:
            # It only reads (counts and records) and publishes nothing: in deterministic mode the bots
            # never wait for its deliveries, while it still sees every event in the run's order.
            bus.sequencer.observe(self._subscription)

    async def detach(self) -> None:
        """Stop watching the current bus, after what it still holds for us (the host's stop)."""
        subscription, self._subscription = self._subscription, None
        if subscription is not None and not subscription.closed:
            await subscription.unsubscribe(drain=True)

    def close(self) -> None:
        """Stop the clock, close the record (a failure to write its end is reported, not raised)."""
        self.finished = time.perf_counter()
        file, lines = self._file, self._lines
        if file is not None and lines is not None:
            if lines:
                self._write(lines)
            if self._file is not None:  # the last lines written
                self._file.close()
        self._file, self._lines = None, None

    @property
    def unrecorded(self) -> int:
        """Events of the run missing from the record after it failed (0 when it did not)."""
        return self.events - self.recorded if self.record_error is not None else 0

    def _write(self, lines: bytearray) -> None:
        """Write a chunk of record lines, all of it (the file is unbuffered: a short write is
        continued); a failure stops the record (:meth:`_record_failed`)."""
        file = self._file
        assert file is not None  # only called while recording
        done = 0
        with memoryview(lines) as view:
            try:
                while done < len(view):
                    done += file.write(view[done:]) or 0
            except OSError as exc:
                self._record_failed(exc, lines, done)
                return
        lines.clear()
        self.recorded = self.events
        self._size += done

    def _record_failed(self, exc: OSError, lines: bytearray, done: int) -> None:
        """Stop recording, say so once: the run goes on with its figures complete. The record keeps
        the lines written whole (a line cut by the failure is cut off the file, so that it still
        reads as JSON lines), and ``recorded`` counts them."""
        whole = lines.rfind(b"\n", 0, done) + 1
        self.recorded += lines.count(b"\n", 0, whole)
        self.record_error = exc.strerror or str(exc)
        log.error(
            "the record cannot be written: recording stopped, the run goes on",
            extra={"record": str(self.record_path), "error": self.record_error, "recorded": self.recorded},
        )
        file, self._file, self._lines = self._file, None, None
        if file is not None:
            with contextlib.suppress(OSError):  # shrinking a file needs no space
                file.truncate(self._size + whole)
            file.close()

    def _on_event(self, event: Event) -> None:
        """Count ``event``, record it, and read the figures of orders, positions and risk alerts.

        A plain function, not a coroutine: it never waits, and the deterministic mode calls such a
        handler without a coroutine of its own (``bus.sequencer``), once per event."""
        self.events += 1
        kind = self._kinds.get(event.topic)
        if kind is None:
            if len(self._kinds) >= _KINDS_KEPT:  # a topic per order id or the like: stay bounded
                self._kinds.clear()
            kind = self._kinds[event.topic] = f"{event.domain}.{event.entity}.{event.action}"
        self.by_topic[kind] += 1
        lines = self._lines
        if lines is not None:
            self._encode_into(event, lines, -1)
            lines.append(10)  # b"\n"
            if len(lines) >= _RECORD_CHUNK:
                self._write(lines)
        payload = event.payload
        read = self._payload_kinds.get(type(payload))
        if read is None:
            read = self._payload_kinds[type(payload)] = _payload_kind(payload)
        if not read:  # most events (candles, signals): nothing to read
            return
        if read == _ORDER:
            if payload.bot_id:
                figures = self._bot(payload.bot_id)
                if event.action == "filled":
                    figures.fills += 1
                    figures.fees += payload.fee
                elif event.action == "rejected":
                    figures.rejections += 1
        elif read == _POSITION:
            figures = self._bot(payload.bot_id)
            figures.positions[f"{payload.exchange}:{payload.symbol}"] = payload
            figures.realized_pnl = sum(p.realized_pnl for p in figures.positions.values())
            figures.unrealized_pnl = sum(p.unrealized_pnl for p in figures.positions.values())
        else:
            self.alert_kinds[(payload.kind, payload.severity)] += 1
            self.recent_alerts.append(f"{payload.severity} {payload.kind}: {payload.message}")
            if payload.bot_id:
                self._bot(payload.bot_id).alerts += 1

    def _bot(self, bot_id: str) -> BotFigures:
        figures = self.bots.get(bot_id)
        if figures is None:
            figures = self.bots[bot_id] = BotFigures()
        return figures

    def elapsed(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    def events_per_s(self) -> float:
        elapsed = self.elapsed()
        return self.events / elapsed if elapsed > 0 else 0.0

    def progress_line(self) -> str:
        """One line of live progress: rate since the last line, totals, PnL per bot."""
        now = time.perf_counter()
        last_time, last_count = self._last_report
        rate = (self.events - last_count) / (now - last_time) if now > last_time else 0.0
        self._last_report = (now, self.events)
        signals = sum(n for t, n in self.by_topic.items() if t.startswith("trading.signal."))
        fills = self.by_topic.get("trading.order.filled", 0)
        pnl = " ".join(f"{bot}={fig.pnl:+.2f}" for bot, fig in sorted(self.bots.items()) if fig.positions)
        return (
            f"{self.events:>9,} events  {rate:>9,.0f}/s  signals={signals} fills={fills}  pnl: {pnl or '-'}"
        )

    def deliveries(self) -> dict[str, dict[str, Any]]:
        """Per subscriber name (a bot's id): delivered, dropped per priority, over the whole run."""
        current = self.bus.subscriber_totals() if self.bus is not None else {}
        return _add_totals(self._earlier, current)

    def summary(self, runners: dict[str, Any]) -> dict[str, Any]:
        """Per-bot table rows plus run totals (what the CLI prints and tests assert)."""
        rows = []
        deliveries = self.deliveries()
        for bot_id, stats in runners.items():
            figures = self.bots.get(bot_id, BotFigures())
            published = stats.get("published", {})
            delivery = deliveries.get(bot_id, {})
            dropped = delivery.get("dropped", dict.fromkeys(PRIORITIES, 0))
            delivered = delivery.get("delivered", 0) + delivery.get("failed", 0)
            rows.append(
                {
                    "bot": bot_id,
                    "code": stats.get("code"),
                    "state": stats.get("state"),
                    "health": health(delivered, sum(dropped.values())),
                    "handled": stats.get("handled", 0),
                    "signals": published.get("signal", 0),
                    "orders": published.get("order", 0),
                    "fills": figures.fills,
                    "pnl": round(figures.pnl, 2),
                    "fees": round(figures.fees, 2),
                    "alerts": figures.alerts + published.get("alert", 0),
                    "errors": stats.get("errors", 0),
                    "dropped": sum(dropped.values()),
                    "delivered": delivered,
                    "dropped_by_priority": dict(dropped),
                    "backpressure_timeouts": delivery.get("backpressure_timeouts", 0),
                    "stats": stats.get("bot", {}),
                }
            )
        return {
            "events": self.events,
            "seconds": round(self.elapsed(), 3),
            "events_per_s": round(self.events_per_s()),
            "bots": rows,
            "topics": dict(sorted(self.by_topic.items())),
        }


#: The summary's columns, in order; the first :data:`TEXT_COLUMNS` are text, the others figures.
SUMMARY_COLUMNS = (
    "bot",
    "code",
    "state",
    "health",
    "handled",
    "signals",
    "orders",
    "fills",
    "pnl",
    "fees",
    "alerts",
    "errors",
    "dropped",
)
TEXT_COLUMNS = 4
_TOTALLED = SUMMARY_COLUMNS[TEXT_COLUMNS:]


#: What :meth:`RunMonitor._on_event` reads from a payload (0: nothing).
_ORDER, _POSITION, _ALERT = 1, 2, 3


def _payload_kind(payload: object) -> int:
    """Which figures a payload of this type carries (subclasses included, as ``isinstance`` says)."""
    if isinstance(payload, Order):
        return _ORDER
    if isinstance(payload, Position):
        return _POSITION
    if isinstance(payload, RiskAlert):
        return _ALERT
    return 0


def health(delivered: int, dropped: int) -> str:
    """``ok``, or ``LOSSY <share> % dropped`` for a bot whose inbox dropped any event (of those it
    was sent: delivered, failed or dropped)."""
    if not dropped:
        return "ok"
    share = 100 * dropped / (delivered + dropped)
    shown = f"{share:.0f}" if share >= 1 else f"{share:.2g}"
    return f"LOSSY {shown} % dropped"


def _add_totals(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Two sets of per-subscriber delivery counters added up (``EventBus.subscriber_totals`` shape)."""
    out: dict[str, dict[str, Any]] = {}
    for name in {*a, *b}:
        left, right = a.get(name, {}), b.get(name, {})
        merged: dict[str, Any] = {}
        for key in {*left, *right}:
            if isinstance(left.get(key, right.get(key)), dict):
                merged[key] = {
                    p: left.get(key, {}).get(p, 0) + right.get(key, {}).get(p, 0) for p in PRIORITIES
                }
            else:
                merged[key] = left.get(key, 0) + right.get(key, 0)
        out[name] = merged
    return out


def summary_totals(summary: dict[str, Any]) -> dict[str, Any]:
    """The totals row: sums of the figure columns over every bot."""
    totals: dict[str, Any] = {"bot": "total", "code": "", "state": "", "health": ""}
    for column in _TOTALLED:
        total = sum(row[column] for row in summary["bots"])
        totals[column] = round(total, 2) if isinstance(total, float) else total
    return totals


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a fixed-width table with a totals row: the plain text for pipes, CI and logs."""
    columns = list(SUMMARY_COLUMNS)
    rows = [[_cell(row[c]) for c in columns] for row in summary["bots"]]
    total = [_cell(summary_totals(summary)[c]) for c in columns] if rows else None
    widths = [
        max(len(c), *(len(r[i]) for r in [*rows, *([total] if total else [])])) if rows else len(c)
        for i, c in enumerate(columns)
    ]

    def line(cells: list[str]) -> str:
        return "  ".join(
            v.rjust(w) if i >= TEXT_COLUMNS else v.ljust(w)
            for i, (v, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += [line(r) for r in rows]
    if total is not None:
        lines.append("  ".join("-" * w for w in widths))
        lines.append(line(total))
    lines.append("")
    events, seconds, rate = summary["events"], summary["seconds"], summary["events_per_s"]
    lines.append(f"{events:,} events in {seconds:.2f}s = {rate:,} events/s through the bus")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:+,.2f}"
    return str(value)
