"""MMK on its events: the issue's Avellaneda-Stoikov known answer as resting quotes, amends,
inventory limits and fills."""

from __future__ import annotations

import pytest
from citarion_bots.marketmaker import MarketMakerBot

from citarion_host.testing import BotHarness

from .desk_helpers import T0, Venue, book, feed, feed_book, submitted

PUBLISH = ["trading.order.>"]


def mmk(**params: object) -> BotHarness:
    # sigma 2 per sqrt(second), sessions of 1 s: half a second before a session ends, tau = 0.5
    known = {"gamma": 0.1, "kappa": 1.5, "sigma": 2.0, "time_unit_ms": 1_000, "horizon_ms": 1_000,
             "quote_size": 0.5, "max_inventory": 10.0, "symbol": "BTCUSDT", "exchange": "A"}  # fmt: skip
    return BotHarness(MarketMakerBot, {**known, **params}, bot_id="architect", code="MMK", publish=PUBLISH)


def around(mid: float) -> object:
    return book(
        "A",
        [(round(mid - 0.01, 2), 5.0), (round(mid - 0.02, 2), 5.0)],
        [(round(mid + 0.01, 2), 5.0), (round(mid + 0.02, 2), 5.0)],
    )


async def test_the_known_answer_as_resting_quotes() -> None:
    h = mmk(target_inventory=-1.0, allow_short=True)  # q = (0 - (-1)) / 0.5 = 2 lots long of target
    await feed_book(h, around(100.0), T0 + 500)  # type: ignore[arg-type]
    stats = h.bot.stats()
    assert stats["reservation"] == pytest.approx(99.6) and stats["spread"] == pytest.approx(1.4908, abs=5e-5)
    bid, ask = submitted(h)
    assert (bid.side, bid.type, bid.price, bid.quantity) == ("BUY", "LIMIT", 98.85, 0.5)  # floor(98.8546)
    assert (ask.side, ask.type, ask.price, ask.quantity) == ("SELL", "LIMIT", 100.35, 0.5)  # ceil(100.3454)
    for event in h.published:
        assert event.metadata == {
            "botId": "architect",
            "dataTime": T0 + 500,
            "timeInForce": "GTC",
            "postOnly": True,
        }


async def test_quotes_are_amended_when_the_price_moves_and_replaced_when_filled() -> None:
    h = mmk()
    venue = Venue(h)
    await feed_book(h, around(100.0), T0 + 500)  # type: ignore[arg-type]
    (bid,) = submitted(h)  # flat and spot: no ask without inventory
    await venue.report(bid, "accepted")
    await feed_book(h, around(100.0), T0 + 600)  # type: ignore[arg-type]
    # tau went 0.5 -> 0.4: the spread narrows 0.4 * 0.1 * 4 / 2 = 0.08 on each side: amend
    amend = [e for e in h.published if e.topic == "trading.order.amend"]
    assert len(amend) == 1 and amend[0].payload.order_id == bid.order_id
    assert amend[0].payload.price == pytest.approx(99.27)  # 100 - (0.16 + 1.2908) / 2 = 99.2746 -> 99.27
    await venue.report(amend[0].payload, "amended")
    await venue.report(amend[0].payload, "filled", filled_quantity=0.5, average_price=99.27)
    assert h.bot.position[("A", "BTCUSDT")] == 0.5  # type: ignore[attr-defined]
    await feed_book(h, around(100.0), T0 + 600)  # type: ignore[arg-type]
    new_bid, ask = submitted(h)[1:]
    # q = 1 lot: reservation 100 - 0.1 * 4 * 0.4 = 99.84, half-spread 0.7254
    assert (new_bid.side, new_bid.price, ask.side, ask.price) == ("BUY", 99.11, "SELL", 100.57)


async def test_inventory_limits_stop_one_side_and_cancel_its_quote() -> None:
    h = mmk(max_inventory=1.0)
    venue = Venue(h)
    await feed_book(h, around(100.0), T0 + 500)  # type: ignore[arg-type]
    for _ in range(2):
        bid = [o for o in submitted(h) if o.side == "BUY"][-1]
        await venue.report(bid, "filled", filled_quantity=0.5, average_price=bid.price)
        await feed_book(h, around(100.0), T0 + 500)  # type: ignore[arg-type]
    assert h.bot.position[("A", "BTCUSDT")] == 1.0  # type: ignore[attr-defined]
    # held 0.5: a new bid and the first ask; held 1.0 = the limit: no new bid, the ask stays
    assert [o.side for o in submitted(h)] == ["BUY", "BUY", "SELL"]
    h2 = mmk(max_inventory=1.0)
    await feed_book(h2, around(100.0), T0 + 500)  # type: ignore[arg-type]
    await feed(h2, "risk.block.set", {"botId": "architect", "reason": "drawdown"})
    await feed_book(h2, around(100.0), T0 + 500)  # type: ignore[arg-type]
    assert [e.topic for e in h2.published] == ["trading.order.submitted", "trading.order.cancel"]


async def test_partial_fills_count_once_and_quotes_never_cross() -> None:
    h = mmk(sigma=0.001, gamma=0.001, kappa=1000.0)  # a model spread far inside the book's
    venue = Venue(h)
    await feed_book(h, around(100.0), T0 + 500)  # type: ignore[arg-type]
    (bid,) = submitted(h)
    assert bid.price == 99.99  # the model's bid (~100) capped a tick under the best ask
    await venue.report(bid, "partially_filled", filled_quantity=0.2, average_price=bid.price)
    await venue.report(bid, "partially_filled", filled_quantity=0.2, average_price=bid.price)  # redelivered
    await venue.report(bid, "filled", filled_quantity=0.5, average_price=bid.price)
    assert h.bot.position[("A", "BTCUSDT")] == 0.5 and h.bot.stats()["fills"] == 1  # type: ignore[attr-defined]


async def test_volatility_is_estimated_when_not_given() -> None:
    h = mmk(sigma=None, vol_window=3)
    for i, mid in enumerate([100.0, 100.1, 100.0, 100.2]):
        await feed_book(h, around(mid), T0 + 100 * i)  # type: ignore[arg-type]
    assert h.bot.stats()["warming"] == 3 and len(submitted(h)) == 1
