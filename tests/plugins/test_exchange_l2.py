"""EXC grown to what the institutional bots need (docs/market.md): level-2 matching with maker/taker
fees, IOC and post-only, partial fills, cancels and amends, per-exchange balances and transfers.

Every test ends with the books balancing exactly (transfers and deposits included)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from citarion_bots.exchange import PaperExchange

from citarion_host.payloads import Balance, Order, OrderBook, Trade, Transfer
from citarion_host.testing import BotHarness

T0 = 1_700_006_400_000
PUBLISH = ["trading.order.>", "trading.position.>"]
ACCOUNTS = {
    "orion": {"binance": {"USDT": 1_000.0, "BTC": 1.0}, "bybit": {"USDT": 500.0}},
    "kron": {"binance": {"USDT": 700.0}, "bybit": {"USDT": 300.0}},
}


def exchange(**params: Any) -> BotHarness:
    defaults = {"fee_bps": 10, "maker_fee_bps": 2, "slippage_bps": 5, "accounts": ACCOUNTS}
    return BotHarness(PaperExchange, {**defaults, **params}, bot_id="exchange", code="EXC", publish=PUBLISH)


def ex(h: BotHarness) -> PaperExchange:
    assert isinstance(h.bot, PaperExchange)
    return h.bot


async def book(
    h: BotHarness,
    bids: list[tuple[float, float]],
    asks: list[tuple[float, float]],
    *,
    time: int = T0,
    exchange_: str = "binance",
) -> None:
    payload = OrderBook(symbol="BTCUSDT", exchange=exchange_, bids=bids, asks=asks)
    await h.feed(
        f"market.orderbook.updated.{exchange_}.BTCUSDT", payload, source="LUM", metadata={"dataTime": time}
    )


def order(
    oid: str, side: str, qty: float, *, price: float | None = None, bot: str = "orion", **kw: Any
) -> Order:
    return Order(
        order_id=oid, symbol="BTCUSDT", exchange=kw.pop("exchange", "binance"), side=side,  # type: ignore[arg-type]
        type="MARKET" if price is None else "LIMIT", quantity=qty, status="NEW", price=price, bot_id=bot,
    )  # fmt: skip


async def send(h: BotHarness, topic: str, o: Order | Transfer, **meta: Any) -> list[tuple[str, Any]]:
    before = len(h.published)
    await h.feed(topic, o, source="ARB", metadata={"botId": o.bot_id, "dataTime": T0, **meta})
    return [(e.topic, e.payload) for e in h.published[before:]]


def balanced(h: BotHarness) -> bool:
    return all(b.imbalance() == 0 and b.venue_imbalance() == 0 for b in ex(h).books.values())


async def test_every_account_reports_its_balances_at_start_zeros_included() -> None:
    h = exchange()
    await h.start()
    seen = {
        (b.bot_id, b.exchange, b.asset): (b.total, b.available)
        for b in h.payloads("trading.position.balance")
    }
    assert seen == {
        ("orion", "binance", "USDT"): (1_000.0, 1_000.0),
        ("orion", "binance", "BTC"): (1.0, 1.0),
        ("orion", "bybit", "USDT"): (500.0, 500.0),
        ("kron", "binance", "USDT"): (700.0, 700.0),
        ("kron", "bybit", "USDT"): (300.0, 300.0),
    }
    assert {e.topic for e in h.published} == {
        "trading.position.balance.binance",
        "trading.position.balance.bybit",
    }


async def test_a_market_order_walks_the_book_at_the_taker_fee_and_cancels_beyond_its_depth() -> None:
    h = exchange()
    await book(h, [(99.0, 1.0)], [(100.0, 1.0), (101.0, 2.0)])
    events = await send(h, "trading.order.submitted", order("o-1", "BUY", 2.5))
    filled = events[0][1]
    assert events[0][0] == "trading.order.filled"
    assert (filled.filled_quantity, filled.average_price) == (2.5, pytest.approx((100 + 1.5 * 101) / 2.5))
    assert filled.fee == 0.10 + 0.15  # 10 bps of 100.00 and of 151.50, each in cents
    # the levels it took are gone until the next book: the next buy gets the 0.5 left, the rest is cancelled
    events = await send(h, "trading.order.submitted", order("o-2", "BUY", 1.0))
    cancelled = events[0][1]
    assert events[0][0] == "trading.order.cancelled" and cancelled.reason == "book depth exhausted"
    assert (cancelled.filled_quantity, cancelled.average_price) == (0.5, 101.0)
    assert ex(h).books["orion"].venues == {"binance": Decimal("1000") - Decimal("251.75") - Decimal("50.55"),
                                           "bybit": Decimal("500")}  # fmt: skip
    assert balanced(h)


async def test_ioc_fills_what_is_marketable_and_post_only_refuses_to_take() -> None:
    h = exchange()
    await book(h, [(99.0, 1.0)], [(100.0, 0.4), (102.0, 1.0)])
    events = await send(
        h, "trading.order.submitted", order("o-1", "BUY", 1.0, price=101.0), timeInForce="IOC"
    )
    assert events[0][0] == "trading.order.cancelled"
    assert (events[0][1].filled_quantity, events[0][1].reason) == (0.4, "IOC: remainder not marketable")
    events = await send(h, "trading.order.submitted", order("o-2", "BUY", 1.0, price=102.0), postOnly=True)
    assert events[0][0] == "trading.order.rejected" and events[0][1].reason.startswith("post-only")
    events = await send(h, "trading.order.submitted", order("o-3", "BUY", 1.0, price=98.0), postOnly=True)
    assert [t for t, _ in events] == ["trading.order.accepted"]
    assert balanced(h)


async def test_a_resting_order_fills_partially_at_its_limit_at_the_maker_fee_then_in_full() -> None:
    h = exchange()
    await book(h, [(99.0, 1.0)], [(100.0, 1.0)])
    await send(h, "trading.order.submitted", order("o-1", "BUY", 1.0, price=99.5))
    await book(h, [(99.0, 1.0)], [(99.4, 0.3), (99.6, 5.0)], time=T0 + 1)  # 0.3 crosses 99.5
    partial = h.payloads("trading.order.partially_filled")
    assert [(o.filled_quantity, o.average_price, o.fee) for o in partial] == [
        (0.3, 99.5, 0.01)
    ]  # 2 bps of 29.85
    await h.feed(
        "market.trade.executed.binance.BTCUSDT",
        Trade(symbol="BTCUSDT", exchange="binance", price=99.5, quantity=2.0, side="SELL", trade_id="t1"),
        source="LUM", metadata={"dataTime": T0 + 2},
    )  # fmt: skip
    filled = h.payloads("trading.order.filled")
    assert [(o.filled_quantity, o.average_price, o.fee) for o in filled] == [(1.0, 99.5, 0.01 + 0.01)]
    assert ex(h).stats()["resting"] == 0 and balanced(h)


async def test_a_print_on_the_wrong_side_does_not_fill_a_resting_order() -> None:
    h = exchange()
    await book(h, [(99.0, 1.0)], [(100.0, 1.0)])
    await send(h, "trading.order.submitted", order("o-1", "BUY", 1.0, price=99.5))
    buy_print = Trade(
        symbol="BTCUSDT", exchange="binance", price=99.0, quantity=2.0, side="BUY", trade_id="t"
    )
    await h.feed(
        "market.trade.executed.binance.BTCUSDT", buy_print, source="LUM", metadata={"dataTime": T0 + 1}
    )
    assert h.payloads("trading.order.filled") == [] and ex(h).stats()["resting"] == 1


async def test_cancel_and_amend_and_their_refusals() -> None:
    h = exchange()
    await book(h, [(99.0, 1.0)], [(100.0, 1.0)])
    await send(h, "trading.order.submitted", order("o-1", "BUY", 1.0, price=98.0), postOnly=True)
    events = await send(h, "trading.order.amend", order("o-1", "BUY", 2.0, price=98.5))
    assert events[0][0] == "trading.order.amended"
    assert (events[0][1].price, events[0][1].quantity, events[0][1].status) == (98.5, 2.0, "PENDING")
    events = await send(h, "trading.order.amend", order("o-1", "BUY", 2.0, price=100.5))
    assert events[0][0] == "trading.order.amend_rejected" and "post-only" in events[0][1].reason
    events = await send(h, "trading.order.amend", order("o-1", "BUY", 20.0, price=98.5))
    assert (
        events[0][0] == "trading.order.amend_rejected"
        and "insufficient available USDT" in events[0][1].reason
    )
    events = await send(h, "trading.order.cancel", order("o-1", "BUY", 2.0, price=98.5))
    assert events[0][0] == "trading.order.cancelled" and events[0][1].quantity == 2.0
    events = await send(h, "trading.order.cancel", order("o-1", "BUY", 2.0, price=98.5))
    assert events == [("trading.order.cancel_rejected", events[0][1])]
    assert events[0][1].reason == "cancel: no resting order o-1"
    events = await send(h, "trading.order.amend", order("o-9", "BUY", 1.0, price=98.0))
    assert events[0][0] == "trading.order.amend_rejected"


async def test_per_exchange_cash_a_buy_spends_its_own_venue_only() -> None:
    h = exchange()
    await book(h, [(99.0, 10.0)], [(100.0, 10.0)], exchange_="bybit")
    events = await send(h, "trading.order.submitted", order("o-1", "BUY", 6.0, exchange="bybit"))
    assert events[0][0] == "trading.order.rejected" and events[0][1].reason.startswith(
        "insufficient cash on bybit"
    )
    events = await send(h, "trading.order.submitted", order("o-2", "BUY", 4.0, exchange="bybit"))
    assert events[0][0] == "trading.order.filled"
    balances = [p for p in h.payloads("trading.position.balance") if isinstance(p, Balance)]
    assert [(b.exchange, b.asset, b.total) for b in balances] == [
        ("bybit", "USDT", 99.6),
        ("bybit", "BTC", 4.0),
    ]
    assert ex(h).books["orion"].venues == {"binance": Decimal(1000), "bybit": Decimal("99.60")}


async def test_assets_held_at_start_enter_the_books_at_their_first_price() -> None:
    h = exchange()
    await book(h, [(99.0, 1.0)], [(101.0, 1.0)])
    orion = ex(h).books["orion"]
    assert orion.deposits == Decimal("100.00") and orion.holding(("binance", "BTCUSDT")).quantity == 1
    events = await send(h, "trading.order.submitted", order("o-1", "SELL", 1.0))
    assert events[0][0] == "trading.order.filled" and events[0][1].average_price == 99.0
    assert orion.realized == Decimal("-1.00") and balanced(h)


def transfer(
    tid: str, amount: float, *, bot: str = "kron", source: str = "binance", target: str = "bybit"
) -> Transfer:
    return Transfer(transfer_id=tid, bot_id=bot, asset="USDT", from_exchange=source, to_exchange=target,
                    amount=amount, status="REQUESTED", fee=1.0)  # fmt: skip


async def test_a_transfer_is_pending_then_settles_after_the_delay_in_data_time() -> None:
    h = exchange(transfer_fee_flat=1.0, transfer_fee_rate=0.001, transfer_delay_ms=60_000)
    events = await send(h, "trading.order.transfer.requested", transfer("kron-1", 200.0))
    assert [t for t, _ in events] == ["trading.position.balance.binance", "trading.order.transfer.pending"]
    pending = events[1][1]
    assert (pending.status, pending.fee, pending.settle_time) == ("PENDING", 1.2, T0 + 60_000)
    kron = ex(h).books["kron"]
    assert (kron.venues, kron.in_transit, kron.cash) == (
        {"binance": Decimal("498.80"), "bybit": Decimal(300)}, Decimal(200), Decimal("998.80")
    )  # fmt: skip
    assert balanced(h)
    await book(h, [(99.0, 1.0)], [(101.0, 1.0)], time=T0 + 59_999)
    assert h.payloads("trading.order.transfer.settled") == []
    await book(h, [(99.0, 1.0)], [(101.0, 1.0)], time=T0 + 60_000)
    settled = h.payloads("trading.order.transfer.settled")
    assert [(t.transfer_id, t.amount, t.fee) for t in settled] == [("kron-1", 200.0, 1.2)]
    assert kron.venues == {"binance": Decimal("498.80"), "bybit": Decimal(500)} and kron.in_transit == 0
    assert kron.transfer_fees == Decimal("1.20") and balanced(h)
    assert ex(h).stats()["transfers"] == {"pending": 0, "settled": 1, "rejected": 0}


async def test_a_repeated_transfer_request_moves_nothing_and_repeats_its_state() -> None:
    h = exchange(transfer_delay_ms=0)
    await send(h, "trading.order.transfer.requested", transfer("kron-1", 100.0))
    again = await send(h, "trading.order.transfer.requested", transfer("kron-1", 100.0))
    assert [(t, p.status) for t, p in again] == [("trading.order.transfer.settled", "SETTLED")]
    assert ex(h).books["kron"].venues == {"binance": Decimal(599), "bybit": Decimal(400)}


@pytest.mark.parametrize(
    ("request_", "requester", "reason"),
    [
        (transfer("k-1", 700.0), "kron", "insufficient available USDT on binance: need 701.00, have 700.00"),
        (transfer("k-2", 10.0, target="okx"), "kron", "unknown exchange okx for kron"),
        (transfer("k-3", 10.0, bot="orion"), "kron", "kron may not move orion's funds"),
        (transfer("k-4", 10.0, bot="logos"), "logos", "logos has no per-exchange account"),
    ],
)
async def test_a_refused_transfer_moves_nothing(request_: Transfer, requester: str, reason: str) -> None:
    h = exchange()
    before = len(h.published)
    await h.feed("trading.order.transfer.requested", request_, source="TRF", metadata={"botId": requester})
    (rejected,) = [e.payload for e in h.published[before:]]
    assert rejected.status == "REJECTED" and rejected.reason.startswith(reason)
    assert balanced(h) and ex(h).stats()["transfers"]["rejected"] == 1


async def test_an_agent_may_move_an_accounts_funds_when_allowed() -> None:
    h = exchange(transfer_agents={"orion": ["kron"]})
    await h.feed("trading.order.transfer.requested", transfer("k-1", 100.0, bot="orion"), source="TRF",
                 metadata={"botId": "kron"})  # fmt: skip
    assert h.payloads("trading.order.transfer.pending")[0].bot_id == "orion"
