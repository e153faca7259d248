"""FCS (Vision), forecasting: Holt's double exponential smoothing with a residual-sigma band.

Per series, :class:`~citarion_bots.indicators.Holt` smooths the closes (level and trend, factors
``alpha`` and ``beta``) and forecasts ``horizon`` bars ahead: f = level + horizon * trend. The band
is ``band_z`` times the h-step forecast sigma (from the RMS of the last ``residual_window``
one-step errors, widened for the horizon, see ``Holt.sigma_ahead``). With deviation d = f - close:

* d > band: the model expects a rise beyond noise -> LONG (target f, stop close - band);
* d < -band: SHORT (target f, stop close + band);
* otherwise no view.

A signal fires when the view changes (none -> LONG, LONG -> SHORT...), after ``warmup`` bars.
Confidence = 0.5 + 0.5 * min(1, (|d| - band) / band). Vision forecasts; by default it leaves the
trading to LOGOS (``trade = false``), but it can act on its own signals.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle

from .common import SeriesKey
from .indicators import Holt, HoltState
from .strategy import StrategyBot, StrategyState, TradingParams

__all__ = ["ForecastBot", "ForecastParams", "citarion_bot_types"]

View = Literal["LONG", "SHORT"] | None


class ForecastParams(TradingParams):
    trade: bool = False
    alpha: float = Field(default=0.5, gt=0, le=1)
    beta: float = Field(default=0.3, gt=0, le=1)
    horizon: int = Field(default=5, ge=1)
    band_z: float = Field(default=2.0, gt=0)
    residual_window: int = Field(default=30, ge=2)
    warmup: int = Field(default=20, ge=3)


class ForecastState(StrategyState, kw_only=True):
    """A strategy's state plus each series' Holt model, current view and last forecast and band."""

    models: list[tuple[SeriesKey, HoltState]] = []
    views: list[tuple[SeriesKey, View]] = []
    last: list[tuple[SeriesKey, tuple[float, float]]] = []


class ForecastBot(StrategyBot[ForecastParams]):
    type_name = "forecast"
    description = "FCS: Holt double exponential smoothing forecast; signals when it leaves the sigma band"
    State = ForecastState

    def __init__(self, ctx: BotContext, params: ForecastParams) -> None:
        super().__init__(ctx, params)
        self.models: dict[SeriesKey, Holt] = {}
        self.views: dict[SeriesKey, View] = {}
        self.last: dict[SeriesKey, tuple[float, float]] = {}  # (forecast, band) after the last bar
        self._band = (params.warmup, params.horizon, params.band_z)  # read once: params are slow

    def state_fields(self) -> dict[str, Any]:
        return {
            **super().state_fields(),
            "models": [(key, model.state()) for key, model in self.models.items()],
            "views": list(self.views.items()),
            "last": list(self.last.items()),
        }

    def restore(self, state: Any) -> None:
        super().restore(state)
        p = self.params
        self.models = {}
        for key, stored in state.models:
            model = self.models[key] = Holt(p.alpha, p.beta, p.residual_window)
            model.restore(stored)
        self.views = dict(state.views)
        self.last = dict(state.last)

    async def on_candle(self, event: Event, candle: Candle) -> None:
        key, close, p = (candle.exchange, candle.symbol), candle.close, self.params
        model = self.models.get(key)
        if model is None:
            model = self.models[key] = Holt(p.alpha, p.beta, p.residual_window)
        model.update(close)
        warmup, horizon, band_z = self._band
        if model.count < warmup or not model.errors:
            return
        forecast = model.level + horizon * model.trend  # model.forecast(horizon), without the call
        band = band_z * model.sigma_ahead(horizon)
        self.last[key] = (forecast, band)
        deviation = forecast - close
        view: View = None
        if band > 0 and deviation > band:
            view = "LONG"
        elif band > 0 and deviation < -band:
            view = "SHORT"
        previous = self.views.get(key)
        self.views[key] = view
        if view is None or view == previous:
            return
        confidence = 0.5 + 0.5 * min(1.0, (abs(deviation) - band) / band)
        reason = f"Holt {p.horizon}-bar forecast {forecast:.6g} vs close {close:.6g} (band +/-{band:.3g})"
        stop = close - band if view == "LONG" else close + band
        await self.signal(
            event, candle, view, confidence, entry=close, stop=stop, take=forecast, reason=reason
        )
        if view == "LONG":
            await self.order(event, candle, "BUY", self.buy_quantity(close, p.order_quote), reason=reason)
        elif self.available(key) > 0:
            await self.order(event, candle, "SELL", self.available(key), reason=reason)


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [ForecastBot]
