"""RNG (EDGE), range trading: buy near support, sell near resistance, stand aside when it breaks.

Range detection over the previous ``lookback`` bars (the current bar is what gets judged against it):

    support S = min(low)     resistance R = max(high)     width W = R - S
    a range exists when  min_width_pct <= W / S <= max_width_pct  and both edges were tested: at
    least ``min_touches`` bars with low <= S + zone * W and as many with high >= R - zone * W
    (zone = ``entry_zone``).

Then, for the current close c:

* c > R * (1 + break_pct) or c < S * (1 - break_pct): the range broke. No signal (a range view is
  void outside the range); on a downside break held inventory is sold as a stop-out;
* c <= S + zone * W: near support -> LONG (stop under S, target R), buy ``order_quote``;
* c >= R - zone * W: near resistance -> SHORT (stop over R, target S), sell what is held.

A signal fires when the close enters an edge zone, not on every bar it stays there.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle

from .common import SeriesKey
from .strategy import StrategyBot, StrategyState, TradingParams

__all__ = ["Range", "RangeBot", "RangeParams", "citarion_bot_types", "detect_range"]

Zone = Literal["support", "middle", "resistance", "broken", "none"]


class RangeParams(TradingParams):
    lookback: int = Field(default=30, ge=3)
    min_width_pct: float = Field(default=0.004, ge=0)
    max_width_pct: float = Field(default=0.04, gt=0)
    entry_zone: float = Field(default=0.2, gt=0, lt=0.5)
    break_pct: float = Field(default=0.002, ge=0, lt=1)
    min_touches: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _widths(self) -> RangeParams:
        if self.min_width_pct > self.max_width_pct:
            raise ValueError("min_width_pct must be <= max_width_pct")
        return self


@dataclass(frozen=True, slots=True)
class Range:
    support: float
    resistance: float

    @property
    def width(self) -> float:
        return self.resistance - self.support


def detect_range(
    highs: Sequence[float],
    lows: Sequence[float],
    *,
    min_width_pct: float,
    max_width_pct: float,
    zone: float,
    min_touches: int,
) -> Range | None:
    """The trading range of these bars, or None when they do not form one (see the module doc)."""
    if not highs or len(highs) != len(lows):
        return None
    return _sorted_range(sorted(highs), sorted(lows), min_width_pct, max_width_pct, zone, min_touches)


def _sorted_range(
    highs: list[float],
    lows: list[float],
    min_width_pct: float,
    max_width_pct: float,
    zone: float,
    min_touches: int,
    last: Range | None = None,
) -> Range | None:
    """:func:`detect_range` on the windows sorted ascending (non-empty, equally long); ``last`` itself
    when the range found has its edges (a range usually holds for many bars, and it is frozen, so the
    bot's stored one is shared instead of built again: a frozen dataclass sets each field through
    ``object.__setattr__``).

    Sorted, the extremes are the ends, and "at least n lows <= floor" is "the n-th lowest low <=
    floor" (the same answer as counting, in one comparison): the bot keeps its windows sorted as
    bars come and go, so a candle costs two bisections instead of four scans of the window.
    """
    support, resistance = lows[0], highs[-1]
    width = resistance - support
    if not min_width_pct <= width / support <= max_width_pct:
        return None
    if min_touches > len(lows):
        return None
    floor, ceiling = support + zone * width, resistance - zone * width
    if lows[min_touches - 1] > floor or highs[-min_touches] < ceiling:
        return None
    if last is not None and last.support == support and last.resistance == resistance:
        return last
    return Range(support, resistance)


class RangeState(StrategyState, kw_only=True):
    """A strategy's state plus each series' high/low windows, last range and zone."""

    highs: list[tuple[SeriesKey, list[float]]] = []
    lows: list[tuple[SeriesKey, list[float]]] = []
    ranges: list[tuple[SeriesKey, Range | None]] = []
    zones: list[tuple[SeriesKey, Zone]] = []


class RangeBot(StrategyBot[RangeParams]):
    type_name = "range"
    description = "RNG: range trading; buys near support, sells near resistance, silent on breakouts"
    State = RangeState

    def __init__(self, ctx: BotContext, params: RangeParams) -> None:
        super().__init__(ctx, params)
        self.highs: dict[SeriesKey, deque[float]] = {}
        self.lows: dict[SeriesKey, deque[float]] = {}
        self.ranges: dict[SeriesKey, Range | None] = {}
        self.zones: dict[SeriesKey, Zone] = {}
        #: Each series' windows sorted ascending, kept beside the deques (derived, not state).
        self._sorted: dict[SeriesKey, tuple[list[float], list[float]]] = {}
        # the detection's params, read once (a params attribute costs about twice a plain one)
        self._detect = (
            params.lookback,
            params.min_width_pct,
            params.max_width_pct,
            params.entry_zone,
            params.min_touches,
        )
        self._break_pct = params.break_pct  # read on every candle with a range

    def state_fields(self) -> dict[str, Any]:
        return {
            **super().state_fields(),
            "highs": [(key, list(window)) for key, window in self.highs.items()],
            "lows": [(key, list(window)) for key, window in self.lows.items()],
            "ranges": list(self.ranges.items()),
            "zones": list(self.zones.items()),
        }

    def restore(self, state: Any) -> None:
        super().restore(state)
        lookback = self.params.lookback
        self.highs = {key: deque(window, maxlen=lookback) for key, window in state.highs}
        self.lows = {key: deque(window, maxlen=lookback) for key, window in state.lows}
        self.ranges = dict(state.ranges)
        self.zones = dict(state.zones)
        self._sorted = {}

    async def on_candle(self, event: Event, candle: Candle) -> None:
        key, close = (candle.exchange, candle.symbol), candle.close
        lookback, min_width, max_width, entry_zone, min_touches = self._detect
        highs, lows = self.highs.get(key), self.lows.get(key)  # not setdefault: a deque per candle
        if highs is None:
            highs = self.highs[key] = deque(maxlen=lookback)
        if lows is None:
            lows = self.lows[key] = deque(maxlen=lookback)
        ordered = self._sorted.get(key)
        if ordered is None:
            ordered = self._sorted[key] = (sorted(highs), sorted(lows))
        sorted_highs, sorted_lows = ordered
        found = None
        ranges = self.ranges
        if len(highs) == lookback == len(lows):
            found = _sorted_range(
                sorted_highs, sorted_lows, min_width, max_width, entry_zone, min_touches, ranges.get(key)
            )
        ranges[key] = found
        _slide(highs, sorted_highs, candle.high)
        _slide(lows, sorted_lows, candle.low)
        zone: Zone = "none"
        if found is not None:  # where the close stands (every candle with a range: no call)
            support, resistance, break_pct = found.support, found.resistance, self._break_pct
            width = resistance - support
            if close > resistance * (1 + break_pct) or close < support * (1 - break_pct):
                zone = "broken"
            elif close <= support + entry_zone * width:
                zone = "support"
            elif close >= resistance - entry_zone * width:
                zone = "resistance"
            else:
                zone = "middle"
        previous = self.zones.get(key, "none")
        self.zones[key] = zone
        if found is None or zone == previous:
            return
        p = self.params
        if zone == "broken":
            self.counts["breaks"] += 1
            if close < found.support and self.available(key) > 0:
                await self.order(
                    event, candle, "SELL", self.available(key), reason="range broke down: stop-out"
                )
        elif zone == "support":
            await self.signal(
                event,
                candle,
                "LONG",
                self._confidence(found, close),
                entry=close,
                stop=found.support * (1 - p.break_pct),
                take=found.resistance,
                reason=f"near support of range {found.support:g}-{found.resistance:g}",
            )
            await self.order(
                event, candle, "BUY", self.buy_quantity(close, p.order_quote), reason="range support"
            )
        elif zone == "resistance":
            await self.signal(
                event,
                candle,
                "SHORT",
                self._confidence(found, close),
                entry=close,
                stop=found.resistance * (1 + p.break_pct),
                take=found.support,
                reason=f"near resistance of range {found.support:g}-{found.resistance:g}",
            )
            if self.available(key) > 0:
                await self.order(event, candle, "SELL", self.available(key), reason="range resistance")

    def _confidence(self, found: Range, close: float) -> float:
        """0.5 at the inner edge of the entry zone, up to 0.9 at the support/resistance itself."""
        p, w = self.params, found.width
        distance = min(abs(close - found.support), abs(found.resistance - close)) / (p.entry_zone * w)
        return 0.5 + 0.4 * max(0.0, 1.0 - distance)


def _slide(window: deque[float], ordered: list[float], value: float) -> None:
    """Append ``value`` to ``window`` and keep ``ordered`` (the window sorted) in step: the value that
    leaves a full window is taken out by bisection (any equal one will do), the new one inserted."""
    if len(window) == window.maxlen:
        del ordered[bisect_left(ordered, window[0])]
    window.append(value)
    insort(ordered, value)


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [RangeBot]
