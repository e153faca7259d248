"""MRB (Equilibrist), mean-reversion basket: trade a Johansen-cointegrated basket back to its mean.

For ``symbols`` on one exchange and interval, each bar with every close updates a rolling Johansen
model (:class:`~citarion_bots.quant.johansen.BasketModel`: statsmodels' ``coint_johansen`` over
``lookback`` bars, refitted every ``refit_every``). Its weights are the first eigenvector scaled to a
first weight of 1; the basket's value ``w . p`` gets a z-score against the window.

* gate: rank >= 1 at ``significance`` on ``confirm_fits`` refits in a row; rank 0 means no
  stationary combination exists: no new entry;
* :class:`~citarion_bots.quant.bands.BandRule` on z: ``z >= entry_z`` -> short the basket (SELL the
  legs with a positive weight, BUY the negative ones), ``z <= -entry_z`` -> long it; exit within
  ``exit_z``, stop beyond ``stop_z`` (then locked out until back within ``exit_z``).

Sizes: ``units = order_quote / sum(|w_i| p_i)``, leg i trades ``units * |w_i|`` (so the basket's
gross notional is ``order_quote``). Legs go out as MARKET orders, all or none; exits close every leg
from the positions the fills built. Signals on entry, one per leg.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import msgspec
from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle

from .desk import DeskParams
from .quant.bands import BandRule, ConfirmedGate
from .quant.johansen import BasketFit, BasketModel, BasketModelState
from .spread import SpreadDesk, SpreadState
from .sync import BarSync

__all__ = ["BasketBot", "BasketParams", "citarion_bot_types"]


class BasketParams(DeskParams):
    exchange: str = "binance"
    symbols: list[str] = Field(default_factory=lambda: ["SOLUSDT", "AVAXUSDT", "DOTUSDT"], min_length=2)
    interval: str = "1m"
    lookback: int = Field(default=300, ge=30)
    refit_every: int = Field(default=20, ge=1)
    significance: float = 0.01
    confirm_fits: int = Field(default=3, ge=1)
    entry_z: float = Field(default=2.0, gt=0)
    exit_z: float = Field(default=0.5, ge=0)
    stop_z: float = Field(default=4.0, gt=0)
    order_quote: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> BasketParams:
        if len(set(self.symbols)) != len(self.symbols):
            raise ValueError("symbols must not repeat")
        if not self.exit_z < self.entry_z < self.stop_z:
            raise ValueError("need exit_z < entry_z < stop_z")
        if self.significance not in (0.1, 0.05, 0.01):
            raise ValueError("significance must be 0.1, 0.05 or 0.01 (Johansen's tabulated levels)")
        return self


class BasketState(SpreadState, kw_only=True):
    """A desk's state plus the basket's model (rows and fit), rule, gate, bar sync and last z."""

    model: BasketModelState = msgspec.field(default_factory=BasketModelState)


class BasketBot(SpreadDesk[BasketParams]):
    type_name = "basket"
    description = "MRB: mean-reversion basket; Johansen rank gate and weights, basket z-score across its legs"
    State = BasketState
    model: BasketModel

    def __init__(self, ctx: BotContext, params: BasketParams) -> None:
        super().__init__(ctx, params)
        p = self.params
        self.model = BasketModel(p.lookback, p.refit_every, significance=p.significance)
        self.rule = BandRule(p.entry_z, p.exit_z, p.stop_z)
        self.gate = ConfirmedGate(p.confirm_fits)
        self.sync = BarSync(p.symbols)
        self.z: float | None = None

    async def on_candle(self, event: Event, candle: Candle) -> None:
        p = self.params
        if candle.exchange != p.exchange or candle.interval != p.interval:
            return
        row = self.sync.add(candle)
        if row is None:
            return
        time, bars = row
        closes = [b.close for b in bars]
        z = self.z = self.model.update(closes)
        fit = self.model.fit
        if z is None or fit is None:
            return
        action = self.rule.step(z, self.gate.update(self.model.fits, fit.gate))
        if action in ("long", "short"):
            await self._enter(event, action, z, fit, closes, time)
        elif action is not None:
            for symbol in p.symbols:
                await self.flatten(event, (p.exchange, symbol), time, f"basket {action} at z={z:+.2f}")
            self.counts["exits" if action == "exit" else "stops"] += 1

    async def _enter(
        self,
        event: Event,
        action: Literal["long", "short"],
        z: float,
        fit: BasketFit,
        closes: list[float],
        time: int,
    ) -> None:
        p = self.params
        if not all(self.may_open(s) for s in p.symbols):
            self.counts["held_back"] += 1
            self.rule.reset()
            return
        gross = math.fsum(abs(w) * c for w, c in zip(fit.weights, closes, strict=True))
        units = p.order_quote / gross
        weights = ", ".join(f"{w:+.3f}" for w in fit.weights)
        reason = f"basket {action} at z={z:+.2f} (weights {weights}, rank {fit.rank})"
        confidence = 0.5 + 0.5 * (abs(z) - p.entry_z) / (p.stop_z - p.entry_z)
        for symbol, weight, close in zip(p.symbols, fit.weights, closes, strict=True):
            buy = (weight > 0) == (action == "long")
            await self.signal(
                event, exchange=p.exchange, symbol=symbol, direction="LONG" if buy else "SHORT",
                confidence=confidence, time=time, entry=close, reason=reason,
            )  # fmt: skip
            await self.submit(
                event, exchange=p.exchange, symbol=symbol, side="BUY" if buy else "SELL",
                quantity=units * abs(weight), time=time, tag=f"entry:{symbol}", reason=reason,
            )  # fmt: skip
        self.counts["entries"] += 1

    def stats(self) -> dict[str, Any]:
        fit = self.model.fit
        return {
            **super().stats(),
            "entries": self.counts["entries"],
            "exits": self.counts["exits"],
            "stops": self.counts["stops"],
            "rank": None if fit is None else fit.rank,
            "weights": None if fit is None else [round(w, 6) for w in fit.weights],
            "z": None if self.z is None else round(self.z, 4),
            "side": self.rule.side,
            "droppedBars": self.sync.dropped,
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [BasketBot]
