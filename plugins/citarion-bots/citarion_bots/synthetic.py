"""A seeded OHLCV generator: several symbols, several exchanges, regimes, and injected pumps.

Pure and deterministic: the same :class:`SyntheticSpec` always yields the same bars, on any machine
(``random.Random`` seeded with a string is stable across runs and platforms), and time is the spec's
``start_time`` plus whole bars, never the wall clock. That makes every downstream figure (signals,
fills, PnL) reproducible and lets tests assert exact answers.

The model, per symbol, in log price x with per-bar return r = drift + sigma * N(0, 1):

* regimes of about ``regime_bars`` bars, drawn in turn: trend up (drift +trend), trend down (drift
  -trend) or mean-reverting (drift -reversion * (x - anchor), an Ornstein-Uhlenbeck pull back to
  the price where the regime began);
* a pump: ``rise_bars`` bars adding ln(1 + rise_pct) / rise_bars each with volume x ``volume_mult``,
  then ``dump_bars`` bars giving it back with volume x volume_mult / 2;
* wicks: high/low beyond max/min(open, close) by |N(0, sigma/2)|; volume lognormal(0, 0.25) x base.

The first exchange carries the reference path; every other exchange quotes it times (1 + g) with g
uniform in +/- ``gap_bps`` per bar, so venues differ by small, bounded gaps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

import msgspec
from pydantic import Field, model_validator

from citarion_host.payloads import Candle, Ticker

from .common import StrictParams, interval_ms

__all__ = ["Bar", "PumpSpec", "SyntheticSpec", "generate"]


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One OHLCV bar of one series; ``time`` is the bar's open time in Unix ms. A Struct, not a frozen
    dataclass: one is built per bar of every series, and a frozen dataclass sets each field through
    ``object.__setattr__``."""

    time: int
    symbol: str
    exchange: str
    open: float
    high: float
    low: float
    close: float
    volume: float

    def candle(self, interval: str) -> Candle:
        return Candle(
            symbol=self.symbol,
            exchange=self.exchange,
            interval=interval,
            open_time=self.time,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
        )

    def ticker(self, spread_bps: float) -> Ticker:
        """The quote at the bar's close: last = close, bid/ask = close -/+ half the spread."""
        half = self.close * spread_bps / 20_000
        return Ticker(
            symbol=self.symbol,
            exchange=self.exchange,
            bid=self.close - half,
            ask=self.close + half,
            last=self.close,
            volume=self.volume,
        )


class PumpSpec(StrictParams):
    """An injected pump-and-dump on one symbol (all exchanges)."""

    symbol: str
    start_bar: int = Field(ge=0)
    rise_bars: int = Field(default=4, ge=1)
    rise_pct: float = Field(default=0.30, gt=0)
    dump_bars: int = Field(default=4, ge=1)
    volume_mult: float = Field(default=8.0, ge=1)


class SyntheticSpec(StrictParams):
    """What to generate. Every key has a default, so ``SyntheticSpec()`` is a complete demo feed."""

    seed: int = 7
    symbols: list[str] = Field(default_factory=lambda: ["BTCUSDT", "ETHUSDT", "SOLUSDT"], min_length=1)
    exchanges: list[str] = Field(default_factory=lambda: ["binance", "bybit"], min_length=1)
    bars: int = Field(default=500, ge=1)
    interval: str = "1m"
    start_time: int = Field(default=1_700_000_000_000, ge=0)
    base_prices: dict[str, float] = Field(
        default_factory=lambda: {"BTCUSDT": 50_000.0, "ETHUSDT": 3_000.0, "SOLUSDT": 100.0}
    )
    default_price: float = Field(default=100.0, gt=0)
    volatility: float = Field(default=0.002, ge=0, lt=0.5)
    trend: float = Field(default=0.0008, ge=0, lt=0.5)
    reversion: float = Field(default=0.15, ge=0, le=1)
    regime_bars: int = Field(default=60, ge=1)
    base_volume: float = Field(default=1_000.0, gt=0)
    gap_bps: float = Field(default=8.0, ge=0, lt=1_000)
    pumps: list[PumpSpec] = Field(default_factory=lambda: [PumpSpec(symbol="SOLUSDT", start_bar=300)])

    @model_validator(mode="after")
    def _check(self) -> SyntheticSpec:
        interval_ms(self.interval)
        for pump in self.pumps:
            if pump.symbol not in self.symbols:
                raise ValueError(f"pump symbol {pump.symbol!r} is not among symbols {self.symbols}")
        if len(set(self.symbols)) != len(self.symbols) or len(set(self.exchanges)) != len(self.exchanges):
            raise ValueError("symbols and exchanges must not repeat")
        return self


class _Path:
    """One symbol's reference path (first exchange) and its regime state."""

    def __init__(self, spec: SyntheticSpec, symbol: str) -> None:
        self.spec = spec
        self.rng = random.Random(f"{spec.seed}:{symbol}")
        self.x = math.log(spec.base_prices.get(symbol, spec.default_price))
        self.kind = "range"
        self.anchor = self.x
        self.left = 0
        self.pumps = [p for p in spec.pumps if p.symbol == symbol]

    def step(self, t: int) -> tuple[float, float, float, float, float]:
        spec, rng = self.spec, self.rng
        if self.left == 0:
            self.kind = rng.choices(("up", "down", "range"), weights=(3, 3, 4))[0]
            self.left = max(1, round(spec.regime_bars * rng.uniform(0.5, 1.5)))
            self.anchor = self.x
        self.left -= 1
        kind = self.kind  # not a dict per bar: the same drift, picked by comparison
        drift = (
            spec.trend
            if kind == "up"
            else -spec.trend
            if kind == "down"
            else -spec.reversion * (self.x - self.anchor)
        )
        r = drift + spec.volatility * rng.gauss(0.0, 1.0)
        volume_mult = 1.0
        for pump in self.pumps:
            if pump.start_bar <= t < pump.start_bar + pump.rise_bars:
                r += math.log1p(pump.rise_pct) / pump.rise_bars
                volume_mult = pump.volume_mult
            elif pump.start_bar + pump.rise_bars <= t < pump.start_bar + pump.rise_bars + pump.dump_bars:
                r -= math.log1p(pump.rise_pct) / pump.dump_bars
                volume_mult = pump.volume_mult / 2
        open_ = math.exp(self.x)
        self.x += r
        close = math.exp(self.x)
        high = max(open_, close) * (1 + abs(rng.gauss(0.0, spec.volatility / 2)))
        low = min(open_, close) * (1 - abs(rng.gauss(0.0, spec.volatility / 2)))
        volume = spec.base_volume * math.exp(rng.gauss(0.0, 0.25)) * volume_mult
        return open_, high, low, close, volume


def generate(spec: SyntheticSpec) -> Iterator[Bar]:
    """Bars in replay order: by time, then symbol, then exchange (as listed in the spec)."""
    step_ms = interval_ms(spec.interval)
    paths = {symbol: _Path(spec, symbol) for symbol in spec.symbols}
    venue_rngs = {(s, e): random.Random(f"{spec.seed}:{s}:{e}") for s in spec.symbols for e in spec.exchanges}
    for t in range(spec.bars):
        time_ms = spec.start_time + t * step_ms
        for symbol in spec.symbols:
            open_, high, low, close, volume = paths[symbol].step(t)
            for index, exchange in enumerate(spec.exchanges):
                factor, vol_factor = 1.0, 1.0
                if index:
                    venue = venue_rngs[(symbol, exchange)]
                    factor = 1 + spec.gap_bps / 10_000 * venue.uniform(-1.0, 1.0)
                    vol_factor = venue.uniform(0.7, 1.3)
                # prices to 8 significant digits: readable CSV, still far finer than any tick size
                yield Bar(
                    time_ms,
                    symbol,
                    exchange,
                    float(f"{open_ * factor:.8g}"),
                    float(f"{high * factor:.8g}"),
                    float(f"{low * factor:.8g}"),
                    float(f"{close * factor:.8g}"),
                    round(volume * vol_factor, 4),
                )
