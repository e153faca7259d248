"""Matching against a level-2 book: what a taker order takes, and when a resting order is crossed.

Pure (no events, no accounts): the paper exchange keeps one :class:`Depth` per series, the latest
book the feed published, as *liquidity*: every taker fill against it consumes the levels it takes
until the next book replaces them, so two orders in the same instant cannot both take the same
size. Prices and sizes are ``Decimal`` (the exchange's accounting is exact).

* A taker order (MARKET, or the marketable part of a LIMIT) walks the opposite side best first: a
  BUY takes asks at or under its limit, a SELL takes bids at or over it; each level gives up to its
  size at its own price (:meth:`Depth.plan`, then :meth:`Depth.consume`).
* A resting order is crossed when a later book offers liquidity through its limit (asks at or under
  a resting bid; bids at or over a resting ask: :meth:`Depth.crossing`) or a trade prints through it
  (a SELL print at or under a resting bid; a BUY print at or over a resting ask: :func:`print_crosses`).
  It fills at its own limit (the maker's price), up to the size that crossed.

What this does not model: queue position (a resting order is first in line at its price) and the
market impact of the platform's own orders beyond the book they took from.

A :class:`Depth` is kept across restarts as a :class:`DepthState`: the book, and the levels with what
takers consumed of them when they were converted already.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

import msgspec

from citarion_host.payloads import OrderBook

from .books import dec, lots

__all__ = ["Depth", "DepthState", "Level", "print_crosses"]

Side = Literal["BUY", "SELL"]
ZERO = Decimal(0)


@dataclass(slots=True)
class Level:
    price: Decimal
    size: Decimal


class DepthState(msgspec.Struct, kw_only=True):
    """A :class:`Depth`: its book, its levels once converted (with what was taken), when it came."""

    book: OrderBook
    seq: int
    time: int
    bids: list[Level] | None = None
    asks: list[Level] | None = None


class Depth:
    """One series' latest book, with what the exchange's takers have consumed of it.

    The levels are converted to ``Decimal`` on first use: most books are only looked at for their mid
    and for whether they cross a resting order, which the floats answer (:meth:`touches`).
    """

    __slots__ = ("_asks", "_bids", "_raw", "seq", "time")

    def __init__(self, book: OrderBook, seq: int, time: int) -> None:
        self._raw = book
        self._bids: list[Level] | None = None
        self._asks: list[Level] | None = None
        self.seq = seq
        self.time = time

    @classmethod
    def of(cls, book: OrderBook, seq: int, time: int) -> Depth:
        return cls(book, seq, time)

    def state(self) -> DepthState:
        return DepthState(book=self._raw, seq=self.seq, time=self.time, bids=self._bids, asks=self._asks)

    @classmethod
    def restored(cls, state: DepthState) -> Depth:
        depth = cls(state.book, state.seq, state.time)
        depth._bids, depth._asks = state.bids, state.asks
        return depth

    @property
    def bids(self) -> list[Level]:
        if self._bids is None:
            self._bids = [Level(dec(price), lots(dec(size))) for price, size in self._raw.bids]
        return self._bids

    @property
    def asks(self) -> list[Level]:
        if self._asks is None:
            self._asks = [Level(dec(price), lots(dec(size))) for price, size in self._raw.asks]
        return self._asks

    def touches(self, side: Side, limit: float) -> bool:
        """Could this book cross a resting ``side`` order at ``limit``? (Floats, before any level was
        taken: a False is final; a True is then checked exactly by :meth:`crossing`.)"""
        levels = self._raw.asks if side == "BUY" else self._raw.bids
        return bool(levels) and (levels[0][0] <= limit if side == "BUY" else levels[0][0] >= limit)

    def opposite(self, side: Side) -> list[Level]:
        """The levels a ``side`` order takes from (asks for a buy), best first."""
        return self.asks if side == "BUY" else self.bids

    def best(self, side: Side) -> Decimal | None:
        """The best price a ``side`` taker would get now (None: that side is empty)."""
        for level in self.opposite(side):
            if level.size > 0:
                return level.price
        return None

    def mid(self) -> Decimal | None:
        if self._bids is None and self._asks is None:  # untouched: the raw best prices
            raw = self._raw
            return (dec(raw.bids[0][0]) + dec(raw.asks[0][0])) / 2 if raw.bids and raw.asks else None
        bid, ask = self.best("SELL"), self.best("BUY")
        return None if bid is None or ask is None else (bid + ask) / 2

    def marketable(self, side: Side, limit: Decimal | None) -> bool:
        """Would a ``side`` order at ``limit`` (None: MARKET) take liquidity now?"""
        best = self.best(side)
        return best is not None and (limit is None or _through(side, best, limit))

    def plan(self, side: Side, quantity: Decimal, limit: Decimal | None) -> list[tuple[Decimal, Decimal]]:
        """``(price, quantity)`` a taker of ``quantity`` would fill, level by level, best first."""
        fills, left = [], quantity
        for level in self.opposite(side):
            if left <= 0 or (limit is not None and not _through(side, level.price, limit)):
                break
            take = min(left, level.size)
            if take > 0:
                fills.append((level.price, take))
                left -= take
        return fills

    def consume(self, side: Side, fills: list[tuple[Decimal, Decimal]]) -> None:
        """Take ``fills`` (from :meth:`plan` or :meth:`crossing`) out of the levels."""
        levels = {level.price: level for level in self.opposite(side)}
        for price, quantity in fills:
            level = levels[price]
            level.size = max(ZERO, level.size - quantity)

    def crossing(self, side: Side, limit: Decimal, quantity: Decimal) -> list[tuple[Decimal, Decimal]]:
        """What of a resting ``side`` order at ``limit`` this book crosses: ``(level price, size)``
        up to ``quantity`` (the order fills at its limit; the level prices say what it consumed)."""
        return self.plan(side, quantity, limit)


def print_crosses(side: Side, limit: Decimal, print_side: Side, print_price: Decimal) -> bool:
    """Does a trade print (``print_side`` = the aggressor) go through a resting ``side`` order?

    A resting bid is hit by a SELL print at or under its price; a resting ask is lifted by a BUY
    print at or over it.
    """
    return print_side != side and _through(side, print_price, limit)


def _through(side: Side, price: Decimal, limit: Decimal) -> bool:
    """``price`` is at or better than ``limit`` for a ``side`` order."""
    return price <= limit if side == "BUY" else price >= limit
