"""A market feed for host tests: the synthetic market's events published as LUM would publish them.

This is the integration the lead's LUM will do (docs/market.md, "Feeding LUM"): every
``MarketEvent`` goes out on its topic with ``metadata = {"dataTime": ...}``, then
``market.feed.completed``. Referenced from test configs as ``tests.plugins.market_feed:MarketFeedBot``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from citarion_bots.market.scenario import MarketSpec, generate_market

from citarion_host.bot import Bot


class MarketFeedBot(Bot):
    type_name = "test-market-feed"
    description = "LUM stand-in: replays citarion_bots.market.scenario events"
    Params = MarketSpec
    params: MarketSpec

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.published = 0

    async def start(self) -> None:
        market = generate_market(self.params)
        self.ctx.spawn(self._run(market), "market-feed")

    async def _run(self, market: Any) -> None:
        bar_topics = 0
        for event in market.events():
            await self.ctx.publish(event.topic, event.payload, metadata={"dataTime": event.data_time})
            self.published += 1
            if event.topic.startswith("market.candle."):
                bar_topics += 1
                await asyncio.sleep(0)  # let the bots keep up, bar by bar
        await self.ctx.publish("market.feed.completed", {"feed": self.ctx.bot_id, "bars": bar_topics})

    def stats(self) -> dict[str, Any]:
        return {"published": self.published}
