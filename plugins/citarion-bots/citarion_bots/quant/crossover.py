"""Moving-average crossover and a trailing stop (LFT), one bar at a time.

``diff_t = SMA_fast(t) - SMA_slow(t)`` once the slow window is full. A cross up happens at bar t when
``diff_{t-1} <= 0 < diff_t``, a cross down when ``diff_{t-1} >= 0 > diff_t``. Only closes up to t
enter the decision at t, so no later bar can change it.

The trailing stop follows the highest close since entry (long): it triggers when a close falls to
``peak * (1 - pct)`` or below (short: the lowest close, ``trough * (1 + pct)``).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

__all__ = ["SMA", "Cross", "Crossover", "TrailingStop"]

Cross = Literal["up", "down"]


class SMA:
    def __init__(self, period: int) -> None:
        if period < 1:
            raise ValueError(f"period must be >= 1, got {period}")
        self.window: deque[float] = deque(maxlen=period)

    def update(self, value: float) -> float | None:
        self.window.append(value)
        # fsum over the window rather than a running sum: no drift over thousands of bars
        return math.fsum(self.window) / len(self.window) if len(self.window) == self.window.maxlen else None


class Crossover:
    def __init__(self, fast: int, slow: int) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast}, slow={slow}")
        self.fast, self.slow = SMA(fast), SMA(slow)
        self.diff: float | None = None

    def state(self) -> tuple[list[float], list[float], float | None]:
        """Both windows and the last difference."""
        return list(self.fast.window), list(self.slow.window), self.diff

    def restore(self, state: tuple[list[float], list[float], float | None]) -> None:
        fast, slow, self.diff = state
        self.fast.window.extend(fast)
        self.slow.window.extend(slow)

    def update(self, close: float) -> Cross | None:
        fast, slow = self.fast.update(close), self.slow.update(close)
        if fast is None or slow is None:
            return None
        previous, self.diff = self.diff, fast - slow
        if previous is None:
            return None
        if previous <= 0 < self.diff:
            return "up"
        if previous >= 0 > self.diff:
            return "down"
        return None


class TrailingStop:
    def __init__(self, pct: float) -> None:
        if not 0 < pct < 1:
            raise ValueError(f"pct must be within (0, 1), got {pct}")
        self.pct = pct
        self.side: Literal["long", "short"] | None = None
        self.extreme = 0.0

    def arm(self, side: Literal["long", "short"], price: float) -> None:
        self.side, self.extreme = side, price

    def disarm(self) -> None:
        self.side = None

    def state(self) -> tuple[Literal["long", "short"] | None, float]:
        return self.side, self.extreme

    def restore(self, state: tuple[Literal["long", "short"] | None, float]) -> None:
        self.side, self.extreme = state

    @property
    def level(self) -> float | None:
        if self.side is None:
            return None
        return self.extreme * (1 - self.pct) if self.side == "long" else self.extreme * (1 + self.pct)

    def update(self, close: float) -> bool:
        """Take a close; True when it hits the stop (the stop then disarms)."""
        if self.side is None:
            return False
        self.extreme = max(self.extreme, close) if self.side == "long" else min(self.extreme, close)
        level = self.level
        assert level is not None
        hit = close <= level if self.side == "long" else close >= level
        if hit:
            self.side = None
        return hit
