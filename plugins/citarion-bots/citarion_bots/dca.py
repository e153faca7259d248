"""DCA (SCALE), dollar-cost averaging: buy a fixed quote amount on a fixed bar schedule.

Per series, bars are counted from 1; a buy of ``order_quote`` is due on bars 1, 1 + every_bars,
1 + 2 * every_bars, ... Averaging in on a schedule removes the timing decision; what is left to
decide is how much:

* dip: when the close is at least ``dip_pct`` below the mean of the previous ``dip_lookback``
  closes, the scheduled amount is multiplied by ``dip_multiplier`` (buy more when it is cheap);
* ``budget`` caps the total quote committed (refunded when an order is rejected);
* an instalment due while the bot may not buy (risk block, pump halt) is skipped, signal included:
  for DCA the signal *is* the scheduled buy, so there is no separate view to publish;
* ``take_profit_pct``: when the close reaches the average cost x (1 + take_profit_pct), sell the
  whole accumulated position and start averaging again.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle, Order

from .common import SeriesKey
from .indicators import mean
from .strategy import StrategyBot, StrategyState, TradingParams

__all__ = ["DcaBot", "DcaParams", "citarion_bot_types"]


class DcaParams(TradingParams):
    every_bars: int = Field(default=10, ge=1)
    dip_lookback: int = Field(default=20, ge=2)
    dip_pct: float = Field(default=0.03, ge=0, lt=1)
    dip_multiplier: float = Field(default=2.0, ge=1)
    budget: float | None = Field(default=None, gt=0)
    take_profit_pct: float | None = Field(default=None, gt=0)


class DcaState(StrategyState, kw_only=True):
    """A strategy's state plus the dip windows, cost bases, budget committed and the buys made."""

    closes: list[tuple[SeriesKey, list[float]]] = []
    cost: list[tuple[SeriesKey, float]] = []
    committed: float = 0.0
    buys: list[tuple[SeriesKey, int, float]] = []
    amounts: dict[str, float] = {}


class DcaBot(StrategyBot[DcaParams]):
    type_name = "dca"
    description = "DCA: buys a fixed quote amount every N bars, more on dips; optional take-profit"
    State = DcaState

    def __init__(self, ctx: BotContext, params: DcaParams) -> None:
        super().__init__(ctx, params)
        self.closes: dict[SeriesKey, deque[float]] = {}
        self.cost: dict[SeriesKey, float] = {}
        self.committed = 0.0
        self.buys: list[tuple[SeriesKey, int, float]] = []  # (series, bar number, quote amount)
        self._amounts: dict[str, float] = {}
        # read on every candle (params attributes are slow): the take-profit and the schedule
        self._take_profit, self._every = params.take_profit_pct, params.every_bars

    def state_fields(self) -> dict[str, Any]:
        return {
            **super().state_fields(),
            "closes": [(key, list(window)) for key, window in self.closes.items()],
            "cost": list(self.cost.items()),
            "committed": self.committed,
            "buys": self.buys,
            "amounts": self._amounts,
        }

    def restore(self, state: Any) -> None:
        super().restore(state)
        lookback = self.params.dip_lookback
        self.closes = {key: deque(window, maxlen=lookback) for key, window in state.closes}
        self.cost = dict(state.cost)
        self.committed = state.committed
        self.buys = list(state.buys)
        self._amounts = dict(state.amounts)

    def average_cost(self, key: SeriesKey) -> float | None:
        held = self.inventory[key]
        return self.cost.get(key, 0.0) / held if held > 0 else None

    async def on_candle(self, event: Event, candle: Candle) -> None:
        key, close, p = (candle.exchange, candle.symbol), candle.close, self.params
        closes = self.closes.get(key)
        if closes is None:  # not setdefault: that builds a deque per candle
            closes = self.closes[key] = deque(maxlen=p.dip_lookback)
        average, take_profit = self.average_cost(key), self._take_profit
        if take_profit and average is not None and close >= average * (1 + take_profit):
            await self.signal(
                event, candle, "SHORT", 0.6, entry=close, reason="take profit on the averaged position"
            )
            await self.order(event, candle, "SELL", self.inventory[key], reason="dca take profit")
        if (self.bars[key] - 1) % self._every == 0:
            dip = len(closes) == p.dip_lookback and close <= mean(closes) * (1 - p.dip_pct)
            amount = p.order_quote * (p.dip_multiplier if dip else 1.0)
            if p.budget is not None:
                amount = min(amount, p.budget - self.committed)
            if amount <= 0:
                self.counts["budget_exhausted"] += 1
            elif p.trade and not self.risk.may_buy(candle.symbol):
                self.counts["held_back"] += 1  # blocked or halted: a skipped instalment, not a view to share
            else:
                await self._buy(event, candle, amount, dip)
        closes.append(close)

    async def _buy(self, event: Event, candle: Candle, amount: float, dip: bool) -> None:
        key, close, p = (candle.exchange, candle.symbol), candle.close, self.params
        take = close * (1 + p.take_profit_pct) if p.take_profit_pct else None
        reason = "scheduled buy on a dip" if dip else "scheduled buy"
        await self.signal(event, candle, "LONG", 0.7 if dip else 0.5, entry=close, take=take, reason=reason)
        self.buys.append((key, self.bars[key], amount))
        self.committed += amount
        order_id = await self.order(event, candle, "BUY", self.buy_quantity(close, amount), reason=reason)
        if order_id is not None:
            self._amounts[order_id] = amount
        elif p.trade:
            self.committed -= amount

    async def on_fill(self, order: Order) -> None:
        key = (order.exchange, order.symbol)
        self._amounts.pop(order.order_id, None)
        price = order.average_price or 0.0
        if order.side == "BUY":
            self.cost[key] = self.cost.get(key, 0.0) + order.filled_quantity * price
        else:
            before = self.inventory[key] + order.filled_quantity
            share = self.inventory[key] / before if before > 0 else 0.0
            self.cost[key] = self.cost.get(key, 0.0) * share

    async def on_reject(self, order: Order) -> None:
        self.committed -= self._amounts.pop(order.order_id, 0.0)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "buys": len(self.buys), "committed": round(self.committed, 2)}


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [DcaBot]
