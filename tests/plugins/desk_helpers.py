"""Test helpers for the desk bots: stamped book events, balances, and an exchange stand-in.

``Venue`` answers a harness's submitted orders the way the exchange contract in docs/market.md says
(cumulative fills, IOC remainders cancelled, resting limits accepted), so a bot test shows exactly
what the bot publishes and how it reacts, without the real exchange.
"""

from __future__ import annotations

from typing import Any

import msgspec

from citarion_host.events import Event, catalog
from citarion_host.payloads import Balance, Candle, Order, OrderBook
from citarion_host.testing import BotHarness

T0 = 1_700_006_400_000
SECOND = 1_000
MINUTE = 60_000


async def feed(
    harness: BotHarness, topic: str, payload: Any, time: int | None = None, source: str = "LUM"
) -> Event:
    metadata = None if time is None else {"dataTime": time}
    event = catalog.make(topic, payload, source=source, metadata=metadata)
    await harness.feed_event(event)
    return event


def book(
    exchange: str, bids: list[tuple[float, float]], asks: list[tuple[float, float]], symbol: str = "BTCUSDT"
) -> OrderBook:
    return OrderBook(symbol=symbol, exchange=exchange, bids=bids, asks=asks)


async def feed_book(harness: BotHarness, ob: OrderBook, time: int) -> Event:
    return await feed(harness, f"market.orderbook.updated.{ob.exchange}.{ob.symbol}", ob, time)


async def feed_balance(
    harness: BotHarness, exchange: str, asset: str, amount: float, bot_id: str | None = None
) -> Event:
    balance = Balance(
        bot_id=bot_id or harness.ctx.bot_id, exchange=exchange, asset=asset, total=amount, available=amount
    )
    return await feed(harness, f"trading.position.balance.{exchange}", balance, source="EXC")


def bar(
    close: float, index: int, *, symbol: str = "BTCUSDT", exchange: str = "binance", interval: str = "1m",
    high: float | None = None, low: float | None = None, open_: float | None = None,
) -> Candle:  # fmt: skip
    o = close if open_ is None else open_
    return Candle(
        symbol=symbol, exchange=exchange, interval=interval, open_time=T0 + index * 60_000, open=o,
        high=max(o, close) if high is None else high, low=min(o, close) if low is None else low,
        close=close, volume=1.0,
    )  # fmt: skip


async def feed_bar(harness: BotHarness, candle: Candle) -> Event:
    return await feed(harness, f"market.candle.closed.{candle.exchange}.{candle.symbol}", candle)


def submitted(harness: BotHarness) -> list[Order]:
    return [e.payload for e in harness.published if e.topic == "trading.order.submitted"]


class Venue:
    """Answers new submissions: MARKET orders fill at ``price``; LIMIT orders fill up to ``fill`` of
    their quantity (IOC: the rest is cancelled; GTC: accepted and left resting)."""

    def __init__(self, harness: BotHarness) -> None:
        self.harness = harness
        self.seen = 0

    async def report(self, order: Order, topic: str, **changes: Any) -> None:
        status = {"filled": "FILLED", "partially_filled": "PARTIALLY_FILLED", "cancelled": "CANCELLED",
                  "rejected": "REJECTED", "accepted": "PENDING", "amended": "PENDING"}[topic]  # fmt: skip
        await feed(
            self.harness,
            f"trading.order.{topic}",
            msgspec.structs.replace(order, status=status, **changes),
            source="EXC",
        )

    async def answer(self, *, price: float | None = None, fill: float = 1.0, reject: bool = False) -> None:
        while self.seen < len(self.harness.published):
            event = self.harness.published[self.seen]
            self.seen += 1
            if event.topic != "trading.order.submitted":
                continue
            order: Order = event.payload
            if reject:
                await self.report(order, "rejected", reason="insufficient cash")
                continue
            at = order.price if order.price is not None else price
            quantity = round(order.quantity * fill, 8)
            ioc = (event.metadata or {}).get("timeInForce") == "IOC" or order.type == "MARKET"
            if quantity >= order.quantity:
                await self.report(order, "filled", filled_quantity=order.quantity, average_price=at)
            elif ioc:
                changes: dict[str, Any] = {"reason": "IOC remainder"}
                if quantity > 0:
                    changes |= {"filled_quantity": quantity, "average_price": at}
                await self.report(order, "cancelled", **changes)
            else:
                await self.report(order, "accepted")
                if quantity > 0:
                    await self.report(order, "partially_filled", filled_quantity=quantity, average_price=at)
