"""What the dashboard shows, kept up to date from the events: positions, orders, fills, prices, PnL,
signals and LOGOS's consensus, risk alerts and blocks, the bus's own reports.

Everything here is derived from events on the bus, the same ones any subscriber sees (what bots
publish: positions, orders, signals, decisions, risk alerts; what the host publishes: ``system.*``),
never from a bot's internals, so the page shows what actually went through the bus. It runs inside
the dashboard's bus handler, so each update is a dict lookup and an append; anything costlier (JSON,
sorting, sums over many items) waits for a request. Every collection is bounded (``[ui]
series_points``, fixed tails of recent items): a long run cannot grow it without end.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..events import Event
from ..payloads import BotLifecycle, Candle, Decision, Order, Position, RiskAlert, Signal
from .series import Series

__all__ = ["Book", "BotBook"]

#: Orders in these states are done; others are open.
FINAL_STATUSES = frozenset({"FILLED", "CANCELLED", "REJECTED"})
_RECENT = 200  # recent alerts, signals, closed orders, system reports kept for the page


def data_time(event: Event) -> int:
    """The event's data time (``metadata.dataTime``: the bar it is about), else its wall time."""
    value = event.metadata.get("dataTime") if event.metadata else None
    return value if isinstance(value, int) else event.timestamp


@dataclass
class BotBook:
    """One bot's trading figures, from its positions and fills."""

    positions: dict[str, Event] = field(default_factory=dict)  # "exchange:symbol" -> last position
    realized: float = 0.0
    unrealized: float = 0.0
    fees: float = 0.0
    fills: int = 0
    rejections: int = 0
    alerts: int = 0
    last_error: str | None = None
    equity: Series | None = None

    @property
    def pnl(self) -> float:
        return self.realized + self.unrealized


class Book:
    """The dashboard's view of the run, updated by :meth:`on_event`."""

    def __init__(self, series_points: int = 5_000) -> None:
        self.series_points = series_points
        self.bots: dict[str, BotBook] = {}
        self.open_orders: dict[str, Event] = {}
        self.closed_orders: deque[Event] = deque(maxlen=_RECENT)
        self.fills: deque[Event] = deque(maxlen=series_points)
        self.prices: dict[str, Series] = {}  # "exchange:symbol" -> candle closes
        self.total_pnl = Series(series_points)
        self._pnl_by_bot: dict[str, float] = {}
        self._pnl_sum = 0.0
        self.signals: deque[Event] = deque(maxlen=_RECENT)
        self.latest_signals: dict[str, dict[str, Event]] = {}  # series -> source -> last signal
        self.decisions: dict[str, Event] = {}  # series -> last decision
        self.decisions_made = 0
        self.alerts: deque[Event] = deque(maxlen=_RECENT)
        self.alert_counts: Counter[tuple[str, str]] = Counter()  # (kind, severity)
        self.blocks: dict[str, Event] = {}  # block key -> risk.block.set still in force
        self.blocks_set = 0
        self.system: deque[Event] = deque(maxlen=_RECENT)  # bot lifecycle, failures, dead letters...
        self.dead_letters = 0
        self.dead_letter_reasons: Counter[str] = Counter()
        self.handler_failures = 0
        self.overflow_reports = 0
        self.connection: str | None = None  # last system.connection.* state
        self._handlers: dict[tuple[str, str], Callable[[Event], None]] = {
            ("trading", "position"): self._position,
            ("trading", "order"): self._order,
            ("trading", "signal"): self._signal,
            ("market", "candle"): self._candle,
            ("analytics", "decision"): self._decision,
            ("risk", "alert"): self._alert,
            ("risk", "block"): self._block,
            ("system", "bot"): self._bot_state,
            ("system", "handler"): self._system,
            ("system", "deadletter"): self._system,
            ("system", "bus"): self._system,
            ("system", "connection"): self._system,
        }

    def on_event(self, event: Event) -> None:
        handler = self._handlers.get((event.domain, event.entity))
        if handler is not None:
            handler(event)

    def bot(self, bot_id: str) -> BotBook:
        book = self.bots.get(bot_id)
        if book is None:
            book = self.bots[bot_id] = BotBook(equity=Series(self.series_points))
        return book

    # -- trading --------------------------------------------------------------------------------------

    def _position(self, event: Event) -> None:
        p = event.payload
        if not isinstance(p, Position):
            return
        book = self.bot(p.bot_id)
        key = f"{p.exchange}:{p.symbol}"
        previous = book.positions.get(key)
        book.positions[key] = event
        # running sums: add this position's figures, take back the ones it replaces (O(1) per event)
        book.realized += p.realized_pnl
        book.unrealized += p.unrealized_pnl
        book.fees += p.fees_paid
        if previous is not None:
            old = previous.payload
            book.realized -= old.realized_pnl
            book.unrealized -= old.unrealized_pnl
            book.fees -= old.fees_paid
        time = data_time(event)
        pnl = book.realized + book.unrealized
        assert book.equity is not None
        book.equity.append(time, pnl)
        self._pnl_sum += pnl - self._pnl_by_bot.get(p.bot_id, 0.0)
        self._pnl_by_bot[p.bot_id] = pnl
        self.total_pnl.append(time, self._pnl_sum)

    def _order(self, event: Event) -> None:
        o = event.payload
        if not isinstance(o, Order):
            return
        if o.status in FINAL_STATUSES:
            self.open_orders.pop(o.order_id, None)
            self.closed_orders.append(event)
        else:
            self.open_orders[o.order_id] = event
        if event.action == "filled" and o.bot_id:
            self.fills.append(event)
            self.bot(o.bot_id).fills += 1
        elif event.action == "rejected" and o.bot_id:
            self.bot(o.bot_id).rejections += 1

    def _candle(self, event: Event) -> None:
        c = event.payload
        if not isinstance(c, Candle):
            return
        key = f"{c.exchange}:{c.symbol}"
        series = self.prices.get(key)
        if series is None:
            series = self.prices[key] = Series(self.series_points)
        series.append(c.open_time, c.close)

    # -- signals and consensus ------------------------------------------------------------------------

    def _signal(self, event: Event) -> None:
        s = event.payload
        if not isinstance(s, Signal):
            return
        self.signals.append(event)
        source = event.metadata.get("botId") if event.metadata else None
        self.latest_signals.setdefault(f"{s.exchange}:{s.symbol}", {})[str(source or event.source)] = event

    def _decision(self, event: Event) -> None:
        d = event.payload
        if isinstance(d, Decision):
            self.decisions[f"{d.exchange}:{d.symbol}"] = event
            self.decisions_made += 1

    # -- risk -----------------------------------------------------------------------------------------

    def _alert(self, event: Event) -> None:
        a = event.payload
        if not isinstance(a, RiskAlert):
            return
        self.alerts.append(event)
        self.alert_counts[(a.kind, a.severity)] += 1
        if a.bot_id and event.action != "resolved":
            self.bot(a.bot_id).alerts += 1

    def _block(self, event: Event) -> None:
        p = event.payload if isinstance(event.payload, dict) else {}
        key = str(p.get("key") or f"{p.get('kind')}:{p.get('botId')}")
        if event.action == "set":
            self.blocks[key] = event
            self.blocks_set += 1
        elif event.action == "cleared":
            self.blocks.pop(key, None)

    # -- the host's and the bus's reports --------------------------------------------------------------

    def _bot_state(self, event: Event) -> None:
        p = event.payload
        if isinstance(p, BotLifecycle) and event.action in ("error", "failed", "restarting") and p.reason:
            self.bot(p.bot_id).last_error = p.reason
        if event.action != "started" and event.action != "stopped":
            self.system.append(event)

    def _system(self, event: Event) -> None:
        self.system.append(event)
        entity = event.entity
        if entity == "deadletter":
            self.dead_letters += 1
            self.dead_letter_reasons[event.action] += 1
        elif entity == "handler":
            self.handler_failures += 1
        elif entity == "bus" and event.action == "overflow":
            self.overflow_reports += 1
        elif entity == "connection":
            payload = event.payload
            self.connection = getattr(payload, "state", None) or event.action

    def pnl_of(self, bot_id: str) -> float:
        return self._pnl_by_bot.get(bot_id, 0.0)

    def summary(self) -> dict[str, Any]:
        return {
            "openOrders": len(self.open_orders),
            "fills": len(self.fills),
            "signals": len(self.signals),
            "decisions": self.decisions_made,
            "alerts": sum(self.alert_counts.values()),
            "blocks": len(self.blocks),
            "deadLetters": self.dead_letters,
            "handlerFailures": self.handler_failures,
        }
