"""LUM (Lumi), data integration: replays bars onto the bus as candles, tickers, trades and books.

Three bot types: ``lumi-synthetic`` (the demo's seeded bar generator) and ``lumi-csv`` (an OHLCV
file) share one bar replay loop; ``lumi-market`` replays the whole synthetic market of
:mod:`citarion_bots.market` (level-2 books, trades, candles at several intervals, the planted pair,
basket, OU series, venue gaps and pumps) event by event. The replay runs as a background task
started in :meth:`start` (under the host's supervision, ``ctx.spawn``) and cancelled in
:meth:`stop`, so the host's event loop stays free while a feed plays.

Per bar, the ticker goes out *before* the candle, and every event of a bar carries the bar's open time
as ``metadata.dataTime``: the decisions made on it inherit that data time through their lineage, and
the paper exchange fills them at that bar's close. Time is the data's (bar open times), never the wall
clock, so replays repeat exactly.

Pacing: with ``speed = 0`` the feed replays as fast as the platform goes, and before each new bar time
it calls ``ctx.settle(lag=True)``: in deterministic mode (``[backend] deterministic``, the default)
that waits until everything the bars before the last two caused has been handled, so two bars wait
queued ahead of the platform (no idle turn at a bar boundary) and the feed never runs further ahead.
The run is the same on every backend either way: the sequencer handles an event from outside only after
the consequences of the ones before it, whenever it was published.
With ``speed > 0`` bars are spaced by their data time divided by ``speed`` and the feed never waits for
the platform (a live feed does not either). When the data is exhausted the feed settles once more and
publishes ``market.feed.completed`` with ``{"feed": <bot id>, "bars": <candles published>}``; the host
ends a demo on it.

State (``docs/state.md``): a feed keeps how many events it has published (and its figures), so a
restarted feed (a reload, a crash, a host restart with a stored state) goes on right after the last
event its state covers instead of replaying from bar 0: it runs through the same deterministic
sequence and publishes only what comes after. A feed whose state says it completed publishes nothing
more and announces its completion again (a ``stop_on`` host restarted on it still finishes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import msgspec
from pydantic import Field
from typing_extensions import TypeVar

from citarion_host.bot import Bot, BotContext
from citarion_host.hookspecs import hookimpl
from citarion_host.lineage import DATA_TIME
from citarion_host.payloads import Candle, OrderBook, Trade

from .common import (
    FEED_COMPLETED,
    StrictParams,
    candle_topic,
    interval_ms,
    orderbook_topic,
    ticker_topic,
    trade_topic,
)
from .csvfeed import SAMPLE_PATH, load_csv
from .market.scenario import Market, MarketSpec, generate_market
from .synthetic import Bar, SyntheticSpec, generate

__all__ = ["LumiCsvBot", "LumiMarketBot", "LumiSyntheticBot", "citarion_bot_types"]


class FeedParams(StrictParams):
    """Replay options shared by both feeds."""

    speed: float = Field(default=0.0, ge=0)
    ticker_spread_bps: float = Field(default=2.0, ge=0)
    emit_trades: bool = False
    emit_orderbook: bool = False
    orderbook_depth: int = Field(default=5, ge=1, le=50)
    start_delay_s: float = Field(default=0.0, ge=0)


class LumiSyntheticParams(FeedParams, SyntheticSpec):
    """Replay options plus the generator spec (seed, symbols, exchanges, bars, pumps, ...)."""


class LumiCsvParams(FeedParams):
    path: str | None = None
    interval: str = "1m"
    symbols: list[str] = []
    exchanges: list[str] = []


class FeedState(msgspec.Struct, kw_only=True):
    """Where a bar replay stands: events published (its position in the replay) and its figures."""

    sent: int = 0
    bars: int = 0
    series: list[tuple[str, str]] = []
    first_time: int | None = None
    last_time: int | None = None
    completed: bool = False


#: The params model of a concrete subclass (``class X(_FeedBot[XParams])``).
FeedParamsT = TypeVar("FeedParamsT", bound=FeedParams, default=FeedParams)


class _FeedBot(Bot[FeedParamsT]):
    """The replay loop: publish each bar, pace it, announce the end."""

    State = FeedState

    def __init__(self, ctx: BotContext, params: FeedParamsT) -> None:
        super().__init__(ctx, params)
        self._task: asyncio.Task[Any] | None = None
        self.sent = 0
        self.bars_published = 0
        self.series: set[tuple[str, str]] = set()
        self.first_time: int | None = None
        self.last_time: int | None = None
        self.completed = False
        self._topics: dict[tuple[str, str], tuple[str, str]] = {}  # ticker and candle topic per series

    def snapshot(self) -> FeedState:
        return FeedState(
            sent=self.sent,
            bars=self.bars_published,
            series=sorted(self.series),
            first_time=self.first_time,
            last_time=self.last_time,
            completed=self.completed,
        )

    def restore(self, state: FeedState) -> None:
        self.sent, self.bars_published, self.series = state.sent, state.bars, set(state.series)
        self.first_time, self.last_time, self.completed = state.first_time, state.last_time, state.completed

    def bars(self) -> Iterable[Bar]:
        raise NotImplementedError

    def bar_interval(self) -> str:
        raise NotImplementedError

    async def start(self) -> None:
        bars = self.bars()  # build (and for CSV, validate) before going async: errors surface at start
        self._task = self.ctx.spawn(self._run(bars), "feed")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self) -> None:
        """Until the replay has finished (tests and embedders)."""
        if self._task is not None:
            await self._task

    async def _run(self, bars: Iterable[Bar]) -> None:
        params = self.params
        if params.start_delay_s:
            await asyncio.sleep(params.start_delay_s)
        if self.sent:
            resumed = {"sent": self.sent, "bars": self.bars_published}
            self.ctx.log.info("feed resumes after its state", extra=resumed)
        try:
            # Only this task moves ``sent`` once the replay runs: the events its state covers are the
            # first ``skip``; a bar's series is added with the bar's first event published.
            skip, publish, last_bar = self.sent, self.ctx.publish, None
            for index, (bar, topic, payload) in enumerate(self.events(bars)):
                if index < skip:
                    continue  # published before the restart (the state covers it)
                time = bar.time
                if self.last_time is not None and time > self.last_time:  # a new bar time
                    if params.speed:
                        await asyncio.sleep((time - self.last_time) / 1000 / params.speed)
                    else:
                        await self.ctx.settle(lag=True)  # the platform is done with the bars before the last
                # Counted before it goes out: a stop that lands inside the publish (the event already
                # handed over) must not make the next start send it again; a failed publish is not.
                candle = isinstance(payload, Candle)
                self.sent, self.bars_published = self.sent + 1, self.bars_published + candle
                if bar is not last_bar:
                    last_bar = bar
                    self.series.add((bar.exchange, bar.symbol))
                if self.first_time is None:
                    self.first_time = time
                self.last_time = time
                try:
                    await publish(topic, payload, metadata={DATA_TIME: time})
                except Exception:
                    self.sent, self.bars_published = self.sent - 1, self.bars_published - candle
                    raise
            if not params.speed:
                await self.ctx.settle()
            self.completed = True
            await self.ctx.publish(FEED_COMPLETED, {"feed": self.ctx.bot_id, "bars": self.bars_published})
            self.ctx.log.info("feed completed", extra={"bars": self.bars_published})
        except asyncio.CancelledError:
            raise
        except Exception:
            self.ctx.log.exception("feed failed", extra={"bars": self.bars_published})
            raise

    def events(self, bars: Iterable[Bar]) -> Iterator[tuple[Bar, str, Any]]:
        """What the replay publishes, in order: per bar its ticker, candle, trade and book."""
        for bar in bars:
            yield from self.bar_events(bar)

    def bar_events(self, bar: Bar) -> Iterator[tuple[Bar, str, Any]]:
        params, key = self.params, (bar.exchange, bar.symbol)
        ticker = bar.ticker(params.ticker_spread_bps)
        topics = self._topics.get(key)
        if topics is None:  # formatted once per series, not twice per bar
            topics = self._topics[key] = (ticker_topic(*key), candle_topic(*key))
        yield bar, topics[0], ticker
        yield bar, topics[1], bar.candle(self.bar_interval())
        if params.emit_trades:
            side: Literal["BUY", "SELL"] = "BUY" if bar.close >= bar.open else "SELL"
            trade = Trade(
                symbol=bar.symbol,
                exchange=bar.exchange,
                price=bar.close,
                quantity=max(bar.volume, 1e-8),
                side=side,
                trade_id=f"{bar.exchange}-{bar.symbol}-{bar.time}",
            )
            yield bar, trade_topic(*key), trade
        if params.emit_orderbook:
            yield bar, orderbook_topic(*key), self._book(bar, ticker.bid, ticker.ask)

    def _book(self, bar: Bar, bid: float, ask: float) -> OrderBook:
        """A symmetric book around the quote: level i is i half-spreads further out."""
        depth, step = self.params.orderbook_depth, max(ask - bid, bar.close * 1e-6)
        size = max(bar.volume, 1e-8) / (10 * depth)
        return OrderBook(
            symbol=bar.symbol,
            exchange=bar.exchange,
            bids=[(bid - i * step, size * (i + 1)) for i in range(depth)],
            asks=[(ask + i * step, size * (i + 1)) for i in range(depth)],
        )

    def stats(self) -> dict[str, Any]:
        return {
            "bars": self.bars_published,
            "series": sorted(f"{e}:{s}" for e, s in self.series),
            "firstTime": self.first_time,
            "lastTime": self.last_time,
            "completed": self.completed,
        }


class LumiSyntheticBot(_FeedBot[LumiSyntheticParams]):
    """Seeded synthetic market: trends, ranges, two venues with small gaps, an injected pump."""

    type_name = "lumi-synthetic"
    description = "LUM: seeded synthetic OHLCV feed (regimes, venue gaps, injected pump-and-dump)"

    def bars(self) -> Iterable[Bar]:
        spec = SyntheticSpec.model_validate(self.params.model_dump(include=set(SyntheticSpec.model_fields)))
        return generate(spec)

    def bar_interval(self) -> str:
        return self.params.interval


class LumiCsvBot(_FeedBot[LumiCsvParams]):
    """Replays an OHLCV CSV file (the packaged sample when no path is given)."""

    type_name = "lumi-csv"
    description = "LUM: replays an OHLCV CSV file (timestamp,symbol,exchange,open,high,low,close,volume)"

    def bars(self) -> Sequence[Bar]:
        interval_ms(self.params.interval)
        bars = load_csv(self.params.path or SAMPLE_PATH)
        symbols, exchanges = set(self.params.symbols), set(self.params.exchanges)
        return [
            bar
            for bar in bars
            if (not symbols or bar.symbol in symbols) and (not exchanges or bar.exchange in exchanges)
        ]

    def bar_interval(self) -> str:
        return self.params.interval


class LumiMarketParams(MarketSpec):
    """The market spec (docs/market.md) plus the replay's pacing."""

    speed: float = Field(default=0.0, ge=0)
    start_delay_s: float = Field(default=0.0, ge=0)


class MarketFeedState(msgspec.Struct, kw_only=True):
    """Where a market replay stands: events published (its position), per kind, base bars, done."""

    sent: int = 0
    published: dict[str, int] = {}
    bars: int = 0
    completed: bool = False


class LumiMarketBot(Bot[LumiMarketParams]):
    """Replays :func:`~citarion_bots.market.scenario.generate_market`'s events, each stamped with its
    data time; settles (``speed = 0``) or sleeps (``speed > 0``) when the base bar's time moves on."""

    type_name = "lumi-market"
    description = "LUM: seeded synthetic market; L2 books, trades, multi-interval candles, planted structure"
    State = MarketFeedState

    def __init__(self, ctx: BotContext, params: LumiMarketParams) -> None:
        super().__init__(ctx, params)
        self._task: asyncio.Task[Any] | None = None
        self.sent = 0
        self.published: Counter[str] = Counter()
        self.bars_published = 0
        self.completed = False
        self.market: Market | None = None

    def snapshot(self) -> MarketFeedState:
        return MarketFeedState(
            sent=self.sent, published=self.published, bars=self.bars_published, completed=self.completed
        )

    def restore(self, state: MarketFeedState) -> None:
        self.sent, self.published = state.sent, Counter(state.published)
        self.bars_published, self.completed = state.bars, state.completed

    async def start(self) -> None:
        spec = MarketSpec.model_validate(self.params.model_dump(include=set(MarketSpec.model_fields)))
        self.market = generate_market(spec)  # before going async: a bad spec fails the start
        self._task = self.ctx.spawn(self._run(self.market), "feed")

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait(self) -> None:
        if self._task is not None:
            await self._task

    async def _run(self, market: Market) -> None:
        params, spec = self.params, market.spec
        if params.start_delay_s:
            await asyncio.sleep(params.start_delay_s)
        bar_ms, last_bar, last_time = interval_ms(spec.interval), -1, spec.start_time
        if self.sent:
            resumed = {"sent": self.sent, "bars": self.bars_published}
            self.ctx.log.info("feed resumes after its state", extra=resumed)
        for index, item in enumerate(market.events()):
            bar = (item.data_time - spec.start_time) // bar_ms
            if index < self.sent:  # published before the restart (the state covers it): pacing only
                last_bar, last_time = max(last_bar, bar), max(last_time, item.data_time)
                continue
            if params.speed and item.data_time > last_time:
                await asyncio.sleep((item.data_time - last_time) / 1000 / params.speed)
                last_time = item.data_time
            elif not params.speed and bar > last_bar >= 0:
                await self.ctx.settle(lag=True)  # the platform is done with the bars before the last
            last_bar = max(last_bar, bar)
            # Counted before it goes out (see _FeedBot._run); a failed publish is not.
            kind = item.topic.split(".", 2)[1]
            base = (
                kind == "candle"
                and isinstance(item.payload, Candle)
                and item.payload.interval == spec.interval
            )
            self.sent, self.bars_published = self.sent + 1, self.bars_published + base
            self.published[kind] += 1
            try:
                await self.ctx.publish(item.topic, item.payload, metadata={DATA_TIME: item.data_time})
            except Exception:
                self.sent, self.bars_published = self.sent - 1, self.bars_published - base
                self.published[kind] -= 1
                raise
        if not params.speed:
            await self.ctx.settle()
        self.completed = True
        await self.ctx.publish(FEED_COMPLETED, {"feed": self.ctx.bot_id, "bars": self.bars_published})
        self.ctx.log.info("feed completed", extra={"bars": self.bars_published})

    def stats(self) -> dict[str, Any]:
        truth = self.market.truth if self.market is not None else {}
        return {
            "bars": self.bars_published,
            "published": dict(sorted(self.published.items())),
            "series": len(self.market.series) if self.market is not None else 0,
            "completed": self.completed,
            "planted": {k: v for k, v in truth.items() if k in ("pair", "basket", "ou", "pumps")},
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [LumiSyntheticBot, LumiCsvBot, LumiMarketBot]
