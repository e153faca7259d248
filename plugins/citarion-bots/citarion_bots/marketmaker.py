"""MMK (Architect), market making: Avellaneda-Stoikov quotes kept as resting limit orders.

On every book of its ``symbol`` on its ``exchange``, MMK computes (:mod:`citarion_bots.quant.avellaneda`)::

    reservation  r = mid - q * gamma * sigma^2 * tau
    spread       d = gamma * sigma^2 * tau + (2 / gamma) * ln(1 + gamma / kappa)
    bid = r - d/2 (floored to the tick),   ask = r + d/2 (ceiled)

with ``q = (position - target_inventory) / quote_size`` (inventory in quote lots), ``sigma`` the
``sigma`` param or the realised volatility of the book's mid over the last ``vol_window`` changes
(price per square root of ``time_unit_ms``), and ``tau`` the time left in the current session of
``horizon_ms`` (sessions aligned to the epoch), in time units. Quotes never cross: the bid stays a
tick under the best ask, the ask a tick over the best bid. They rest as post-only GTC LIMIT orders of
``quote_size``; when the wanted price moves ``requote_ticks`` ticks or more the order is amended
(``trading.order.amend``), and a filled quote is replaced on the next book.

Inventory limits: no bid once ``position + quote_size`` would exceed ``max_inventory``; no ask once
``position - quote_size`` would go below ``-max_inventory`` (spot, without ``allow_short``: no ask
without ``quote_size`` held). A quote that is no longer wanted is cancelled. Bids add exposure and
stand down under risk blocks; asks that sell inventory do not. MMK publishes no signals: its quotes
are liquidity, not a view.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import OrderBook

from .desk import DeskBot, DeskParams, DeskState
from .plain import Record, record, record_of
from .quant.avellaneda import MidVolatility, Quotes, quotes, snap

__all__ = ["MarketMakerBot", "MarketMakerParams", "citarion_bot_types"]


class MarketMakerParams(DeskParams):
    symbol: str = "BTCUSDT"
    exchange: str = "binance"
    gamma: float = Field(default=0.001, gt=0)
    kappa: float = Field(default=1.5, gt=0)
    sigma: float | None = Field(default=None, gt=0)
    vol_window: int = Field(default=100, ge=2)
    time_unit_ms: int = Field(default=60_000, gt=0)
    horizon_ms: int = Field(default=300_000, gt=0)
    quote_size: float = Field(default=0.01, gt=0)
    max_inventory: float = Field(default=0.05, gt=0)
    target_inventory: float = 0.0
    allow_short: bool = False
    requote_ticks: int = Field(default=1, ge=1)
    tick: float = Field(default=0.0, ge=0)


class MarketMakerState(DeskState, kw_only=True):
    """A desk's state plus the mid-price moves behind its volatility and its last quotes."""

    vol: tuple[list[tuple[float, float]], tuple[int, float] | None] = msgspec.field(
        default_factory=lambda: ([], None)
    )
    last: Record | None = None


class MarketMakerBot(DeskBot[MarketMakerParams]):
    type_name = "market-maker"
    description = "MMK: Avellaneda-Stoikov market making; inventory-skewed quotes as resting limits"
    State = MarketMakerState

    def __init__(self, ctx: BotContext, params: MarketMakerParams) -> None:
        super().__init__(ctx, params)
        self.vol = MidVolatility(self.params.vol_window, self.params.time_unit_ms)
        self.last: Quotes | None = None

    def state_fields(self) -> dict[str, Any]:
        last = None if self.last is None else record(self.last)
        return {**super().state_fields(), "vol": self.vol.state(), "last": last}

    def restore(self, state: Any) -> None:
        super().restore(state)
        self.vol.restore(state.vol)
        self.last = None if state.last is None else record_of(Quotes, state.last)

    @property
    def key(self) -> tuple[str, str]:
        return (self.params.exchange, self.params.symbol)

    def tau(self, time: int) -> float:
        horizon = self.params.horizon_ms
        return (horizon - time % horizon) / self.params.time_unit_ms

    async def on_book(self, event: Event, book: OrderBook, time: int) -> None:
        p = self.params
        if (book.exchange, book.symbol) != self.key:
            return
        best_bid, best_ask = book.bids[0][0], book.asks[0][0]
        mid = (best_bid + best_ask) / 2
        self.vol.update(time, mid)
        sigma = p.sigma if p.sigma is not None else (self.vol.sigma() if self.vol.ready else None)
        if sigma is None:
            self.counts["warming"] += 1
            return
        tick = p.tick or (
            abs(book.bids[0][0] - book.bids[1][0]) if len(book.bids) > 1 else best_ask - best_bid
        )
        held = self.position[self.key]
        q = (held - p.target_inventory) / p.quote_size
        self.last = quotes(mid, q, gamma=p.gamma, sigma=sigma, tau=self.tau(time), kappa=p.kappa, tick=tick)
        bid, ask = min(self.last.bid, best_ask - tick), max(self.last.ask, best_bid + tick)
        want_bid = held + p.quote_size <= p.max_inventory + 1e-12 and self.may_open(p.symbol)
        floor = -p.max_inventory if p.allow_short else 0.0
        want_ask = held - p.quote_size >= floor - 1e-12
        await self._quote(event, "BUY", want_bid, bid, tick, time)
        await self._quote(event, "SELL", want_ask, ask, tick, time)

    async def _quote(
        self, event: Event, side: Literal["BUY", "SELL"], wanted: bool, price: float, tick: float, time: int
    ) -> None:
        p = self.params
        price = snap(price, tick)
        current = next(iter(self.working(tag=side, key=self.key)), None)
        if not wanted or price <= 0:
            if current is not None:
                await self.cancel(event, current, time)
            return
        if current is None:
            reservation = self.last.reservation if self.last is not None else price
            await self.submit(
                event, exchange=p.exchange, symbol=p.symbol, side=side, quantity=p.quote_size, price=price,
                tif="GTC", post_only=True, time=time, tag=side,
                reduce_only=side == "SELL" and not p.allow_short,  # selling held inventory only reduces
                reason=f"quote {side.lower()} {price:.10g} (reservation {reservation:.10g})",
            )  # fmt: skip
        elif abs((current.order.price or 0.0) - price) >= p.requote_ticks * tick - 1e-12:
            await self.amend(event, current, price=price, quantity=current.order.quantity, time=time)

    def stats(self) -> dict[str, Any]:
        last = self.last
        return {
            **super().stats(),
            "inventory": self.position[self.key],
            "reservation": None if last is None else round(last.reservation, 10),
            "spread": None if last is None else round(last.spread, 10),
            "quotes": {
                s: (w.order.price if w else None)
                for s in ("BUY", "SELL")
                for w in [next(iter(self.working(tag=s)), None)]
            },
            "amends": self.counts["amend_requests"],
            "warming": self.counts["warming"],
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [MarketMakerBot]
