"""Bars as a bot wants them: lined up across symbols (PAR, MRB), or built up to its interval (MFT, LFT).

:class:`BarSync`: a row is complete when every symbol has a close for one open time; it is then
handed out once, in time order. A newer complete row makes older incomplete ones useless (a leg
never printed that bar): they are dropped and counted, never silently waited on.

:class:`IntervalBars`: candles of the bot's ``interval`` pass through; with ``aggregate``, shorter
candles that divide it are built up with :class:`~citarion_bots.market.candles.CandleAggregator`
(a bar is complete when its last constituent closes). Anything else is ignored and counted.
"""

from __future__ import annotations

from collections.abc import Sequence

from citarion_host.payloads import Candle

from .common import interval_ms
from .market.candles import AggregatorState, CandleAggregator

__all__ = ["BarSync", "BarSyncState", "IntervalBars", "IntervalBarsState"]

#: A :class:`BarSync`'s state: the rows still incomplete (open time -> symbol -> bar), the last row
#: handed out, the rows dropped.
BarSyncState = tuple[dict[int, dict[str, Candle]], int | None, int]
#: An :class:`IntervalBars`' state: the candles ignored, and its aggregator's (None: no aggregating).
IntervalBarsState = tuple[int, AggregatorState | None]


class BarSync:
    def __init__(self, symbols: Sequence[str]) -> None:
        self.symbols = tuple(symbols)
        self._rows: dict[int, dict[str, Candle]] = {}
        self.last_time: int | None = None
        self.dropped = 0

    def add(self, candle: Candle) -> tuple[int, tuple[Candle, ...]] | None:
        """Take one leg's bar; returns ``(open_time, bars in symbol order)`` when that row completes."""
        if candle.symbol not in self.symbols or (
            self.last_time is not None and candle.open_time <= self.last_time
        ):
            return None
        row = self._rows.setdefault(candle.open_time, {})
        row[candle.symbol] = candle
        if len(row) < len(self.symbols):
            return None
        time = candle.open_time
        for older in [t for t in self._rows if t <= time]:
            if older < time:
                self.dropped += 1
            del self._rows[older]
        self.last_time = time
        return time, tuple(row[s] for s in self.symbols)

    def state(self) -> BarSyncState:
        return self._rows, self.last_time, self.dropped

    def restore(self, state: BarSyncState) -> None:
        rows, self.last_time, self.dropped = state
        self._rows = {time: dict(row) for time, row in rows.items()}


class IntervalBars:
    def __init__(self, interval: str, aggregate: bool) -> None:
        self.interval = interval
        self.length = interval_ms(interval)
        self.aggregator = CandleAggregator(interval) if aggregate else None
        self.ignored = 0

    def state(self) -> IntervalBarsState:
        return self.ignored, None if self.aggregator is None else self.aggregator.state()

    def restore(self, state: IntervalBarsState) -> None:
        self.ignored, aggregated = state
        if self.aggregator is not None and aggregated is not None:
            self.aggregator.restore(aggregated)

    def add(self, candle: Candle) -> list[Candle]:
        """The bars of ``interval`` this candle is or completes (often none)."""
        if candle.interval == self.interval:
            return [candle]
        if self.aggregator is not None:
            length = interval_ms(candle.interval)
            if length < self.length and self.length % length == 0:
                return self.aggregator.add(candle)
        self.ignored += 1
        return []
