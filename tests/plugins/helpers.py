"""Shared test helpers: hand-made candles, a fill simulator for harness tests, and a bus wiring.

``BusContext`` / ``wire`` stand in for the host (which another package provides): each bot gets a
context that publishes to a real :class:`MemoryBus` within its declared patterns, and is subscribed
to its declared patterns, exactly as the host would do it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from citarion_bots.common import candle_topic

from citarion_host.bot import Bot
from citarion_host.bus import EventBus
from citarion_host.errors import PublishNotAllowedError
from citarion_host.events import Event, Priority, catalog
from citarion_host.payloads import Candle, Order
from citarion_host.testing import BotHarness
from citarion_host.topics import matches

T0 = 1_700_000_000_000
MINUTE = 60_000


def candle(
    close: float,
    index: int = 0,
    *,
    symbol: str = "BTCUSDT",
    exchange: str = "binance",
    open_: float | None = None,
    high: float | None = None,
    low: float | None = None,
    volume: float = 1_000.0,
    interval: str = "1m",
) -> Candle:
    """Bar number ``index`` (open time T0 + index minutes); open defaults to the close."""
    o = close if open_ is None else open_
    return Candle(
        symbol=symbol,
        exchange=exchange,
        interval=interval,
        open_time=T0 + index * MINUTE,
        open=o,
        high=max(o, close) if high is None else high,
        low=min(o, close) if low is None else low,
        close=close,
        volume=volume,
    )


def series(closes: Sequence[float], **kwargs: Any) -> list[Candle]:
    return [candle(c, i, **kwargs) for i, c in enumerate(closes)]


async def feed_candles(harness: BotHarness, candles: Iterable[Candle], *, fill: bool = True) -> None:
    """Feed candles; with ``fill``, answer every submitted order with a fill at that bar's close."""
    seen = len(harness.published)
    for bar in candles:
        await harness.feed(candle_topic(bar.exchange, bar.symbol), bar)
        if fill:
            seen = await fill_new(harness, seen, bar.close)


async def fill_new(harness: BotHarness, seen: int, price: float) -> int:
    while seen < len(harness.published):
        event = harness.published[seen]
        seen += 1
        if event.topic == "trading.order.submitted":
            order: Order = event.payload
            filled = msgspec.structs.replace(
                order, status="FILLED", filled_quantity=order.quantity, average_price=order.price or price
            )
            await harness.feed("trading.order.filled", filled, source="EXC")
    return seen


def topics(harness: BotHarness, prefix: str = "") -> list[str]:
    return [t for t in harness.published_topics() if t.startswith(prefix)]


class BusContext:
    """A host-like BotContext on a real bus: publishes only within the declared patterns."""

    def __init__(self, bus: EventBus, bot_id: str, code: str, publish: Sequence[str]) -> None:
        self.bus = bus
        self._bot_id, self._code, self._publish = bot_id, code, tuple(publish)
        self.published: list[Event] = []
        self._log = logging.LoggerAdapter(logging.getLogger(f"citarion.bot.{bot_id}"), {"bot": bot_id})

    @property
    def bot_id(self) -> str:
        return self._bot_id

    @property
    def code(self) -> str:
        return self._code

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return self._log

    async def publish(
        self,
        topic: str,
        payload: Any,
        *,
        priority: Priority = "normal",
        causation_id: str | None = None,
        correlation_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Event:
        if not any(matches(pattern, topic) for pattern in self._publish):
            raise PublishNotAllowedError(f"bot {self._bot_id!r} may not publish {topic!r}")
        event = catalog.make(
            topic,
            payload,
            source=self._code,
            priority=priority,
            causation_id=causation_id,
            correlation_id=correlation_id,
            metadata=metadata,
        )
        self.published.append(event)
        await self.bus.publish(event)
        return event

    async def request(self, topic: str, payload: Any, *, timeout: float = 5.0) -> Event:
        raise NotImplementedError

    async def reply(self, request: Event, topic: str, payload: Any) -> Event:
        return await self.publish(topic, payload, correlation_id=request.correlation_id or request.id)

    def spawn(self, work: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        return asyncio.get_running_loop().create_task(work, name=name or None)


@dataclass
class BotSpec:
    """One ``[[bots]]`` entry: id, registry code, bot type, patterns and params."""

    id: str
    code: str
    bot_type: type[Bot]
    publish: list[str]
    subscribe: list[str]
    params: dict[str, Any] = field(default_factory=dict)


async def wire(bus: EventBus, specs: Sequence[BotSpec]) -> dict[str, tuple[Bot, BusContext]]:
    """Build every bot, subscribe it to its patterns (in the given order); does not start them."""
    bots: dict[str, tuple[Bot, BusContext]] = {}
    for spec in specs:
        ctx = BusContext(bus, spec.id, spec.code, spec.publish)
        bot = spec.bot_type(ctx, spec.bot_type.Params.model_validate(spec.params))
        for pattern in spec.subscribe:
            await bus.subscribe(pattern, bot.handle, name=f"{spec.id}:{pattern}")
        bots[spec.id] = (bot, ctx)
    return bots
