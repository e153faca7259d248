"""RNG: range detection, buying support, selling resistance, silence and stop-out on a break."""

from __future__ import annotations

from citarion_bots.range import Range, RangeBot, detect_range

from citarion_host.payloads import Candle
from citarion_host.testing import BotHarness

from .helpers import candle, feed_candles

PUBLISH = ["trading.signal.>", "trading.order.>"]
PARAMS = {
    "lookback": 30,
    "min_width_pct": 0.004,
    "max_width_pct": 0.03,
    "entry_zone": 0.2,
    "break_pct": 0.002,
}


def ranging(n: int = 30) -> list[Candle]:
    """Closes alternating 99.5 / 100.5 with 0.5 wicks: support 99, resistance 101, both tested often."""
    return [candle(c, i, high=c + 0.5, low=c - 0.5) for i, c in enumerate([99.5, 100.5] * (n // 2))]


def bar(close: float, index: int) -> Candle:
    return candle(close, index, high=close + 0.1, low=close - 0.1)


def test_detect_range() -> None:
    highs, lows = [b.high for b in ranging()], [b.low for b in ranging()]
    kw = {"min_width_pct": 0.004, "max_width_pct": 0.03, "zone": 0.2, "min_touches": 2}
    assert detect_range(highs, lows, **kw) == Range(99.0, 101.0)  # type: ignore[arg-type]
    assert detect_range(highs, lows, **{**kw, "max_width_pct": 0.01}) is None  # type: ignore[arg-type]  # too wide
    assert detect_range(highs, lows, **{**kw, "min_width_pct": 0.05, "max_width_pct": 0.06}) is None  # type: ignore[arg-type]
    once = [100.2] * 29 + [101.0]  # resistance touched once: an outlier, not a range
    assert detect_range(once, [99.0] * 30, **kw) is None  # type: ignore[arg-type]
    assert detect_range([], [], **kw) is None  # type: ignore[arg-type]


async def test_buys_support_sells_resistance_then_silent_on_the_break() -> None:
    h = BotHarness(RangeBot, PARAMS, bot_id="rng", code="RNG", publish=PUBLISH)
    await feed_candles(h, ranging())
    assert h.published == []  # the window is only just full
    await feed_candles(h, [bar(99.2, 30)])
    (long,) = h.payloads("trading.signal")
    assert (long.direction, long.entry_price, long.take_profit) == ("LONG", 99.2, 101.0)
    assert long.stop_loss == 99.0 * 0.998
    assert 0.5 < long.confidence <= 0.9
    await feed_candles(h, [bar(99.25, 31)])  # still at support: no repeat
    await feed_candles(h, [bar(100.0, 32), bar(100.8, 33)])
    short = h.payloads("trading.signal")[-1]
    assert (short.direction, short.take_profit) == ("SHORT", 99.0)
    assert [(o.side, o.quantity) for o in h.payloads("trading.order.submitted")] == [
        ("BUY", round(100 / 99.2, 8)),
        ("SELL", round(100 / 99.2, 8)),
    ]
    before = len(h.published)
    await feed_candles(
        h, [bar(103.0, 34), bar(100.0, 35), bar(99.2, 36)]
    )  # break up; the window now spans 103
    assert len(h.published) == before
    assert h.bot.counts["breaks"] == 1  # type: ignore[attr-defined]
    assert h.bot.ranges[("binance", "BTCUSDT")] is None  # type: ignore[attr-defined]


async def test_a_downside_break_stops_out_without_a_signal() -> None:
    h = BotHarness(RangeBot, PARAMS, bot_id="rng", code="RNG", publish=PUBLISH)
    await feed_candles(h, [*ranging(), bar(99.2, 30), bar(97.0, 31)])
    assert [s.direction for s in h.payloads("trading.signal")] == ["LONG"]
    assert [o.side for o in h.payloads("trading.order.submitted")] == ["BUY", "SELL"]
    assert h.payloads("trading.order.submitted")[-1].reason == "range broke down: stop-out"
