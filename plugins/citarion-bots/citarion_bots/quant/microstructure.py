"""Order-book microstructure (HFT): imbalance and the micro-price.

Over the first ``levels`` levels of each side, with bid and ask quantities Qb and Qa::

    imbalance   I = Qb / (Qb + Qa)                      in [0, 1]; 0.5 = balanced
    micro-price   = bid * (1 - I) + ask * I             (top level)

The micro-price leans towards the side that is about to give way: a heavy bid (I > 0.5) pulls it
towards the ask, because a thin ask is more likely to be lifted than the bid to be hit. e.g. bid
100 x 3, ask 101 x 1 -> I = 0.75, micro-price 100.75 (the plain mid is 100.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["imbalance", "micro_price", "mid_price"]

Level = tuple[float, float]


def imbalance(bids: Sequence[Level], asks: Sequence[Level], levels: int = 1) -> float:
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    qb = math.fsum(q for _, q in bids[:levels])
    qa = math.fsum(q for _, q in asks[:levels])
    return qb / (qb + qa) if qb + qa > 0 else 0.5


def micro_price(bids: Sequence[Level], asks: Sequence[Level]) -> float:
    (bid, qb), (ask, qa) = bids[0], asks[0]
    weight = qb / (qb + qa) if qb + qa > 0 else 0.5
    return bid * (1.0 - weight) + ask * weight


def mid_price(bids: Sequence[Level], asks: Sequence[Level]) -> float:
    return (bids[0][0] + asks[0][0]) / 2.0
