"""Per-second rates for the page: events handled and published per bot, events on the bus.

Counters only say how many so far; a rate needs two readings. A sampler task (``Rates.run``) reads the
counters once a second and keeps the last readings' differences, and a short history of the bus
figures for the bus-health chart. Reading counters costs nothing on the hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["Rates"]

HISTORY = 300  # seconds of bus history kept for the chart


class Rates:
    """Rates from counters read each ``interval`` seconds: ``read()`` returns name -> total so far;
    the ``bus:*`` ones are also kept as history."""

    def __init__(self, read: Callable[[], dict[str, float]], interval: float = 1.0) -> None:
        self.read = read
        self.interval = interval
        self.rates: dict[str, float] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self._last: tuple[float, dict[str, float]] | None = None

    def sample(self) -> None:
        now, totals = time.monotonic(), self.read()
        if self._last is not None:
            then, before = self._last
            elapsed = max(now - then, 1e-6)
            self.rates = {k: max(v - before.get(k, 0.0), 0.0) / elapsed for k, v in totals.items()}
            charted = {k[4:]: round(v, 1) for k, v in self.rates.items() if k.startswith("bus:")}
            self.history.append({"t": round(time.time() * 1000), **charted})
        self._last = (now, totals)

    def rate(self, name: str) -> float:
        return self.rates.get(name, 0.0)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
