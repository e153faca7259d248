"""GRD (MESH), grid trading: buy each level the price falls through, sell it one level higher.

Levels sit at ``L_k = reference * (1 + k * spacing_pct)`` for k = -levels..levels (the reference is
the ``reference`` param or the first close). Between two closes ``prev -> close``:

* falling, every level with ``close <= L_k < prev`` is crossed downwards (highest first): buy one
  lot of ``order_quote / L_k`` and remember it as held at level k;
* rising, every level with ``prev < L_k <= close`` is crossed upwards (lowest first): sell the most
  recently bought lot held at a level below k, i.e. take the one-level profit of the grid.

Lots are booked when the order is submitted and taken back if the exchange rejects it, so the grid
never counts inventory it did not get. With ``recenter``, a flat grid whose price left the outer
levels by more than a spacing re-centres on the current close instead of sitting idle forever.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle, Order

from .common import SeriesKey
from .strategy import StrategyBot, StrategyState, TradingParams

__all__ = ["GridBot", "GridParams", "citarion_bot_types", "crossed_levels", "grid_levels"]


class GridParams(TradingParams):
    levels: int = Field(default=5, ge=1, le=200)
    spacing_pct: float = Field(default=0.01, gt=0, lt=1)
    reference: float | None = Field(default=None, gt=0)
    recenter: bool = True

    @model_validator(mode="after")
    def _positive_levels(self) -> GridParams:
        if self.levels * self.spacing_pct >= 1:
            raise ValueError("levels * spacing_pct must be < 1 so every level price stays positive")
        return self


def grid_levels(reference: float, spacing: float, levels: int) -> dict[int, float]:
    """``{k: reference * (1 + k * spacing)}`` for k = -levels..levels."""
    return {k: reference * (1 + k * spacing) for k in range(-levels, levels + 1)}


def crossed_levels(levels: dict[int, float], prev: float, close: float) -> list[int]:
    """Level indices crossed going from ``prev`` to ``close``, in the order the price passes them."""
    if close < prev:
        return [k for k in sorted(levels, reverse=True) if close <= levels[k] < prev]
    if close > prev:
        return [k for k in sorted(levels) if prev < levels[k] <= close]
    return []


class _Levels:
    """One reference's levels, kept until the reference moves: computed once per re-centre instead of
    once per candle, crossings found by bisection on the ascending prices (the same levels, in the
    same order, as :func:`crossed_levels`: ``L_k`` is non-decreasing in k)."""

    __slots__ = ("keys", "levels", "prices", "reference", "shape")

    def __init__(self, reference: float, spacing: float, levels: int) -> None:
        self.reference = reference
        self.shape = (spacing, levels)
        self.levels = grid_levels(reference, spacing, levels)
        self.keys = list(self.levels)  # ascending: -levels..levels
        self.prices = list(self.levels.values())

    def crossed(self, prev: float, close: float) -> list[int]:
        keys, prices = self.keys, self.prices
        if close < prev:  # close <= L_k < prev, highest first
            return keys[bisect_left(prices, close) : bisect_left(prices, prev)][::-1]
        if close > prev:  # prev < L_k <= close, lowest first
            return keys[bisect_right(prices, prev) : bisect_right(prices, close)]
        return []


@dataclass(slots=True)
class _Grid:
    reference: float
    prev: float
    lots: list[tuple[int, float]] = field(default_factory=list)  # (level, quantity), last bought last


class GridState(StrategyState, kw_only=True):
    """A strategy's state plus each series' grid (reference, last close, lots held) and the lot each
    in-flight order is for."""

    grids: list[tuple[SeriesKey, _Grid]] = []
    lot_orders: dict[str, tuple[SeriesKey, tuple[int, float], str]] = {}


class GridBot(StrategyBot[GridParams]):
    type_name = "grid"
    description = "GRD: grid trading; buys levels crossed downwards, sells them one level up"
    State = GridState

    def __init__(self, ctx: BotContext, params: GridParams) -> None:
        super().__init__(ctx, params)
        self.grids: dict[SeriesKey, _Grid] = {}
        self._lot_orders: dict[str, tuple[SeriesKey, tuple[int, float], str]] = {}
        self._levels: dict[SeriesKey, _Levels] = {}  # derived from each grid's reference: not state
        self._shape = (params.spacing_pct, params.levels)  # read once: params attributes are slow

    def state_fields(self) -> dict[str, Any]:
        return {**super().state_fields(), "grids": list(self.grids.items()), "lot_orders": self._lot_orders}

    def restore(self, state: Any) -> None:
        super().restore(state)
        self.grids = dict(state.grids)
        self._lot_orders = dict(state.lot_orders)

    async def on_candle(self, event: Event, candle: Candle) -> None:
        key, close, p = (candle.exchange, candle.symbol), candle.close, self.params
        grid = self.grids.get(key)
        if grid is None:
            self.grids[key] = _Grid(reference=p.reference or close, prev=close)
            return
        cached = self._levels.get(key)
        if cached is None or cached.reference != grid.reference or cached.shape != self._shape:
            cached = self._levels[key] = _Levels(grid.reference, p.spacing_pct, p.levels)
        levels = cached.levels
        for k in cached.crossed(grid.prev, close):
            if close < grid.prev:
                await self._buy(event, candle, grid, levels, k)
            else:
                await self._sell(event, candle, grid, levels, k)
        grid.prev = close
        if p.recenter and not grid.lots:  # the outer bounds only matter to a flat grid
            low, high = levels[-p.levels] * (1 - p.spacing_pct), levels[p.levels] * (1 + p.spacing_pct)
            if not low <= close <= high:
                grid.reference = close
                self.counts["recenters"] += 1

    async def _buy(self, event: Event, candle: Candle, grid: _Grid, levels: dict[int, float], k: int) -> None:
        n, s = self.params.levels, self.params.spacing_pct
        price = levels[k]
        await self.signal(
            event,
            candle,
            "LONG",
            0.5 + 0.5 * max(0, -k) / n,
            entry=price,
            stop=levels[-n] * (1 - s),
            take=levels.get(k + 1, price * (1 + s)),
            reason=f"grid level {k} crossed down",
        )
        lot = (k, self.buy_quantity(price, self.params.order_quote))
        order_id = await self.order(event, candle, "BUY", lot[1], reason=f"grid buy L{k}")
        if order_id is not None or not self.params.trade:
            grid.lots.append(lot)
        if order_id is not None:
            self._lot_orders[order_id] = ((candle.exchange, candle.symbol), lot, "BUY")

    async def _sell(
        self, event: Event, candle: Candle, grid: _Grid, levels: dict[int, float], k: int
    ) -> None:
        below = [i for i, (level, _) in enumerate(grid.lots) if level < k]
        if not below:
            return
        n, s = self.params.levels, self.params.spacing_pct
        lot = grid.lots.pop(below[-1])
        price = levels[k]
        await self.signal(
            event,
            candle,
            "SHORT",
            0.5 + 0.5 * max(0, k) / n,
            entry=price,
            stop=levels.get(k + 1, price * (1 + s)),
            take=levels.get(k - 1, price * (1 - s)),
            reason=f"grid level {k} crossed up (lot bought at level {lot[0]})",
        )
        order_id = await self.order(event, candle, "SELL", lot[1], reason=f"grid sell L{k}")
        if order_id is not None:
            self._lot_orders[order_id] = ((candle.exchange, candle.symbol), lot, "SELL")
        elif self.params.trade:
            grid.lots.append(lot)  # nothing to sell after all (e.g. the buy never filled)

    async def on_fill(self, order: Order) -> None:
        self._lot_orders.pop(order.order_id, None)

    async def on_reject(self, order: Order) -> None:
        found = self._lot_orders.pop(order.order_id, None)
        if found is None:
            return
        key, lot, side = found
        grid = self.grids[key]
        if side == "BUY" and lot in grid.lots:
            grid.lots.remove(lot)
        elif side == "SELL":
            grid.lots.append(lot)

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "recenters": self.counts["recenters"],
            "lots": {f"{e}:{s}": len(g.lots) for (e, s), g in sorted(self.grids.items())},
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [GridBot]
