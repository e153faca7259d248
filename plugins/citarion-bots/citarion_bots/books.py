"""Paper accounting: one bot's cash and positions, in Decimal cents, balanced by construction.

Money is ``Decimal`` quantized to cents; quantities are ``Decimal`` on a 1e-8 lot grid. Each holding
keeps its *signed cost basis* ``cost`` (quantity x average entry price, in cents) instead of the
entry price, and every fill moves the same cent amounts on both sides of::

    cash + sum(cost) == starting_cash + realized - fees                      (1)

* opening/increasing (buy N of a long or sell N of a short): ``cash -= s*N``, ``cost += s*N``
  (s = +1 for a buy, -1 for a sell);
* reducing by c of |q| units at notional N_c: the closed basis is ``removed = cost * c / |q|`` (all
  of ``cost`` when flat after), ``cash += sign(q) * N_c``, ``cost -= removed``,
  ``realized += sign(q) * N_c - removed``;
* the fee: ``cash -= fee``, ``fees += fee``.

With ``market_value = round_cents(q * mark)`` and ``unrealized = market_value - cost``, (1) gives the
identity the tests check for every bot, exactly (no tolerance)::

    cash + sum(market_value) == starting_cash + realized + unrealized - fees

A *venue account* (``Book(..., venues={...})``) also keeps its cash per exchange: a fill moves the
cash of its own exchange only, and ``cash`` stays the total (``sum(venues) + in_transit``). Two more
entries keep the identity whole:

* a **deposit** of an asset held at start (``deposit``), valued at its first price: ``quantity`` and
  ``cost`` grow by it, and so do ``deposits`` on the right-hand side;
* a **transfer** of cash between exchanges (``send`` then ``settle``): ``amount + fee`` leave the
  source's cash at once, ``amount`` is ``in_transit`` until it settles on the target, and the fee is
  an expense (``transfer_fees``)::

    cash + sum(market_value) == starting_cash + deposits + realized + unrealized - fees - transfer_fees

A book is kept across restarts as a :class:`BookState` (``Book.state`` / ``Book.of``): every amount
exactly as it stands, so a restored book balances to the cent like the one it came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Literal

import msgspec

from .common import SeriesKey

__all__ = ["CENT", "LOT", "Book", "BookState", "Fill", "Holding", "cents", "dec", "lots", "quote"]

CENT = Decimal("0.01")
LOT = Decimal("0.00000001")
ZERO = Decimal(0)
Side = Literal["BUY", "SELL"]


def dec(value: float | int | str | Decimal) -> Decimal:
    """A float as the decimal it prints as (``0.1`` -> ``Decimal('0.1')``, not its binary expansion)."""
    return (
        value if isinstance(value, Decimal) else Decimal(repr(value) if isinstance(value, float) else value)
    )


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_EVEN)


def lots(value: Decimal) -> Decimal:
    return value.quantize(LOT, rounding=ROUND_HALF_EVEN)


@dataclass(slots=True)
class Holding:
    """One bot's position in one series. ``cost`` is the signed cost basis in cents."""

    quantity: Decimal = ZERO
    cost: Decimal = ZERO
    realized: Decimal = ZERO
    fees: Decimal = ZERO
    mark: Decimal = ZERO

    @property
    def entry_price(self) -> Decimal:
        """Average entry price (0 when flat)."""
        return ZERO if not self.quantity else abs(self.cost / self.quantity)

    @property
    def market_value(self) -> Decimal:
        return cents(self.quantity * self.mark)

    @property
    def unrealized(self) -> Decimal:
        return self.market_value - self.cost


@dataclass(frozen=True, slots=True)
class Fill:
    """What one execution did to the book."""

    side: Side
    quantity: Decimal
    price: Decimal
    notional: Decimal
    fee: Decimal
    realized: Decimal


def quote(quantity: Decimal, price: Decimal, fee_bps: Decimal) -> tuple[Decimal, Decimal]:
    """``(notional, fee)`` in cents for a fill of ``quantity`` at ``price``."""
    notional = cents(quantity * price)
    return notional, cents(notional * fee_bps / Decimal(10_000))


class BookState(msgspec.Struct, kw_only=True):
    """A :class:`Book` as plain data (holdings as ``[[exchange, symbol], holding]`` rows)."""

    starting_cash: Decimal
    cash: Decimal
    holdings: list[tuple[SeriesKey, Holding]] = []
    venues: dict[str, Decimal] | None = None
    deposits: Decimal = ZERO
    transfer_fees: Decimal = ZERO
    in_transit: Decimal = ZERO


@dataclass
class Book:
    """A bot's account: cash plus holdings per series (and, for a venue account, cash per exchange)."""

    starting_cash: Decimal
    cash: Decimal = ZERO
    holdings: dict[SeriesKey, Holding] = field(default_factory=dict)
    venues: dict[str, Decimal] | None = None
    deposits: Decimal = ZERO
    transfer_fees: Decimal = ZERO
    in_transit: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.venues is not None:
            self.venues = {name: cents(amount) for name, amount in self.venues.items()}
            self.starting_cash = sum(self.venues.values(), ZERO)
        self.starting_cash = cents(self.starting_cash)
        self.cash = self.starting_cash

    def state(self) -> BookState:
        return BookState(
            starting_cash=self.starting_cash,
            cash=self.cash,
            holdings=list(self.holdings.items()),
            venues=self.venues,
            deposits=self.deposits,
            transfer_fees=self.transfer_fees,
            in_transit=self.in_transit,
        )

    @classmethod
    def of(cls, state: BookState) -> Book:
        """The book ``state`` describes, every amount as it was (no re-rounding)."""
        book = cls(state.starting_cash)
        book.starting_cash, book.cash = state.starting_cash, state.cash
        book.holdings = dict(state.holdings)
        book.venues = None if state.venues is None else dict(state.venues)
        book.deposits, book.transfer_fees, book.in_transit = (
            state.deposits,
            state.transfer_fees,
            state.in_transit,
        )
        return book

    def venue_cash(self, exchange: str) -> Decimal:
        """The cash on ``exchange`` (a venue account), else the bot's whole cash."""
        return self.cash if self.venues is None else self.venues.get(exchange, ZERO)

    def holding(self, key: SeriesKey) -> Holding:
        found = self.holdings.get(key)
        if found is None:
            found = self.holdings[key] = Holding()
        return found

    def apply(self, key: SeriesKey, side: Side, quantity: Decimal, price: Decimal, fee: Decimal) -> Fill:
        """Execute ``quantity`` (> 0) at ``price``; the caller has validated cash and limits."""
        held = self.holding(key)
        held.mark = price
        before = self.cash
        notional = cents(quantity * price)
        step = 1 if side == "BUY" else -1
        realized = ZERO
        q = held.quantity
        if q == 0 or (q > 0) == (step > 0):
            self._open(held, step, quantity, notional)
        else:
            closing = min(quantity, abs(q))
            n_close = notional if closing == quantity else cents(notional * closing / quantity)
            removed = held.cost if closing == abs(q) else cents(held.cost * closing / abs(q))
            sign = 1 if q > 0 else -1
            realized = sign * n_close - removed
            self.cash += sign * n_close
            held.cost -= removed
            held.realized += realized
            held.quantity = q + step * closing
            if closing < quantity:
                self._open(held, step, quantity - closing, notional - n_close)
        self.cash -= fee
        held.fees += fee
        if self.venues is not None:
            self.venues[key[0]] = self.venues.get(key[0], ZERO) + (self.cash - before)
        return Fill(side, quantity, price, notional, fee, realized)

    def deposit(self, key: SeriesKey, quantity: Decimal, price: Decimal) -> None:
        """An asset held at start enters the books at ``price`` (its first price)."""
        held = self.holding(key)
        value = cents(quantity * price)
        held.quantity += quantity
        held.cost += value
        held.mark = price
        self.deposits += value

    def send(self, source: str, amount: Decimal, fee: Decimal) -> None:
        """A transfer leaves ``source``: ``amount + fee`` now; the fee is spent, the amount in transit."""
        if self.venues is None:
            raise ValueError("only a venue account moves cash between exchanges")
        self.venues[source] = self.venues.get(source, ZERO) - amount - fee
        self.in_transit += amount
        self.cash -= fee
        self.transfer_fees += fee

    def settle(self, target: str, amount: Decimal) -> None:
        """A transfer's ``amount`` arrives on ``target``."""
        if self.venues is None:
            raise ValueError("only a venue account moves cash between exchanges")
        self.venues[target] = self.venues.get(target, ZERO) + amount
        self.in_transit -= amount

    def _open(self, held: Holding, step: int, quantity: Decimal, notional: Decimal) -> None:
        self.cash -= step * notional
        held.cost += step * notional
        held.quantity += step * quantity

    def mark(self, key: SeriesKey, price: Decimal) -> None:
        if key in self.holdings:
            self.holdings[key].mark = price

    # -- totals ------------------------------------------------------------------------------------

    @property
    def realized(self) -> Decimal:
        return sum((h.realized for h in self.holdings.values()), ZERO)

    @property
    def unrealized(self) -> Decimal:
        return sum((h.unrealized for h in self.holdings.values()), ZERO)

    @property
    def fees(self) -> Decimal:
        return sum((h.fees for h in self.holdings.values()), ZERO)

    @property
    def market_value(self) -> Decimal:
        return sum((h.market_value for h in self.holdings.values()), ZERO)

    @property
    def equity(self) -> Decimal:
        return self.cash + self.market_value

    @property
    def gross_exposure(self) -> Decimal:
        return sum((abs(h.market_value) for h in self.holdings.values()), ZERO)

    def imbalance(self) -> Decimal:
        """Left side minus right side of the accounting identity: always exactly zero."""
        return (self.cash + self.market_value) - (
            self.starting_cash
            + self.deposits
            + self.realized
            + self.unrealized
            - self.fees
            - self.transfer_fees
        )

    def venue_imbalance(self) -> Decimal:
        """``cash`` minus the cash it is made of (per-venue cash and cash in transit): always zero."""
        return ZERO if self.venues is None else self.cash - sum(self.venues.values(), self.in_transit)

    def snapshot(self) -> dict[str, Any]:
        """The book as plain floats/strings for ``stats()`` and run summaries (a venue account adds
        its cash per exchange, deposits, transfer fees and cash in transit)."""
        venue = (
            {}
            if self.venues is None
            else {
                "venues": {name: float(amount) for name, amount in sorted(self.venues.items())},
                "deposits": float(self.deposits),
                "transferFees": float(self.transfer_fees),
                "inTransit": float(self.in_transit),
            }
        )
        return {
            **venue,
            "startingCash": float(self.starting_cash),
            "cash": float(self.cash),
            "equity": float(self.equity),
            "realizedPnl": float(self.realized),
            "unrealizedPnl": float(self.unrealized),
            "feesPaid": float(self.fees),
            "grossExposure": float(self.gross_exposure),
            "imbalance": float(self.imbalance()),
            "positions": {
                f"{exchange}:{symbol}": {
                    "quantity": float(h.quantity),
                    "entryPrice": float(h.entry_price),
                    "markPrice": float(h.mark),
                    "realizedPnl": float(h.realized),
                    "unrealizedPnl": float(h.unrealized),
                    "feesPaid": float(h.fees),
                }
                for (exchange, symbol), h in sorted(self.holdings.items())
            },
        }
