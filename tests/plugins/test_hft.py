"""HFT on its events: the issue's imbalance / micro-price known answer, time stop, fade, cap."""

from __future__ import annotations

import pytest
from citarion_bots.hft import HftBot

from citarion_host.testing import BotHarness

from .desk_helpers import SECOND, T0, Venue, book, feed_book, submitted

PUBLISH = ["trading.signal.>", "trading.order.>"]
KEY = ("A", "BTCUSDT")


def hft(**params: object) -> BotHarness:
    return BotHarness(HftBot, {"order_quote": 101.0, **params}, bot_id="helios", code="HFT", publish=PUBLISH)


HEAVY_BID = book("A", [(100.0, 3.0)], [(101.0, 1.0)])
BALANCED = book("A", [(100.0, 2.0)], [(101.0, 2.0)])


async def test_the_known_answer_and_an_ioc_buy_at_the_ask() -> None:
    h = hft()
    await feed_book(h, HEAVY_BID, T0)
    last = h.bot.stats()["last"]["A:BTCUSDT"]
    assert last == {"imbalance": 0.75, "microPrice": pytest.approx(100.75)}
    (order,) = submitted(h)
    assert (order.side, order.type, order.price, order.quantity) == ("BUY", "LIMIT", 101.0, 1.0)
    (signal,) = h.payloads("trading.signal")
    assert signal.direction == "LONG" and signal.confidence == 0.75 and "micro-price 100.75" in signal.reason
    assert h.published[-1].metadata == {"botId": "helios", "dataTime": T0, "timeInForce": "IOC"}


async def test_the_time_stop_closes_after_hold_ms_of_data_time() -> None:
    h = hft(hold_ms=5 * SECOND, exit_imbalance=0.1)
    venue = Venue(h)
    await feed_book(h, HEAVY_BID, T0)
    await venue.answer()
    assert h.bot.position[KEY] == 1.0  # type: ignore[attr-defined]
    await feed_book(h, HEAVY_BID, T0 + 4 * SECOND)  # still leaning, 4 s old: adds a unit (cap 300)
    await venue.answer()
    await feed_book(h, HEAVY_BID, T0 + 5 * SECOND)  # 5 s since the position opened: out, all of it
    sides = [(o.side, o.type, o.quantity) for o in submitted(h)]
    assert sides == [("BUY", "LIMIT", 1.0), ("BUY", "LIMIT", 1.0), ("SELL", "MARKET", 2.0)]
    assert h.bot.stats()["timeStops"] == 1


async def test_a_faded_imbalance_closes_early() -> None:
    h = hft()
    venue = Venue(h)
    await feed_book(h, HEAVY_BID, T0)
    await venue.answer()
    await feed_book(h, BALANCED, T0 + SECOND)  # imbalance 0.5 <= exit_imbalance
    assert submitted(h)[-1].side == "SELL" and h.bot.stats()["fades"] == 1


async def test_the_inventory_cap_and_the_cooldown() -> None:
    h = hft(max_position_quote=150.0, cooldown_ms=0, hold_ms=60 * SECOND, exit_imbalance=0.1)
    venue = Venue(h)
    await feed_book(h, HEAVY_BID, T0)
    await venue.answer()
    await feed_book(h, HEAVY_BID, T0 + SECOND)  # a second unit would hold ~201 of quote > 150
    assert len(submitted(h)) == 1 and h.bot.stats()["capped"] == 1
    h = hft(cooldown_ms=2 * SECOND, hold_ms=60 * SECOND, exit_imbalance=0.1)
    venue = Venue(h)
    await feed_book(h, HEAVY_BID, T0)
    await venue.answer()
    await feed_book(h, HEAVY_BID, T0 + SECOND)  # within the cooldown
    await feed_book(h, HEAVY_BID, T0 + 2 * SECOND)  # after it: a second entry (cap 300)
    assert [o.side for o in submitted(h)] == ["BUY", "BUY"]


async def test_a_heavy_ask_is_a_short_view_sold_only_with_allow_short() -> None:
    heavy_ask = book("A", [(100.0, 1.0)], [(101.0, 3.0)])
    h = hft()
    await feed_book(h, heavy_ask, T0)
    assert [s.direction for s in h.payloads("trading.signal")] == ["SHORT"] and submitted(h) == []
    h = hft(allow_short=True)
    await feed_book(h, heavy_ask, T0)
    assert [(o.side, o.price) for o in submitted(h)] == [("SELL", 100.0)]
