"""GRD: levels, crossings, lots bought low and sold one level up, rejections and re-centring."""

from __future__ import annotations

import random

import msgspec
import pytest
from citarion_bots.grid import GridBot, _Levels, crossed_levels, grid_levels

from citarion_host.payloads import Order, Signal
from citarion_host.testing import BotHarness

from .helpers import feed_candles, series

PUBLISH = ["trading.signal.>", "trading.order.>"]


def grid(**params: object) -> BotHarness:
    defaults = {"reference": 100.0, "spacing_pct": 0.01, "levels": 3, "order_quote": 100.0}
    return BotHarness(GridBot, {**defaults, **params}, bot_id="grid", code="GRD", publish=PUBLISH)


def orders(h: BotHarness) -> list[tuple[str, float]]:
    return [(o.side, o.quantity) for o in h.payloads("trading.order.submitted")]


def test_levels_and_crossings() -> None:
    levels = grid_levels(100.0, 0.01, 2)
    assert levels == pytest.approx({-2: 98.0, -1: 99.0, 0: 100.0, 1: 101.0, 2: 102.0})
    assert crossed_levels(levels, 100.0, 99.5) == []  # leaving a level is not crossing one below
    assert crossed_levels(levels, 99.5, 97.9) == [-1, -2]  # highest first on the way down
    assert crossed_levels(levels, 97.9, 101.0) == [-2, -1, 0, 1]  # lowest first on the way up
    assert crossed_levels(levels, 101.0, 101.0) == []


async def test_buy_a_level_crossed_down_sell_it_one_level_up() -> None:
    h = grid()
    await feed_candles(h, series([100.0, 99.5, 98.9, 100.2, 101.5]))
    assert orders(h) == [("BUY", 1.01010101), ("SELL", 1.01010101)]  # 100 / 99
    long, short = h.payloads("trading.signal")
    assert isinstance(long, Signal) and isinstance(short, Signal)
    assert (long.direction, long.entry_price, long.take_profit, long.stop_loss) == (
        "LONG",
        99.0,
        100.0,
        pytest.approx(96.03),
    )
    assert long.confidence == pytest.approx(
        0.6667, abs=1e-4
    )  # 0.5 + 0.5 * 1/3: deeper levels, more conviction
    assert (short.direction, short.entry_price, short.take_profit, short.stop_loss) == (
        "SHORT",
        100.0,
        99.0,
        101.0,
    )
    assert h.bot.inventory[("binance", "BTCUSDT")] == 0  # type: ignore[attr-defined]
    event = h.published[0]
    assert event.metadata == {"botId": "grid", "dataTime": 1_700_000_120_000}


async def test_a_gap_down_buys_every_level_crossed() -> None:
    h = grid()
    await feed_candles(h, series([100.0, 97.5, 99.2]))
    # down through 99 and 98 (two lots); back up through 98 (nothing bought below it) and 99 (sells the lot
    # bought at 98: one level of profit)
    assert orders(h) == [("BUY", 1.01010101), ("BUY", 1.02040816), ("SELL", 1.02040816)]
    lots = h.bot.grids[("binance", "BTCUSDT")].lots  # type: ignore[attr-defined]
    assert lots == [(-1, 1.01010101)]


async def test_a_rejected_buy_books_no_lot_and_a_rejected_sell_puts_it_back() -> None:
    h = grid()
    await feed_candles(h, series([100.0, 98.9]), fill=False)
    buy: Order = h.payloads("trading.order.submitted")[0]
    await h.feed(
        "trading.order.rejected", msgspec.structs.replace(buy, status="REJECTED", reason="insufficient cash")
    )
    assert h.bot.grids[("binance", "BTCUSDT")].lots == []  # type: ignore[attr-defined]
    bars = series([100.0, 98.9, 100.0, 98.9, 100.2])
    await feed_candles(h, bars[2:4])  # up, then down through 99 again: a buy, filled this time
    await feed_candles(h, bars[4:], fill=False)  # up through 100: the lot goes out as a sell
    sell: Order = h.payloads("trading.order.submitted")[-1]
    assert sell.side == "SELL"
    await h.feed("trading.order.rejected", msgspec.structs.replace(sell, status="REJECTED", reason="blocked"))
    assert h.bot.grids[("binance", "BTCUSDT")].lots == [(-1, 1.01010101)]  # type: ignore[attr-defined]


async def test_recentres_when_flat_and_outside_the_grid() -> None:
    h = grid(levels=2)
    await feed_candles(h, series([100.0, 104.0, 103.5]))
    grid_state = h.bot.grids[("binance", "BTCUSDT")]  # type: ignore[attr-defined]
    assert grid_state.reference == 104.0
    assert orders(h) == []  # crossing upper levels with nothing held sells nothing


async def test_signals_only_mode_and_blocks() -> None:
    h = grid(trade=False)
    await feed_candles(h, series([100.0, 98.9, 100.2]))
    assert h.published_topics() == ["trading.signal.generated"] * 2
    blocked = grid()
    await blocked.feed("risk.block.set", {"botId": "grid", "reason": "drawdown"}, source="RSK")
    await feed_candles(blocked, series([100.0, 98.9]))
    assert orders(blocked) == [] and blocked.bot.stats()["heldBack"] == 1
    await blocked.feed("risk.block.cleared", {"botId": "grid"}, source="RSK")
    await feed_candles(blocked, series([100.0, 98.9, 97.9])[2:])
    assert orders(blocked) == [("BUY", 1.02040816)]


def test_params_are_validated() -> None:
    with pytest.raises(ValueError, match="levels \\* spacing_pct must be < 1"):
        GridBot.Params.model_validate({"levels": 50, "spacing_pct": 0.02})
    with pytest.raises(ValueError, match="Extra inputs"):
        GridBot.Params.model_validate({"level": 5})


def test_the_cached_levels_cross_exactly_what_crossed_levels_crosses() -> None:
    """The bot's per-reference levels (bisection on the ascending prices) against the reference
    function, on random grids and closes, closes exactly on a level included."""
    rng = random.Random(12)
    for _ in range(20_000):
        reference = rng.uniform(0.5, 70_000.0)
        spacing, count = rng.choice([0.001, 0.004, 0.01, 0.05]), rng.choice([1, 2, 5, 10])
        cached = _Levels(reference, spacing, count)
        prices = list(cached.levels.values())
        anywhere = [reference * (1 + rng.uniform(-1.2, 1.2) * count * spacing) for _ in range(2)]
        prev, close = (rng.choice([x, rng.choice(prices)]) for x in anywhere)
        assert cached.crossed(prev, close) == crossed_levels(cached.levels, prev, close)
        assert cached.crossed(prev, prev) == crossed_levels(cached.levels, prev, prev) == []
