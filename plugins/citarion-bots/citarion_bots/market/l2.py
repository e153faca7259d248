"""Level-2 order books around a mid path, whose size imbalance predicts the next mid move.

For a mid path ``m[t]`` (one value per book step) the book at step t is:

* prices: ``best bid = floor(m / tick) * tick``, ``best ask = best bid + spread_ticks * tick``, then
  ``depth`` levels a tick apart on each side (so the continuous mid is always inside the spread);
* a latent imbalance ``I[t] = tanh(sharpness * (signal * z[t+1] + sqrt(1 - signal^2) * e[t]))`` in
  (-1, 1), where ``z[t+1]`` is the *next* mid change in standard deviations and e is N(0, 1) noise:
  ``signal`` is the planted correlation between the book's lean and the coming move (0 = none);
* sizes: level i (0 = best) holds ``level_size * growth^i * exp(noise * N(0, 1))`` times
  ``(1 + I)`` on the bid side and ``(1 - I)`` on the ask side (floored at 2 % of the level's size),
  so a heavy bid announces an up-move with the strength ``signal`` says.

Trades: a Poisson(``trade_rate``) number per step; each is a BUY (lifting the best ask) with
probability ``(1 + I) / 2``, else a SELL (hitting the best bid), of an exponential size with mean
``trade_size`` capped at the level it hits. Everything comes from the ``numpy.random.Generator``
passed in, so a seed fixes the books and the prints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["BookPath", "BookShape", "book_path", "latent_imbalance", "tick_for"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class BookShape:
    depth: int = 10
    tick: float = 0.01
    spread_ticks: int = 1
    level_size: float = 1.0
    growth: float = 1.1
    noise: float = 0.3
    signal: float = 0.6
    sharpness: float = 1.5
    trade_rate: float = 0.5
    trade_size: float = 0.2


def tick_for(price: float, tick_bps: float) -> float:
    """The power of ten at or below ``price * tick_bps / 10^4`` (BTC at 50,000 and 1 bp -> 1.0)."""
    raw = price * tick_bps / 10_000
    return float(10.0 ** math.floor(math.log10(raw))) if raw > 0 else 0.01


def latent_imbalance(rng: np.random.Generator, mids: Array, *, signal: float, sharpness: float) -> Array:
    """``I[t]`` in (-1, 1), correlated ``signal`` with the standardised next move (0 at the last step)."""
    if not -1.0 <= signal <= 1.0:
        raise ValueError(f"signal must be within [-1, 1], got {signal}")
    moves = np.append(np.diff(mids), 0.0)
    sd = float(np.std(moves))
    z = moves / sd if sd > 0 else np.zeros_like(moves)
    noise = rng.standard_normal(len(mids))
    return np.asarray(np.tanh(sharpness * (signal * z + math.sqrt(1 - signal * signal) * noise)))


@dataclass(frozen=True, slots=True)
class BookPath:
    """Books and trades at every step of one series, as arrays (payloads are built on demand)."""

    best_bid: Array  # (n,)
    tick: float
    spread_ticks: int
    bid_sizes: Array  # (n, depth)
    ask_sizes: Array  # (n, depth)
    imbalance: Array  # (n,) latent I
    trades: list[list[tuple[str, float, float]]]  # per step: (side, price, quantity)

    @property
    def decimals(self) -> int:
        return max(0, -math.floor(math.log10(self.tick)) + 2)

    def levels(self, t: int) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
        """``(bids, asks)`` at step t, best first, prices on the tick grid."""
        digits, tick = self.decimals, self.tick
        bid0 = float(self.best_bid[t])
        ask0 = bid0 + self.spread_ticks * tick
        depth = self.bid_sizes.shape[1]
        bids = [(round(bid0 - i * tick, digits), round(float(self.bid_sizes[t, i]), 8)) for i in range(depth)]
        asks = [(round(ask0 + i * tick, digits), round(float(self.ask_sizes[t, i]), 8)) for i in range(depth)]
        return bids, asks

    def mid(self, t: int) -> float:
        return float(self.best_bid[t]) + self.spread_ticks * self.tick / 2


def book_path(rng: np.random.Generator, mids: Array, shape: BookShape) -> BookPath:
    """Books and trades around ``mids`` (one value per step)."""
    if shape.depth < 1 or shape.tick <= 0 or shape.spread_ticks < 1:
        raise ValueError("need depth >= 1, tick > 0 and spread_ticks >= 1")
    n, depth = len(mids), shape.depth
    lean = latent_imbalance(rng, mids, signal=shape.signal, sharpness=shape.sharpness)
    best_bid = np.floor(np.asarray(mids) / shape.tick + 1e-9) * shape.tick
    level = shape.level_size * shape.growth ** np.arange(depth)
    floor = 0.02 * level
    bid_sizes = np.maximum(
        level * np.exp(shape.noise * rng.standard_normal((n, depth))) * (1 + lean)[:, None], floor
    )
    ask_sizes = np.maximum(
        level * np.exp(shape.noise * rng.standard_normal((n, depth))) * (1 - lean)[:, None], floor
    )
    counts = rng.poisson(shape.trade_rate, n)
    trades: list[list[tuple[str, float, float]]] = []
    digits = max(0, -math.floor(math.log10(shape.tick)) + 2)
    for t in range(n):
        prints: list[tuple[str, float, float]] = []
        for _ in range(int(counts[t])):
            buy = rng.random() < (1 + lean[t]) / 2
            size = rng.exponential(shape.trade_size)
            if buy:
                price, cap = best_bid[t] + shape.spread_ticks * shape.tick, ask_sizes[t, 0]
            else:
                price, cap = best_bid[t], bid_sizes[t, 0]
            quantity = round(float(min(size, cap)), 8)
            if quantity > 0:
                prints.append(("BUY" if buy else "SELL", round(float(price), digits), quantity))
        trades.append(prints)
    return BookPath(
        best_bid=best_bid,
        tick=shape.tick,
        spread_ticks=shape.spread_ticks,
        bid_sizes=bid_sizes,
        ask_sizes=ask_sizes,
        imbalance=lean,
        trades=trades,
    )
