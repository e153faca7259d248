"""EXC, the paper exchange: fills the bots' orders against the feed's prices and keeps their books.

Orders arrive on ``trading.order.submitted`` (``botId`` = the submitting bot, status NEW).

The reference price of an order is the close of its *decision bar*: the bar of the order's series whose
open time is the order's ``metadata.dataTime`` (or the last bar before it, for a series on another
clock). The data time comes with the order's lineage (the candle a strategy reacted to, the signal
LOGOS acted on), so a fill never depends on how far the exchange has got in the feed: if it has not
seen that bar yet it holds the order until it has, and if it has moved on it still uses that bar's
close (kept for ``price_history_bars`` bars). An order without a data time uses the series' last price.

MARKET orders fill at once at the reference price moved against the taker by ``slippage_bps``;
LIMIT orders fill at once when marketable at the reference price (at the slipped price, capped by the
limit), otherwise rest until a later bar crosses the limit (at the limit, or at the open when the bar
gapped through it). Every fill pays ``fee_bps`` of its notional. Accounting is
:mod:`citarion_bots.books` (Decimal cents, balanced exactly).

Rejections (``trading.order.rejected``, ``reason`` set): no ``botId``, not NEW, unsupported type,
duplicate id, no price yet for the series, a decision bar older than the price history, quantity
below the 1e-8 lot, insufficient cash,
insufficient position (spot; shorts only with ``allow_short``), or the bot is blocked by the risk
guard (``risk.block.set`` / ``risk.block.cleared``, dict payloads with ``botId``). A blocked bot may
still *reduce* its position when ``blocked_may_reduce``: a block exists to stop risk growing, and
refusing the exit would trap the very exposure it is about.

The exchange also hears its own ``trading.order.*`` reports back; it acts only on ``submitted`` and
``cancel``, so they cannot loop.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import msgspec
from pydantic import Field

from citarion_host.bot import Bot
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.lineage import DATA_TIME
from citarion_host.payloads import Candle, Order, Position, Ticker

from .books import Book, dec, lots, quote
from .common import FEED_COMPLETED, SeriesKey, StrictParams

__all__ = ["PaperExchange", "PaperExchangeParams", "citarion_bot_types"]

_PRICE_STEP = Decimal("0.00000001")


class PaperExchangeParams(StrictParams):
    starting_cash: float = Field(default=10_000.0, gt=0)
    starting_cash_by_bot: dict[str, float] = {}
    fee_bps: float = Field(default=10.0, ge=0, lt=10_000)
    slippage_bps: float = Field(default=5.0, ge=0, lt=10_000)
    allow_short: bool = False
    blocked_may_reduce: bool = True
    limit_ttl_bars: int = Field(default=0, ge=0)
    mark_every_bars: int = Field(default=0, ge=0)
    final_marks: bool = True
    price_history_bars: int = Field(default=1000, ge=1)


@dataclass(slots=True)
class _Resting:
    order: Order
    quantity: Decimal
    placed_tick: int
    cause: str


@dataclass(slots=True)
class _History:
    """A series' recent bars: data time -> (close, bar clock), oldest first."""

    bars: dict[int, tuple[Decimal, int]]
    last_time: int

    def at(self, data_time: int) -> tuple[Decimal, int] | None:
        """The bar at ``data_time``, or the last one before it (a series on another clock)."""
        found = self.bars.get(data_time)
        if found is not None:
            return found
        earlier = [t for t in self.bars if t <= data_time]
        return self.bars[max(earlier)] if earlier else None


class PaperExchange(Bot):
    type_name = "paper-exchange"
    description = "EXC: paper exchange; fills orders on feed prices with fees/slippage, keeps per-bot books"
    Params = PaperExchangeParams
    params: PaperExchangeParams

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.prices: dict[SeriesKey, Decimal] = {}
        # a bar clock per series: advanced by a bar's first quote (its ticker), or by its candle when
        # no ticker came, so a resting limit is only matched against bars that began after it
        self.ticks: Counter[SeriesKey] = Counter()
        self._quoted: set[SeriesKey] = set()
        self.resting: dict[SeriesKey, list[_Resting]] = {}
        self.history: dict[SeriesKey, _History] = {}
        # orders whose decision bar the feed has not reached yet: (data time, event, order)
        self.held: dict[SeriesKey, list[tuple[int, Event, Order]]] = {}
        self.books: dict[str, Book] = {}
        self.blocked: dict[str, str] = {}
        self.counts: Counter[str] = Counter()
        self._order_ids: set[tuple[str, str]] = set()
        self._fee_bps = dec(self.params.fee_bps)
        self._slip = dec(self.params.slippage_bps) / Decimal(10_000)

    def book(self, bot_id: str) -> Book:
        found = self.books.get(bot_id)
        if found is None:
            cash = self.params.starting_cash_by_bot.get(bot_id, self.params.starting_cash)
            found = self.books[bot_id] = Book(dec(cash))
        return found

    # -- events ----------------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        payload, topic = event.payload, event.topic
        if isinstance(payload, Ticker):
            key = (payload.exchange, payload.symbol)
            if key not in self._quoted:
                self._quoted.add(key)
                self.ticks[key] += 1
            self._mark(key, dec(payload.last))
            data_time = event.metadata.get(DATA_TIME)
            if isinstance(data_time, int):
                await self._bar_seen(key, data_time, dec(payload.last))
        elif isinstance(payload, Candle):
            await self._on_candle(event, payload)
        elif isinstance(payload, Order):
            if topic == "trading.order.submitted":
                await self._submit(event, payload)
            elif topic == "trading.order.cancel":
                await self._cancel(event, payload)
        elif topic == FEED_COMPLETED:
            if self.params.final_marks:
                await self._publish_marks(event, self.prices)
        elif topic.startswith("risk.block.") and isinstance(payload, dict):
            bot_id = payload.get("botId")
            if isinstance(bot_id, str):
                if topic == "risk.block.set":
                    self.blocked[bot_id] = str(payload.get("reason") or "risk block")
                elif topic == "risk.block.cleared":
                    self.blocked.pop(bot_id, None)

    async def _bar_seen(self, key: SeriesKey, data_time: int, close: Decimal) -> None:
        """Record a bar's close by its data time; fill the orders that were waiting for it."""
        history = self.history.get(key)
        if history is None:
            history = self.history[key] = _History({}, data_time)
        history.bars[data_time] = (close, self.ticks[key])
        history.last_time = max(history.last_time, data_time)
        while len(history.bars) > self.params.price_history_bars:
            del history.bars[next(iter(history.bars))]
        waiting = self.held.get(key)
        if waiting:
            ready = [item for item in waiting if item[0] <= history.last_time]
            self.held[key] = [item for item in waiting if item[0] > history.last_time]
            for _, held_event, order in ready:
                await self._submit(held_event, order)

    async def _on_candle(self, event: Event, candle: Candle) -> None:
        key = (candle.exchange, candle.symbol)
        if key in self._quoted:
            self._quoted.discard(key)  # this bar's ticker already advanced the clock
        else:
            self.ticks[key] += 1
            await self._bar_seen(key, candle.open_time, dec(candle.close))
        now = self.ticks[key]
        for resting in list(self.resting.get(key, ())):
            order = resting.order
            if resting.placed_tick >= now:
                continue  # placed after this bar's prices were known: only later bars may fill it
            limit = dec(order.price or 0)
            if order.side == "BUY" and dec(candle.low) <= limit:
                price = min(limit, dec(candle.open))
            elif order.side == "SELL" and dec(candle.high) >= limit:
                price = max(limit, dec(candle.open))
            elif self.params.limit_ttl_bars and now - resting.placed_tick >= self.params.limit_ttl_bars:
                self.resting[key].remove(resting)
                self.counts["cancelled"] += 1
                await self._report(
                    "trading.order.cancelled", order, resting.cause, status="CANCELLED", reason="expired"
                )
                continue
            else:
                continue
            self.resting[key].remove(resting)
            await self._execute(order, resting.quantity, price, resting.cause)
        self._mark(key, dec(candle.close))
        every = self.params.mark_every_bars
        if every and now % every == 0:
            await self._publish_marks(event, (key,))

    def _mark(self, key: SeriesKey, mark: Decimal) -> None:
        """Set the series' last price and revalue every bot holding it (no event: see the module doc)."""
        self.prices[key] = mark
        for book in self.books.values():
            held = book.holdings.get(key)
            if held is not None:
                held.mark = mark

    async def _publish_marks(self, event: Event, keys: Iterable[SeriesKey]) -> None:
        """Report every open position in ``keys`` at its current mark (priority low: marks shed first)."""
        for key in list(keys):
            for bot_id, book in self.books.items():
                held = book.holdings.get(key)
                if held is not None and held.quantity:
                    position = self.position(bot_id, key)
                    await self.ctx.publish(
                        "trading.position.updated", position, priority="low", causation_id=event.id
                    )

    def mark_to_market(self, exchange: str, symbol: str, price: float) -> list[Position]:
        """Set the series' last price and revalue every bot holding it; returns their positions."""
        key = (exchange, symbol)
        self._mark(key, dec(price))
        return [self.position(bot_id, key) for bot_id, book in self.books.items() if key in book.holdings]

    def position(self, bot_id: str, key: SeriesKey) -> Position:
        book = self.book(bot_id)
        held = book.holding(key)
        return Position(
            bot_id=bot_id,
            exchange=key[0],
            symbol=key[1],
            quantity=float(held.quantity),
            entry_price=float(held.entry_price),
            mark_price=float(held.mark),
            realized_pnl=float(held.realized),
            unrealized_pnl=float(held.unrealized),
            fees_paid=float(held.fees),
            cash=float(book.cash),
        )

    # -- orders ----------------------------------------------------------------------------------

    async def _submit(self, event: Event, order: Order) -> None:
        reason = self._invalid(order)
        if reason is not None:
            await self._reject(order, event.id, reason)
            return
        assert order.bot_id is not None
        key, qty = (order.exchange, order.symbol), lots(dec(order.quantity))
        reference = self.reference(key, event.metadata.get(DATA_TIME))
        if reference is None:  # the decision bar is still to come: wait for it
            self.held.setdefault(key, []).append((event.metadata[DATA_TIME], event, order))
            self.counts["held"] += 1
            return
        if isinstance(reference, str):
            await self._reject(order, event.id, reference)
            return
        last, placed_tick = reference
        self._order_ids.add((order.bot_id, order.order_id))
        slipped = (last * (1 + self._slip) if order.side == "BUY" else last * (1 - self._slip)).quantize(
            _PRICE_STEP
        )
        if order.type == "MARKET":
            await self._execute(order, qty, slipped, event.id)
            return
        limit = dec(order.price or 0)
        if order.side == "BUY" and last <= limit:
            await self._execute(order, qty, min(limit, slipped), event.id)
        elif order.side == "SELL" and last >= limit:
            await self._execute(order, qty, max(limit, slipped), event.id)
        elif (refusal := self._refusal(order, qty, limit)) is not None:
            await self._reject(order, event.id, refusal)  # checked again when it fills: cash is not reserved
        else:
            self.resting.setdefault(key, []).append(_Resting(order, qty, placed_tick, event.id))
            await self._report("trading.order.accepted", order, event.id, status="PENDING")

    def reference(self, key: SeriesKey, data_time: Any) -> tuple[Decimal, int] | str | None:
        """The price an order decided at ``data_time`` trades at, with the bar clock of that bar.

        None: that bar has not been seen yet (hold the order). A string: why there is none.
        """
        if not isinstance(data_time, int):
            return self.prices[key], self.ticks[key]
        history = self.history.get(key)
        if history is None or history.last_time < data_time:
            return None
        found = history.at(data_time)
        if found is None:
            kept = self.params.price_history_bars
            return f"decision bar {data_time} is older than the price history ({kept} bars)"
        return found

    def _invalid(self, order: Order) -> str | None:
        if not order.bot_id:
            return "botId missing: the exchange keeps books per bot"
        if order.status != "NEW":
            return f"status must be NEW, got {order.status}"
        if order.type not in ("MARKET", "LIMIT"):
            return f"unsupported order type {order.type} (MARKET and LIMIT only)"
        if (order.bot_id, order.order_id) in self._order_ids:
            return f"duplicate orderId {order.order_id}"
        if (order.exchange, order.symbol) not in self.prices:
            return f"unknown symbol or no price yet for {order.exchange}:{order.symbol}"
        if lots(dec(order.quantity)) <= 0:
            return f"quantity {order.quantity} is below the lot size 1e-8"
        return None

    def _reduces(self, bot_id: str, key: SeriesKey, side: str, qty: Decimal) -> bool:
        held = self.book(bot_id).holding(key).quantity
        return (side == "SELL" and 0 < qty <= held) or (side == "BUY" and 0 < qty <= -held)

    def _block(self, order: Order, qty: Decimal) -> str | None:
        bot_id = order.bot_id or ""
        if bot_id not in self.blocked:
            return None
        if self.params.blocked_may_reduce and self._reduces(
            bot_id, (order.exchange, order.symbol), order.side, qty
        ):
            return None
        return f"bot blocked by risk guard: {self.blocked[bot_id]}"

    def _refusal(self, order: Order, qty: Decimal, price: Decimal) -> str | None:
        """Why this fill may not happen now (checked at execution, so resting orders re-check)."""
        bot_id, key = order.bot_id or "", (order.exchange, order.symbol)
        blocked = self._block(order, qty)
        if blocked is not None:
            return blocked
        if self._reduces(bot_id, key, order.side, qty):
            return None
        book = self.book(bot_id)
        held = book.holding(key).quantity
        notional, fee = quote(qty, price, self._fee_bps)
        if order.side == "BUY" and book.cash - notional - fee < 0:
            return f"insufficient cash: need {notional + fee}, have {book.cash}"
        if order.side == "SELL" and qty > max(held, Decimal(0)):
            if not self.params.allow_short:
                return f"insufficient position: selling {qty}, holding {held}"
            short_value = (qty - held) * price  # the whole short after this fill
            if short_value > book.equity:
                return f"short limit: a {short_value:.2f} short would exceed equity {book.equity}"
        return None

    async def _execute(self, order: Order, qty: Decimal, price: Decimal, cause: str) -> None:
        refusal = self._refusal(order, qty, price)
        if refusal is not None:
            await self._reject(order, cause, refusal)
            return
        assert order.bot_id is not None
        key = (order.exchange, order.symbol)
        _, fee = quote(qty, price, self._fee_bps)
        fill = self.book(order.bot_id).apply(key, order.side, qty, price, fee)
        self.counts["filled"] += 1
        await self._report(
            "trading.order.filled",
            order,
            cause,
            status="FILLED",
            filled_quantity=float(qty),
            average_price=float(price),
            fee=float(fill.fee),
        )
        await self.ctx.publish(
            "trading.position.updated", self.position(order.bot_id, key), causation_id=cause
        )

    async def _cancel(self, event: Event, order: Order) -> None:
        key = (order.exchange, order.symbol)
        for resting in self.resting.get(key, ()):
            if resting.order.order_id == order.order_id and resting.order.bot_id == order.bot_id:
                self.resting[key].remove(resting)
                self.counts["cancelled"] += 1
                await self._report("trading.order.cancelled", resting.order, event.id, status="CANCELLED")
                return
        await self._reject(order, event.id, f"cancel: no resting order {order.order_id}")

    async def _reject(self, order: Order, cause: str, reason: str) -> None:
        self.counts["rejected"] += 1
        self.ctx.log.info("order rejected", extra={"order_id": order.order_id, "reason": reason})
        await self._report(
            "trading.order.rejected", order, cause, status="REJECTED", reason=reason, priority="high"
        )

    async def _report(
        self, topic: str, order: Order, cause: str, *, priority: Any = "normal", **changes: Any
    ) -> None:
        await self.ctx.publish(
            topic, msgspec.structs.replace(order, **changes), priority=priority, causation_id=cause
        )

    def stats(self) -> dict[str, Any]:
        return {
            "filled": self.counts["filled"],
            "rejected": self.counts["rejected"],
            "cancelled": self.counts["cancelled"],
            "resting": sum(len(v) for v in self.resting.values()),
            "heldForBar": sum(len(v) for v in self.held.values()),
            "blocked": sorted(self.blocked),
            "balanced": all(book.imbalance() == 0 for book in self.books.values()),
            "books": {bot_id: book.snapshot() for bot_id, book in sorted(self.books.items())},
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [PaperExchange]
