"""BBB: the bands equal a direct computation; signals on the bar a close leaves them."""

from __future__ import annotations

import random
import statistics

import pytest
from citarion_bots.bollinger import BollingerBot

from citarion_host.testing import BotHarness

from .helpers import candle, feed_candles, series

PUBLISH = ["trading.signal.>", "trading.order.>"]
KEY = ("binance", "BTCUSDT")


def bollinger(**params: object) -> BotHarness:
    return BotHarness(
        BollingerBot, {"period": 20, "k": 2.0, **params}, bot_id="bbb", code="BBB", publish=PUBLISH
    )


async def test_bands_equal_a_direct_computation_on_every_bar() -> None:
    rng = random.Random(5)
    closes = [100.0]
    for _ in range(79):
        closes.append(round(closes[-1] * (1 + rng.gauss(0, 0.01)), 4))
    h = bollinger(k=2.5)
    for i, close in enumerate(closes):
        await feed_candles(h, [candle(close, i)])
        bands = h.bot.bands.get(KEY)  # type: ignore[attr-defined]
        if i < 19:
            assert bands is None
            continue
        window = closes[i - 19 : i + 1]
        middle, sigma = statistics.fmean(window), statistics.pstdev(window)
        assert bands.middle == pytest.approx(middle, rel=1e-14)
        assert bands.sigma == pytest.approx(sigma, rel=1e-12)
        assert bands.upper == pytest.approx(middle + 2.5 * sigma, rel=1e-13)
        assert bands.lower == pytest.approx(middle - 2.5 * sigma, rel=1e-13)


def calm() -> list[float]:
    return [100.0, 101.0] * 10  # middle 100.5, sigma 0.5, bands 99.5 .. 101.5


async def test_reversion_buys_below_exits_at_the_middle_and_shorts_above() -> None:
    h = bollinger()
    closes = [*calm(), 98.0]
    await feed_candles(h, series(closes))
    window = closes[-20:]
    middle, sigma = statistics.fmean(window), statistics.pstdev(window)
    (signal,) = h.payloads("trading.signal")
    assert signal.direction == "LONG" and signal.entry_price == 98.0
    assert signal.take_profit == pytest.approx(middle) and signal.stop_loss == pytest.approx(98.0 - sigma)
    z = (98.0 - middle) / sigma
    assert signal.confidence == pytest.approx(min(1.0, 0.5 + 0.25 * (abs(z) - 2)), abs=1e-4)
    assert [o.side for o in h.payloads("trading.order.submitted")] == ["BUY"]
    await feed_candles(h, series([*closes, 97.9])[-1:])  # still below: no repeat
    assert len(h.payloads("trading.signal")) == 1
    await feed_candles(h, series([*closes, 97.9, 101.0])[-1:])  # back over the middle: exit
    sides = [o.side for o in h.payloads("trading.order.submitted")]
    assert sides == ["BUY", "SELL"]
    await feed_candles(h, series([*closes, 97.9, 101.0, 105.0])[-1:])
    assert h.payloads("trading.signal")[-1].direction == "SHORT"
    assert [o.side for o in h.payloads("trading.order.submitted")] == ["BUY", "SELL"]  # nothing held to sell


async def test_breakout_mode_reads_the_bands_the_other_way() -> None:
    h = bollinger(mode="breakout")
    await feed_candles(h, series([*calm(), 98.0]))
    await feed_candles(h, series([*calm(), 98.0, 99.0, 104.0])[-2:])
    assert [s.direction for s in h.payloads("trading.signal")] == ["SHORT", "LONG"]
    assert [o.side for o in h.payloads("trading.order.submitted")] == ["BUY"]
    long = h.payloads("trading.signal")[-1]
    assert long.stop_loss == pytest.approx(h.bot.bands[KEY].middle)  # type: ignore[attr-defined]


async def test_no_signal_before_a_full_window() -> None:
    h = bollinger()
    await feed_candles(h, series([100.0, 101.0] * 9 + [50.0]))
    assert h.published == []
