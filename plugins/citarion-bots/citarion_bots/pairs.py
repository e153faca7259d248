"""PAR (Spectrum), pairs trading: trade the spread of a cointegrated pair back to its mean.

For the pair ``y`` / ``x`` on one exchange and bar interval, each bar with both closes updates a
rolling Engle-Granger model (:class:`~citarion_bots.quant.pairs.PairModel`: OLS ``y = alpha + beta
x`` over ``lookback`` bars, refitted every ``refit_every``, its p-value from statsmodels' ``coint``).
The spread's z-score goes through :class:`~citarion_bots.quant.bands.BandRule`:

* gate: p-value <= ``pvalue_max`` on ``confirm_fits`` refits in a row (otherwise no new entry: a
  pair that is not cointegrated has no mean to come back to; see
  :class:`~citarion_bots.quant.bands.ConfirmedGate` for why one pass is not enough);
* ``z >= entry_z`` -> short the spread: SELL y, BUY beta units of x per unit of y (``beta < 0``:
  both the same side); ``z <= -entry_z`` -> long the spread, the reverse;
* exit when ``|z|`` is back within ``exit_z``; stop when it runs past ``stop_z`` (then no new entry
  until it is back within ``exit_z``). Exits close both legs at market from the positions the
  fills built.

Sizes: ``order_quote / y`` units of y and ``|beta|`` times as many of x. Both legs go out as MARKET
orders, together or not at all. Short legs need the exchange to allow shorting. Signals on entry:
one per leg (LONG/SHORT), confidence ``0.5 + 0.5 * (|z| - entry) / (stop - entry)``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle

from .desk import DeskParams
from .quant.bands import BandRule, ConfirmedGate
from .quant.pairs import PairModel, PairModelState
from .spread import SpreadDesk, SpreadState
from .sync import BarSync

__all__ = ["PairsBot", "PairsParams", "citarion_bot_types"]


class PairsParams(DeskParams):
    exchange: str = "binance"
    y: str = "BCHUSDT"
    x: str = "LTCUSDT"
    interval: str = "1m"
    lookback: int = Field(default=300, ge=30)
    refit_every: int = Field(default=20, ge=1)
    pvalue_max: float = Field(default=0.01, gt=0, lt=1)
    confirm_fits: int = Field(default=2, ge=1)
    max_lag: int | None = Field(default=4, ge=0)
    entry_z: float = Field(default=2.0, gt=0)
    exit_z: float = Field(default=0.5, ge=0)
    stop_z: float = Field(default=4.0, gt=0)
    order_quote: float = Field(default=200.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> PairsParams:
        if self.x == self.y:
            raise ValueError("x and y must be different symbols")
        if not self.exit_z < self.entry_z < self.stop_z:
            raise ValueError("need exit_z < entry_z < stop_z")
        return self


class PairsState(SpreadState, kw_only=True):
    """A desk's state plus the pair's model (window and fit), rule, gate, bar sync and last z."""

    model: PairModelState = msgspec.field(default_factory=PairModelState)


class PairsBot(SpreadDesk[PairsParams]):
    type_name = "pairs"
    description = "PAR: pairs trading; Engle-Granger hedge ratio and gate, spread z-score entries/exits/stops"
    State = PairsState
    model: PairModel

    def __init__(self, ctx: BotContext, params: PairsParams) -> None:
        super().__init__(ctx, params)
        p = self.params
        self.model = PairModel(p.lookback, p.refit_every, maxlag=p.max_lag)
        self.rule = BandRule(p.entry_z, p.exit_z, p.stop_z)
        self.sync = BarSync((p.y, p.x))
        self.gate = ConfirmedGate(p.confirm_fits)
        self.z: float | None = None

    async def on_candle(self, event: Event, candle: Candle) -> None:
        p = self.params
        if candle.exchange != p.exchange or candle.interval != p.interval:
            return
        row = self.sync.add(candle)
        if row is None:
            return
        time, (y_bar, x_bar) = row
        z = self.z = self.model.update(y_bar.close, x_bar.close)
        fit = self.model.fit
        if z is None or fit is None:
            return
        action = self.rule.step(z, self.gate.update(self.model.fits, fit.gate(p.pvalue_max)))
        if action in ("long", "short"):
            await self._enter(event, action, z, fit.beta, y_bar, x_bar, time)
        elif action is not None:
            for symbol in (p.y, p.x):
                await self.flatten(event, (p.exchange, symbol), time, f"pair {action} at z={z:+.2f}")
            self.counts["exits" if action == "exit" else "stops"] += 1

    async def _enter(
        self,
        event: Event,
        action: Literal["long", "short"],
        z: float,
        beta: float,
        y_bar: Candle,
        x_bar: Candle,
        time: int,
    ) -> None:
        p = self.params
        if not self.may_open(p.y) or not self.may_open(p.x):
            self.counts["held_back"] += 1
            self.rule.reset()
            return
        y_side: Literal["BUY", "SELL"] = "BUY" if action == "long" else "SELL"
        x_side: Literal["BUY", "SELL"] = ("SELL" if y_side == "BUY" else "BUY") if beta > 0 else y_side
        y_qty = p.order_quote / y_bar.close
        reason = f"pair {action} spread at z={z:+.2f} (beta {beta:.4f})"
        confidence = 0.5 + 0.5 * (abs(z) - p.entry_z) / (p.stop_z - p.entry_z)
        for bar, side, qty in ((y_bar, y_side, y_qty), (x_bar, x_side, abs(beta) * y_qty)):
            await self.signal(
                event, exchange=p.exchange, symbol=bar.symbol, direction="LONG" if side == "BUY" else "SHORT",
                confidence=confidence, time=time, entry=bar.close, reason=reason,
            )  # fmt: skip
            await self.submit(
                event, exchange=p.exchange, symbol=bar.symbol, side=side, quantity=qty, time=time,
                tag=f"entry:{bar.symbol}", reason=reason,
            )  # fmt: skip
        self.counts["entries"] += 1

    def stats(self) -> dict[str, Any]:
        fit = self.model.fit
        return {
            **super().stats(),
            "entries": self.counts["entries"],
            "exits": self.counts["exits"],
            "stops": self.counts["stops"],
            "beta": None if fit is None else round(fit.beta, 6),
            "pvalue": None if fit is None else round(fit.pvalue, 6),
            "z": None if self.z is None else round(self.z, 4),
            "side": self.rule.side,
            "gateOpen": self.gate.streak >= self.gate.confirm,
            "droppedBars": self.sync.dropped,
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [PairsBot]
