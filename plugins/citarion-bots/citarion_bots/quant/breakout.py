"""Donchian / turtle breakout arithmetic (MFT): the channel, Wilder's ATR, ATR-sized units.

* Donchian channel over the *previous* N bars (the current bar excluded, or a close could never
  exceed a high that includes itself): ``upper = max(high)``, ``lower = min(low)``. A close above
  ``upper`` is a breakout up, below ``lower`` a breakout down.
* True range ``TR = max(high - low, |high - prev close|, |low - prev close|)`` (the first bar: high -
  low). Wilder's ATR over n bars: the mean of the first n TRs, then ``ATR = (ATR * (n - 1) + TR) / n``.
* Turtle sizing: a stop ``stop_atr`` ATRs away risks ``units * stop_atr * ATR``; to risk
  ``risk_quote`` per trade, ``units = risk_quote / (stop_atr * ATR)``.
"""

from __future__ import annotations

from collections import deque

__all__ = ["ATR", "Donchian", "turtle_units"]


class Donchian:
    """Highs and lows of the last ``period`` bars; read the channel *before* adding the new bar."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.highs: deque[float] = deque(maxlen=period)
        self.lows: deque[float] = deque(maxlen=period)

    @property
    def ready(self) -> bool:
        return len(self.highs) == self.highs.maxlen

    def upper(self) -> float:
        return max(self.highs)

    def lower(self) -> float:
        return min(self.lows)

    def add(self, high: float, low: float) -> None:
        self.highs.append(high)
        self.lows.append(low)

    def state(self) -> tuple[list[float], list[float]]:
        return list(self.highs), list(self.lows)

    def restore(self, state: tuple[list[float], list[float]]) -> None:
        self.highs.extend(state[0])
        self.lows.extend(state[1])


class ATR:
    """Wilder's average true range, one bar at a time."""

    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.period = period
        self.value: float | None = None
        self._seed: list[float] = []
        self._prev_close: float | None = None

    def state(self) -> tuple[float | None, list[float], float | None]:
        """The average (None while seeding), the seed's true ranges, the previous close."""
        return self.value, list(self._seed), self._prev_close

    def restore(self, state: tuple[float | None, list[float], float | None]) -> None:
        self.value, seed, self._prev_close = state
        self._seed = list(seed)

    def update(self, high: float, low: float, close: float) -> float | None:
        prev = self._prev_close
        tr = high - low if prev is None else max(high - low, abs(high - prev), abs(low - prev))
        self._prev_close = close
        if self.value is None:
            self._seed.append(tr)
            if len(self._seed) == self.period:
                self.value = sum(self._seed) / self.period
        else:
            self.value = (self.value * (self.period - 1) + tr) / self.period
        return self.value


def turtle_units(risk_quote: float, atr: float, stop_atr: float) -> float:
    """Units whose loss at a ``stop_atr``-ATR stop is ``risk_quote`` (0 when ATR is 0)."""
    return risk_quote / (stop_atr * atr) if atr > 0 and stop_atr > 0 else 0.0
