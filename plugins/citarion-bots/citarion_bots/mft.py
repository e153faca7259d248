"""MFT (Selene), medium frequency: Donchian / turtle breakouts on intraday bars, ATR stops and sizes.

Bars of ``interval`` (default 15m; with ``aggregate``, built from shorter candles, a bar being
complete when its last constituent closes). Per series, on each bar (:mod:`citarion_bots.quant.breakout`):

1. Wilder's ATR over ``atr_period`` bars takes the bar in;
2. in a long: exit at market when the close is at or under the stop (entry - ``stop_atr`` x ATR at
   entry) or under the lowest low of the previous ``exit_channel`` bars (short: mirrored);
3. flat: a close above the highest high of the previous ``channel`` bars (the bar itself excluded),
   when the previous bar's close was not (a *new* breakout: one view per move), is a LONG of
   ``units = risk_quote / (stop_atr x ATR)`` (so the stop loses ``risk_quote``), capped at
   ``max_quote`` of notional; a new close under the lowest low is a SHORT (sold only with
   ``allow_short``; otherwise the signal alone);
4. the bar joins both channels.

So on a flat series that starts rising, the first entry is on the first bar whose close exceeds the
N-bar high. Signals: entry = close, stop = the ATR stop, confidence ``0.5 + 0.5 x min(1, (close -
channel) / ATR)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle

from .common import SeriesKey, interval_ms
from .desk import DeskBot, DeskParams, DeskState, Working
from .quant.breakout import ATR, Donchian, turtle_units
from .sync import IntervalBars, IntervalBarsState

__all__ = ["BreakoutBot", "BreakoutParams", "citarion_bot_types"]


class BreakoutParams(DeskParams):
    symbols: list[str] = []
    exchanges: list[str] = []
    interval: str = "15m"
    aggregate: bool = True
    channel: int = Field(default=20, ge=1)
    exit_channel: int = Field(default=10, ge=1)
    atr_period: int = Field(default=20, ge=1)
    stop_atr: float = Field(default=2.0, gt=0)
    risk_quote: float = Field(default=50.0, gt=0)
    max_quote: float = Field(default=1_000.0, gt=0)
    allow_short: bool = False

    @model_validator(mode="after")
    def _check(self) -> BreakoutParams:
        interval_ms(self.interval)
        return self


@dataclass(slots=True)
class _Series:
    entry: Donchian
    exit: Donchian
    atr: ATR
    side: Literal["flat", "long", "short"] = "flat"
    breaking: Literal["long", "short"] | None = None  # the previous bar's breakout, if any
    stop: float = 0.0
    entries: list[int] = field(default_factory=list)


class SeriesState(msgspec.Struct, kw_only=True):
    """One series' channels (highs, lows), ATR (average, seed, previous close), side and stop."""

    entry: tuple[list[float], list[float]] = msgspec.field(default_factory=lambda: ([], []))
    exit: tuple[list[float], list[float]] = msgspec.field(default_factory=lambda: ([], []))
    atr: tuple[float | None, list[float], float | None] = msgspec.field(
        default_factory=lambda: (None, [], None)
    )
    side: Literal["flat", "long", "short"] = "flat"
    breaking: Literal["long", "short"] | None = None
    stop: float = 0.0
    entries: list[int] = []


class BreakoutState(DeskState, kw_only=True):
    """A desk's state plus the bar builder's and each series'."""

    bars: IntervalBarsState = (0, None)
    series: list[tuple[SeriesKey, SeriesState]] = []


class BreakoutBot(DeskBot[BreakoutParams]):
    type_name = "mft-breakout"
    description = "MFT: Donchian/turtle breakouts on intraday bars with ATR stops and ATR-sized positions"
    State = BreakoutState

    def __init__(self, ctx: BotContext, params: BreakoutParams) -> None:
        super().__init__(ctx, params)
        self.bars = IntervalBars(self.params.interval, self.params.aggregate)
        self.series: dict[SeriesKey, _Series] = {}

    def state_fields(self) -> dict[str, Any]:
        series = [
            (
                key,
                SeriesState(
                    entry=s.entry.state(),
                    exit=s.exit.state(),
                    atr=s.atr.state(),
                    side=s.side,
                    breaking=s.breaking,
                    stop=s.stop,
                    entries=s.entries,
                ),
            )
            for key, s in self.series.items()
        ]
        return {**super().state_fields(), "bars": self.bars.state(), "series": series}

    def restore(self, state: Any) -> None:
        super().restore(state)
        p = self.params
        self.bars.restore(state.bars)
        self.series = {}
        for key, stored in state.series:
            series = self.series[key] = _Series(
                Donchian(p.channel), Donchian(p.exit_channel), ATR(p.atr_period)
            )
            series.entry.restore(stored.entry)
            series.exit.restore(stored.exit)
            series.atr.restore(stored.atr)
            series.side, series.breaking, series.stop = stored.side, stored.breaking, stored.stop
            series.entries = list(stored.entries)

    async def on_candle(self, event: Event, candle: Candle) -> None:
        p = self.params
        if (p.symbols and candle.symbol not in p.symbols) or (
            p.exchanges and candle.exchange not in p.exchanges
        ):
            return
        for bar in self.bars.add(candle):
            await self.on_bar(event, bar)

    async def on_bar(self, event: Event, bar: Candle) -> None:
        p, key = self.params, (bar.exchange, bar.symbol)
        state = self.series.get(key)
        if state is None:
            state = self.series[key] = _Series(
                Donchian(p.channel), Donchian(p.exit_channel), ATR(p.atr_period)
            )
        atr = state.atr.update(bar.high, bar.low, bar.close)
        close, time = bar.close, bar.open_time
        if state.side == "long" and (
            close <= state.stop or (state.exit.ready and close < state.exit.lower())
        ):
            await self._exit(
                event, key, state, time, "ATR stop" if close <= state.stop else "exit channel low"
            )
        elif state.side == "short" and (
            close >= state.stop or (state.exit.ready and close > state.exit.upper())
        ):
            await self._exit(
                event, key, state, time, "ATR stop" if close >= state.stop else "exit channel high"
            )
        breaking: Literal["long", "short"] | None = None
        if state.entry.ready and atr:
            breaking = (
                "long" if close > state.entry.upper() else "short" if close < state.entry.lower() else None
            )
        if state.side == "flat" and breaking is not None and breaking != state.breaking:
            beyond = close - state.entry.upper() if breaking == "long" else state.entry.lower() - close
            await self._enter(event, bar, state, breaking, beyond, atr or 0.0)
        state.breaking = breaking
        state.entry.add(bar.high, bar.low)
        state.exit.add(bar.high, bar.low)

    async def _enter(
        self,
        event: Event,
        bar: Candle,
        state: _Series,
        side: Literal["long", "short"],
        beyond: float,
        atr: float,
    ) -> None:
        p, long = self.params, side == "long"
        units = min(turtle_units(p.risk_quote, atr, p.stop_atr), p.max_quote / bar.close)
        stop = bar.close - p.stop_atr * atr if long else bar.close + p.stop_atr * atr
        level = state.entry.upper() if long else state.entry.lower()
        reason = f"{p.channel}-bar {'high' if long else 'low'} {level:.10g} broken (ATR {atr:.6g})"
        await self.signal(
            event, exchange=bar.exchange, symbol=bar.symbol, direction="LONG" if long else "SHORT",
            confidence=0.5 + 0.5 * min(1.0, beyond / atr), time=bar.open_time, entry=bar.close, stop=stop,
            reason=reason,
        )  # fmt: skip
        if not (long or p.allow_short):
            return
        sent = await self.submit(
            event, exchange=bar.exchange, symbol=bar.symbol, side="BUY" if long else "SELL", quantity=units,
            time=bar.open_time, tag="entry", reason=reason,
        )  # fmt: skip
        if sent is not None:
            state.side, state.stop = side, stop
            state.entries.append(bar.open_time)

    async def _exit(self, event: Event, key: SeriesKey, state: _Series, time: int, why: str) -> None:
        state.side = "flat"
        self.counts["exits"] += 1
        await self.flatten(event, key, time, why)

    async def on_done(self, event: Event, working: Working) -> None:
        state = self.series.get((working.order.exchange, working.order.symbol))
        if state is not None and working.tag == "entry" and working.filled == 0:
            state.side = "flat"  # the entry never filled: nothing to stop out

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "exits": self.counts["exits"],
            "ignoredCandles": self.bars.ignored,
            "sides": {f"{e}:{s}": st.side for (e, s), st in sorted(self.series.items())},
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [BreakoutBot]
