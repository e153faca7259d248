"""LUM's ``lumi-market``: the synthetic market's events, each stamped with its data time, settled per
bar, with books, trades, candles at several intervals, the planted structure, and pumps PND finds."""

from __future__ import annotations

import math
from typing import Any

from citarion_bots.lumi import LumiMarketBot
from citarion_bots.market.scenario import MarketSpec, generate_market
from citarion_bots.pump import PumpBot

from citarion_host.payloads import Candle
from citarion_host.testing import BotHarness

SMALL: dict[str, Any] = {
    "bars": 120,
    "steps_per_bar": 2,
    "interval": "1m",
    "aggregate": ["5m", "1h"],
    "walks": [{"symbol": "BTCUSDT"}, {"symbol": "ETHUSDT", "start": 3_000.0}],
    "pumps": [{"symbol": "ETHUSDT", "start_bar": 80}],
    "book": {"trade_rate": 1.0, "depth": 5},
}


class Settles(BotHarness):
    """A harness that counts the feed's ``ctx.settle()`` calls, what had been published by then and
    whether each was lagged (``settled_at``, ``lagged``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settled_at: list[int] = []
        self.lagged: list[bool] = []
        original = self.ctx.settle

        async def settle(*, lag: bool = False) -> None:
            self.settled_at.append(len(self.ctx.published))
            self.lagged.append(lag)
            await original(lag=lag)

        self.ctx.settle = settle  # type: ignore[method-assign]


async def run(params: dict[str, Any]) -> Settles:
    harness = Settles(LumiMarketBot, params, bot_id="lumi", code="LUM", publish=["market.>"])
    await harness.start()
    await harness.bot.wait()  # type: ignore[attr-defined]
    await harness.stop()
    return harness


async def test_it_publishes_the_markets_events_in_order_each_with_its_data_time() -> None:
    harness = await run(SMALL)
    published = harness.published[:-1]
    expected = list(generate_market(MarketSpec.model_validate(SMALL)).events())
    assert [(e.topic, e.payload, e.metadata["dataTime"]) for e in published] == [
        (m.topic, m.payload, m.data_time) for m in expected
    ]
    kinds = {e.topic.split(".")[1] for e in published}
    assert kinds == {"orderbook", "trade", "ticker", "candle"}
    intervals = {e.payload.interval for e in published if isinstance(e.payload, Candle)}
    assert intervals == {"1m", "5m", "1h"}
    done = harness.published[-1]
    assert done.topic == "market.feed.completed" and done.payload == {"feed": "lumi", "bars": 120 * 8 * 2}
    stats = harness.bot.stats()
    assert stats["completed"] is True and stats["series"] == 8 * 2  # 2 walks, the pair, the basket, the OU
    assert stats["planted"]["pair"]["beta"] == 2.0 and stats["planted"]["pumps"][0]["startBar"] == 80


async def test_it_settles_once_per_new_bar_before_that_bars_first_event() -> None:
    harness = await run(SMALL)
    bar_ms = 60_000
    start = MarketSpec.model_validate(SMALL).start_time
    bars = [(e.metadata["dataTime"] - start) // bar_ms for e in harness.published[:-1]]
    firsts = [i for i in range(1, len(bars)) if bars[i] > max(bars[:i])]
    assert harness.settled_at == [*firsts, len(bars)]  # and once more before the completion
    # Between bars it waits only for the bars before the previous one; before the completion, for all
    assert harness.lagged == [True] * len(firsts) + [False]


async def test_the_planted_pump_is_in_the_bars_and_pnd_finds_it_on_both_exchanges() -> None:
    harness = await run(SMALL)
    pnd = BotHarness(
        PumpBot, {"interval": "1m", "baseline_bars": 30}, bot_id="argus", code="PND", publish=[">"]
    )
    for event in harness.published:
        if isinstance(event.payload, Candle):
            await pnd.feed(event.topic, event.payload, metadata=event.metadata)
    detections = pnd.bot.stats()["detections"]
    # PND counts bars from 1: bar 81 is the pump's first (start_bar 80); within 3 bars on each venue
    assert [d["series"] for d in detections] == ["binance:ETHUSDT", "bybit:ETHUSDT"]
    assert all(81 <= d["bar"] <= 83 for d in detections), detections
    candles = [
        e.payload
        for e in harness.published
        if isinstance(e.payload, Candle)
        and e.payload.interval == "1m"
        and e.topic.endswith("binance.ETHUSDT")
    ]
    rise = candles[83].close / candles[79].close - 1
    assert math.isclose(rise, 0.30, abs_tol=0.03)


async def test_a_pump_outside_the_walks_or_the_run_is_refused() -> None:
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="pumps go into walks"):
        MarketSpec.model_validate({**SMALL, "pumps": [{"symbol": "XRPUSDT", "start_bar": 1}]})
    with pytest.raises(ValidationError, match="does not end within 120 bars"):
        MarketSpec.model_validate({**SMALL, "pumps": [{"symbol": "ETHUSDT", "start_bar": 115}]})
