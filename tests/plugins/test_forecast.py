"""FCS: the bot's Holt forecast equals a hand computation; signals when it leaves the band."""

from __future__ import annotations

import math

import pytest
from citarion_bots.forecast import ForecastBot

from citarion_host.testing import BotHarness

from .helpers import feed_candles, series

PUBLISH = ["trading.signal.>", "trading.order.>"]
KEY = ("binance", "BTCUSDT")


def holt_by_hand(ys: list[float], alpha: float, beta: float) -> tuple[float, float, list[float]]:
    level, trend, errors = ys[0], ys[1] - ys[0], []
    level = ys[1]
    for y in ys[2:]:
        forecast = level + trend
        errors.append(y - forecast)
        new_level = alpha * y + (1 - alpha) * forecast
        trend = beta * (new_level - level) + (1 - beta) * trend
        level = new_level
    return level, trend, errors


def wiggle(i: int) -> float:
    return 0.2 if i % 2 else -0.2


def closes() -> list[float]:
    """30 bars of noise around 100, a 25-bar rally (+1 a bar), a 25-bar fall (-1 a bar)."""
    calm = [100.0 + wiggle(i) for i in range(30)]
    rally = [100.0 + i + wiggle(i) for i in range(1, 26)]
    fall = [rally[-1] - i + wiggle(i) for i in range(1, 26)]
    return calm + rally + fall


async def test_forecast_and_band_equal_a_hand_computation() -> None:
    params = {"alpha": 0.4, "beta": 0.2, "horizon": 3, "band_z": 2.0, "residual_window": 10, "warmup": 10}
    h = BotHarness(ForecastBot, params, bot_id="fcs", code="FCS", publish=PUBLISH)
    ys = closes()[:25]
    await feed_candles(h, series(ys))
    level, trend, errors = holt_by_hand(ys, 0.4, 0.2)
    sigma = math.sqrt(sum(e * e for e in errors[-10:]) / 10)
    a, b = 0.4, 0.4 * 0.2
    sigma_3 = sigma * math.sqrt(1 + 2 * (a * a + a * b * 3 + b * b * 3 * 5 / 6))
    forecast, band = h.bot.last[KEY]  # type: ignore[attr-defined]
    assert forecast == pytest.approx(level + 3 * trend, rel=1e-12)
    assert band == pytest.approx(2.0 * sigma_3, rel=1e-12)


async def test_signals_long_on_a_rally_and_short_on_the_turn() -> None:
    h = BotHarness(ForecastBot, {"warmup": 20, "horizon": 5}, bot_id="fcs", code="FCS", publish=PUBLISH)
    await feed_candles(h, series(closes()))
    signals = h.payloads("trading.signal")
    assert [s.direction for s in signals] == ["LONG", "SHORT"]
    long_bar, short_bar = ((e.metadata["dataTime"] - 1_700_000_000_000) // 60_000 for e in h.published)
    assert 30 <= long_bar <= 34 and 55 <= short_bar <= 62  # a few bars into the rally, then into the fall
    long = signals[0]
    assert long.take_profit > long.entry_price > long.stop_loss  # type: ignore[operator]
    assert 0.5 <= long.confidence <= 1.0
    assert h.payloads("trading.order") == []  # trade = false by default: LOGOS trades on it


async def test_quiet_on_noise_and_trades_when_asked() -> None:
    quiet = BotHarness(ForecastBot, {}, bot_id="fcs", code="FCS", publish=PUBLISH)
    await feed_candles(quiet, series(closes()[:30]))
    assert quiet.published == []
    trading = BotHarness(ForecastBot, {"trade": True}, bot_id="fcs", code="FCS", publish=PUBLISH)
    await feed_candles(trading, series(closes()))
    assert [o.side for o in trading.payloads("trading.order.submitted")] == ["BUY", "SELL"]
