"""What the institutional and frequency bots share: their own orders, positions, balances, clock.

:class:`DeskBot` is their base. It dispatches market data to ``on_candle`` / ``on_book`` /
``on_trade`` / ``on_ticker``, keeps the bot's own orders and signed positions in step with the
exchange's reports, its balances per (exchange, asset) from ``trading.position.balance.*``, and a
data-time clock, and stands down like the other strategies (:class:`~citarion_bots.standdown.StandDown`).

Orders follow the contract in ``docs/market.md`` ("Events the bots trade with"):

* reports carry *cumulative* ``filledQuantity`` / ``averagePrice`` / ``fee``; the desk turns each
  into the increment since the last report (:class:`Fill`), so a partial fill, a later fill and a
  redelivered report are all counted exactly once;
* ``accepted`` (resting), ``partially_filled``, ``filled``, ``cancelled`` (with what filled before),
  ``rejected`` (a new order refused), ``amended`` (new price/quantity), and ``cancel_rejected`` /
  ``amend_rejected`` (the request could not apply; the order is unchanged). A ``rejected`` whose
  reason starts with ``cancel`` or ``amend`` (today's exchange) is read as the latter;
* requests go out as ``trading.order.submitted``, ``trading.order.cancel`` and
  ``trading.order.amend``, with ``timeInForce`` (``GTC``/``IOC``) and ``postOnly`` in the event
  metadata next to ``botId`` and ``dataTime``.

Every signal and order is stamped ``metadata = {"botId": <bot id>, "dataTime": <data time>}``: the
open time of the candle, or the ``dataTime`` of the book the decision used (the feed stamps book
events with it; an event without one falls back to its timestamp, counted in ``untimed``).

Risk: an order that adds exposure (``reduce_only = False``) is held back while the risk guard blocks
the bot, or for ``alert_cooldown_bars`` bars after a pump alert on the symbol; reducing never is.

State (``docs/state.md``): :class:`DeskState` holds the order-id counter, every order as the bot knows
it, positions, balances, the latest book per series, counters, the clock and the stand-down; each bot
extends it with its models (a ``State`` subclass, :meth:`DeskBot.state_fields`, :meth:`DeskBot.restore`).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import msgspec
from pydantic import Field
from typing_extensions import TypeVar

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.payloads import Balance, Candle, Order, OrderBook, Signal, Ticker, Trade, Transfer

from .common import SeriesKey, StrictParams, round_qty
from .standdown import StandDown, StandDownState

__all__ = ["DeskBot", "DeskParams", "DeskState", "Fill", "Working", "data_time"]

Side = Literal["BUY", "SELL"]
TimeInForce = Literal["GTC", "IOC"]
_TERMINAL = {"FILLED", "CANCELLED", "REJECTED"}


class DeskParams(StrictParams):
    """Params every desk bot has: whether to submit orders, and how long a pump alert halts buys."""

    trade: bool = True
    alert_cooldown_bars: int = Field(default=20, ge=0)


def data_time(event: Event) -> int:
    """The data time of an event: a candle's open time, else ``metadata.dataTime``, else its timestamp."""
    payload = event.payload
    if isinstance(payload, Candle):
        return payload.open_time
    stamped = (event.metadata or {}).get("dataTime")
    return stamped if isinstance(stamped, int) and not isinstance(stamped, bool) else event.timestamp


@dataclass(slots=True)
class Working:
    """One of the bot's orders as the bot knows it."""

    order: Order
    tag: str
    data_time: int
    status: str = "NEW"
    filled: float = 0.0
    notional: float = 0.0
    fee: float = 0.0
    cancelling: bool = False
    amending: tuple[float, float] | None = None  # (price, quantity) asked for

    @property
    def done(self) -> bool:
        return self.status in _TERMINAL

    @property
    def open_quantity(self) -> float:
        return round_qty(max(0.0, self.order.quantity - self.filled))


@dataclass(frozen=True, slots=True)
class Fill:
    """The increment one report added: ``quantity`` at ``price`` (its own average), ``fee``."""

    working: Working
    quantity: float
    price: float
    fee: float

    @property
    def key(self) -> SeriesKey:
        return (self.working.order.exchange, self.working.order.symbol)

    @property
    def signed(self) -> float:
        return self.quantity if self.working.order.side == "BUY" else -self.quantity


@dataclass(slots=True)
class _Book:
    book: OrderBook
    time: int = 0


class DeskState(msgspec.Struct, kw_only=True):
    """What every desk bot's figures depend on besides its models (maps keyed by pairs as rows)."""

    next_order: int = 1
    orders: dict[str, Working] = {}
    position: list[tuple[SeriesKey, float]] = []
    balances: list[tuple[tuple[str, str], Balance]] = []
    books: list[tuple[SeriesKey, _Book]] = []
    counts: dict[str, int] = {}
    now: int = 0
    risk: StandDownState = msgspec.field(default_factory=StandDownState)


#: The params model of a concrete subclass (``class X(DeskBot[XParams])``).
DeskParamsT = TypeVar("DeskParamsT", bound=DeskParams, default=DeskParams)


class DeskBot(Bot[DeskParamsT]):
    """Base of ARB, PAR, STA, MMK, MRB, TRF, HFT, MFT and LFT."""

    State: ClassVar[type[DeskState]] = DeskState

    def __init__(self, ctx: BotContext, params: DeskParamsT) -> None:
        super().__init__(ctx, params)
        self.orders: dict[str, Working] = {}
        self.position: defaultdict[SeriesKey, float] = defaultdict(float)
        self.balances: dict[tuple[str, str], Balance] = {}
        self.books: dict[SeriesKey, _Book] = {}
        self.counts: Counter[str] = Counter()
        self.now = 0
        self.risk = StandDown(ctx.bot_id, self.params.alert_cooldown_bars)
        self.next_order = 1

    # -- state (docs/state.md) ----------------------------------------------------------------------

    def snapshot(self) -> DeskState:
        return self.State(**self.state_fields())

    def state_fields(self) -> dict[str, Any]:
        """The fields of :attr:`State` from the bot's attributes; a subclass adds its own."""
        return {
            "next_order": self.next_order,
            "orders": self.orders,
            "position": list(self.position.items()),
            "balances": list(self.balances.items()),
            "books": list(self.books.items()),
            "counts": self.counts,
            "now": self.now,
            "risk": self.risk.state(),
        }

    def restore(self, state: Any) -> None:
        """Take a :class:`DeskState` (or a subclass's) back; a subclass takes its own fields after
        calling this (its orders are in :attr:`orders` by then, to be referred to by id)."""
        self.next_order = state.next_order
        self.orders = dict(state.orders)
        self.position = defaultdict(float, state.position)
        self.balances = dict(state.balances)
        self.books = dict(state.books)
        self.counts = Counter(state.counts)
        self.now = state.now
        self.risk.restore(state.risk)

    @property
    def account(self) -> str:
        """Whose balances and transfers this bot follows (its own; TRF may manage another's)."""
        return str(self.ctx.bot_id)

    # -- dispatch ---------------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, Candle):
            self.risk.clock(payload.open_time, payload.interval)
            self.now = max(self.now, payload.open_time)
            await self.on_candle(event, payload)
        elif isinstance(payload, OrderBook):
            time = self._clock(event)
            if not (payload.bids and payload.asks):
                self.counts["one_sided_books"] += 1
                return
            self.books[(payload.exchange, payload.symbol)] = _Book(payload, time)
            await self.on_book(event, payload, time)
        elif isinstance(payload, Order):
            if payload.bot_id == self.ctx.bot_id:
                await self._report(event, payload)
        elif isinstance(payload, Balance):
            if payload.bot_id == self.account:
                self._clock(event)
                self.balances[(payload.exchange, payload.asset)] = payload
                await self.on_balance(event, payload)
        elif isinstance(payload, Transfer):
            if payload.bot_id == self.account:
                self._clock(event)
                await self.on_transfer(event, payload)
        elif isinstance(payload, Trade):
            await self.on_trade(event, payload, self._clock(event))
        elif isinstance(payload, Ticker):
            await self.on_ticker(event, payload, self._clock(event))
        else:
            self.risk.observe(event)

    def _clock(self, event: Event) -> int:
        time = data_time(event)
        if time == event.timestamp and not isinstance(event.payload, Candle):
            self.counts["untimed"] += 1
        self.now = max(self.now, time)
        self.risk.now_ms = max(self.risk.now_ms, time)
        return time

    # -- hooks ------------------------------------------------------------------------------------

    async def on_candle(self, event: Event, candle: Candle) -> None:
        """A closed bar."""

    async def on_book(self, event: Event, book: OrderBook, time: int) -> None:
        """A book (snapshot or update: both carry the whole top of book), both sides non-empty."""

    async def on_trade(self, event: Event, trade: Trade, time: int) -> None:
        """A public trade print."""

    async def on_ticker(self, event: Event, ticker: Ticker, time: int) -> None:
        """A quote."""

    async def on_balance(self, event: Event, balance: Balance) -> None:
        """A balance of this bot's account changed (already stored in ``self.balances``)."""

    async def on_transfer(self, event: Event, transfer: Transfer) -> None:
        """A transfer of this bot's account changed state."""

    async def on_fill(self, event: Event, fill: Fill) -> None:
        """Some of an order filled (position already updated)."""

    async def on_done(self, event: Event, working: Working) -> None:
        """An order reached FILLED, CANCELLED or REJECTED."""

    async def on_refused(self, event: Event, working: Working, reason: str) -> None:
        """A cancel or amend request of an order could not apply."""

    # -- reports ----------------------------------------------------------------------------------

    async def _report(self, event: Event, order: Order) -> None:
        working = self.orders.get(order.order_id)
        action = event.topic.split(".")[2]
        if working is None:
            self.counts["unknown_reports"] += 1
            return
        reason = order.reason or ""
        if action in ("cancel_rejected", "amend_rejected") or (
            action == "rejected" and reason.startswith(("cancel", "amend"))
        ):
            working.cancelling = False
            working.amending = None
            self.counts["refused_requests"] += 1
            await self.on_refused(event, working, reason)
            return
        if working.done:
            self.counts["late_reports"] += 1
            return
        if action in ("partially_filled", "filled", "cancelled"):
            await self._fill(event, working, order)
        if action == "accepted":
            working.status = "PENDING"
        elif action == "amended":
            working.order = msgspec.structs.replace(working.order, price=order.price, quantity=order.quantity)
            working.amending = None
            working.status = order.status if order.status not in _TERMINAL else working.status
        elif action == "partially_filled":
            working.status = "PARTIALLY_FILLED"
        elif action in ("filled", "cancelled", "rejected"):
            working.status = {"filled": "FILLED", "cancelled": "CANCELLED", "rejected": "REJECTED"}[action]
            self.counts[{"filled": "fills", "cancelled": "cancels", "rejected": "rejections"}[action]] += 1
            await self.on_done(event, working)

    async def _fill(self, event: Event, working: Working, order: Order) -> None:
        total = order.filled_quantity
        if total <= working.filled + 1e-12:
            return
        notional = total * (order.average_price or order.price or 0.0)
        quantity = round_qty(total - working.filled)
        price = (notional - working.notional) / (total - working.filled)
        fee = max(0.0, order.fee - working.fee)
        working.filled, working.notional, working.fee = total, notional, max(order.fee, working.fee)
        key = (working.order.exchange, working.order.symbol)
        fill = Fill(working, quantity, price, fee)
        self.position[key] = round_qty(self.position[key] + fill.signed)
        self.counts["filled_reports"] += 1
        await self.on_fill(event, fill)

    # -- requests ---------------------------------------------------------------------------------

    def working(self, tag: str | None = None, key: SeriesKey | None = None) -> list[Working]:
        """Orders not yet done, optionally only those with ``tag`` and/or on series ``key``."""
        return [
            w
            for w in self.orders.values()
            if not w.done
            and (tag is None or w.tag == tag)
            and (key is None or (w.order.exchange, w.order.symbol) == key)
        ]

    def may_open(self, symbol: str) -> bool:
        return self.risk.may_buy(symbol)

    async def submit(
        self,
        cause: Event,
        *,
        exchange: str,
        symbol: str,
        side: Side,
        quantity: float,
        time: int,
        price: float | None = None,
        tif: TimeInForce | None = None,
        post_only: bool = False,
        reduce_only: bool = False,
        tag: str = "",
        reason: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Working | None:
        """Submit an order; returns it, or None when held back (trading off, risk, below one lot)."""
        if not self.params.trade:
            return None
        quantity = round_qty(quantity)
        if quantity <= 0 or not math.isfinite(quantity):
            self.counts["below_lot"] += 1
            return None
        if not reduce_only and not self.may_open(symbol):
            self.counts["held_back"] += 1
            return None
        order = Order(
            order_id=f"{self.ctx.bot_id}-{self.next_order}",
            symbol=symbol,
            exchange=exchange,
            side=side,
            type="MARKET" if price is None else "LIMIT",
            quantity=quantity,
            status="NEW",
            price=price,
            bot_id=self.ctx.bot_id,
            reason=reason,
        )
        self.next_order += 1
        metadata: dict[str, Any] = {"botId": self.ctx.bot_id, "dataTime": time}
        if tif is not None:
            metadata["timeInForce"] = tif
        if post_only:
            metadata["postOnly"] = True
        metadata.update(extra or {})
        working = self.orders[order.order_id] = Working(order, tag, time)
        self.counts["orders"] += 1
        await self.ctx.publish("trading.order.submitted", order, causation_id=cause.id, metadata=metadata)
        return working

    async def cancel(self, cause: Event, working: Working, time: int) -> None:
        if working.done or working.cancelling:
            return
        working.cancelling = True
        self.counts["cancel_requests"] += 1
        await self.ctx.publish(
            "trading.order.cancel",
            working.order,
            causation_id=cause.id,
            metadata={"botId": self.ctx.bot_id, "dataTime": time},
        )

    async def amend(
        self, cause: Event, working: Working, *, price: float, quantity: float, time: int
    ) -> None:
        """Ask to move a resting order to ``price`` / total ``quantity`` (one amend in flight at a time)."""
        if working.done or working.cancelling or working.amending is not None:
            return
        working.amending = (price, quantity)
        self.counts["amend_requests"] += 1
        await self.ctx.publish(
            "trading.order.amend",
            msgspec.structs.replace(working.order, price=price, quantity=round_qty(quantity), status="NEW"),
            causation_id=cause.id,
            metadata={"botId": self.ctx.bot_id, "dataTime": time},
        )

    async def signal(
        self,
        cause: Event,
        *,
        exchange: str,
        symbol: str,
        direction: Literal["LONG", "SHORT"],
        confidence: float,
        time: int,
        entry: float | None = None,
        stop: float | None = None,
        take: float | None = None,
        reason: str | None = None,
    ) -> Signal:
        signal = Signal(
            symbol=symbol,
            exchange=exchange,
            direction=direction,
            confidence=round(min(1.0, max(0.0, confidence)), 4),
            entry_price=entry if entry is not None and 0 < entry < math.inf else None,
            stop_loss=stop if stop is not None and 0 < stop < math.inf else None,
            take_profit=take if take is not None and 0 < take < math.inf else None,
            reason=reason,
        )
        await self.ctx.publish(
            "trading.signal.generated",
            signal,
            causation_id=cause.id,
            metadata={"botId": self.ctx.bot_id, "dataTime": time},
        )
        self.counts["signals"] += 1
        return signal

    async def flatten(
        self, cause: Event, key: SeriesKey, time: int, reason: str, tag: str = "exit"
    ) -> Working | None:
        """A MARKET order taking the series' position back to zero (reduce only; not while an order
        with the same ``tag`` is still working on the series, so one exit is never sent twice)."""
        held = self.position[key]
        if held == 0 or self.working(tag=tag, key=key):
            return None
        return await self.submit(
            cause,
            exchange=key[0],
            symbol=key[1],
            side="SELL" if held > 0 else "BUY",
            quantity=abs(held),
            time=time,
            reduce_only=True,
            tag=tag,
            reason=reason,
        )

    def available(self, exchange: str, asset: str) -> float | None:
        """The exchange's last reported available balance, or None if it never reported one."""
        found = self.balances.get((exchange, asset))
        return None if found is None else found.available

    def stats(self) -> dict[str, Any]:
        c = self.counts
        return {
            "signals": c["signals"],
            "orders": c["orders"],
            "fills": c["fills"],
            "rejections": c["rejections"],
            "cancels": c["cancels"],
            "heldBack": c["held_back"],
            "working": len(self.working()),
            "blocked": self.risk.blocked,
            "positions": {f"{e}:{s}": q for (e, s), q in sorted(self.position.items()) if q},
            "untimed": c["untimed"],
        }
