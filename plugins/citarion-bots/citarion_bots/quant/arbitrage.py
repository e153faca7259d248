"""Cross-exchange arbitrage arithmetic: the net edge after both taker fees, and how much to trade.

Buying one unit at ask ``a`` on venue A (taker fee ``f_a``) and selling it at bid ``b`` on venue B
(taker fee ``f_b``) earns, per unit::

    edge = b * (1 - f_b) - a * (1 + f_a)

e.g. ask 100.0 on A, bid 100.5 on B, 0.1 % fees: 100.5 * 0.999 - 100.0 * 1.001 = 0.2995 per unit;
at 0.3 % fees it is -0.1015, so no trade.

:func:`plan` walks both books level by level (A's asks upwards, B's bids downwards) and keeps
taking quantity while the *marginal* edge of the next unit is at least the threshold, up to
whichever runs out first: depth, ``max_quantity``, the quote balance on A (cost plus fee) or the
base balance on B (spot: only what is held there can be sold). Quantities are floored to the
1e-8 lot so a plan never needs a cent more than the balances hold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ArbPlan", "floor_lot", "net_edge", "plan"]

Level = tuple[float, float]
_LOT = 1e-8


def net_edge(ask: float, bid: float, buy_fee: float, sell_fee: float) -> float:
    """Profit per unit of buying at ``ask`` and selling at ``bid``, both fees paid."""
    return bid * (1.0 - sell_fee) - ask * (1.0 + buy_fee)


def floor_lot(quantity: float) -> float:
    """``quantity`` rounded down to the 1e-8 lot (a tiny epsilon absorbs binary noise like 0.3/0.1)."""
    return math.floor(quantity / _LOT + 1e-6) * _LOT if quantity > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ArbPlan:
    """Both legs of one arbitrage. ``buy_limit``/``sell_limit`` are the worst levels used: IOC limits
    there fill exactly the planned depth and nothing worse."""

    quantity: float
    buy_limit: float
    sell_limit: float
    buy_cost: float  # sum of price * qty on A, fees excluded
    sell_proceeds: float  # sum of price * qty on B, fees excluded
    net_profit: float  # proceeds and cost after both fees

    @property
    def edge_per_unit(self) -> float:
        return self.net_profit / self.quantity


def plan(
    asks: Sequence[Level],
    bids: Sequence[Level],
    *,
    buy_fee: float,
    sell_fee: float,
    min_edge: float = 0.0,
    max_quantity: float = math.inf,
    quote_available: float = math.inf,
    base_available: float = math.inf,
) -> ArbPlan | None:
    """The largest profitable trade buying ``asks`` (venue A) and selling ``bids`` (venue B), or None.

    ``min_edge`` is the least net edge per unit, in price, that the last unit taken must still earn.
    """
    i = j = 0
    ask_left = asks[0][1] if asks else 0.0
    bid_left = bids[0][1] if bids else 0.0
    quantity = cost = proceeds = 0.0
    buy_limit = sell_limit = 0.0
    cap = min(max_quantity, base_available)
    while i < len(asks) and j < len(bids):
        ask, bid = asks[i][0], bids[j][0]
        if net_edge(ask, bid, buy_fee, sell_fee) < min_edge:
            break
        depth = min(ask_left, bid_left)
        affordable = (quote_available - cost * (1.0 + buy_fee)) / (ask * (1.0 + buy_fee))
        take = min(depth, cap - quantity, affordable)
        if take <= 0:
            break
        quantity += take
        cost += take * ask
        proceeds += take * bid
        buy_limit, sell_limit = ask, bid
        if take < depth:
            break  # a balance or the cap ran out before the book did
        ask_left -= take
        bid_left -= take
        if ask_left <= 0:
            i += 1
            ask_left = asks[i][1] if i < len(asks) else 0.0
        if bid_left <= 0:
            j += 1
            bid_left = bids[j][1] if j < len(bids) else 0.0
    lots = floor_lot(quantity)
    if lots <= 0:
        return None
    cut = quantity - lots  # below one lot, taken off the last (worst) levels used
    cost -= cut * buy_limit
    proceeds -= cut * sell_limit
    return ArbPlan(
        quantity=lots,
        buy_limit=buy_limit,
        sell_limit=sell_limit,
        buy_cost=cost,
        sell_proceeds=proceeds,
        net_profit=proceeds * (1.0 - sell_fee) - cost * (1.0 + buy_fee),
    )
