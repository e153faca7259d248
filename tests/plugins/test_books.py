"""Paper accounting: the books balance to the cent, exactly, whatever the sequence of fills."""

from __future__ import annotations

from decimal import Decimal

from citarion_bots.books import Book, cents, dec, lots, quote
from hypothesis import given, settings
from hypothesis import strategies as st

KEY = ("binance", "BTCUSDT")
OTHER = ("bybit", "ETHUSDT")
D = Decimal


def identity_holds(book: Book) -> bool:
    left = book.cash + sum(cents(h.quantity * h.mark) for h in book.holdings.values())
    right = book.starting_cash + book.realized + book.unrealized - book.fees
    return left == right and book.imbalance() == 0


def test_round_trip_long_by_hand() -> None:
    book = Book(D(10_000))
    notional, fee = quote(D(2), D(100), D(10))
    assert (notional, fee) == (D("200.00"), D("0.20"))
    book.apply(KEY, "BUY", D(2), D(100), fee)
    assert book.cash == D("9799.80")
    held = book.holding(KEY)
    assert (held.quantity, held.cost, held.entry_price) == (D(2), D("200.00"), D(100))
    book.mark(KEY, D(110))
    assert held.unrealized == D("20.00")
    assert book.equity == D("10019.80")
    _, fee = quote(D(1), D(110), D(10))
    fill = book.apply(KEY, "SELL", D(1), D(110), fee)
    assert fill.realized == D("10.00")
    assert (held.quantity, held.cost, held.realized, held.fees) == (D(1), D("100.00"), D("10.00"), D("0.31"))
    assert identity_holds(book)


def test_short_and_flip() -> None:
    book = Book(D(1_000))
    book.apply(KEY, "SELL", D(1), D(100), D(0))  # open short at 100
    assert book.holding(KEY).quantity == -1 and book.holding(KEY).cost == D(-100)
    book.apply(KEY, "BUY", D(3), D(90), D(0))  # cover at 90 (+10), then long 2 at 90
    held = book.holding(KEY)
    assert (held.quantity, held.cost, held.realized, held.entry_price) == (D(2), D(180), D(10), D(90))
    assert book.cash == D(1_000) + 100 - 270
    assert identity_holds(book)


def test_partial_close_rounding_stays_balanced() -> None:
    book = Book(D(10_000))
    for price in ("33.33", "33.34", "33.35"):
        book.apply(KEY, "BUY", D("0.33333333"), D(price), D("0.01"))
    for _ in range(2):
        book.apply(KEY, "SELL", D("0.33333334"), D("34.567"), D("0.01"))
    book.mark(KEY, D("31.99"))
    assert identity_holds(book)
    book.apply(KEY, "SELL", book.holding(KEY).quantity, D("30"), D(0))
    assert book.holding(KEY).quantity == 0 and book.holding(KEY).cost == 0
    assert identity_holds(book)


fills = st.lists(
    st.tuples(
        st.sampled_from([KEY, OTHER]),
        st.sampled_from(["BUY", "SELL"]),
        st.decimals(min_value=D("0.00000001"), max_value=D("5"), places=8),
        st.decimals(min_value=D("0.01"), max_value=D("70000"), places=4),
        st.decimals(min_value=D(0), max_value=D(50), places=2),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(fills, st.decimals(min_value=D("0.01"), max_value=D("90000"), places=3))
def test_identity_holds_for_any_fills(
    sequence: list[tuple[tuple[str, str], str, Decimal, Decimal, Decimal]], mark: Decimal
) -> None:
    book = Book(D(10_000))
    for key, side, qty, price, bps in sequence:
        _, fee = quote(qty, price, bps)
        book.apply(key, side, qty, price, fee)  # type: ignore[arg-type]
        assert identity_holds(book)
    book.mark(KEY, mark)
    book.mark(OTHER, mark / 3)
    assert identity_holds(book)


def test_conversions() -> None:
    assert dec(0.1) == D("0.1") and dec(3) == D(3) and dec("2.5") == D("2.5")
    assert lots(D("0.123456789")) == D("0.12345679")
    assert cents(D("0.125")) == D("0.12")  # banker's rounding: no drift on average
    snapshot = Book(D(5)).snapshot()
    assert snapshot["cash"] == 5.0 and snapshot["imbalance"] == 0.0


def venue_identity_holds(book: Book) -> bool:
    left = book.cash + sum(cents(h.quantity * h.mark) for h in book.holdings.values())
    right = (
        book.starting_cash + book.deposits + book.realized + book.unrealized - book.fees - book.transfer_fees
    )
    return left == right and book.imbalance() == 0 and book.venue_imbalance() == 0


steps = st.lists(
    st.one_of(
        st.tuples(st.just("fill"), fills.map(lambda f: f[0] if f else None)).filter(
            lambda s: s[1] is not None
        ),
        st.tuples(
            st.just("send"),
            st.sampled_from(["binance", "bybit"]),
            st.decimals(min_value=D("0.01"), max_value=D("3000"), places=2),
            st.decimals(min_value=D(0), max_value=D("5"), places=2),
        ),
        st.tuples(st.just("settle")),
        st.tuples(
            st.just("deposit"),
            st.sampled_from([KEY, OTHER]),
            st.decimals(min_value=D("0.00000001"), max_value=D("2"), places=8),
            st.decimals(min_value=D("0.01"), max_value=D("70000"), places=4),
        ),
    ),
    max_size=50,
)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(steps, st.decimals(min_value=D("0.01"), max_value=D("90000"), places=3))
def test_venue_identity_holds_for_any_fills_deposits_and_transfers(steps: list[tuple], mark: Decimal) -> None:  # type: ignore[type-arg]
    """A venue account: fills move their own exchange's cash, transfers leave one venue (fee spent)
    and arrive on the other when they settle, deposits enter at their price. After every step,
    exactly: cash + market value == starting cash + deposits + realized + unrealized - fees -
    transfer fees, and cash == per-venue cash + cash in transit."""
    book = Book(D(0), venues={"binance": D("5000.00"), "bybit": D("1000.00")})
    assert book.starting_cash == D("6000.00")
    in_flight: list[tuple[str, Decimal]] = []
    for step in steps:
        if step[0] == "fill":
            key, side, qty, price, bps = step[1]
            _, fee = quote(qty, price, bps)
            book.apply(key, side, qty, price, fee)
        elif step[0] == "send":
            _, source, amount, fee = step
            book.send(source, amount, fee)
            in_flight.append(("bybit" if source == "binance" else "binance", amount))
        elif step[0] == "settle" and in_flight:
            book.settle(*in_flight.pop(0))
        elif step[0] == "deposit":
            _, key, qty, price = step
            book.deposit(key, qty, price)
        assert venue_identity_holds(book)
    book.mark(KEY, mark)
    book.mark(OTHER, mark / 3)
    assert venue_identity_holds(book)
    assert book.in_transit == sum((amount for _, amount in in_flight), D(0))
