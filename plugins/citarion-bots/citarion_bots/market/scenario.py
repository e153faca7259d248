"""A whole synthetic market: instruments with planted structure, on several exchanges, as events.

:func:`generate_market` turns a :class:`MarketSpec` into a :class:`Market`: every series' path at
step resolution (``steps_per_bar`` book steps per bar) and the ground truth it planted. Its
:meth:`Market.events` yields, in time order, what a feed publishes (topic, payload, data time):

* per step, per series: the L2 book (``market.orderbook.snapshot.*`` at the first step of every
  ``snapshot_every_bars``-th bar, ``market.orderbook.updated.*`` otherwise; both carry the whole top
  ``depth`` levels, so a consumer simply replaces its copy) and the step's trades;
* at each bar's end, per series: the ticker (best bid/ask of the last book, last = close) and then
  the candle, as LUM does (the exchange learns the price before strategies react to the candle);
  then the longer bars (``aggregate``, e.g. 1h and 1d) that this bar completes.

Instruments (each optional, every one on every exchange):

* ``walks``: geometric random walks with trend regimes (MFT breakouts, LFT crossovers, HFT, MMK);
* ``pair``: ``y = alpha + beta x + u``, u an OU (PAR);
* ``basket``: ``w . p = c + u`` for three symbols (MRB);
* ``ou``: an Ornstein-Uhlenbeck price (STA);
* ``gaps``: every exchange after the first quotes the reference path times ``1 + gap``, with gap
  episodes that open and close (ARB, and TRF rebalancing what ARB unbalances);
* ``pumps``: pump-and-dumps injected into walks (PND): the price rises by ``rise_pct`` over
  ``rise_bars`` and gives it back over ``dump_bars``, on every exchange, trading about
  ``volume_mult`` times the usual volume while it rises and half that while it falls.

Parameters are per *bar* (theta, sigmas, rates) and converted to steps with ``dt = 1 /
steps_per_bar``. Each component draws from its own generator, ``default_rng([seed, crc32(name)])``,
so adding an instrument never changes the others' paths. ``docs/market.md`` lists every parameter and
the ground truth.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from citarion_host.payloads import Candle, OrderBook, Payload, Ticker, Trade

from ..common import StrictParams, candle_topic, interval_ms, orderbook_topic, ticker_topic, trade_topic
from .candles import CandleAggregator, bars_from_steps
from .l2 import BookPath, BookShape, book_path, tick_for
from .paths import GapEpisode, cointegrated_basket, cointegrated_pair, gap_path, ou_path

__all__ = [
    "BasketSpec",
    "BookSpec",
    "GapSpec",
    "Market",
    "MarketEvent",
    "MarketSpec",
    "OUSpec",
    "PairSpec",
    "PumpSpec",
    "WalkSpec",
    "generate_market",
    "orderbook_snapshot_topic",
]

Array = npt.NDArray[np.float64]
#: 2023-11-15 00:00:00 UTC: a day boundary, so the first hourly and daily bars are whole.
DAY_ALIGNED_START = 1_700_006_400_000


def orderbook_snapshot_topic(exchange: str, symbol: str) -> str:
    return f"market.orderbook.snapshot.{exchange}.{symbol}"


class WalkSpec(StrictParams):
    """A geometric random walk; regimes of ~``regime_bars`` bars drift up, down or not at all."""

    symbol: str = "BTCUSDT"
    start: float = Field(default=50_000.0, gt=0)
    volatility: float = Field(default=0.002, ge=0, lt=0.5)
    trend: float = Field(default=0.0008, ge=0, lt=0.5)
    regime_bars: int = Field(default=120, ge=1)


class PairSpec(StrictParams):
    x: str = "LTCUSDT"
    y: str = "BCHUSDT"
    beta: float = 2.0
    alpha: float = 10.0
    x_start: float = Field(default=100.0, gt=0)
    x_sigma: float = Field(default=1.0, ge=0)
    theta: float = Field(default=0.2, gt=0)
    spread_sigma: float = Field(default=0.5, ge=0)


class BasketSpec(StrictParams):
    symbols: list[str] = Field(default_factory=lambda: ["SOLUSDT", "AVAXUSDT", "DOTUSDT"], min_length=2)
    weights: list[float] = Field(default_factory=lambda: [1.0, -0.5, -0.5])
    starts: list[float] = Field(default_factory=lambda: [100.0, 100.0, 100.0])
    sigmas: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    theta: float = Field(default=0.2, gt=0)
    noise_sigma: float = Field(default=0.5, ge=0)

    @model_validator(mode="after")
    def _lengths(self) -> BasketSpec:
        k = len(self.symbols)
        if not (len(self.weights) == len(self.starts) == len(self.sigmas) == k) or self.weights[0] == 0:
            raise ValueError(
                "basket: symbols, weights, starts and sigmas need one entry each; weights[0] != 0"
            )
        return self


class OUSpec(StrictParams):
    symbol: str = "XRPUSDT"
    mu: float = Field(default=50.0, gt=0)
    theta: float = Field(default=0.1, gt=0)
    sigma: float = Field(default=1.0, ge=0)


class PumpSpec(StrictParams):
    """A pump-and-dump planted in a walk (the same shape as the demo generator's, ``synthetic.py``)."""

    symbol: str
    start_bar: int = Field(ge=0)
    rise_bars: int = Field(default=4, ge=1)
    rise_pct: float = Field(default=0.30, gt=0, lt=10)
    dump_bars: int = Field(default=4, ge=1)
    volume_mult: float = Field(default=8.0, ge=1)


class GapSpec(StrictParams):
    """Gap episodes between the first exchange and each other one (all symbols, independently)."""

    rate_per_bar: float = Field(default=0.01, ge=0, le=1)
    size_bps: float = Field(default=40.0, ge=0, lt=5_000)
    open_bars: float = Field(default=1.0, gt=0)
    hold_bars: float = Field(default=5.0, ge=0)
    close_bars: float = Field(default=2.0, gt=0)
    jitter_bps: float = Field(default=0.5, ge=0)


class BookSpec(StrictParams):
    depth: int = Field(default=10, ge=1, le=50)
    tick_bps: float = Field(default=1.0, gt=0)
    spread_ticks: int = Field(default=1, ge=1)
    level_quote: float = Field(default=5_000.0, gt=0)
    growth: float = Field(default=1.1, gt=0)
    noise: float = Field(default=0.3, ge=0)
    signal: float = Field(default=0.6, ge=-1, le=1)
    sharpness: float = Field(default=1.5, gt=0)
    trade_rate: float = Field(default=0.5, ge=0)
    trade_quote: float = Field(default=1_000.0, gt=0)


class MarketSpec(StrictParams):
    seed: int = 7
    start_time: int = Field(default=DAY_ALIGNED_START, ge=0)
    bars: int = Field(default=600, ge=1)
    interval: str = "1m"
    steps_per_bar: int = Field(default=4, ge=1, le=1_000)
    exchanges: list[str] = Field(default_factory=lambda: ["binance", "bybit"], min_length=1)
    aggregate: list[str] = Field(default_factory=lambda: ["1h", "1d"])
    books: bool = True
    trades: bool = True
    snapshot_every_bars: int = Field(default=10, ge=1)
    book: BookSpec = Field(default_factory=BookSpec)
    walks: list[WalkSpec] = Field(default_factory=lambda: [WalkSpec()])
    pair: PairSpec | None = Field(default_factory=PairSpec)
    basket: BasketSpec | None = Field(default_factory=BasketSpec)
    ou: OUSpec | None = Field(default_factory=OUSpec)
    gaps: GapSpec | None = Field(default_factory=GapSpec)
    pumps: list[PumpSpec] = []

    @model_validator(mode="after")
    def _check(self) -> MarketSpec:
        base = interval_ms(self.interval)
        if base % self.steps_per_bar:
            raise ValueError(
                f"steps_per_bar {self.steps_per_bar} must divide the {self.interval} bar evenly (ms)"
            )
        for longer in self.aggregate:
            if interval_ms(longer) <= base or interval_ms(longer) % base:
                raise ValueError(f"aggregate interval {longer!r} must be a multiple of {self.interval!r}")
        symbols = self.symbols()
        if len(set(symbols)) != len(symbols):
            raise ValueError(f"a symbol appears in two instruments: {symbols}")
        if len(set(self.exchanges)) != len(self.exchanges):
            raise ValueError("exchanges must not repeat")
        if not symbols:
            raise ValueError("no instrument: give walks, pair, basket or ou")
        walks = {w.symbol for w in self.walks}
        for pump in self.pumps:
            if pump.symbol not in walks:
                raise ValueError(f"pump on {pump.symbol!r}: pumps go into walks ({sorted(walks)})")
            if pump.start_bar + pump.rise_bars + pump.dump_bars > self.bars:
                raise ValueError(
                    f"pump on {pump.symbol!r} at bar {pump.start_bar} does not end within {self.bars} bars"
                )
        return self

    def symbols(self) -> list[str]:
        out = [w.symbol for w in self.walks]
        if self.pair is not None:
            out += [self.pair.x, self.pair.y]
        if self.basket is not None:
            out += list(self.basket.symbols)
        if self.ou is not None:
            out.append(self.ou.symbol)
        return out


@dataclass(frozen=True, slots=True)
class MarketEvent:
    topic: str
    payload: Payload
    data_time: int  # Unix ms: a book's step time, a candle's open time


@dataclass(slots=True)
class _Series:
    exchange: str
    symbol: str
    mids: Array  # per step
    book: BookPath | None
    volume: Array  # traded quantity per step


@dataclass
class Market:
    spec: MarketSpec
    series: dict[tuple[str, str], _Series]
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def step_ms(self) -> int:
        return interval_ms(self.spec.interval) // self.spec.steps_per_bar

    def mids(self, exchange: str, symbol: str) -> Array:
        return self.series[(exchange, symbol)].mids

    def candles(self, exchange: str, symbol: str) -> list[Candle]:
        """The base-interval bars of one series."""
        s, spec = self.series[(exchange, symbol)], self.spec
        bars = bars_from_steps(s.mids, s.volume, spec.steps_per_bar)
        length = interval_ms(spec.interval)
        return [
            _candle(symbol, exchange, spec.interval, spec.start_time + k * length, bars, k)
            for k in range(len(bars.close))
        ]

    def events(self) -> Iterator[MarketEvent]:
        spec, step_ms = self.spec, self.step_ms
        keys = [(e, s) for s in spec.symbols() for e in spec.exchanges]
        candles = {key: self.candles(*key) for key in keys}
        aggregators = [CandleAggregator(interval) for interval in spec.aggregate]
        steps = spec.steps_per_bar
        for t in range(spec.bars * steps):
            now = spec.start_time + t * step_ms
            snapshot = t % (steps * spec.snapshot_every_bars) == 0
            for key in keys:
                yield from self._step_events(key, t, now, snapshot)
            if t % steps != steps - 1:
                continue
            bar = t // steps
            for key in keys:
                candle = candles[key][bar]
                yield MarketEvent(ticker_topic(*key), self._ticker(key, t, candle), candle.open_time)
                yield MarketEvent(candle_topic(*key), candle, candle.open_time)
            for aggregator in aggregators:
                for key in keys:
                    for longer in aggregator.add(candles[key][bar]):
                        yield MarketEvent(candle_topic(*key), longer, longer.open_time)

    def _step_events(self, key: tuple[str, str], t: int, now: int, snapshot: bool) -> Iterator[MarketEvent]:
        book = self.series[key].book
        if book is None:
            return
        exchange, symbol = key
        if self.spec.books:
            bids, asks = book.levels(t)
            topic = orderbook_snapshot_topic(*key) if snapshot else orderbook_topic(*key)
            yield MarketEvent(topic, OrderBook(symbol=symbol, exchange=exchange, bids=bids, asks=asks), now)
        if self.spec.trades:
            for n, (side, price, quantity) in enumerate(book.trades[t]):
                trade = Trade(
                    symbol=symbol,
                    exchange=exchange,
                    price=price,
                    quantity=quantity,
                    side="BUY" if side == "BUY" else "SELL",
                    trade_id=f"{exchange}-{symbol}-{t}-{n}",
                )
                yield MarketEvent(trade_topic(*key), trade, now)

    def _ticker(self, key: tuple[str, str], t: int, candle: Candle) -> Ticker:
        book = self.series[key].book
        if book is None:
            half = candle.close * 1e-4
            return Ticker(
                symbol=key[1],
                exchange=key[0],
                bid=candle.close - half,
                ask=candle.close + half,
                last=candle.close,
            )
        bid = float(book.best_bid[t])
        ask = bid + book.spread_ticks * book.tick
        digits = book.decimals
        return Ticker(
            symbol=key[1],
            exchange=key[0],
            bid=round(bid, digits),
            ask=round(ask, digits),
            last=candle.close,
            volume=candle.volume,
        )


def _sig(value: float) -> float:
    return float(f"{value:.10g}")


def _candle(symbol: str, exchange: str, interval: str, open_time: int, bars: Any, k: int) -> Candle:
    return Candle(
        symbol=symbol,
        exchange=exchange,
        interval=interval,
        open_time=open_time,
        open=_sig(float(bars.open[k])),
        high=_sig(float(bars.high[k])),
        low=_sig(float(bars.low[k])),
        close=_sig(float(bars.close[k])),
        volume=round(float(bars.volume[k]), 8),
    )


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def _reference_paths(spec: MarketSpec, n: int, dt: float) -> tuple[dict[str, Array], dict[str, Any]]:
    """Each symbol's reference mid per step (first exchange), and the planted truth."""
    paths: dict[str, Array] = {}
    truth: dict[str, Any] = {}
    for walk in spec.walks:
        rng = _rng(spec.seed, f"walk:{walk.symbol}")
        regimes = np.empty(n)
        planted: list[tuple[int, float]] = []
        t = 0
        while t < n:
            length = max(1, round(walk.regime_bars * rng.uniform(0.5, 1.5) / dt))
            drift = float(rng.choice((walk.trend, -walk.trend, 0.0), p=(0.35, 0.35, 0.3)))
            regimes[t : t + length] = drift
            planted.append((t // round(1 / dt), drift))
            t += length
        steps = regimes * dt + walk.volatility * math.sqrt(dt) * rng.standard_normal(n)
        steps[0] = 0.0
        per_bar = round(1 / dt)
        for pump in (p for p in spec.pumps if p.symbol == walk.symbol):  # after the draws: paths unchanged
            rise, first = math.log1p(pump.rise_pct), pump.start_bar * per_bar
            top = first + pump.rise_bars * per_bar
            steps[first:top] += rise / (pump.rise_bars * per_bar)
            steps[top : top + pump.dump_bars * per_bar] -= rise / (pump.dump_bars * per_bar)
        paths[walk.symbol] = walk.start * np.exp(np.cumsum(steps))
        truth[f"walk:{walk.symbol}"] = {
            "volatility": walk.volatility,
            "regimes": [{"startBar": bar, "driftPerBar": drift} for bar, drift in planted],
        }
    if spec.pair is not None:
        p = spec.pair
        pair = cointegrated_pair(
            _rng(spec.seed, "pair"),
            n,
            beta=p.beta,
            alpha=p.alpha,
            x0=p.x_start,
            x_sigma=p.x_sigma,
            theta=p.theta,
            spread_sigma=p.spread_sigma,
            dt=dt,
        )
        paths[p.x], paths[p.y] = pair.x, pair.y
        truth["pair"] = {"x": p.x, "y": p.y, "beta": p.beta, "alpha": p.alpha, "thetaPerBar": p.theta}
    if spec.basket is not None:
        b = spec.basket
        basket = cointegrated_basket(
            _rng(spec.seed, "basket"),
            n,
            weights=b.weights,
            starts=b.starts,
            sigmas=b.sigmas,
            theta=b.theta,
            noise_sigma=b.noise_sigma,
            dt=dt,
        )
        for i, symbol in enumerate(b.symbols):
            paths[symbol] = basket.prices[:, i]
        truth["basket"] = {
            "symbols": list(b.symbols),
            "weights": list(b.weights),
            "constant": basket.constant,
        }
    if spec.ou is not None:
        o = spec.ou
        paths[o.symbol] = ou_path(_rng(spec.seed, "ou"), n, mu=o.mu, theta=o.theta, sigma=o.sigma, dt=dt)
        truth["ou"] = {"symbol": o.symbol, "mu": o.mu, "thetaPerBar": o.theta, "sigma": o.sigma}
    for symbol, path in paths.items():
        start = float(path[0])
        paths[symbol] = np.maximum(path, 0.01 * start)  # arithmetic paths must stay priced
    return paths, truth


def generate_market(spec: MarketSpec) -> Market:
    """Every series of ``spec`` at step resolution, with the truth planted in it."""
    steps = spec.steps_per_bar
    n, dt = spec.bars * steps, 1.0 / steps
    reference, truth = _reference_paths(spec, n, dt)
    gaps: dict[str, list[GapEpisode]] = {}
    series: dict[tuple[str, str], _Series] = {}
    for symbol in spec.symbols():
        ref = reference[symbol]
        tick = tick_for(float(ref[0]), spec.book.tick_bps)
        for index, exchange in enumerate(spec.exchanges):
            mids = ref
            if index and spec.gaps is not None:
                g = spec.gaps
                path = gap_path(
                    _rng(spec.seed, f"gap:{symbol}:{exchange}"),
                    n,
                    rate=g.rate_per_bar * dt,
                    size=g.size_bps / 10_000,
                    open_steps=max(1, round(g.open_bars * steps)),
                    hold_steps=round(g.hold_bars * steps),
                    close_steps=max(1, round(g.close_bars * steps)),
                    jitter=g.jitter_bps / 10_000,
                )
                mids = ref * (1 + path.gap)
                gaps[f"{symbol}:{exchange}"] = list(path.episodes)
            series[(exchange, symbol)] = _make_series(spec, exchange, symbol, mids, tick)
    truth["gaps"] = {
        key: [
            {"startBar": e.start // steps, "endBar": e.end // steps, "sizeBps": e.size * 10_000} for e in eps
        ]
        for key, eps in gaps.items()
    }
    truth["book"] = {"signal": spec.book.signal}
    for pump in spec.pumps:
        for exchange in spec.exchanges:
            _pump_volume(series[(exchange, pump.symbol)], pump, steps)
    truth["pumps"] = [
        {"symbol": p.symbol, "startBar": p.start_bar, "riseBars": p.rise_bars, "risePct": p.rise_pct,
         "dumpBars": p.dump_bars, "volumeMult": p.volume_mult}
        for p in spec.pumps
    ]  # fmt: skip
    return Market(spec=spec, series=series, truth=truth)


def _pump_volume(series: _Series, pump: PumpSpec, steps: int) -> None:
    """Plant a pump's volume: each rising step gets an extra buy print at the best ask, each falling
    step a sell at the best bid, sized so the step trades about ``volume_mult`` (falling: half of it)
    times the series' mean volume per step, as a real pump's bars would."""
    book = series.book
    if book is None:
        return
    per_step = math.fsum(q for prints in book.trades for _, _, q in prints) / max(1, len(book.trades))
    start, top = pump.start_bar * steps, (pump.start_bar + pump.rise_bars) * steps
    for t in range(start, top + pump.dump_bars * steps):
        rising = t < top
        extra = ((pump.volume_mult if rising else pump.volume_mult / 2) - 1) * per_step
        if extra <= 0:
            continue
        bid = float(book.best_bid[t])
        price = bid + book.spread_ticks * book.tick if rising else bid
        book.trades[t] = [
            *book.trades[t],
            ("BUY" if rising else "SELL", round(price, book.decimals), round(extra, 8)),
        ]
        series.volume[t] = math.fsum(q for _, _, q in book.trades[t])


def _make_series(spec: MarketSpec, exchange: str, symbol: str, mids: Array, tick: float) -> _Series:
    b = spec.book
    price = float(mids[0])
    shape = BookShape(
        depth=b.depth,
        tick=tick,
        spread_ticks=b.spread_ticks,
        level_size=b.level_quote / price,
        growth=b.growth,
        noise=b.noise,
        signal=b.signal,
        sharpness=b.sharpness,
        trade_rate=b.trade_rate,
        trade_size=b.trade_quote / price,
    )
    book = book_path(_rng(spec.seed, f"book:{symbol}:{exchange}"), mids, shape)
    volume = np.array([math.fsum(q for _, _, q in prints) for prints in book.trades])
    return _Series(exchange=exchange, symbol=symbol, mids=mids, book=book, volume=volume)
