"""What every strategy bot shares: series filtering, its own fills, risk stand-downs, publishing.

A strategy subclass implements :meth:`StrategyBot.on_candle` (and optionally ``on_fill`` /
``on_reject``) and calls :meth:`signal` and :meth:`order`. The base class:

* routes ``market.candle.*`` of the configured symbols/exchanges (and ``interval``, when the feed
  also publishes longer bars on the same topics) to ``on_candle``;
* follows the bot's own orders (``botId == ctx.bot_id``) through ``trading.order.filled`` /
  ``rejected`` to keep an inventory per series, so a spot strategy never sells what it lacks, even
  while a sell is still in flight (pending sells are reserved);
* stands down (:class:`~citarion_bots.standdown.StandDown`): no new buys while the risk guard
  blocks this bot, nor of a symbol for ``alert_cooldown_bars`` bars after a PND pump alert on it.
  Sells stay allowed: leaving risk is never blocked here;
* stamps every signal's metadata with ``botId`` and ``dataTime`` (the candle's open time), which
  LOGOS uses to age signals by data time and to tell two instances of one bot code apart;
* keeps its state across restarts (``docs/state.md``): :class:`StrategyState` holds the order-id
  counter, inventory, in-flight orders, bar counts, counters and the stand-down; a subclass extends
  it with its own fields (a ``State`` subclass, :meth:`StrategyBot.state_fields` and
  :meth:`StrategyBot.restore`), so a reload or a crash restart neither reuses an order id nor
  forgets a position.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, ClassVar, Literal

import msgspec
from pydantic import Field, field_validator
from typing_extensions import TypeVar

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.payloads import Candle, Order, Signal

from .common import SeriesKey, StrictParams, interval_ms, round_qty
from .standdown import StandDown, StandDownState

__all__ = ["StrategyBot", "StrategyParams", "StrategyState", "TradingParams"]

Side = Literal["BUY", "SELL"]


class StrategyParams(StrictParams):
    """Params every strategy has: which series it watches (empty: all)."""

    symbols: list[str] = []
    exchanges: list[str] = []
    interval: str | None = None

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: str | None) -> str | None:
        if value is not None:
            interval_ms(value)
        return value


class TradingParams(StrategyParams):
    """Params of strategies that manage their own book: whether to submit orders, their size, and
    how long a PND pump alert halts their buys of the symbol."""

    trade: bool = True
    order_quote: float = Field(default=100.0, gt=0)
    alert_cooldown_bars: int = Field(default=20, ge=0)


class StrategyState(msgspec.Struct, kw_only=True):
    """What every strategy's figures depend on besides its own indicators (series-keyed maps as
    ``[[exchange, symbol], value]`` rows: JSON objects take string keys only)."""

    next_order: int = 1
    inventory: list[tuple[SeriesKey, float]] = []
    pending: dict[str, tuple[SeriesKey, Side, float]] = {}
    bars: list[tuple[SeriesKey, int]] = []
    counts: dict[str, int] = {}
    risk: StandDownState = msgspec.field(default_factory=StandDownState)


#: The params model of a concrete subclass (``class X(StrategyBot[XParams])``).
StrategyParamsT = TypeVar("StrategyParamsT", bound=StrategyParams, default=StrategyParams)


class StrategyBot(Bot[StrategyParamsT]):
    """Base of the six operational strategies."""

    State: ClassVar[type[StrategyState]] = StrategyState

    def __init__(self, ctx: BotContext, params: StrategyParamsT) -> None:
        super().__init__(ctx, params)
        self.inventory: defaultdict[SeriesKey, float] = defaultdict(float)
        self.bars: dict[SeriesKey, int] = {}  # candles seen per series (a dict: a Counter's += is slower)
        self.counts: Counter[str] = Counter()
        halt = self.params.alert_cooldown_bars if isinstance(self.params, TradingParams) else 0
        self.risk = StandDown(ctx.bot_id, halt)
        self._pending: dict[str, tuple[SeriesKey, Side, float]] = {}
        self.next_order = 1
        # Every series of every interval (the demo's case), decided once: a params attribute costs
        # about twice a plain one (pydantic models are not specialised), and handle reads it per candle.
        self._wants_every = not params.symbols and not params.exchanges and params.interval is None

    # -- state (docs/state.md) --------------------------------------------------------------------

    def snapshot(self) -> StrategyState:
        return self.State(**self.state_fields())

    def state_fields(self) -> dict[str, Any]:
        """The fields of :attr:`State` from the bot's attributes; a subclass adds its own."""
        return {
            "next_order": self.next_order,
            "inventory": list(self.inventory.items()),
            "pending": self._pending,
            "bars": list(self.bars.items()),
            "counts": self.counts,
            "risk": self.risk.state(),
        }

    def restore(self, state: Any) -> None:
        """Take a :class:`StrategyState` (or a subclass's) back; a subclass takes its own fields after
        calling this."""
        self.next_order = state.next_order
        self.inventory = defaultdict(float, state.inventory)
        self._pending = dict(state.pending)
        self.bars = dict(state.bars)
        self.counts = Counter(state.counts)
        self.risk.restore(state.risk)

    # -- dispatch ---------------------------------------------------------------------------------

    async def handle(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, Candle):
            # ``wants`` inline: every candle reaches every strategy, most of them want it
            p, exchange, symbol = self.params, payload.exchange, payload.symbol
            if self._wants_every or (
                (not p.symbols or symbol in p.symbols)
                and (not p.exchanges or exchange in p.exchanges)
                and (p.interval is None or payload.interval == p.interval)
            ):
                key, bars, risk = (exchange, symbol), self.bars, self.risk
                bars[key] = bars.get(key, 0) + 1
                if payload.open_time > risk.now_ms or payload.interval != risk.interval:
                    risk.clock(payload.open_time, payload.interval)  # once a bar, not once a candle
                await self.on_candle(event, payload)
        elif isinstance(payload, Order):
            if payload.bot_id == self.ctx.bot_id:
                await self._own_order(event.topic, payload)
        else:
            self.risk.observe(event)

    def wants(self, exchange: str, symbol: str) -> bool:
        p = self.params
        return (not p.symbols or symbol in p.symbols) and (not p.exchanges or exchange in p.exchanges)

    async def _own_order(self, topic: str, order: Order) -> None:
        if topic == "trading.order.filled":
            self._pending.pop(order.order_id, None)
            self._book_fill(order)
            self.counts["fills"] += 1
            await self.on_fill(order)
        elif topic in ("trading.order.rejected", "trading.order.cancelled"):
            self._pending.pop(order.order_id, None)
            self.counts["rejections" if topic.endswith("rejected") else "cancels"] += 1
            if order.filled_quantity > 0:  # a MARKET order the book could only partly fill
                self._book_fill(order)
                self.counts["partial_fills"] += 1
                await self.on_fill(order)
            await self.on_reject(order)

    def _book_fill(self, order: Order) -> None:
        """Add what the report says filled (cumulative; a strategy's orders get one report with fills)."""
        key = (order.exchange, order.symbol)
        step = order.filled_quantity if order.side == "BUY" else -order.filled_quantity
        self.inventory[key] = round_qty(self.inventory[key] + step)

    # -- hooks for subclasses ---------------------------------------------------------------------

    async def on_candle(self, event: Event, candle: Candle) -> None:
        """One closed bar of a series this bot trades."""

    async def on_fill(self, order: Order) -> None:
        """One of this bot's orders filled (inventory already updated)."""

    async def on_reject(self, order: Order) -> None:
        """One of this bot's orders was rejected or cancelled."""

    # -- helpers ----------------------------------------------------------------------------------

    def available(self, key: SeriesKey) -> float:
        """Inventory not already promised to an in-flight sell."""
        held = self.inventory[key]
        if held <= 0.0:  # nothing to sell whatever is promised (what most calls find, once per candle)
            return 0.0
        if not self._pending:  # nothing in flight (most candles): held - 0, no generator to build
            return round_qty(held)
        reserved = sum(q for k, side, q in self._pending.values() if k == key and side == "SELL")
        return round_qty(max(0.0, held - reserved))

    async def signal(
        self,
        event: Event,
        candle: Candle,
        direction: Literal["LONG", "SHORT"],
        confidence: float,
        *,
        entry: float | None = None,
        stop: float | None = None,
        take: float | None = None,
        reason: str | None = None,
    ) -> Signal:
        signal = Signal(
            symbol=candle.symbol,
            exchange=candle.exchange,
            direction=direction,
            confidence=round(min(1.0, max(0.0, confidence)), 4),
            entry_price=entry if entry is None or entry > 0 else None,
            stop_loss=stop if stop is None or stop > 0 else None,
            take_profit=take if take is None or take > 0 else None,
            reason=reason,
        )
        await self.ctx.publish(
            "trading.signal.generated",
            signal,
            causation_id=event.id,
            metadata={"botId": self.ctx.bot_id, "dataTime": candle.open_time},
        )
        self.counts["signals"] += 1
        return signal

    async def order(
        self,
        event: Event,
        candle: Candle,
        side: Literal["BUY", "SELL"],
        quantity: float,
        *,
        price: float | None = None,
        reason: str | None = None,
    ) -> str | None:
        """Submit a MARKET (or LIMIT with ``price``) order; returns its id, or None if held back.

        Held back: trading disabled; a buy while blocked or while the symbol is halted; a sell with
        nothing available (spot). A sell larger than the available inventory is cut down to it.
        """
        if not (isinstance(self.params, TradingParams) and self.params.trade):
            return None
        key = (candle.exchange, candle.symbol)
        if side == "BUY" and not self.risk.may_buy(candle.symbol):
            self.counts["held_back"] += 1
            return None
        if side == "SELL":
            quantity = min(quantity, self.available(key))
        quantity = round_qty(quantity)
        if quantity <= 0:
            return None
        order_id = f"{self.ctx.bot_id}-{self.next_order}"
        self.next_order += 1
        order = Order(
            order_id=order_id,
            symbol=candle.symbol,
            exchange=candle.exchange,
            side=side,
            type="MARKET" if price is None else "LIMIT",
            quantity=quantity,
            status="NEW",
            price=price,
            bot_id=self.ctx.bot_id,
            reason=reason,
        )
        self._pending[order_id] = (key, side, quantity)
        self.counts["orders"] += 1
        await self.ctx.publish("trading.order.submitted", order, causation_id=event.id)
        return order_id

    @staticmethod
    def buy_quantity(price: float, quote: float) -> float:
        """Base quantity worth ``quote`` at ``price``, on the lot grid."""
        return round_qty(quote / price)

    def stats(self) -> dict[str, Any]:
        return {
            "signals": self.counts["signals"],
            "orders": self.counts["orders"],
            "fills": self.counts["fills"],
            "rejections": self.counts["rejections"],
            "heldBack": self.counts["held_back"],
            "blocked": self.risk.blocked,
            "inventory": {f"{e}:{s}": q for (e, s), q in sorted(self.inventory.items()) if q},
        }
