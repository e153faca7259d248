"""Candles: OHLCV bars from a path sampled in steps, and aggregation to longer intervals.

* :func:`bars_from_steps`: bar k covers steps ``k * steps_per_bar .. (k + 1) * steps_per_bar - 1``;
  open = the first step's price, close = the last's, high/low = the extremes in between, volume =
  the traded quantity of those steps.
* :class:`CandleAggregator`: 1m -> 1h -> 1d, one candle at a time, per (exchange, symbol). Periods are
  aligned to ``anchor`` (default the Unix epoch, i.e. UTC hours and days, as exchanges do). A period's
  bar is emitted when its *last* constituent arrives (its open + interval reaches the period's end), so
  a daily bar is known the moment the day's last minute closes, never later and never earlier. A
  constituent of a later period also closes an unfinished one (a gap in the data). A period whose first
  constituent did not open at the period's start (the feed began mid-period) is dropped and counted
  in ``dropped_partial``: a "daily" bar of the last three hours would lie about the day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from citarion_host.payloads import Candle

from ..common import SeriesKey, interval_ms

__all__ = ["OHLCV", "AggregatorState", "CandleAggregator", "aggregate", "bars_from_steps"]

Array = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OHLCV:
    open: Array
    high: Array
    low: Array
    close: Array
    volume: Array


def bars_from_steps(prices: Array, volumes: Array, steps_per_bar: int) -> OHLCV:
    """Whole bars of ``steps_per_bar`` steps (a trailing partial bar is left out)."""
    bars = len(prices) // steps_per_bar
    grid = np.asarray(prices[: bars * steps_per_bar]).reshape(bars, steps_per_bar)
    vol = np.asarray(volumes[: bars * steps_per_bar]).reshape(bars, steps_per_bar)
    return OHLCV(grid[:, 0], grid.max(axis=1), grid.min(axis=1), grid[:, -1], vol.sum(axis=1))


@dataclass(slots=True)
class _Open:
    start: int
    complete: bool
    open: float
    high: float
    low: float
    close: float
    volume: float


#: A :class:`CandleAggregator`'s state: the bars still open per series, partial bars dropped, bars out.
AggregatorState = tuple[list[tuple[SeriesKey, _Open]], int, int]


class CandleAggregator:
    """Candles of one interval in, candles of a longer ``interval`` out."""

    def __init__(self, interval: str, *, anchor: int = 0) -> None:
        self.interval = interval
        self.length = interval_ms(interval)
        self.anchor = anchor
        self.open: dict[SeriesKey, _Open] = {}
        self.dropped_partial = 0
        self.emitted = 0

    def state(self) -> AggregatorState:
        return list(self.open.items()), self.dropped_partial, self.emitted

    def restore(self, state: AggregatorState) -> None:
        rows, self.dropped_partial, self.emitted = state
        self.open = dict(rows)

    def period(self, time_ms: int) -> int:
        return self.anchor + (time_ms - self.anchor) // self.length * self.length

    def add(self, candle: Candle) -> list[Candle]:
        """Take one constituent; returns the bars it closed (usually none, at most two)."""
        key = (candle.exchange, candle.symbol)
        out: list[Candle] = []
        start = self.period(candle.open_time)
        current = self.open.get(key)
        if current is not None and current.start != start:
            out += self._close(key)
            current = None
        if current is None:
            current = self.open[key] = _Open(
                start, candle.open_time == start, candle.open, candle.high, candle.low, candle.close, 0.0
            )
        current.high = max(current.high, candle.high)
        current.low = min(current.low, candle.low)
        current.close = candle.close
        current.volume += candle.volume
        if candle.open_time + interval_ms(candle.interval) >= start + self.length:
            out += self._close(key)
        return out

    def _close(self, key: SeriesKey) -> list[Candle]:
        bar = self.open.pop(key)
        if not bar.complete:
            self.dropped_partial += 1
            return []
        self.emitted += 1
        return [
            Candle(
                symbol=key[1],
                exchange=key[0],
                interval=self.interval,
                open_time=bar.start,
                open=bar.open,
                high=bar.high,
                low=bar.low,
                close=bar.close,
                volume=round(bar.volume, 8),
            )
        ]


def aggregate(candles: Iterable[Candle], interval: str, *, anchor: int = 0) -> list[Candle]:
    """All complete bars of ``interval`` built from ``candles`` (in time order per series)."""
    aggregator = CandleAggregator(interval, anchor=anchor)
    return [bar for candle in candles for bar in aggregator.add(candle)]
