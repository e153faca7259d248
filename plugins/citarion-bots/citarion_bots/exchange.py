"""EXC, the paper exchange: fills the bots' orders against the feed's prices and keeps their books.

Orders arrive on ``trading.order.submitted`` (``botId`` = the submitting bot, status NEW); resting
orders are cancelled on ``trading.order.cancel`` and moved on ``trading.order.amend``; transfers
between exchanges arrive on ``trading.order.transfer.requested``. docs/market.md ("Events the bots
trade with") is the contract; docs/bots.md ("EXC") the reference.

A series is matched one of two ways, by what the feed gives it:

* **Bar mode** (the series has no level-2 book: the demo). The reference price of an order is the close
  of its *decision bar*: the bar of the order's series whose open time is the order's
  ``metadata.dataTime`` (or the last bar before it, for a series on another clock). The data time comes
  with the order's lineage (the candle a strategy reacted to, the signal LOGOS acted on), so a fill
  never depends on how far the exchange has got in the feed: if it has not seen that bar yet it holds
  the order until it has, and if it has moved on it still uses that bar's close (kept for
  ``price_history_bars`` bars). An order without a data time uses the series' last price. MARKET
  orders fill at once at the reference price moved against the taker by ``slippage_bps``; LIMIT orders
  fill at once when marketable at the reference price (at the slipped price, capped by the limit),
  otherwise rest until a later bar crosses the limit (at the limit, or at the open when the bar gapped
  through it).
* **Book mode** (a ``market.orderbook.*`` event was seen for the series). MARKET orders and the
  marketable part of LIMITs walk the latest book level by level at the taker fee (:mod:`.matching`:
  what one order takes, the next cannot); a MARKET remainder beyond the book is cancelled, an IOC's
  remainder too, a GTC LIMIT's remainder rests. A post-only LIMIT that would take is rejected. Resting
  orders fill at their limit, at the maker fee, when a later book or a trade print crosses them, as far
  as the crossing size goes (partial fills).

Every report carries the order's *cumulative* ``filledQuantity``, ``averagePrice`` and ``fee``.
Accounting is :mod:`citarion_bots.books` (Decimal cents, balanced exactly). A bot listed in
``accounts`` has a *venue account*: cash and assets per exchange (a buy spends that exchange's quote
only), ``trading.position.balance.<exchange>`` reports (at start, zeros included, and after every
change), and transfers between its exchanges with a fee and a settlement delay in data time
(pending -> settled), idempotent by client id (:mod:`.ledger`). Other bots share one cash pool across
exchanges and get no balance reports (the demo strategies).

Rejections (``trading.order.rejected``, ``reason`` set): no ``botId``, not NEW, unsupported type,
duplicate id, no price yet for the series, a decision bar older than the price history, quantity
below the 1e-8 lot, insufficient cash, insufficient position (spot; shorts only with
``allow_short``), post-only would take, or the bot is blocked by the risk guard (``risk.block.set`` /
``risk.block.cleared``, dict payloads with ``botId``). A blocked bot may still *reduce* its position
when ``blocked_may_reduce``: a block exists to stop risk growing, and refusing the exit would trap the
very exposure it is about. A cancel or amend that cannot apply is answered ``cancel_rejected`` /
``amend_rejected``, the order unchanged.

Positions are reported when a fill changes them, and at their final mark when the feed completes;
``mark_every_bars`` adds periodic marks. The exchange also hears its own ``trading.order.*`` reports
back; it acts only on requests, so they cannot loop.

Its state (:mod:`.exchange_state`: books, order ids, resting and held orders, price history, level-2
books, blocks, transfers, counters) survives reloads, crash restarts and host restarts
(``docs/state.md``): the books still balance to the cent and a duplicate order id is still refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from decimal import Decimal
from typing import Any, Literal

import msgspec
from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.lineage import DATA_TIME
from citarion_host.payloads import Balance, Candle, Order, OrderBook, Position, Ticker, Trade, Transfer

from .assets import base_asset
from .books import Book, Holding, cents, dec, lots, quote
from .common import FEED_COMPLETED, SeriesKey, StrictParams, interval_ms
from .exchange_state import ExchangeState, History, Resting
from .ledger import TransferLedger, TransferRecord
from .matching import Depth, print_crosses

__all__ = ["PaperExchange", "PaperExchangeParams", "citarion_bot_types"]

_PRICE_STEP = Decimal("0.00000001")
ZERO = Decimal(0)
Side = Literal["BUY", "SELL"]
REQUESTS = (
    "trading.order.submitted",
    "trading.order.cancel",
    "trading.order.amend",
    "trading.order.transfer.requested",
)


class PaperExchangeParams(StrictParams):
    starting_cash: float = Field(default=10_000.0, gt=0)
    starting_cash_by_bot: dict[str, float] = {}
    fee_bps: float = Field(default=10.0, ge=0, lt=10_000)
    maker_fee_bps: float | None = Field(default=None, ge=0, lt=10_000)
    slippage_bps: float = Field(default=5.0, ge=0, lt=10_000)
    allow_short: bool = False
    blocked_may_reduce: bool = True
    limit_ttl_bars: int = Field(default=0, ge=0)
    mark_every_bars: int = Field(default=0, ge=0)
    final_marks: bool = True
    price_history_bars: int = Field(default=1000, ge=1)
    interval: str | None = None
    quote_asset: str = "USDT"
    accounts: dict[str, dict[str, dict[str, float]]] = {}
    transfer_fee_flat: float = Field(default=1.0, ge=0)
    transfer_fee_rate: float = Field(default=0.0, ge=0, lt=1)
    transfer_delay_ms: int = Field(default=60_000, ge=0)
    transfer_agents: dict[str, list[str]] = {}

    @model_validator(mode="after")
    def _check(self) -> PaperExchangeParams:
        if self.interval is not None:
            interval_ms(self.interval)
        for bot_id, venues in self.accounts.items():
            if not venues:
                raise ValueError(f"accounts.{bot_id}: name at least one exchange")
            for exchange, assets in venues.items():
                for asset, amount in assets.items():
                    if not amount >= 0:
                        raise ValueError(f"accounts.{bot_id}.{exchange}.{asset}: must be >= 0, got {amount}")
        return self


class PaperExchange(Bot[PaperExchangeParams]):
    type_name = "paper-exchange"
    description = (
        "EXC: paper exchange; fills orders on bar prices or level-2 books with fees, keeps per-bot books, "
        "balances and transfers"
    )
    State = ExchangeState

    def __init__(self, ctx: BotContext, params: PaperExchangeParams) -> None:
        super().__init__(ctx, params)
        self.prices: dict[SeriesKey, Decimal] = {}
        # a bar clock per series: advanced by a bar's first quote (its ticker), or by its candle when
        # no ticker came, so a resting limit is only matched against bars that began after it
        self.ticks: Counter[SeriesKey] = Counter()
        self._quoted: set[SeriesKey] = set()
        #: Each series' last marked float and its Decimal: a bar's ticker and candle carry the same
        #: price, converted once (derived, not state).
        self._last_marked: dict[SeriesKey, tuple[float, Decimal]] = {}
        #: Series whose latest bar price is not yet marked in Decimal: a bar's mark is only read when
        #: an order of the series fills, a position is reported or a snapshot taken, so the float waits
        #: here (:meth:`_mark_later`) and :meth:`_marks_due` marks it right before any of those (the
        #: marks they see are the ones marking at once gave; derived, not state).
        self._unmarked: dict[SeriesKey, float] = {}
        self.resting: dict[SeriesKey, list[Resting]] = {}
        self.history: dict[SeriesKey, History] = {}
        self.depth: dict[SeriesKey, Depth] = {}
        # orders whose decision bar the feed has not reached yet: (data time, event, order)
        self.held: dict[SeriesKey, list[tuple[int, Event, Order]]] = {}
        self.books: dict[str, Book] = {}
        self.blocked: dict[str, str] = {}
        self.counts: Counter[str] = Counter()
        self.transfers = TransferLedger()
        self.clock = 0  # the latest data time seen: transfers settle by it
        self._order_ids: dict[tuple[str, str], None] = {}  # a set in arrival order
        self._announced = False
        self._holders: dict[SeriesKey, list[Holding]] = {}
        self._holders_books = 0
        self._book_seq = 0
        self._fee_bps = dec(self.params.fee_bps)
        maker = self.params.maker_fee_bps
        self._maker_bps = self._fee_bps if maker is None else dec(maker)
        self._slip = dec(self.params.slippage_bps) / Decimal(10_000)
        # read on every bar (params attributes cost about twice a plain one): the bars' interval, the
        # periodic marks and the price history's length
        self._interval = self.params.interval
        self._mark_every = self.params.mark_every_bars
        self._history_bars = self.params.price_history_bars
        # assets held at start wait for their series' first price to enter the books at it
        self._deposits: dict[SeriesKey, list[tuple[str, Decimal]]] = {}
        for bot_id, venues in self.params.accounts.items():
            book = self.book(bot_id)
            for exchange, assets in venues.items():
                for asset, amount in assets.items():
                    if asset != self.params.quote_asset and amount > 0:
                        key = (exchange, asset + self.params.quote_asset)
                        self._deposits.setdefault(key, []).append((bot_id, lots(dec(amount))))
            assert book.venues is not None

    def book(self, bot_id: str) -> Book:
        found = self.books.get(bot_id)
        if found is None:
            venues = self.params.accounts.get(bot_id)
            if venues is not None:
                quote_asset = self.params.quote_asset
                cash = {ex: dec(assets.get(quote_asset, 0.0)) for ex, assets in venues.items()}
                found = self.books[bot_id] = Book(ZERO, venues=cash)
            else:
                cash_ = self.params.starting_cash_by_bot.get(bot_id, self.params.starting_cash)
                found = self.books[bot_id] = Book(dec(cash_))
        return found

    async def start(self) -> None:
        """Venue accounts report every balance they start with (zeros included), once."""
        if self._announced:
            return
        self._announced = True
        for bot_id, venues in self.params.accounts.items():
            for exchange, assets in venues.items():
                for asset in dict.fromkeys([self.params.quote_asset, *assets]):
                    await self._publish_balance(None, bot_id, exchange, asset)

    # -- state (docs/state.md) ----------------------------------------------------------------------

    def snapshot(self) -> ExchangeState:
        self._marks_due()
        return ExchangeState(
            prices=list(self.prices.items()),
            ticks=list(self.ticks.items()),
            quoted=sorted(self._quoted),
            resting=list(self.resting.items()),
            history=list(self.history.items()),
            depth=[(key, depth.state()) for key, depth in self.depth.items()],
            held=[(key, [(t, e) for t, e, _ in waiting]) for key, waiting in self.held.items()],
            books={bot_id: book.state() for bot_id, book in self.books.items()},
            blocked=self.blocked,
            counts=self.counts,
            transfers=self.transfers.state(),
            clock=self.clock,
            order_ids=list(self._order_ids),
            book_seq=self._book_seq,
            deposits=list(self._deposits.items()),
            announced=self._announced,
        )

    def restore(self, state: ExchangeState) -> None:
        """Take a stored state back. Params stay the new instance's: a changed fee applies from now
        on, a bot's book keeps the cash it has (``starting_cash`` is for books not opened yet)."""
        self.prices = dict(state.prices)
        self.ticks = Counter(dict(state.ticks))
        self._quoted = set(state.quoted)
        self.resting = {key: list(orders) for key, orders in state.resting}
        self.history = dict(state.history)
        self.depth = {key: Depth.restored(stored) for key, stored in state.depth}
        self.held = {key: [(t, e, e.payload) for t, e in waiting] for key, waiting in state.held}
        self.books = {bot_id: Book.of(stored) for bot_id, stored in state.books.items()}
        self.blocked = dict(state.blocked)
        self.counts = Counter(state.counts)
        self.transfers = TransferLedger.of(state.transfers)
        self.clock = state.clock
        self._order_ids = dict.fromkeys(state.order_ids)
        self._book_seq = state.book_seq
        self._deposits = {key: list(waiting) for key, waiting in state.deposits}
        self._announced = state.announced
        self._holders, self._holders_books = {}, len(self.books)
        self._unmarked = {}

    # -- events ----------------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        payload, topic = event.payload, event.topic
        if isinstance(payload, Ticker):
            key = (payload.exchange, payload.symbol)
            if key not in self._quoted:
                self._quoted.add(key)
                self.ticks[key] += 1
            self._mark_later(key, payload.last)
            data_time = event.metadata.get(DATA_TIME)
            # The common case stays synchronous (no coroutine per step): held orders, due transfers and
            # deposits are awaited only when there are some.
            if isinstance(data_time, int):
                ready = self._record_bar(key, data_time, payload.last)
                for _, held_event, order in ready or ():
                    await self._submit(held_event, order)
                # _advance, inline (every tick and every candle): the clock moves, due transfers settle
                if data_time > self.clock:
                    self.clock = data_time
                due = self.transfers.next_due
                if due is not None and due <= self.clock:
                    await self._settle_due(event)
            if self._deposits:
                await self._deposit_due(event, key)
        elif isinstance(payload, Candle):
            if self._interval is None or payload.interval == self._interval:
                key = (payload.exchange, payload.symbol)
                if key in self._quoted and not self.resting.get(key) and not self._mark_every:
                    # what _on_candle comes to for a quoted bar with nothing resting, without a
                    # coroutine: the bar's ticker already advanced the clock and recorded the bar
                    self._quoted.discard(key)
                    self._mark_later(key, payload.close)
                else:
                    await self._on_candle(event, payload)
                if payload.open_time > self.clock:  # _advance, inline (see the ticker's)
                    self.clock = payload.open_time
                due = self.transfers.next_due
                if due is not None and due <= self.clock:
                    await self._settle_due(event)
        elif isinstance(payload, OrderBook):
            await self._on_book(event, payload)
        elif isinstance(payload, Trade):
            await self._on_trade(event, payload)
        elif isinstance(payload, Order):
            if topic == "trading.order.submitted":
                await self._submit(event, payload)
            elif topic == "trading.order.cancel":
                await self._cancel(event, payload)
            elif topic == "trading.order.amend":
                await self._amend(event, payload)
        elif isinstance(payload, Transfer):
            if topic == "trading.order.transfer.requested":
                await self._transfer(event, payload)
        elif topic == FEED_COMPLETED:
            if self.params.final_marks:
                self._marks_due()
                await self._publish_marks(event, self.prices)
        elif topic.startswith("risk.block.") and isinstance(payload, dict):
            bot_id = payload.get("botId")
            if isinstance(bot_id, str):
                if topic == "risk.block.set":
                    self.blocked[bot_id] = str(payload.get("reason") or "risk block")
                elif topic == "risk.block.cleared":
                    self.blocked.pop(bot_id, None)

    async def _tick(self, event: Event, data_time: int) -> None:
        """The data clock moved: settle the transfers that are due."""
        if self._advance(data_time):
            await self._settle_due(event)

    def _advance(self, data_time: int) -> bool:
        """Move the data clock to ``data_time`` (never back); True if a transfer is due now."""
        if data_time > self.clock:
            self.clock = data_time
        due = self.transfers.next_due
        return due is not None and due <= self.clock

    async def _settle_due(self, event: Event) -> None:
        for record in self.transfers.due(self.clock):
            await self._settle(event, record)

    async def _bar_seen(self, key: SeriesKey, data_time: int, close: float) -> None:
        """Record a bar's close by its data time; fill the orders that were waiting for it."""
        for _, held_event, order in self._record_bar(key, data_time, close) or ():
            await self._submit(held_event, order)

    def _record_bar(
        self, key: SeriesKey, data_time: int, close: float
    ) -> list[tuple[int, Event, Order]] | None:
        """Record a bar's close by its data time; the held orders it releases (to submit, in order)."""
        history = self.history.get(key)
        if history is None:
            history = self.history[key] = History({}, data_time)
        history.bars[data_time] = (close, self.ticks[key])
        if data_time > history.last_time:
            history.last_time = data_time
        while len(history.bars) > self._history_bars:
            del history.bars[next(iter(history.bars))]
        waiting = self.held.get(key)
        if not waiting:
            return None
        ready = [item for item in waiting if item[0] <= history.last_time]
        self.held[key] = [item for item in waiting if item[0] > history.last_time]
        return ready

    async def _on_candle(self, event: Event, candle: Candle) -> None:
        key = (candle.exchange, candle.symbol)
        self._marks_due(key)  # the bar's ticker mark, before a resting order fills
        if key in self._quoted:
            self._quoted.discard(key)  # this bar's ticker already advanced the clock
        else:
            self.ticks[key] += 1
            await self._bar_seen(key, candle.open_time, candle.close)
        now = self.ticks[key]
        book_mode = key in self.depth
        for resting in list(self.resting.get(key, ())):
            order = resting.order
            if resting.placed_tick >= now:
                continue  # placed after this bar's prices were known: only later bars may fill it
            limit = dec(order.price or 0)
            if book_mode:  # the books and prints fill it; bars only age it
                price = None
            elif order.side == "BUY" and dec(candle.low) <= limit:
                price = min(limit, dec(candle.open))
            elif order.side == "SELL" and dec(candle.high) >= limit:
                price = max(limit, dec(candle.open))
            else:
                price = None
            if price is not None:
                self.resting[key].remove(resting)
                await self._execute(order, resting.quantity, price, resting.cause, self._maker_bps)
            elif self.params.limit_ttl_bars and now - resting.placed_tick >= self.params.limit_ttl_bars:
                self.resting[key].remove(resting)
                self.counts["cancelled"] += 1
                await self._report_resting(
                    "trading.order.cancelled", resting, resting.cause, status="CANCELLED", reason="expired"
                )
        self._mark(key, self._mark_price(key, candle.close))
        every = self.params.mark_every_bars
        if every and now % every == 0:
            await self._publish_marks(event, (key,))

    def _mark_price(self, key: SeriesKey, price: float) -> Decimal:
        """``dec(price)``, reused when the series was last marked at the same float (``dec`` formats
        and parses the float: the costliest step of a tick)."""
        last = self._last_marked.get(key)
        if last is not None and last[0] == price and type(price) is float and price:
            return last[1]
        mark = dec(price)
        if type(price) is float:
            self._last_marked[key] = (price, mark)
        return mark

    def _mark_later(self, key: SeriesKey, price: float) -> None:
        """Mark the series at ``price`` when a mark is next read (:meth:`_marks_due`); a series' first
        price at once (``prices`` keeps the order series were first priced in)."""
        if key in self.prices:
            self._unmarked[key] = price
        else:
            self._mark(key, self._mark_price(key, price))

    def _marks_due(self, key: SeriesKey | None = None) -> None:
        """Mark what :meth:`_mark_later` left waiting: ``key``'s price, or every series'."""
        unmarked = self._unmarked
        if not unmarked:
            return
        if key is None:
            for waiting, price in list(unmarked.items()):
                self._mark(waiting, self._mark_price(waiting, price))
        elif key in unmarked:
            self._mark(key, self._mark_price(key, unmarked[key]))

    def _mark(self, key: SeriesKey, mark: Decimal) -> None:
        """Set the series' last price and revalue every bot holding it (no event: see the module doc)."""
        if self._unmarked:
            self._unmarked.pop(key, None)  # this mark is the latest
        self.prices[key] = mark
        holders = self._holders.get(key)
        if holders is None or len(self.books) != self._holders_books:  # a new series or a new bot
            holders = self._index_holders(key)
        for held in holders:
            held.mark = mark

    def _index_holders(self, key: SeriesKey) -> list[Holding]:
        """The holdings of ``key`` across the bots (marks touch these, not every book); rebuilt when a
        fill or a deposit opens a holding (``_after_fill``, ``_deposit_due``)."""
        if len(self.books) != self._holders_books:
            self._holders.clear()
            self._holders_books = len(self.books)
        found = self._holders[key] = [b.holdings[key] for b in self.books.values() if key in b.holdings]
        return found

    async def _deposit_due(self, event: Event, key: SeriesKey) -> None:
        """Assets held at start enter the books at their series' first price (a position report each)."""
        waiting = self._deposits.pop(key, None) if self._deposits else None
        if waiting:
            self._marks_due(key)
        for bot_id, quantity in waiting or ():
            self.book(bot_id).deposit(key, quantity, self.prices[key])
            self._holders.pop(key, None)
            await self.ctx.publish(
                "trading.position.updated", self.position(bot_id, key), causation_id=event.id
            )

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
        self._marks_due(key)
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

    # -- the level-2 book ------------------------------------------------------------------------

    async def _on_book(self, event: Event, payload: OrderBook) -> None:
        key = (payload.exchange, payload.symbol)
        data_time = event.metadata.get(DATA_TIME)
        time = data_time if isinstance(data_time, int) else event.timestamp
        self._book_seq += 1
        depth = self.depth[key] = Depth.of(payload, self._book_seq, time)
        mid = depth.mid()
        if mid is not None:
            self._mark(key, mid.quantize(_PRICE_STEP))
        await self._deposit_due(event, key)
        for resting in list(self.resting.get(key, ())):
            if resting.placed_book >= depth.seq or not depth.touches(
                resting.order.side, resting.order.price or 0
            ):
                continue
            crossed = depth.crossing(resting.order.side, dec(resting.order.price or 0), resting.quantity)
            if crossed:
                depth.consume(resting.order.side, crossed)
                await self._maker_fill(resting, sum((q for _, q in crossed), ZERO), event.id)
        if isinstance(data_time, int):
            await self._tick(event, data_time)

    async def _on_trade(self, event: Event, trade: Trade) -> None:
        key = (trade.exchange, trade.symbol)
        if key not in self.depth:
            return
        left, price = lots(dec(trade.quantity)), dec(trade.price)
        for resting in list(self.resting.get(key, ())):
            limit = dec(resting.order.price or 0)
            if left <= 0:
                break
            if print_crosses(resting.order.side, limit, trade.side, price):
                take = min(left, resting.quantity)
                left -= take
                await self._maker_fill(resting, take, event.id)
        data_time = event.metadata.get(DATA_TIME)
        if isinstance(data_time, int):
            await self._tick(event, data_time)

    async def _maker_fill(self, resting: Resting, quantity: Decimal, cause: str) -> None:
        """``quantity`` of a resting order fills at its limit, at the maker fee."""
        order, key = resting.order, (resting.order.exchange, resting.order.symbol)
        self._marks_due(key)
        price = dec(order.price or 0)
        notional, fee = quote(quantity, price, self._maker_bps)
        refusal = self._refusal_for(order, quantity, notional, fee)
        if refusal is not None:  # e.g. the cash went elsewhere meanwhile: the order cannot stand
            self.resting[key].remove(resting)
            self.counts["cancelled"] += 1
            await self._report_resting(
                "trading.order.cancelled", resting, cause, status="CANCELLED", reason=refusal
            )
            return
        assert order.bot_id is not None
        self.book(order.bot_id).apply(key, order.side, quantity, price, fee)
        resting.quantity -= quantity
        resting.filled += quantity
        resting.notional += quantity * price
        resting.fee += fee
        if resting.quantity <= 0:
            self.resting[key].remove(resting)
            self.counts["filled"] += 1
            await self._report_resting("trading.order.filled", resting, cause, status="FILLED")
        else:
            self.counts["partial"] += 1
            await self._report_resting(
                "trading.order.partially_filled", resting, cause, status="PARTIALLY_FILLED"
            )
        await self._after_fill(order.bot_id, key, cause)

    # -- orders ----------------------------------------------------------------------------------

    async def _submit(self, event: Event, order: Order) -> None:
        reason = self._invalid(order)
        if reason is not None:
            await self._reject(order, event.id, reason)
            return
        assert order.bot_id is not None
        key, qty = (order.exchange, order.symbol), lots(dec(order.quantity))
        depth = self.depth.get(key)
        if depth is not None:
            self._order_ids[(order.bot_id, order.order_id)] = None
            await self._submit_to_book(event, order, qty, depth)
            return
        reference = self.reference(key, event.metadata.get(DATA_TIME))
        if reference is None:  # the decision bar is still to come: wait for it
            self.held.setdefault(key, []).append((event.metadata[DATA_TIME], event, order))
            self.counts["held"] += 1
            return
        if isinstance(reference, str):
            await self._reject(order, event.id, reference)
            return
        last, placed_tick = reference
        self._order_ids[(order.bot_id, order.order_id)] = None
        slipped = (last * (1 + self._slip) if order.side == "BUY" else last * (1 - self._slip)).quantize(
            _PRICE_STEP
        )
        if order.type == "MARKET":
            await self._execute(order, qty, slipped, event.id)
            return
        limit = dec(order.price or 0)
        post_only = event.metadata.get("postOnly") is True
        marketable = (order.side == "BUY" and last <= limit) or (order.side == "SELL" and last >= limit)
        if marketable and post_only:
            await self._reject(order, event.id, f"post-only: would take liquidity at {last}")
        elif order.side == "BUY" and last <= limit:
            await self._execute(order, qty, min(limit, slipped), event.id)
        elif order.side == "SELL" and last >= limit:
            await self._execute(order, qty, max(limit, slipped), event.id)
        elif event.metadata.get("timeInForce") == "IOC":
            self.counts["cancelled"] += 1
            await self._report(
                "trading.order.cancelled", order, event.id, status="CANCELLED", reason="IOC: not marketable"
            )
        elif (refusal := self._refusal(order, qty, limit)) is not None:
            await self._reject(order, event.id, refusal)  # checked again when it fills: cash is not reserved
        else:
            self.resting.setdefault(key, []).append(
                Resting(order, qty, placed_tick, event.id, post_only=post_only)
            )
            await self._report("trading.order.accepted", order, event.id, status="PENDING")

    async def _submit_to_book(self, event: Event, order: Order, qty: Decimal, depth: Depth) -> None:
        """Book mode: take what is marketable (taker fee), then cancel (MARKET, IOC) or rest (GTC)."""
        key, side = (order.exchange, order.symbol), order.side
        self._marks_due(key)
        limit = None if order.type == "MARKET" else dec(order.price or 0)
        post_only = event.metadata.get("postOnly") is True
        ioc = order.type == "MARKET" or event.metadata.get("timeInForce") == "IOC"
        if limit is not None and post_only and depth.marketable(side, limit):
            await self._reject(order, event.id, f"post-only: would take liquidity at {depth.best(side)}")
            return
        planned = depth.plan(side, qty, limit)
        taken = sum((q for _, q in planned), ZERO)
        notional = sum((cents(q * p) for p, q in planned), ZERO)
        fee = cents(notional * self._fee_bps / Decimal(10_000))
        if taken > 0 and (refusal := self._refusal_for(order, taken, notional, fee)) is not None:
            await self._reject(order, event.id, refusal)
            return
        state = Resting(order, qty, self.ticks[key], event.id, placed_book=depth.seq, post_only=post_only)
        if taken > 0:
            depth.consume(side, planned)
            book = self.book(order.bot_id or "")
            for price, quantity in planned:
                _, part_fee = quote(quantity, price, self._fee_bps)
                book.apply(key, side, quantity, price, part_fee)
                state.fee += part_fee
                state.notional += quantity * price
            state.filled, state.quantity = taken, qty - taken
        if state.quantity <= 0:
            self.counts["filled"] += 1
            await self._report_resting("trading.order.filled", state, event.id, status="FILLED")
        elif ioc:
            self.counts["cancelled"] += 1
            why = "book depth exhausted" if order.type == "MARKET" else "IOC: remainder not marketable"
            if taken == 0 and depth.best(side) is None:
                why = "no liquidity on the book"
            await self._report_resting(
                "trading.order.cancelled", state, event.id, status="CANCELLED", reason=why
            )
        else:
            assert limit is not None
            refusal = self._resting_refusal(order, state.quantity, limit)
            if refusal is not None and taken == 0:
                await self._reject(order, event.id, refusal)
                return
            if refusal is not None:
                self.counts["cancelled"] += 1
                await self._report_resting(
                    "trading.order.cancelled", state, event.id, status="CANCELLED", reason=refusal
                )
            else:
                self.resting.setdefault(key, []).append(state)
                if taken > 0:
                    self.counts["partial"] += 1
                    await self._report_resting(
                        "trading.order.partially_filled", state, event.id, status="PARTIALLY_FILLED"
                    )
                else:
                    await self._report_resting("trading.order.accepted", state, event.id, status="PENDING")
        if taken > 0:
            await self._after_fill(order.bot_id or "", key, event.id)

    def reference(self, key: SeriesKey, data_time: Any) -> tuple[Decimal, int] | str | None:
        """The price an order decided at ``data_time`` trades at, with the bar clock of that bar.

        None: that bar has not been seen yet (hold the order). A string: why there is none.
        """
        if not isinstance(data_time, int):
            self._marks_due(key)
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
        venues = self.params.accounts.get(order.bot_id)
        if venues is not None and order.exchange not in venues:
            return f"no account on {order.exchange} (accounts.{order.bot_id} names {sorted(venues)})"
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

    def _refusal(
        self, order: Order, qty: Decimal, price: Decimal, fee_bps: Decimal | None = None
    ) -> str | None:
        """Why this fill may not happen now (checked at execution, so resting orders re-check)."""
        notional, fee = quote(qty, price, self._fee_bps if fee_bps is None else fee_bps)
        return self._refusal_for(order, qty, notional, fee, price)

    def _refusal_for(
        self, order: Order, qty: Decimal, notional: Decimal, fee: Decimal, price: Decimal | None = None
    ) -> str | None:
        """Why a fill of ``qty`` for ``notional`` plus ``fee`` may not happen now."""
        bot_id, key = order.bot_id or "", (order.exchange, order.symbol)
        blocked = self._block(order, qty)
        if blocked is not None:
            return blocked
        if self._reduces(bot_id, key, order.side, qty):
            return None
        book = self.book(bot_id)
        held = book.holding(key).quantity
        cash = book.venue_cash(order.exchange)
        if order.side == "BUY" and cash - notional - fee < 0:
            where = "" if book.venues is None else f" on {order.exchange}"
            return f"insufficient cash{where}: need {notional + fee}, have {cash}"
        if order.side == "SELL" and qty > max(held, Decimal(0)):
            if not self.params.allow_short:
                return f"insufficient position: selling {qty}, holding {held}"
            self._marks_due()  # the book's equity reads every mark
            unit = price if price is not None else notional / qty
            short_value = (qty - held) * unit  # the whole short after this fill
            if short_value > book.equity:
                return f"short limit: a {short_value:.2f} short would exceed equity {book.equity}"
        return None

    def _resting_refusal(self, order: Order, qty: Decimal, limit: Decimal) -> str | None:
        """May ``qty`` rest at ``limit``? A venue account must have it available (what other resting
        orders of the bot on that exchange reserve is not); others are checked as a fill at the limit."""
        bot_id = order.bot_id or ""
        book = self.book(bot_id)
        if book.venues is None:
            return self._refusal(order, qty, limit)
        blocked = self._block(order, qty)
        if blocked is not None:
            return blocked
        if order.side == "BUY":
            notional, fee = quote(qty, limit, max(self._maker_bps, self._fee_bps))
            free = self._available_quote(bot_id, order.exchange)
            if free - notional - fee < 0:
                asset = self.params.quote_asset
                return (
                    f"insufficient available {asset} on {order.exchange}: need {notional + fee}, have {free}"
                )
        elif not self.params.allow_short:
            free_base = self._available_base(bot_id, (order.exchange, order.symbol))
            if qty > free_base:
                return f"insufficient available position: selling {qty}, available {free_base}"
        return None

    async def _execute(
        self, order: Order, qty: Decimal, price: Decimal, cause: str, fee_bps: Decimal | None = None
    ) -> None:
        """One whole fill at ``price`` (bar mode), at the taker fee unless ``fee_bps`` says otherwise."""
        self._marks_due((order.exchange, order.symbol))  # the fill marks at its price: after the bar's
        notional, fee = quote(qty, price, self._fee_bps if fee_bps is None else fee_bps)
        refusal = self._refusal_for(order, qty, notional, fee, price)  # _refusal, the quote reused
        if refusal is not None:
            await self._reject(order, cause, refusal)
            return
        assert order.bot_id is not None
        key = (order.exchange, order.symbol)
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
        await self._after_fill(order.bot_id, key, cause)

    async def _after_fill(self, bot_id: str, key: SeriesKey, cause: str) -> None:
        self._holders.pop(key, None)  # the fill may have opened a holding
        await self.ctx.publish("trading.position.updated", self.position(bot_id, key), causation_id=cause)
        if self.books[bot_id].venues is not None:
            await self._publish_balance(cause, bot_id, key[0], self.params.quote_asset)
            await self._publish_balance(cause, bot_id, key[0], base_asset(key[1], self.params.quote_asset))

    def _find(self, order: Order) -> Resting | None:
        for resting in self.resting.get((order.exchange, order.symbol), ()):
            if resting.order.order_id == order.order_id and resting.order.bot_id == order.bot_id:
                return resting
        return None

    async def _cancel(self, event: Event, order: Order) -> None:
        resting = self._find(order)
        if resting is None:
            self.counts["cancel_rejected"] += 1
            await self._report(
                "trading.order.cancel_rejected",
                order,
                event.id,
                reason=f"cancel: no resting order {order.order_id}",
            )
            return
        self.resting[(order.exchange, order.symbol)].remove(resting)
        self.counts["cancelled"] += 1
        await self._report_resting("trading.order.cancelled", resting, event.id, status="CANCELLED")
        if resting.order.bot_id and self.books[resting.order.bot_id].venues is not None:
            await self._publish_balance(
                event.id, resting.order.bot_id, order.exchange, self._reserved_asset(resting)
            )

    async def _amend(self, event: Event, order: Order) -> None:
        """Move a resting order to the new ``price`` and total ``quantity`` (what filled included)."""
        resting = self._find(order)
        key = (order.exchange, order.symbol)
        price, total = dec(order.price or 0), lots(dec(order.quantity))
        why: str | None = None
        if resting is None:
            why = f"amend: no resting order {order.order_id}"
        elif order.price is None or price <= 0:
            why = "amend: a resting order needs a positive price"
        elif total <= resting.filled:
            why = f"amend: quantity {total} not above what already filled ({resting.filled})"
        depth = self.depth.get(key)
        post_only = resting is not None and resting.post_only
        if why is None and post_only and depth is not None and depth.marketable(order.side, price):
            why = f"amend: post-only would take liquidity at {depth.best(order.side)}"
        if why is None and resting is not None:
            left = total - resting.filled
            saved = (resting.order, resting.quantity)
            self.resting[key].remove(resting)  # not its own reservation while it is checked
            refusal = self._resting_refusal(order, left, price)
            self.resting[key].append(resting)
            if refusal is not None:
                resting.order, resting.quantity = saved
                why = f"amend: {refusal}"
        if why is not None or resting is None:
            self.counts["amend_rejected"] += 1
            await self._report("trading.order.amend_rejected", order, event.id, reason=why)
            return
        resting.order = msgspec.structs.replace(resting.order, price=order.price, quantity=float(total))
        resting.quantity = total - resting.filled
        if depth is not None:
            resting.placed_book = depth.seq  # a moved order waits for the next book or print
        self.counts["amended"] += 1
        status = "PARTIALLY_FILLED" if resting.filled else "PENDING"
        await self._report_resting("trading.order.amended", resting, event.id, status=status)
        if resting.order.bot_id and self.books[resting.order.bot_id].venues is not None:
            await self._publish_balance(
                event.id, resting.order.bot_id, order.exchange, self._reserved_asset(resting)
            )

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

    async def _report_resting(self, topic: str, resting: Resting, cause: str, **changes: Any) -> None:
        """A report with the order's cumulative fill: quantity, volume-weighted price, fee."""
        average = (resting.notional / resting.filled).quantize(_PRICE_STEP) if resting.filled else None
        await self._report(
            topic,
            resting.order,
            cause,
            filled_quantity=float(resting.filled),
            average_price=None if average is None else float(average),
            fee=float(resting.fee),
            **changes,
        )

    # -- balances and transfers --------------------------------------------------------------------

    def _reserved_asset(self, resting: Resting) -> str:
        order = resting.order
        quote_asset = self.params.quote_asset
        return quote_asset if order.side == "BUY" else base_asset(order.symbol, quote_asset)

    def _reserved(self, bot_id: str, exchange: str) -> tuple[Decimal, dict[str, Decimal]]:
        """What the bot's resting orders on ``exchange`` hold back: quote, and quantity per symbol."""
        quote_held, base_held = ZERO, dict[str, Decimal]()
        fee_bps = max(self._maker_bps, self._fee_bps)
        for (ex, symbol), resting_list in self.resting.items():
            if ex != exchange:
                continue
            for resting in resting_list:
                if resting.order.bot_id != bot_id:
                    continue
                if resting.order.side == "BUY":
                    notional, fee = quote(resting.quantity, dec(resting.order.price or 0), fee_bps)
                    quote_held += notional + fee
                else:
                    base_held[symbol] = base_held.get(symbol, ZERO) + resting.quantity
        return quote_held, base_held

    def _available_quote(self, bot_id: str, exchange: str) -> Decimal:
        return self.book(bot_id).venue_cash(exchange) - self._reserved(bot_id, exchange)[0]

    def _available_base(self, bot_id: str, key: SeriesKey) -> Decimal:
        held = self.book(bot_id).holding(key).quantity
        return max(ZERO, held - self._reserved(bot_id, key[0])[1].get(key[1], ZERO))

    def _balance(self, bot_id: str, exchange: str, asset: str) -> Balance:
        book = self.book(bot_id)
        quote_asset = self.params.quote_asset
        if asset == quote_asset:
            total = book.venue_cash(exchange)
            available = total - self._reserved(bot_id, exchange)[0]
        else:
            key = (exchange, asset + quote_asset)
            waiting = sum((q for b, q in self._deposits.get(key, ()) if b == bot_id), ZERO)
            total = (book.holdings[key].quantity if key in book.holdings else ZERO) + waiting
            available = max(ZERO, total - self._reserved(bot_id, exchange)[1].get(key[1], ZERO))
        return Balance(
            bot_id=bot_id, exchange=exchange, asset=asset, total=float(total), available=float(available)
        )

    async def _publish_balance(self, cause: str | None, bot_id: str, exchange: str, asset: str) -> None:
        await self.ctx.publish(
            f"trading.position.balance.{exchange}",
            self._balance(bot_id, exchange, asset),
            causation_id=cause,
            metadata={DATA_TIME: self.clock},
        )

    async def _transfer(self, event: Event, request: Transfer) -> None:
        """A transfer request: answered once per ``(account, transferId)``; a repeat re-publishes."""
        known = self.transfers.get(request.bot_id, request.transfer_id)
        if known is not None:
            self.counts["transfer_repeats"] += 1
            await self._publish_transfer(event.id, known.transfer)
            return
        data_time = event.metadata.get(DATA_TIME)
        now = max(self.clock, data_time if isinstance(data_time, int) else 0)
        amount = cents(dec(request.amount))
        fee = cents(dec(self.params.transfer_fee_flat) + amount * dec(self.params.transfer_fee_rate))
        reason = self._transfer_refusal(event, request, amount, fee)
        if reason is not None:
            rejected = msgspec.structs.replace(request, status="REJECTED", reason=reason, fee=0.0)
            self.transfers.add(TransferRecord(rejected, amount, ZERO, event.id))
            self.counts["transfers_rejected"] += 1
            await self._publish_transfer(event.id, rejected)
            return
        self.book(request.bot_id).send(request.from_exchange, amount, fee)
        pending = msgspec.structs.replace(
            request,
            status="PENDING",
            amount=float(amount),
            fee=float(fee),
            settle_time=now + self.params.transfer_delay_ms,
            reason=None,
        )
        self.transfers.add(TransferRecord(pending, amount, fee, event.id))
        self.counts["transfers"] += 1
        await self._publish_balance(event.id, request.bot_id, request.from_exchange, request.asset)
        await self._publish_transfer(event.id, pending)
        if self.params.transfer_delay_ms == 0:
            await self._tick(event, now)

    def _transfer_refusal(self, event: Event, request: Transfer, amount: Decimal, fee: Decimal) -> str | None:
        requester = event.metadata.get("botId")
        venues = self.params.accounts.get(request.bot_id)
        allowed = {request.bot_id, *self.params.transfer_agents.get(request.bot_id, [])}
        if requester not in allowed:
            return f"{requester} may not move {request.bot_id}'s funds (transfer_agents)"
        if venues is None:
            return f"{request.bot_id} has no per-exchange account (accounts)"
        if request.asset != self.params.quote_asset:
            return f"only {self.params.quote_asset} moves between exchanges, not {request.asset}"
        for exchange in (request.from_exchange, request.to_exchange):
            if exchange not in venues:
                return f"unknown exchange {exchange} for {request.bot_id} (accounts names {sorted(venues)})"
        if amount <= 0:
            return f"amount {request.amount} rounds to nothing"
        available = self._available_quote(request.bot_id, request.from_exchange)
        if available < amount + fee:
            need, where = amount + fee, f"{request.asset} on {request.from_exchange}"
            return f"insufficient available {where}: need {need}, have {available}"
        return None

    async def _settle(self, event: Event, record: TransferRecord) -> None:
        pending = record.transfer
        self.book(pending.bot_id).settle(pending.to_exchange, record.amount)
        record.transfer = msgspec.structs.replace(pending, status="SETTLED")
        self.counts["transfers_settled"] += 1
        # the balance first: whoever reacts to the settlement (TRF) plans from the new balances
        await self._publish_balance(event.id, pending.bot_id, pending.to_exchange, pending.asset)
        await self._publish_transfer(event.id, record.transfer)

    async def _publish_transfer(self, cause: str, transfer: Transfer) -> None:
        topic = f"trading.order.transfer.{transfer.status.lower()}"
        await self.ctx.publish(topic, transfer, causation_id=cause, metadata={DATA_TIME: self.clock})

    def stats(self) -> dict[str, Any]:
        self._marks_due()
        books = self.books.values()
        return {
            "filled": self.counts["filled"],
            "rejected": self.counts["rejected"],
            "cancelled": self.counts["cancelled"],
            "resting": sum(len(v) for v in self.resting.values()),
            "heldForBar": sum(len(v) for v in self.held.values()),
            "blocked": sorted(self.blocked),
            "balanced": all(book.imbalance() == 0 and book.venue_imbalance() == 0 for book in books),
            "books": {bot_id: book.snapshot() for bot_id, book in sorted(self.books.items())},
            **(
                {
                    "partialFills": self.counts["partial"],
                    "amended": self.counts["amended"],
                    "transfers": self.transfers.counts(),
                    "transferFees": float(sum((b.transfer_fees for b in books), ZERO)),
                }
                if self.depth or self.params.accounts
                else {}
            ),
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [PaperExchange]
