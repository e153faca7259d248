"""STA (Reed), statistical trading: fade deviations of a mean-reverting price from its equilibrium.

Per series (``symbols`` / ``exchanges``, bars of ``interval``), each close updates a rolling
Ornstein-Uhlenbeck fit (:class:`~citarion_bots.quant.ou.OUModel`: AR(1) OLS over ``lookback`` bars,
refitted every ``refit_every``): theta (per bar), the equilibrium mu and the equilibrium sigma.

* gate: statsmodels' ADF rejects a unit root at ``pvalue_max`` (0 < b < 1), the half-life
  ``ln 2 / theta`` is within [``min_half_life``, ``max_half_life``] bars, on ``confirm_fits``
  refits in a row. A random walk keeps it closed;
* the score is ``(close - mu) / sigma_eq`` ("k equilibrium sigmas"), through
  :class:`~citarion_bots.quant.bands.BandRule`: ``<= -entry_k`` -> LONG (buy ``order_quote``),
  ``>= entry_k`` -> SHORT (sell short, only with ``allow_short``; otherwise the signal alone);
  exit within ``exit_k``, stop beyond ``stop_k``.

Signals: entry at the close, take profit at mu, stop at ``mu -/+ stop_k * sigma_eq``, confidence
``0.5 + 0.5 * (|k| - entry_k) / (stop_k - entry_k)``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle

from .common import SeriesKey
from .desk import DeskBot, DeskParams, DeskState
from .quant.bands import BandRule, BandRuleState, ConfirmedGate, GateState
from .quant.ou import OUFit, OUModel, OUModelState

__all__ = ["StatArbBot", "StatArbParams", "citarion_bot_types"]


class StatArbParams(DeskParams):
    symbols: list[str] = []
    exchanges: list[str] = []
    interval: str = "1m"
    lookback: int = Field(default=300, ge=20)
    refit_every: int = Field(default=20, ge=1)
    pvalue_max: float = Field(default=0.01, gt=0, lt=1)
    max_lag: int | None = Field(default=4, ge=0)
    confirm_fits: int = Field(default=2, ge=1)
    min_half_life: float = Field(default=1.0, ge=0)
    max_half_life: float = Field(default=60.0, gt=0)
    entry_k: float = Field(default=2.0, gt=0)
    exit_k: float = Field(default=0.5, ge=0)
    stop_k: float = Field(default=4.0, gt=0)
    order_quote: float = Field(default=100.0, gt=0)
    allow_short: bool = False

    @model_validator(mode="after")
    def _check(self) -> StatArbParams:
        if not self.exit_k < self.entry_k < self.stop_k:
            raise ValueError("need exit_k < entry_k < stop_k")
        if self.min_half_life > self.max_half_life:
            raise ValueError("need min_half_life <= max_half_life")
        return self


class _State:
    def __init__(self, p: StatArbParams) -> None:
        self.model = OUModel(p.lookback, p.refit_every, maxlag=p.max_lag)
        self.rule = BandRule(p.entry_k, p.exit_k, p.stop_k)
        self.gate = ConfirmedGate(p.confirm_fits)
        self.z: float | None = None


class SeriesState(msgspec.Struct, kw_only=True):
    """One series' OU model (window and fit), rule, gate and last score."""

    model: OUModelState = msgspec.field(default_factory=OUModelState)
    rule: BandRuleState = ("flat", False)
    gate: GateState = (0, -1)
    z: float | None = None


class StatArbState(DeskState, kw_only=True):
    """A desk's state plus each series' model, rule and gate."""

    series: list[tuple[SeriesKey, SeriesState]] = []


class StatArbBot(DeskBot[StatArbParams]):
    type_name = "stat-arb"
    description = (
        "STA: statistical trading; OU fit by AR(1) behind an ADF gate, entries at k equilibrium sigmas"
    )
    State = StatArbState

    def __init__(self, ctx: BotContext, params: StatArbParams) -> None:
        super().__init__(ctx, params)
        self.series: dict[SeriesKey, _State] = {}

    def state_fields(self) -> dict[str, Any]:
        series = [
            (key, SeriesState(model=s.model.state(), rule=s.rule.state(), gate=s.gate.state(), z=s.z))
            for key, s in self.series.items()
        ]
        return {**super().state_fields(), "series": series}

    def restore(self, state: Any) -> None:
        super().restore(state)
        self.series = {}
        for key, stored in state.series:
            series = self.series[key] = _State(self.params)
            series.model.restore(stored.model)
            series.rule.restore(stored.rule)
            series.gate.restore(stored.gate)
            series.z = stored.z

    def wants(self, candle: Candle) -> bool:
        p = self.params
        return (
            candle.interval == p.interval
            and (not p.symbols or candle.symbol in p.symbols)
            and (not p.exchanges or candle.exchange in p.exchanges)
        )

    def gate_passes(self, fit: OUFit) -> bool:
        p = self.params
        return fit.gate(p.pvalue_max) and p.min_half_life <= fit.half_life <= p.max_half_life

    async def on_candle(self, event: Event, candle: Candle) -> None:
        if not self.wants(candle):
            return
        key = (candle.exchange, candle.symbol)
        state = self.series.get(key)
        if state is None:
            state = self.series[key] = _State(self.params)
        z = state.z = state.model.update(candle.close)
        fit = state.model.fit
        if z is None or fit is None:
            return
        action = state.rule.step(z, state.gate.update(state.model.fits, self.gate_passes(fit)))
        if action in ("long", "short"):
            await self._enter(event, candle, action == "long", z, fit)
        elif action is not None:
            await self.flatten(event, key, candle.open_time, f"OU {action} at {z:+.2f} sigmas")
            self.counts["exits" if action == "exit" else "stops"] += 1

    async def _enter(self, event: Event, candle: Candle, long: bool, z: float, fit: OUFit) -> None:
        p, close = self.params, candle.close
        reason = (
            f"{z:+.2f} equilibrium sigmas from mu {fit.mu:.6g} "
            f"(theta {fit.theta:.4f}/bar, half-life {fit.half_life:.1f} bars)"
        )
        stop = fit.mu - p.stop_k * fit.sigma_eq if long else fit.mu + p.stop_k * fit.sigma_eq
        await self.signal(
            event, exchange=candle.exchange, symbol=candle.symbol, direction="LONG" if long else "SHORT",
            confidence=0.5 + 0.5 * (abs(z) - p.entry_k) / (p.stop_k - p.entry_k), time=candle.open_time,
            entry=close, take=fit.mu, stop=stop, reason=reason,
        )  # fmt: skip
        if long or p.allow_short:
            await self.submit(
                event, exchange=candle.exchange, symbol=candle.symbol, side="BUY" if long else "SELL",
                quantity=p.order_quote / close, time=candle.open_time, tag="entry", reason=reason,
            )  # fmt: skip
        self.counts["entries"] += 1

    def stats(self) -> dict[str, Any]:
        fits = {}
        for (exchange, symbol), state in sorted(self.series.items()):
            fit = state.model.fit
            if fit is not None:
                fits[f"{exchange}:{symbol}"] = {
                    "theta": round(fit.theta, 6),
                    "mu": round(fit.mu, 6),
                    "sigmaEq": round(fit.sigma_eq, 6),
                    "adfPvalue": round(fit.adf_pvalue, 6),
                    "gateOpen": state.gate.streak >= state.gate.confirm,
                }
        return {
            **super().stats(),
            "entries": self.counts["entries"],
            "exits": self.counts["exits"],
            "stops": self.counts["stops"],
            "fits": fits,
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [StatArbBot]
