"""ARB on its events: the issue's known answer, balances, both legs or none, hedging a short leg."""

from __future__ import annotations

import pytest
from citarion_bots.arbitrage import ArbitrageBot

from citarion_host.testing import BotHarness

from .desk_helpers import T0, Venue, book, feed, feed_balance, feed_book, submitted

PUBLISH = ["trading.signal.>", "trading.order.>"]


def arb(**params: object) -> BotHarness:
    return BotHarness(
        ArbitrageBot, {"min_edge_bps": 0.0, **params}, bot_id="orion", code="ARB", publish=PUBLISH
    )


async def known_answer(h: BotHarness) -> None:
    await feed_book(h, book("A", [(99.9, 5.0)], [(100.0, 1.0)]), T0)
    await feed_book(h, book("B", [(100.5, 2.0)], [(100.6, 5.0)]), T0 + 100)


async def test_the_known_answer_trades_at_0_1_pct_fees() -> None:
    h = arb(taker_fee_bps=10.0)
    await known_answer(h)
    buy, sell = submitted(h)
    assert (buy.exchange, buy.side, buy.type, buy.quantity, buy.price) == ("A", "BUY", "LIMIT", 1.0, 100.0)
    assert (sell.exchange, sell.side, sell.type, sell.quantity, sell.price) == (
        "B",
        "SELL",
        "LIMIT",
        1.0,
        100.5,
    )
    orders = [e for e in h.published if e.topic == "trading.order.submitted"]
    for event in orders:
        assert event.metadata["timeInForce"] == "IOC" and event.metadata["group"] == "orion-arb1"
        assert event.metadata["botId"] == "orion" and event.metadata["dataTime"] == T0 + 100  # the book used
    assert h.bot.expected_profit == pytest.approx(0.2995)  # type: ignore[attr-defined]
    long, short = h.payloads("trading.signal")
    assert (long.exchange, long.direction, short.exchange, short.direction) == ("A", "LONG", "B", "SHORT")
    assert "29.95 bps" in long.reason  # 0.2995 / 100


async def test_no_trade_at_0_3_pct_fees() -> None:
    h = arb(taker_fee_bps=30.0)
    await known_answer(h)
    assert h.published == []


async def test_the_threshold_and_a_stale_book_stop_it() -> None:
    h = arb(taker_fee_bps=10.0, min_edge_bps=30.0)  # the edge is 29.95 bps
    await known_answer(h)
    assert h.published == []
    h = arb(taker_fee_bps=10.0, max_book_age_ms=50)
    await known_answer(h)  # A's book is 100 ms older than B's
    assert h.published == [] and h.bot.stats()["staleBooks"] == 1


async def test_balances_limit_the_size() -> None:
    h = arb(taker_fee_bps=0.0)
    await feed_balance(h, "A", "USDT", 250.0)
    await feed_balance(h, "B", "BTC", 10.0)
    await feed_book(h, book("A", [(99.0, 5.0)], [(100.0, 5.0)]), T0)
    await feed_book(h, book("B", [(101.0, 5.0)], [(102.0, 5.0)]), T0)
    assert [o.quantity for o in submitted(h)] == [2.5, 2.5]  # 250 USDT on A buys 2.5
    h = arb(taker_fee_bps=0.0)
    await feed_balance(h, "B", "BTC", 0.4)  # only 0.4 BTC to sell on B
    await feed_book(h, book("A", [(99.0, 5.0)], [(100.0, 5.0)]), T0)
    await feed_book(h, book("B", [(101.0, 5.0)], [(102.0, 5.0)]), T0)
    assert [o.quantity for o in submitted(h)] == [0.4, 0.4]


async def test_both_legs_or_none_and_no_new_arbitrage_while_one_is_working() -> None:
    h = arb(taker_fee_bps=10.0)
    await feed(h, "risk.block.set", {"botId": "orion", "reason": "drawdown"})
    await known_answer(h)
    assert submitted(h) == [] and h.bot.stats()["heldBack"] == 1
    await feed(h, "risk.block.cleared", {"botId": "orion"})
    await known_answer(h)
    assert len(submitted(h)) == 2
    await known_answer(h)  # the legs are still out: no second arbitrage
    assert len(submitted(h)) == 2


async def test_a_short_filled_leg_is_hedged_at_market() -> None:
    h = arb(taker_fee_bps=10.0)
    venue = Venue(h)
    await known_answer(h)
    buy, sell = submitted(h)
    await venue.report(buy, "filled", filled_quantity=1.0, average_price=100.0)
    await venue.report(sell, "cancelled", filled_quantity=0.25, average_price=100.5, reason="IOC remainder")
    hedge = submitted(h)[-1]
    assert (hedge.exchange, hedge.side, hedge.type, hedge.quantity) == ("A", "SELL", "MARKET", 0.75)
    assert h.bot.position[("A", "BTCUSDT")] == 1.0 and h.bot.position[("B", "BTCUSDT")] == -0.25  # type: ignore[attr-defined]
    await venue.answer(price=99.9)
    assert h.bot.position[("A", "BTCUSDT")] == 0.25  # type: ignore[attr-defined]
    await known_answer(h)  # done: the symbol is free again
    assert len(submitted(h)) == 5


async def test_fully_filled_legs_need_no_hedge() -> None:
    h = arb(taker_fee_bps=10.0)
    await known_answer(h)
    await Venue(h).answer()
    assert len(submitted(h)) == 2 and h.bot.stats()["fills"] == 2 and h.bot.stats()["hedges"] == 0
