"""Shared test helpers: hand-made candles, a fill simulator for harness tests, and a bus wiring.

``BusContext`` / ``wire`` stand in for the host (which another package provides): each bot gets a
context that publishes to a real :class:`MemoryBus` within its declared patterns, and is subscribed
to its declared patterns, exactly as the host would do it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec
from citarion_bots.common import candle_topic

from citarion_host.payloads import Candle, Order
from citarion_host.testing import BotHarness

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
