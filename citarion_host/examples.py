"""Two tiny bots that make a self-contained starter topology (``citarion-host init``).

Why they ship in the core: the starter config must pass ``citarion-host check`` on a fresh install,
before any bot plugin is installed, so the bots it names have to exist in this package. They are
referenced by ``module:object`` path, the same way a plugin under development would be.

* :class:`TickerFeed` (run as ``LUM``, the data-integration bot) publishes a synthetic random-walk
  ticker on ``market.ticker.updated.<exchange>.<symbol>``.
* :class:`TickerLogger` (run as ``ORA``, which may read everything) logs the tickers it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .bot import Bot
from .events import Event

__all__ = ["TickerFeed", "TickerLogger", "starter_config"]


class TickerFeed(Bot):
    """Publishes one synthetic ticker per symbol every ``interval_s`` seconds."""

    type_name = "example-ticker-feed"
    description = "synthetic random-walk tickers (example)"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT"], min_length=1)
        exchange: str = "paper"
        interval_s: float = Field(default=1.0, gt=0)
        start_price: float = Field(default=50_000.0, gt=0)
        seed: int | None = None  # fixed seed: the same prices on every run

    params: Params

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self._random = random.Random(self.params.seed)
        self._prices = dict.fromkeys(self.params.symbols, self.params.start_price)
        self._task: asyncio.Task[Any] | None = None
        self.sent = 0

    async def start(self) -> None:
        self._task = self.ctx.spawn(self._run(), "feed")  # supervised: if it raises, the bot restarts

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def tick(self) -> None:
        """Publish one ticker per symbol (the loop calls this; tests may call it directly)."""
        for symbol, price in self._prices.items():
            price = max(price * (1 + self._random.gauss(0, 0.001)), 0.01)
            self._prices[symbol] = price
            spread = price * 0.0001
            ticker = {
                "symbol": symbol,
                "exchange": self.params.exchange,
                "bid": price - spread,
                "ask": price + spread,
                "last": price,
            }
            await self.ctx.publish(f"market.ticker.updated.{self.params.exchange}.{symbol}", ticker)
            self.sent += 1

    async def _run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.params.interval_s)

    def stats(self) -> dict[str, Any]:
        return {"tickers_sent": self.sent}


class TickerLogger(Bot):
    """Logs every ``every``-th event it receives; counts them all."""

    type_name = "example-ticker-logger"
    description = "logs the events it receives (example)"

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")

        every: int = Field(default=1, ge=1)

    params: Params

    def __init__(self, ctx: Any, params: Any) -> None:
        super().__init__(ctx, params)
        self.received = 0

    async def handle(self, event: Event) -> None:
        self.received += 1
        if self.received % self.params.every == 0:
            self.ctx.log.info("%s %s", event.topic, getattr(event.payload, "last", event.payload))

    def stats(self) -> dict[str, Any]:
        return {"events_received": self.received}


def starter_config(backend: str) -> dict[str, Any]:
    """A small topology that passes ``check`` with no finding, using the bots above (``init``)."""
    backend_table: dict[str, Any] = {"type": backend}
    if backend == "nats":
        backend_table["nats"] = {"servers": ["nats://127.0.0.1:4222"], "jetstream": True}
    return {
        "host": {"name": "citarion-host"},
        "backend": backend_table,
        "logging": {"level": "INFO", "format": "text"},
        "bots": [
            {
                "id": "ticker-feed",
                "code": "LUM",
                "plugin": "citarion_host.examples:TickerFeed",
                "publish": ["market.ticker.>"],
                "params": {"symbols": ["BTCUSDT", "ETHUSDT"], "interval_s": 1.0},
            },
            {
                "id": "ticker-logger",
                "code": "ORA",
                "plugin": "citarion_host.examples:TickerLogger",
                "subscribe": ["market.ticker.>"],
                "params": {"every": 10},
            },
        ],
    }
