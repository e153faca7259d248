"""BBB (BAND), Bollinger bands: trade closes outside SMA +/- k * sigma over the last N closes.

Bands over the window of the last ``period`` closes (the current one included)::

    middle = SMA_N = sum(c) / N          sigma = sqrt(sum((c - middle)^2) / N)   (population)
    upper  = middle + k * sigma          lower = middle - k * sigma

A signal fires on the bar a close first leaves the bands (not on every bar it stays out, which would
repeat one view):

* ``reversion`` (default): below the lower band -> LONG (target the middle, stop one sigma under
  the close); above the upper band -> SHORT (target the middle). Held inventory is sold when the
  close is back at the middle (``exit_at_middle``);
* ``breakout``: the opposite reading, a close outside the band starts a move: above -> LONG, below
  -> SHORT; held inventory is sold when the close falls back under the middle.

Confidence grows with how far outside: 0.5 + 0.25 * (|z| - k), capped at 1, z = (close - middle) /
sigma.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle

from .common import SeriesKey
from .indicators import Bands, RollingBands, RollingBandsState
from .strategy import StrategyBot, StrategyState, TradingParams

__all__ = ["BollingerBot", "BollingerParams", "citarion_bot_types"]

Zone = Literal["below", "inside", "above"]


class BollingerParams(TradingParams):
    period: int = Field(default=20, ge=2)
    k: float = Field(default=2.0, gt=0)
    mode: Literal["reversion", "breakout"] = "reversion"
    exit_at_middle: bool = True


class BollingerState(StrategyState, kw_only=True):
    """A strategy's state plus each series' rolling window (with its sums), last bands and zone."""

    closes: list[tuple[SeriesKey, RollingBandsState]] = []
    bands: list[tuple[SeriesKey, Bands]] = []
    zones: list[tuple[SeriesKey, Zone]] = []


class BollingerBot(StrategyBot[BollingerParams]):
    type_name = "bollinger"
    description = "BBB: Bollinger bands (SMA +/- k sigma); mean-reversion or breakout signals"
    State = BollingerState

    def __init__(self, ctx: BotContext, params: BollingerParams) -> None:
        super().__init__(ctx, params)
        self.closes: dict[SeriesKey, RollingBands] = {}
        self.bands: dict[SeriesKey, Bands] = {}
        self.zones: dict[SeriesKey, Zone] = {}
        # read once per candle (params attributes are slow): the window, the exit rule and its side
        self._rule = (params.period, params.exit_at_middle, params.mode == "reversion")

    def state_fields(self) -> dict[str, Any]:
        return {
            **super().state_fields(),
            "closes": [(key, rolling.state()) for key, rolling in self.closes.items()],
            "bands": list(self.bands.items()),
            "zones": list(self.zones.items()),
        }

    def restore(self, state: Any) -> None:
        super().restore(state)
        p = self.params
        self.closes = {}
        for key, stored in state.closes:
            rolling = self.closes[key] = RollingBands(p.period, p.k)
            rolling.restore(stored)
        self.bands = dict(state.bands)
        self.zones = dict(state.zones)

    async def on_candle(self, event: Event, candle: Candle) -> None:
        key, close, p = (candle.exchange, candle.symbol), candle.close, self.params
        closes = self.closes.get(key)
        if closes is None:
            closes = self.closes[key] = RollingBands(p.period, p.k)
        closes.append(close)
        period, exit_at_middle, reversion = self._rule
        if len(closes) < period:
            return
        bands = self.bands[key] = closes.bands()
        zone: Zone = "below" if close < bands.lower else "above" if close > bands.upper else "inside"
        previous = self.zones.get(key, "inside")
        self.zones[key] = zone
        if zone != "inside" and zone != previous:
            await self._enter(event, candle, bands, zone)
        elif exit_at_middle and self.available(key) > 0:
            back = close >= bands.middle if reversion else close < bands.middle
            if back:
                await self.order(event, candle, "SELL", self.available(key), reason="back at the middle band")

    async def _enter(self, event: Event, candle: Candle, bands: Bands, zone: Zone) -> None:
        close, p = candle.close, self.params
        z = abs(bands.position(close))
        confidence = min(1.0, 0.5 + 0.25 * max(0.0, z - p.k))
        long = (zone == "below") == (p.mode == "reversion")
        if p.mode == "reversion":
            take = bands.middle
            stop = close - bands.sigma if long else close + bands.sigma
        else:
            take = close + (close - bands.middle)
            stop = bands.middle
        reason = f"close {zone} the {p.period}-bar bands ({p.mode}, z={bands.position(close):+.2f})"
        await self.signal(
            event,
            candle,
            "LONG" if long else "SHORT",
            confidence,
            entry=close,
            stop=stop,
            take=take,
            reason=reason,
        )
        key = (candle.exchange, candle.symbol)
        if long:
            await self.order(event, candle, "BUY", self.buy_quantity(close, p.order_quote), reason=reason)
        elif self.available(key) > 0:
            await self.order(event, candle, "SELL", self.available(key), reason=reason)


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [BollingerBot]
