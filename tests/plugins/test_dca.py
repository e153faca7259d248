"""DCA: the buy schedule, dip sizing, the budget cap and the take-profit exit."""

from __future__ import annotations

import msgspec
import pytest
from citarion_bots.dca import DcaBot

from citarion_host.testing import BotHarness

from .helpers import feed_candles, series

PUBLISH = ["trading.signal.>", "trading.order.>"]


def dca(**params: object) -> BotHarness:
    defaults = {"every_bars": 3, "order_quote": 100.0, "dip_lookback": 3, "dip_pct": 0.05}
    return BotHarness(DcaBot, {**defaults, **params}, bot_id="dca", code="DCA", publish=PUBLISH)


def buys(h: BotHarness) -> list[tuple[int, float]]:
    return [(bar, amount) for _, bar, amount in h.bot.buys]  # type: ignore[attr-defined]


async def test_buys_on_bars_1_4_7_10() -> None:
    h = dca()
    await feed_candles(h, series([100.0] * 10))
    assert buys(h) == [(1, 100.0), (4, 100.0), (7, 100.0), (10, 100.0)]
    assert [o.quantity for o in h.payloads("trading.order.submitted")] == [1.0] * 4
    assert h.bot.inventory[("binance", "BTCUSDT")] == 4.0  # type: ignore[attr-defined]
    signal = h.payloads("trading.signal")[0]
    assert (signal.direction, signal.confidence, signal.entry_price) == ("LONG", 0.5, 100.0)


async def test_schedules_are_per_series() -> None:
    h = dca(every_bars=2)
    bars = [
        b
        for pair in zip(series([100.0] * 3), series([10.0] * 3, symbol="ETHUSDT"), strict=True)
        for b in pair
    ]
    await feed_candles(h, bars)
    assert [(key[1], bar) for key, bar, _ in h.bot.buys] == [
        ("BTCUSDT", 1),
        ("ETHUSDT", 1),
        ("BTCUSDT", 3),
        ("ETHUSDT", 3),
    ]  # type: ignore[attr-defined]


async def test_buys_more_on_a_dip() -> None:
    h = dca(dip_multiplier=2.0)
    await feed_candles(h, series([100.0, 100.0, 100.0, 100.0, 100.0, 100.0, 90.0]))
    assert buys(h) == [(1, 100.0), (4, 100.0), (7, 200.0)]  # 90 <= mean(100, 100, 100) * 0.95
    last = h.payloads("trading.order.submitted")[-1]
    assert last.quantity == pytest.approx(200 / 90, abs=1e-8)
    assert h.payloads("trading.signal")[-1].confidence == 0.7


async def test_budget_caps_the_total_and_is_refunded_on_rejection() -> None:
    h = dca(budget=250.0)
    await feed_candles(h, series([100.0] * 7), fill=False)
    assert buys(h) == [(1, 100.0), (4, 100.0), (7, 50.0)]
    first = h.payloads("trading.order.submitted")[0]
    await h.feed("trading.order.rejected", msgspec.structs.replace(first, status="REJECTED", reason="x"))
    assert h.bot.committed == 150.0  # type: ignore[attr-defined]
    await feed_candles(h, series([100.0] * 10)[7:])
    assert buys(h)[-1] == (10, 100.0)
    await feed_candles(h, series([100.0] * 13)[10:])
    assert h.bot.stats()["committed"] == 250.0
    assert h.bot.counts["budget_exhausted"] == 1  # type: ignore[attr-defined]


async def test_instalments_due_while_blocked_are_skipped_signal_and_all() -> None:
    h = dca()
    await h.feed("risk.block.set", {"botId": "dca", "reason": "exposure"}, source="RSK")
    await feed_candles(h, series([100.0] * 4))
    assert h.published == [] and h.bot.stats()["heldBack"] == 2
    await h.feed("risk.block.cleared", {"botId": "dca"}, source="RSK")
    await feed_candles(h, series([100.0] * 7)[4:])
    assert buys(h) == [(7, 100.0)]


async def test_take_profit_sells_the_whole_position() -> None:
    h = dca(every_bars=2, take_profit_pct=0.1)
    await feed_candles(h, series([100.0, 100.0, 80.0, 95.0, 105.0]))
    # bars 1 and 3 buy 1 @ 100 and 1.25 @ 80 (average cost 88.89, target 97.78); bar 4 (95) is short of it,
    # bar 5 (105) sells all 2.25, then its scheduled buy starts a new position
    sells = [o for o in h.payloads("trading.order.submitted") if o.side == "SELL"]
    assert [s.quantity for s in sells] == [2.25]
    assert [s.direction for s in h.payloads("trading.signal")] == ["LONG", "LONG", "SHORT", "LONG"]
    assert h.bot.inventory[("binance", "BTCUSDT")] == pytest.approx(100 / 105, abs=1e-8)  # type: ignore[attr-defined]
