"""Small pieces every bot module shares: strict params, topic names, intervals, quantity rounding.

Kept free of bot logic so that each bot module reads as its algorithm and nothing else.
"""

from __future__ import annotations

import re
from typing import Final

from pydantic import BaseModel, ConfigDict

__all__ = [
    "FEED_COMPLETED",
    "QTY_DECIMALS",
    "SeriesKey",
    "StrictParams",
    "candle_topic",
    "interval_ms",
    "orderbook_topic",
    "round_qty",
    "ticker_topic",
    "trade_topic",
]

#: A market series: ``(exchange, symbol)``. Every price-keyed map in the bots uses it.
SeriesKey = tuple[str, str]

#: What a replayed feed publishes after its last bar (the host's ``stop_on`` in the demos).
FEED_COMPLETED: Final = "market.feed.completed"

#: Quantities are rounded to 1e-8 (a satoshi), the paper exchange's lot step.
QTY_DECIMALS: Final = 8

_INTERVAL = re.compile(r"^(?P<n>[1-9][0-9]*)(?P<unit>ms|s|m|h|d|w)$")
_UNIT_MS: Final = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class StrictParams(BaseModel):
    """Base of every bot's params: a misspelt key in a config is an error, never silently ignored."""

    model_config = ConfigDict(extra="forbid")


def interval_ms(interval: str) -> int:
    """``"1m"`` -> 60000. Bots count time in bars of the data, so they need the bar length."""
    found = _INTERVAL.match(interval)
    if not found:
        raise ValueError(f"interval {interval!r}: expected <n><unit> with unit ms, s, m, h, d or w (e.g. 1m)")
    return int(found.group("n")) * _UNIT_MS[found.group("unit")]


def round_qty(quantity: float) -> float:
    """A quantity on the exchange's lot grid (rounding, so 0.1 + 0.2 does not leave dust)."""
    return round(quantity, QTY_DECIMALS)


def candle_topic(exchange: str, symbol: str) -> str:
    return f"market.candle.closed.{exchange}.{symbol}"


def ticker_topic(exchange: str, symbol: str) -> str:
    return f"market.ticker.updated.{exchange}.{symbol}"


def trade_topic(exchange: str, symbol: str) -> str:
    return f"market.trade.executed.{exchange}.{symbol}"


def orderbook_topic(exchange: str, symbol: str) -> str:
    return f"market.orderbook.updated.{exchange}.{symbol}"
