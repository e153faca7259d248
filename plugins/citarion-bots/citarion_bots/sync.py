"""Lining up bars of several symbols by open time, for the bots that trade them together (PAR, MRB).

A row is complete when every symbol has a close for one open time; it is then handed out once, in
time order. A newer complete row makes older incomplete ones useless (a leg never printed that bar):
they are dropped and counted, never silently waited on.
"""

from __future__ import annotations

from collections.abc import Sequence

from citarion_host.payloads import Candle

__all__ = ["BarSync"]


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
