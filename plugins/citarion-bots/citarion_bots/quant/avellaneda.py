"""Avellaneda-Stoikov market making (2008): where to quote given inventory, risk and volatility.

With mid price s, inventory q (in lots, signed), risk aversion gamma, volatility sigma (price per
square root of time), time left tau = T - t, and order-book intensity kappa (how fast the chance of
being hit decays with distance from the mid)::

    reservation   r = s - q * gamma * sigma^2 * tau
    spread        d = gamma * sigma^2 * tau + (2 / gamma) * ln(1 + gamma / kappa)
    quotes        bid = r - d / 2,   ask = r + d / 2

e.g. s=100, q=2, gamma=0.1, sigma=2, tau=0.5, kappa=1.5 -> r = 99.6, d = 1.4908. A long inventory
moves both quotes down (sell more readily, buy less), a short one up.

:class:`MidVolatility` estimates sigma from the mid's changes over a rolling window of data time:
``sigma^2 = sum(dm^2) / sum(dt)`` (realised variance per unit of time), the unit being the caller's.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["MidVolatility", "Quotes", "optimal_spread", "quotes", "reservation_price", "snap"]


def reservation_price(mid: float, q: float, gamma: float, sigma: float, tau: float) -> float:
    return mid - q * gamma * sigma * sigma * tau


def optimal_spread(gamma: float, sigma: float, tau: float, kappa: float) -> float:
    if gamma <= 0 or kappa <= 0:
        raise ValueError(f"gamma and kappa must be > 0, got {gamma}, {kappa}")
    return gamma * sigma * sigma * tau + (2.0 / gamma) * math.log1p(gamma / kappa)


def snap(price: float, tick: float) -> float:
    """``price`` on the tick grid without binary noise (99.99, never 99.9899999999)."""
    digits = max(0, math.ceil(-math.log10(tick)) + 1)
    return round(round(price / tick) * tick, digits)


@dataclass(frozen=True, slots=True)
class Quotes:
    reservation: float
    spread: float
    bid: float
    ask: float


def quotes(
    mid: float, q: float, *, gamma: float, sigma: float, tau: float, kappa: float, tick: float = 0.0
) -> Quotes:
    """Both quotes; with a ``tick``, the bid is floored and the ask ceiled onto the price grid (never
    narrower than the model asks for)."""
    r = reservation_price(mid, q, gamma, sigma, tau)
    d = optimal_spread(gamma, sigma, tau, kappa)
    bid, ask = r - d / 2, r + d / 2
    if tick > 0:
        bid = snap(math.floor(bid / tick + 1e-9) * tick, tick)
        ask = snap(math.ceil(ask / tick - 1e-9) * tick, tick)
    return Quotes(reservation=r, spread=d, bid=bid, ask=ask)


class MidVolatility:
    """Realised volatility of a mid price per unit of time over the last ``window`` changes."""

    def __init__(self, window: int, time_unit_ms: float) -> None:
        if window < 2 or time_unit_ms <= 0:
            raise ValueError(f"window must be >= 2 and time_unit_ms > 0, got {window}, {time_unit_ms}")
        self.time_unit_ms = time_unit_ms
        self.moves: deque[tuple[float, float]] = deque(maxlen=window)  # (dm^2, dt in units)
        self._last: tuple[int, float] | None = None

    def update(self, time_ms: int, mid: float) -> None:
        if self._last is not None and time_ms > self._last[0]:
            dm = mid - self._last[1]
            self.moves.append((dm * dm, (time_ms - self._last[0]) / self.time_unit_ms))
        if self._last is None or time_ms >= self._last[0]:
            self._last = (time_ms, mid)

    def state(self) -> tuple[list[tuple[float, float]], tuple[int, float] | None]:
        """The moves in the window and the last (time, mid) seen."""
        return list(self.moves), self._last

    def restore(self, state: tuple[list[tuple[float, float]], tuple[int, float] | None]) -> None:
        moves, self._last = state
        self.moves.extend(moves)

    @property
    def ready(self) -> bool:
        return len(self.moves) == self.moves.maxlen

    def sigma(self) -> float:
        elapsed = math.fsum(dt for _, dt in self.moves)
        return math.sqrt(math.fsum(v for v, _ in self.moves) / elapsed) if elapsed > 0 else 0.0
