"""Pure indicator arithmetic: moving average, population sigma, Bollinger bands, Holt smoothing.

No events, no state shared with a bot: each function takes numbers and returns numbers, so the tests
check them against hand computations and ``statistics`` directly. ``math.fsum`` keeps the sums exact
to the last bit, which is what makes "the bands equal a direct computation" a meaningful test.

The rolling ones hand out what they accumulated as plain data (``state()``) and take it back
(``restore()``), so a bot's snapshot carries them (``docs/state.md``); their settings (period, k,
alpha, beta) stay with whoever builds them: a params change keeps the data and applies the new settings.
"""

from __future__ import annotations

import math
import operator
from collections import deque
from collections.abc import Sequence

import msgspec

__all__ = [
    "Bands",
    "Holt",
    "HoltState",
    "RollingBands",
    "RollingBandsState",
    "bollinger",
    "mean",
    "pstdev",
    "rms",
]


def mean(values: Sequence[float]) -> float:
    """Arithmetic mean (the SMA when ``values`` is the window)."""
    if not values:
        raise ValueError("mean of an empty window")
    return math.fsum(values) / len(values)


def pstdev(values: Sequence[float]) -> float:
    """Population standard deviation, two-pass: sqrt(sum((x - mean)^2) / n).

    Population, not sample, sigma: Bollinger defined the bands over the window itself.
    """
    centre = mean(values)
    return math.sqrt(math.fsum((x - centre) ** 2 for x in values) / len(values))


def rms(values: Sequence[float]) -> float:
    """Root mean square: the sigma of forecast errors whose expected value is zero."""
    if not values:
        raise ValueError("rms of an empty window")
    return math.sqrt(math.fsum(map(operator.mul, values, values)) / len(values))  # x * x, in C


class Bands(msgspec.Struct, frozen=True, gc=False):
    """Bollinger bands over one window: ``middle`` = SMA, ``lower/upper`` = middle -/+ k * sigma. A
    Struct, not a frozen dataclass: one is built per candle (a frozen dataclass sets each field through
    ``object.__setattr__``); encoded the same in a snapshot."""

    lower: float
    middle: float
    upper: float
    sigma: float

    def position(self, price: float) -> float:
        """Where ``price`` sits in sigmas from the middle (the %b idea, centred)."""
        return 0.0 if self.sigma == 0 else (price - self.middle) / self.sigma


def bollinger(closes: Sequence[float], k: float) -> Bands:
    """Bands over all of ``closes`` (pass exactly the window)."""
    middle = mean(closes)
    sigma = pstdev(closes)
    return Bands(lower=middle - k * sigma, middle=middle, upper=middle + k * sigma, sigma=sigma)


class RollingBandsState(msgspec.Struct, kw_only=True):
    """A :class:`RollingBands`' window and running sums, exactly (the sums are not recomputed)."""

    window: list[float] = []
    anchor: float = 0.0
    sum: float = 0.0
    squares: float = 0.0
    since_exact: int = 0


class RollingBands:
    """Bollinger bands over a sliding window, O(1) per value instead of two passes over the window.

    Keeps the window's sum and sum of squares of ``x - anchor`` (the anchor is a recent value, so the
    squares stay small and the variance does not cancel catastrophically at BTC-sized prices), moved
    by the value that enters and the one that leaves. Rounding could still creep in over a long run,
    so every ``period`` updates the sums are recomputed exactly (``math.fsum``) around a fresh anchor:
    amortised O(1), and within ~1e-12 relative of :func:`bollinger` on the same window (tested).
    """

    def __init__(self, period: int, k: float) -> None:
        if period < 2:
            raise ValueError(f"period must be >= 2, got {period}")
        self.period = period
        self.k = k
        self.window: deque[float] = deque(maxlen=period)
        self._anchor = 0.0
        self._sum = 0.0
        self._squares = 0.0
        self._since_exact = 0

    def __len__(self) -> int:
        return len(self.window)

    def append(self, value: float) -> None:
        window, anchor = self.window, self._anchor
        if len(window) == self.period:
            gone = window[0] - anchor
            self._sum -= gone
            self._squares -= gone * gone
        window.append(value)
        d = value - anchor
        self._sum += d
        self._squares += d * d
        self._since_exact += 1
        if self._since_exact >= self.period:
            self._exact()

    def _exact(self) -> None:
        self._anchor = anchor = self.window[-1]
        self._sum = math.fsum(x - anchor for x in self.window)
        self._squares = math.fsum((x - anchor) ** 2 for x in self.window)
        self._since_exact = 0

    def state(self) -> RollingBandsState:
        return RollingBandsState(
            window=list(self.window),
            anchor=self._anchor,
            sum=self._sum,
            squares=self._squares,
            since_exact=self._since_exact,
        )

    def restore(self, state: RollingBandsState) -> None:
        """Take ``state`` back into a new instance. A state from a longer period (a params change) is
        refilled instead: its last ``period`` values, the sums computed afresh."""
        self.window.clear()
        if len(state.window) <= self.period and state.since_exact < self.period:
            self.window.extend(state.window)
            self._anchor, self._sum, self._squares = state.anchor, state.sum, state.squares
            self._since_exact = state.since_exact
            return
        self._anchor = self._sum = self._squares = 0.0
        self._since_exact = 0
        for value in state.window[-self.period :]:
            self.append(value)

    def bands(self) -> Bands:
        """The bands over the current window (which must be full)."""
        n = len(self.window)
        shift = self._sum / n
        middle = self._anchor + shift
        sigma = math.sqrt(max(0.0, self._squares / n - shift * shift))
        spread = self.k * sigma
        return Bands(middle - spread, middle, middle + spread, sigma)  # lower, middle, upper, sigma


class HoltState(msgspec.Struct, kw_only=True):
    """A :class:`Holt` model's level, trend, observation count and recent errors."""

    level: float = 0.0
    trend: float = 0.0
    count: int = 0
    errors: list[float] = []


class Holt:
    """Holt's linear (double exponential) smoothing, updated one observation at a time.

    With level l, trend b, smoothing factors alpha and beta::

        forecast  f_t     = l_{t-1} + b_{t-1}            (one step ahead)
        error     e_t     = y_t - f_t
        level     l_t     = alpha * y_t + (1 - alpha) * f_t
        trend     b_t     = beta * (l_t - l_{t-1}) + (1 - beta) * b_{t-1}
        h ahead   y^_t+h  = l_t + h * b_t

    Initialisation: after y_0, l = y_0 and no trend yet; after y_1, l = y_1 and b = y_1 - y_0. The
    recursion (and error recording) starts with y_2. The last ``window`` one-step errors give the
    residual sigma (RMS), which sizes the confidence band.
    """

    def __init__(self, alpha: float, beta: float, window: int = 30) -> None:
        if not (0.0 < alpha <= 1.0 and 0.0 < beta <= 1.0):
            raise ValueError(f"alpha and beta must be in (0, 1], got {alpha}, {beta}")
        self.alpha = alpha
        self.beta = beta
        self.level = 0.0
        self.trend = 0.0
        self.count = 0
        self.errors: deque[float] = deque(maxlen=window)
        # derived, not state: each error squared as it is recorded (the terms :func:`rms` sums), and
        # the horizon factor of :meth:`sigma_ahead` per horizon (constant for the model's alpha, beta)
        self._squares: deque[float] = deque(maxlen=window)
        self._spreads: dict[int, float] = {}

    def update(self, y: float) -> float | None:
        """Take one observation; returns its one-step-ahead error (None during initialisation)."""
        self.count += 1
        if self.count == 1:
            self.level = y
            return None
        if self.count == 2:
            self.trend = y - self.level
            self.level = y
            return None
        forecast = self.level + self.trend
        error = y - forecast
        previous = self.level
        self.level = self.alpha * y + (1.0 - self.alpha) * forecast
        self.trend = self.beta * (self.level - previous) + (1.0 - self.beta) * self.trend
        self.errors.append(error)
        self._squares.append(error * error)
        return error

    def state(self) -> HoltState:
        return HoltState(level=self.level, trend=self.trend, count=self.count, errors=list(self.errors))

    def restore(self, state: HoltState) -> None:
        """Take ``state`` back (the error window keeps this model's bound)."""
        self.level, self.trend, self.count = state.level, state.trend, state.count
        self.errors.clear()
        self.errors.extend(state.errors)
        self._squares.clear()
        self._squares.extend(e * e for e in self.errors)

    def forecast(self, horizon: int = 1) -> float:
        """``l + h * b``: the forecast ``horizon`` steps after the last observation."""
        return self.level + horizon * self.trend

    def sigma(self) -> float:
        """RMS of the recorded one-step errors (0 until there is one)."""
        squares = self._squares  # rms(self.errors), the squares kept: the same sum, the same float
        return math.sqrt(math.fsum(squares) / len(squares)) if squares else 0.0

    def sigma_ahead(self, horizon: int) -> float:
        """Sigma of the ``horizon``-step forecast error (Hyndman & Athanasopoulos, ETS(A,A,N))::

            sigma_h^2 = sigma^2 * (1 + (h - 1) * (a^2 + a*B*h + B^2 * h * (2h - 1) / 6)),  B = alpha * beta

        (B is the trend's smoothing in error-correction form). Uncertainty grows with the horizon
        because the trend estimate's error compounds, which a flat sigma would ignore.
        """
        spread = self._spreads.get(horizon)
        if spread is None:
            a, b, h = self.alpha, self.alpha * self.beta, horizon
            factor = 1 + (h - 1) * (a * a + a * b * h + b * b * h * (2 * h - 1) / 6)
            spread = self._spreads[horizon] = math.sqrt(factor)
        squares = self._squares  # self.sigma(), inline: the forecast bot asks on every candle
        return (math.sqrt(math.fsum(squares) / len(squares)) if squares else 0.0) * spread
