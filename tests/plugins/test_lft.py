"""LFT on its events: crossings of a constructed daily series equal the analytic list; decisions
never change with the next bar; the trailing stop; daily bars from hourly candles."""

from __future__ import annotations

import numpy as np
from citarion_bots.lft import CrossoverBot

from citarion_host.payloads import Candle
from citarion_host.testing import BotHarness

from .desk_helpers import T0, Venue, feed_bar, submitted

PUBLISH = ["trading.signal.>", "trading.order.>"]
DAY = 86_400_000


def lft(**params: object) -> BotHarness:
    defaults = {"fast": 5, "slow": 20, "trail_pct": 0.2, "order_quote": 1_000.0}
    return BotHarness(CrossoverBot, {**defaults, **params}, bot_id="atlas", code="LFT", publish=PUBLISH)


def day(close: float, index: int, interval: str = "1d", length: int = DAY) -> Candle:
    return Candle(symbol="BTCUSDT", exchange="binance", interval=interval, open_time=T0 + index * length,
                  open=close, high=close, low=close, close=close, volume=1.0)  # fmt: skip


async def run(closes: list[float], **params: object) -> BotHarness:
    h = lft(**params)
    venue = Venue(h)
    for t, close in enumerate(closes):
        await feed_bar(h, day(close, t))
        await venue.answer(price=close)
    return h


def crossings(h: BotHarness) -> list[tuple[int, str]]:
    return [
        ((e.metadata["dataTime"] - T0) // DAY, e.payload.direction)
        for e in h.published
        if e.topic == "trading.signal.generated"
    ]


async def test_crossing_bars_equal_the_analytic_list() -> None:
    # steps at days 40 (up) and 80 (down), a slow window apart: fast - slow is 0 before a step and
    # +/-10 * k * (1/5 - 1/20) from its first day on, so the crossings are exactly the step days
    closes = [100.0] * 40 + [110.0] * 40 + [90.0] * 40
    h = await run(closes)
    assert crossings(h) == [(40, "LONG"), (80, "SHORT")]
    assert [(o.side, o.quantity) for o in submitted(h)] == [
        ("BUY", round(1_000.0 / 110.0, 8)),
        ("SELL", round(1_000.0 / 110.0, 8)),
    ]


async def test_a_decision_at_t_does_not_change_when_bar_t_plus_1_changes() -> None:
    rng = np.random.default_rng(3)
    closes = list(100 * np.exp(np.cumsum(rng.normal(0, 0.02, 150))))
    base = crossings(await run(closes))
    assert base
    for t in (50, 90, 130):
        for factor in (0.5, 2.0):
            changed = [*closes[: t + 1], closes[t + 1] * factor, *closes[t + 2 :]]
            assert [c for c in crossings(await run(changed)) if c[0] <= t] == [c for c in base if c[0] <= t]


async def test_the_trailing_stop_sells_on_a_drop_from_the_peak() -> None:
    closes = [100.0] * 25 + [110.0, 120.0, 130.0, 125.0, 103.0]
    h = await run(closes, trail_pct=0.2)
    assert crossings(h) == [(25, "LONG")]
    buy, sell = submitted(h)
    assert (buy.side, sell.side, sell.type) == ("BUY", "SELL", "MARKET")  # 103 <= 130 * 0.8
    assert h.bot.stats()["trailingStops"] == 1


async def test_daily_bars_from_hourly_candles() -> None:
    h = lft(fast=2, slow=3)
    closes = [100.0] * 3 + [120.0] * 2
    for d, close in enumerate(closes):
        for hour in range(24):
            await feed_bar(h, day(close, d * 24 + hour, interval="1h", length=3_600_000))
    # days 0-2 flat, day 3 up: SMA2 110 > SMA3 106.7, the first cross at day 3
    assert crossings(h) == [(3, "LONG")]
