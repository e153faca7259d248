"""The paper exchange's state: its resting orders, price history, books and ledger, as plain data.

Everything the exchange's answers depend on is here, so a restarted exchange (a reload, a crash, a
host restart: ``docs/state.md``) fills, rejects and books exactly as the one it replaces would have:
the books to the cent, the order ids it has seen (a duplicate stays a duplicate), the orders resting or
held for their decision bar, the bar clocks and price history their fills are priced by, the level-2
books with what takers already consumed, the risk blocks, the transfers in flight.

Maps keyed by series are ``[[exchange, symbol], value]`` rows (a JSON object takes string keys only).
An order held for its decision bar keeps the whole event that carried it (its id is the fill's cause,
its metadata says when the order was decided).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import msgspec

from citarion_host.events import Event
from citarion_host.payloads import Order

from .books import BookState, dec
from .common import SeriesKey
from .ledger import LedgerState
from .matching import DepthState

__all__ = ["ExchangeState", "History", "Resting"]

ZERO = Decimal(0)


@dataclass(slots=True)
class Resting:
    """A resting order: ``quantity`` is what is left; ``filled``/``notional``/``fee`` what filled."""

    order: Order
    quantity: Decimal
    placed_tick: int
    cause: str
    placed_book: int = 0
    post_only: bool = False
    filled: Decimal = ZERO
    notional: Decimal = ZERO
    fee: Decimal = ZERO


@dataclass(slots=True)
class History:
    """A series' recent bars: data time -> (close, bar clock), oldest first.

    The closes are kept as the feed's floats and made ``Decimal`` (:func:`~.books.dec`, exactly the
    decimal a float prints as) only when an order is priced by one: most bars never are, and a
    snapshot encodes a thousand floats several times faster than a thousand decimals."""

    bars: dict[int, tuple[float, int]]
    last_time: int

    def at(self, data_time: int) -> tuple[Decimal, int] | None:
        """The bar at ``data_time``, or the last one before it (a series on another clock)."""
        found = self.bars.get(data_time)
        if found is None:
            earlier = [t for t in self.bars if t <= data_time]
            if not earlier:
                return None
            found = self.bars[max(earlier)]
        return dec(found[0]), found[1]


class ExchangeState(msgspec.Struct, kw_only=True):
    """What :class:`~citarion_bots.exchange.PaperExchange` keeps across restarts."""

    prices: list[tuple[SeriesKey, Decimal]] = []
    ticks: list[tuple[SeriesKey, int]] = []
    quoted: list[SeriesKey] = []
    resting: list[tuple[SeriesKey, list[Resting]]] = []
    history: list[tuple[SeriesKey, History]] = []
    depth: list[tuple[SeriesKey, DepthState]] = []
    held: list[tuple[SeriesKey, list[tuple[int, Event[Order]]]]] = []
    books: dict[str, BookState] = {}
    blocked: dict[str, str] = {}
    counts: dict[str, int] = {}
    transfers: LedgerState = msgspec.field(default_factory=LedgerState)
    clock: int = 0
    order_ids: list[tuple[str, str]] = []
    book_seq: int = 0
    deposits: list[tuple[SeriesKey, list[tuple[str, Decimal]]]] = []
    #: The venue accounts' opening balances went out (a restarted exchange does not repeat them).
    announced: bool = False
