"""ARB (Orion), cross-exchange arbitrage: buy on one venue, sell on another, when it pays after fees.

On every book of a symbol it trades, ARB pairs that book with the latest book of the same symbol on
each other venue (if no older than ``max_book_age_ms`` of data time) and, both ways round, plans the
trade with :func:`citarion_bots.quant.arbitrage.plan`: walking A's asks and B's bids while the net
edge per unit after both taker fees is at least ``min_edge_bps`` of the ask, limited by depth,
``max_quantity``, ``max_quote``, the quote balance available on A and the base balance available on
B (from the exchange's ``trading.position.balance.*``; a balance never reported does not limit, and
is counted in ``noBalance``). The more profitable direction wins.

Both legs or none: the two orders go out together as IOC LIMITs at the worst level planned (they can
fill the planned depth and nothing worse), tagged with one ``group`` id, or neither goes out (risk
stand-down, trading off). While a group is working, the symbol takes no new arbitrage. When both legs
are done, a difference in their fills (one leg filled less) is closed at market on the venue that
holds the excess (``hedge_residual``), so ARB never keeps an unhedged position by accident.

Signals (with ``signals``): LONG on the buy venue and SHORT on the sell venue, confidence
``min(1, 0.5 + edge_bps / 100)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import OrderBook

from .assets import base_asset
from .common import SeriesKey
from .desk import DeskBot, DeskParams, DeskState, Working
from .plain import Record, record, record_of
from .quant.arbitrage import ArbPlan, plan

__all__ = ["ArbitrageBot", "ArbitrageParams", "citarion_bot_types"]


class ArbitrageParams(DeskParams):
    symbols: list[str] = []
    exchanges: list[str] = []
    taker_fee_bps: float = Field(default=10.0, ge=0, lt=10_000)
    taker_fee_bps_by_exchange: dict[str, float] = {}
    min_edge_bps: float = Field(default=5.0, ge=0)
    max_quantity: float | None = Field(default=None, gt=0)
    max_quote: float = Field(default=1_000.0, gt=0)
    max_book_age_ms: int = Field(default=2_000, ge=0)
    quote_asset: str = "USDT"
    hedge_residual: bool = True
    signals: bool = True


@dataclass(slots=True)
class _Group:
    symbol: str
    buy: Working
    sell: Working
    plan: ArbPlan


class ArbitrageState(DeskState, kw_only=True):
    """A desk's state plus the open arbitrages (symbol, buy and sell order ids, plan) and the totals."""

    groups: dict[str, tuple[str, str, str, Record]] = {}
    group_seq: int = 0
    expected_profit: float = 0.0


class ArbitrageBot(DeskBot[ArbitrageParams]):
    type_name = "arbitrage"
    description = "ARB: cross-exchange arbitrage; both legs as IOC limits when the net edge after fees pays"
    State = ArbitrageState

    def __init__(self, ctx: BotContext, params: ArbitrageParams) -> None:
        super().__init__(ctx, params)
        self.groups: dict[str, _Group] = {}
        self._group_seq = 0
        self.expected_profit = 0.0

    def state_fields(self) -> dict[str, Any]:
        groups = {
            name: (g.symbol, g.buy.order.order_id, g.sell.order.order_id, record(g.plan))
            for name, g in self.groups.items()
        }
        return {
            **super().state_fields(),
            "groups": groups,
            "group_seq": self._group_seq,
            "expected_profit": self.expected_profit,
        }

    def restore(self, state: Any) -> None:
        super().restore(state)
        self.groups = {
            name: _Group(symbol, self.orders[buy], self.orders[sell], record_of(ArbPlan, plan))
            for name, (symbol, buy, sell, plan) in state.groups.items()
        }
        self._group_seq, self.expected_profit = state.group_seq, state.expected_profit

    def fee(self, exchange: str) -> float:
        return self.params.taker_fee_bps_by_exchange.get(exchange, self.params.taker_fee_bps) / 10_000

    def wants(self, exchange: str, symbol: str) -> bool:
        p = self.params
        return (not p.symbols or symbol in p.symbols) and (not p.exchanges or exchange in p.exchanges)

    def busy(self, symbol: str) -> bool:
        return any(g.symbol == symbol and not (g.buy.done and g.sell.done) for g in self.groups.values())

    async def on_book(self, event: Event, book: OrderBook, time: int) -> None:
        if not self.wants(book.exchange, book.symbol) or self.busy(book.symbol):
            return
        best: tuple[ArbPlan, str, str] | None = None
        for (exchange, symbol), other in self.books.items():
            if symbol != book.symbol or exchange == book.exchange or not self.wants(exchange, symbol):
                continue
            if abs(time - other.time) > self.params.max_book_age_ms:
                self.counts["stale_books"] += 1
                continue
            for buy, sell in ((book, other.book), (other.book, book)):
                found = self._plan(buy, sell)
                if found is not None and (best is None or found.net_profit > best[0].net_profit):
                    best = (found, buy.exchange, sell.exchange)
        if best is not None:
            await self._trade(event, book.symbol, *best, time)

    def _plan(self, buy: OrderBook, sell: OrderBook) -> ArbPlan | None:
        p = self.params
        ask = buy.asks[0][0]
        quote = self.available(buy.exchange, p.quote_asset)
        base = self.available(sell.exchange, base_asset(buy.symbol, p.quote_asset))
        if quote is None or base is None:
            self.counts["no_balance"] += 1
        return plan(
            buy.asks,
            sell.bids,
            buy_fee=self.fee(buy.exchange),
            sell_fee=self.fee(sell.exchange),
            min_edge=ask * p.min_edge_bps / 10_000,
            max_quantity=p.max_quantity or math.inf,
            quote_available=min(p.max_quote, math.inf if quote is None else quote),
            base_available=math.inf if base is None else base,
        )

    async def _trade(
        self, event: Event, symbol: str, found: ArbPlan, buy_ex: str, sell_ex: str, time: int
    ) -> None:
        if not self.params.trade:
            await self._signals(event, symbol, found, buy_ex, sell_ex, time)
            return
        if not self.may_open(symbol):
            self.counts["held_back"] += 1  # both legs or none: neither goes out
            return
        self._group_seq += 1
        group = f"{self.ctx.bot_id}-arb{self._group_seq}"
        edge_bps = found.edge_per_unit / found.buy_limit * 10_000
        reason = f"arbitrage {buy_ex}->{sell_ex}: {found.edge_per_unit:.6g} per unit net ({edge_bps:.2f} bps)"
        extra = {"group": group}
        buy = await self.submit(
            event, exchange=buy_ex, symbol=symbol, side="BUY", quantity=found.quantity, price=found.buy_limit,
            tif="IOC", time=time, tag="buy", reason=reason, extra=extra,
        )  # fmt: skip
        sell = await self.submit(
            event, exchange=sell_ex, symbol=symbol, side="SELL", quantity=found.quantity,
            price=found.sell_limit, tif="IOC", time=time, tag="sell", reason=reason, extra=extra,
            reduce_only=True,  # it sells inventory held on the sell venue: never held back once the buy went
        )  # fmt: skip
        assert buy is not None and sell is not None  # trading on, symbol open, quantity >= one lot
        self.groups[group] = _Group(symbol, buy, sell, found)
        self.expected_profit += found.net_profit
        self.counts["arbitrages"] += 1
        await self._signals(event, symbol, found, buy_ex, sell_ex, time)

    async def _signals(
        self, event: Event, symbol: str, found: ArbPlan, buy_ex: str, sell_ex: str, time: int
    ) -> None:
        if not self.params.signals:
            return
        edge_bps = found.edge_per_unit / found.buy_limit * 10_000
        confidence = min(1.0, 0.5 + edge_bps / 100)
        reason = f"arbitrage {buy_ex}->{sell_ex} net {edge_bps:.2f} bps"
        await self.signal(
            event, exchange=buy_ex, symbol=symbol, direction="LONG", confidence=confidence, time=time,
            entry=found.buy_limit, take=found.sell_limit, reason=reason,
        )  # fmt: skip
        await self.signal(
            event, exchange=sell_ex, symbol=symbol, direction="SHORT", confidence=confidence, time=time,
            entry=found.sell_limit, take=found.buy_limit, reason=reason,
        )  # fmt: skip

    async def on_done(self, event: Event, working: Working) -> None:
        for name, group in list(self.groups.items()):
            if working in (group.buy, group.sell) and group.buy.done and group.sell.done:
                del self.groups[name]  # finished: the hedge (if any) is an order of its own
                await self._hedge(event, name, group)

    async def _hedge(self, event: Event, name: str, group: _Group) -> None:
        residual = group.buy.filled - group.sell.filled
        if not self.params.hedge_residual or abs(residual) < 1e-8:
            return
        self.counts["hedges"] += 1
        # bought more than sold: sell the excess back where it was bought; sold more: buy it back
        where: SeriesKey = (
            (group.buy.order.exchange, group.symbol)
            if residual > 0
            else (group.sell.order.exchange, group.symbol)
        )
        await self.submit(
            event, exchange=where[0], symbol=group.symbol, side="SELL" if residual > 0 else "BUY",
            quantity=abs(residual), time=self.now, reduce_only=True, tag="hedge",
            reason=f"hedge the unmatched {abs(residual):.8g} of {name}", extra={"group": name},
        )  # fmt: skip

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "arbitrages": self.counts["arbitrages"],
            "hedges": self.counts["hedges"],
            "expectedProfit": round(self.expected_profit, 8),
            "staleBooks": self.counts["stale_books"],
            "noBalance": self.counts["no_balance"],
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [ArbitrageBot]
