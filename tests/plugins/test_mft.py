"""MFT on its events: the first entry on a flat-then-rising series is the first close above the
N-bar high; ATR stops and sizes; bars built from shorter candles."""

from __future__ import annotations

import pytest
from citarion_bots.mft import BreakoutBot

from citarion_host.testing import BotHarness

from .desk_helpers import T0, Venue, bar, feed_bar, submitted

PUBLISH = ["trading.signal.>", "trading.order.>"]


def mft(**params: object) -> BotHarness:
    defaults = {"interval": "1m", "channel": 20, "exit_channel": 10, "atr_period": 14, "stop_atr": 2.0,
                "risk_quote": 50.0, "max_quote": 100_000.0}  # fmt: skip
    return BotHarness(BreakoutBot, {**defaults, **params}, bot_id="selene", code="MFT", publish=PUBLISH)


def flat_then_rising() -> list[tuple[float, float, float]]:
    """(high, low, close): 30 flat bars in 99.5..100.5, then closes rising 0.2 a bar (high close + 0.1)."""
    bars = [(100.5, 99.5, 100.0)] * 30
    bars += [(100.0 + 0.2 * k + 0.1, 100.0 + 0.2 * k - 0.3, 100.0 + 0.2 * k) for k in range(1, 20)]
    return bars


async def test_first_entry_on_the_first_close_above_the_n_bar_high() -> None:
    bars = flat_then_rising()
    expected = next(t for t in range(20, len(bars)) if bars[t][2] > max(h for h, _, _ in bars[t - 20 : t]))
    assert expected == 32  # close 100.6 > the flat bars' high 100.5 (100.2 and 100.4 were not)
    h = mft()
    venue = Venue(h)
    for t, (high, low, close) in enumerate(bars):
        await feed_bar(h, bar(close, t, high=high, low=low, open_=close))
        await venue.answer(price=close)
    entries = [e for e in h.published if e.topic == "trading.order.submitted"]
    assert entries and entries[0].metadata["dataTime"] == T0 + expected * 60_000
    signal = h.payloads("trading.signal")[0]
    assert signal.direction == "LONG" and signal.entry_price == pytest.approx(100.6)
    assert len(submitted(h)) == 1  # still rising: held, no second entry


async def test_atr_sized_position_and_atr_stop() -> None:
    h = mft(atr_period=3, channel=3, exit_channel=3)
    venue = Venue(h)
    rows = [(101.0, 99.0, 100.0)] * 5 + [(103.0, 100.0, 102.5)]  # TR 2 each, then 3 -> ATR 2.333
    for t, (high, low, close) in enumerate(rows):
        await feed_bar(h, bar(close, t, high=high, low=low, open_=close))
        await venue.answer(price=close)
    atr = (2.0 * 2 + 3.0) / 3
    (buy,) = submitted(h)
    assert buy.quantity == pytest.approx(round(50.0 / (2.0 * atr), 8))  # loses 50 at the stop
    signal = h.payloads("trading.signal")[0]
    assert signal.stop_loss == pytest.approx(102.5 - 2.0 * atr)
    await feed_bar(h, bar(97.0, 6, high=102.0, low=96.5, open_=102.0))  # through the stop
    await venue.answer(price=97.0)
    assert [o.side for o in submitted(h)] == ["BUY", "SELL"] and h.bot.position[("binance", "BTCUSDT")] == 0  # type: ignore[attr-defined]


async def test_bars_are_built_from_shorter_candles() -> None:
    h = mft(interval="5m", channel=2, exit_channel=2, atr_period=2)
    closes = [100.0] * 20 + [103.0] * 5  # four flat 5m bars, then one that breaks out
    for t, close in enumerate(closes):
        await feed_bar(h, bar(close, t, high=close + 0.5, low=close - 0.5))
    (signal,) = h.payloads("trading.signal")
    assert signal.direction == "LONG"
    assert h.published[0].metadata["dataTime"] == T0 + 20 * 60_000  # the 5m bar's open time
    assert h.bot.stats()["ignoredCandles"] == 0
