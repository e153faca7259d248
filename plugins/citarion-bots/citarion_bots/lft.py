"""LFT (Atlas), low frequency: moving-average crossovers on daily bars, with a trailing stop.

Bars of ``interval`` (default 1d; with ``aggregate``, built from shorter candles: a day is complete
when its last candle closes, and a day the feed joined midway is dropped). Per series, on each bar
(:mod:`citarion_bots.quant.crossover`): ``diff = SMA_fast - SMA_slow`` of the closes up to this bar.

* the trailing stop first: a long whose close falls to ``trail_pct`` under the highest close since
  entry is sold at market (a short: over the lowest close);
* a cross up (``diff`` from <= 0 to > 0): LONG signal; a short is closed; buy ``order_quote`` worth
  and arm the trailing stop;
* a cross down: SHORT signal; a long is closed; with ``allow_short``, sell short and arm the stop.

A decision at bar t uses only closes up to t, so it cannot change when bar t+1 does (tested).
Signals: entry = close, stop = the trailing level, confidence ``0.5 + 0.5 x min(1, |diff| / (0.01 x
close))`` (how decisively the averages parted, against 1 % of the price).
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
from .desk import DeskBot, DeskParams, DeskState
from .quant.crossover import Crossover, TrailingStop
from .sync import IntervalBars, IntervalBarsState

__all__ = ["CrossoverBot", "CrossoverParams", "citarion_bot_types"]


class CrossoverParams(DeskParams):
    symbols: list[str] = []
    exchanges: list[str] = []
    interval: str = "1d"
    aggregate: bool = True
    fast: int = Field(default=10, ge=1)
    slow: int = Field(default=30, ge=2)
    trail_pct: float = Field(default=0.1, gt=0, lt=1)
    order_quote: float = Field(default=500.0, gt=0)
    allow_short: bool = False

    @model_validator(mode="after")
    def _check(self) -> CrossoverParams:
        interval_ms(self.interval)
        if self.fast >= self.slow:
            raise ValueError("fast must be shorter than slow")
        return self


@dataclass(slots=True)
class _Series:
    cross: Crossover
    trail: TrailingStop
    decisions: list[tuple[int, str]] = field(default_factory=list)  # (bar open time, what was decided)


class SeriesState(msgspec.Struct, kw_only=True):
    """One series' averages (fast and slow windows, last difference), trailing stop and decisions."""

    cross: tuple[list[float], list[float], float | None] = msgspec.field(
        default_factory=lambda: ([], [], None)
    )
    trail: tuple[Literal["long", "short"] | None, float] = (None, 0.0)
    decisions: list[tuple[int, str]] = []


class CrossoverState(DeskState, kw_only=True):
    """A desk's state plus the bar builder's and each series'."""

    bars: IntervalBarsState = (0, None)
    series: list[tuple[SeriesKey, SeriesState]] = []


class CrossoverBot(DeskBot[CrossoverParams]):
    type_name = "lft-crossover"
    description = "LFT: moving-average crossover on daily bars with a trailing stop"
    State = CrossoverState

    def __init__(self, ctx: BotContext, params: CrossoverParams) -> None:
        super().__init__(ctx, params)
        self.bars = IntervalBars(self.params.interval, self.params.aggregate)
        self.series: dict[SeriesKey, _Series] = {}

    def state_fields(self) -> dict[str, Any]:
        series = [
            (key, SeriesState(cross=s.cross.state(), trail=s.trail.state(), decisions=s.decisions))
            for key, s in self.series.items()
        ]
        return {**super().state_fields(), "bars": self.bars.state(), "series": series}

    def restore(self, state: Any) -> None:
        super().restore(state)
        p = self.params
        self.bars.restore(state.bars)
        self.series = {}
        for key, stored in state.series:
            series = self.series[key] = _Series(Crossover(p.fast, p.slow), TrailingStop(p.trail_pct))
            series.cross.restore(stored.cross)
            series.trail.restore(stored.trail)
            series.decisions = list(stored.decisions)

    async def on_candle(self, event: Event, candle: Candle) -> None:
        p = self.params
        if (p.symbols and candle.symbol not in p.symbols) or (
            p.exchanges and candle.exchange not in p.exchanges
        ):
            return
        for bar in self.bars.add(candle):
            await self.on_bar(event, bar)

    async def on_bar(self, event: Event, bar: Candle) -> None:
        p, key, time, close = self.params, (bar.exchange, bar.symbol), bar.open_time, bar.close
        state = self.series.get(key)
        if state is None:
            state = self.series[key] = _Series(Crossover(p.fast, p.slow), TrailingStop(p.trail_pct))
        side = state.trail.side
        if state.trail.update(close):
            state.decisions.append((time, "trailing stop"))
            await self.flatten(event, key, time, f"trailing stop {p.trail_pct:.1%} from the extreme")
        cross = state.cross.update(close)
        if cross is None:
            return
        state.decisions.append((time, f"cross {cross}"))
        diff = state.cross.diff or 0.0
        confidence = 0.5 + 0.5 * min(1.0, abs(diff) / (0.01 * close))
        long = cross == "up"
        stop = close * (1 - p.trail_pct) if long else close * (1 + p.trail_pct)
        reason = f"SMA{p.fast} crossed {'above' if long else 'below'} SMA{p.slow} (diff {diff:+.6g})"
        await self.signal(
            event, exchange=bar.exchange, symbol=bar.symbol, direction="LONG" if long else "SHORT",
            confidence=confidence, time=time, entry=close, stop=stop, reason=reason,
        )  # fmt: skip
        if side is not None or self.position[key]:
            state.trail.disarm()
            await self.flatten(event, key, time, reason)
        if long or p.allow_short:
            sent = await self.submit(
                event, exchange=bar.exchange, symbol=bar.symbol, side="BUY" if long else "SELL",
                quantity=p.order_quote / close, time=time, tag="entry", reason=reason,
            )  # fmt: skip
            if sent is not None:
                state.trail.arm("long" if long else "short", close)

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "crossings": sum(
                1 for s in self.series.values() for _, d in s.decisions if d.startswith("cross")
            ),
            "trailingStops": sum(
                1 for s in self.series.values() for _, d in s.decisions if d == "trailing stop"
            ),
            "ignoredCandles": self.bars.ignored,
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [CrossoverBot]
