"""LUM feeds: what they publish, in which order, and how they start, pace and stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from citarion_bots.csvfeed import SAMPLE_SPEC, CsvFormatError
from citarion_bots.lumi import LumiCsvBot, LumiSyntheticBot
from citarion_bots.synthetic import SyntheticSpec, generate

from citarion_host.errors import PublishNotAllowedError
from citarion_host.payloads import Candle, OrderBook, Ticker, Trade
from citarion_host.testing import BotHarness

SMALL = {"symbols": ["BTCUSDT", "SOLUSDT"], "bars": 30, "pumps": [{"symbol": "SOLUSDT", "start_bar": 20}]}


async def run(harness: BotHarness) -> None:
    await harness.start()
    await harness.bot.wait()  # type: ignore[attr-defined]
    await harness.stop()


async def test_synthetic_feed_publishes_ticker_then_candle_per_bar_and_completes() -> None:
    harness = BotHarness(LumiSyntheticBot, SMALL, bot_id="lumi", code="LUM", publish=["market.>"])
    await run(harness)
    topics = harness.published_topics()
    assert topics[:2] == ["market.ticker.updated.binance.BTCUSDT", "market.candle.closed.binance.BTCUSDT"]
    assert topics[-1] == "market.feed.completed"
    assert harness.published[-1].payload == {"feed": "lumi", "bars": 30 * 2 * 2}
    candles = [e.payload for e in harness.published if isinstance(e.payload, Candle)]
    expected = list(generate(SyntheticSpec(**SMALL)))  # type: ignore[arg-type]
    assert [(c.exchange, c.symbol, c.open_time, c.close) for c in candles] == [
        (b.exchange, b.symbol, b.time, b.close) for b in expected
    ]
    tickers = [e.payload for e in harness.published if isinstance(e.payload, Ticker)]
    assert all(t.bid < t.last < t.ask and t.ask - t.bid == pytest.approx(t.last * 2e-4) for t in tickers)
    assert harness.bot.stats()["completed"] is True


async def test_trades_and_order_books_on_request() -> None:
    params = {**SMALL, "bars": 3, "emit_trades": True, "emit_orderbook": True, "orderbook_depth": 3}
    harness = BotHarness(LumiSyntheticBot, params, code="LUM", publish=["market.>"])
    await run(harness)
    trades = harness.payloads("market.trade.executed")
    books = harness.payloads("market.orderbook.updated")
    assert len(trades) == len(books) == 3 * 2 * 2
    assert isinstance(trades[0], Trade) and trades[0].trade_id == "binance-BTCUSDT-1700000000000"
    book = books[0]
    assert isinstance(book, OrderBook) and len(book.bids) == len(book.asks) == 3
    assert book.bids[0][0] < book.asks[0][0] and book.bids[1][0] < book.bids[0][0]


async def test_feed_stays_within_market_publish_rights() -> None:
    harness = BotHarness(LumiSyntheticBot, {**SMALL, "bars": 1}, code="LUM", publish=["market.candle.>"])
    await harness.start()
    with pytest.raises(PublishNotAllowedError):
        await harness.bot.wait()  # type: ignore[attr-defined]
    assert harness.ctx.refused == ["market.ticker.updated.binance.BTCUSDT"]


async def test_real_time_speed_paces_by_data_time_and_stop_cancels() -> None:
    # 1m bars at speed 60: one bar time per second. The first goes out at once (2 symbols x 2 venues),
    # the next only a second later, so after 0.2 s exactly the first 4 candles are out; stop() cancels.
    harness = BotHarness(
        LumiSyntheticBot, {**SMALL, "bars": 100, "speed": 60}, code="LUM", publish=["market.>"]
    )
    await harness.start()
    await asyncio.sleep(0.2)
    await harness.stop()
    assert len(harness.payloads("market.candle")) == 4
    assert "market.feed.completed" not in harness.published_topics()


async def test_csv_feed_replays_the_packaged_sample_with_filters() -> None:
    harness = BotHarness(
        LumiCsvBot, {"symbols": ["SOLUSDT"], "exchanges": ["bybit"]}, bot_id="csv", code="LUM"
    )
    await run(harness)
    candles = harness.payloads("market.candle")
    assert len(candles) == SAMPLE_SPEC.bars
    assert {(c.exchange, c.symbol, c.interval) for c in candles} == {("bybit", "SOLUSDT", "1m")}
    assert harness.published[-1].payload == {"feed": "csv", "bars": SAMPLE_SPEC.bars}


async def test_csv_feed_fails_at_start_on_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(
        "timestamp,symbol,exchange,open,high,low,close,volume\n1,A,x,1,1,1,1,oops\n", encoding="utf-8"
    )
    harness = BotHarness(LumiCsvBot, {"path": str(path)}, code="LUM")
    with pytest.raises(CsvFormatError, match=r"bad.csv:2: volume 'oops' is not a number"):
        await harness.start()
