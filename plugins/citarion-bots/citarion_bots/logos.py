"""LOG (LOGOS), meta-analyst and autonomous trader: strategy signals in, consensus and orders out.

Per series it keeps the latest signal of each source (``metadata.botId`` when the strategy set it,
else the event's ``source`` code) and combines the live ones with :func:`consensus.consensus`,
weighting each by its source's hit rate. Time is data time: a signal is stamped with its
``metadata.dataTime`` (else the series' last candle time) and expires once the series' candles are
more than ``window_bars`` bars past it. Its own signals (source LOG / its own bot id) are ignored;
sources whose bot stopped or failed (``system.bot.*``) are dropped.

Hit rate: every signal is judged ``hit_horizon_bars`` bars after its time: a hit when the close then
is beyond the signal's reference price (entry price, else the close when it arrived) in its
direction.

Each time the live set changes (a signal arrives, one expires) LOGOS publishes
``analytics.decision.made``. As the trader, it acts on a decision that has at least ``min_sources``
sources, ``confidence >= trade_confidence`` and ``agreement >= trade_agreement``, at most once per
``trade_cooldown_bars``: LONG buys min(max_position_notional - position notional, cash x
cash_fraction) when that is at least ``min_order_notional``; SHORT sells its whole position (spot).
It announces each trade as its own ``trading.signal.generated``. Like the strategies it stands
down (:class:`~citarion_bots.standdown.StandDown`): no buys while the risk guard blocks it or for
``alert_cooldown_bars`` after a pump alert on the symbol.

Its state (:class:`LogosState`: the live votes and the votes still to be judged per series, every
source's hit record, its positions, cash, counters, order-id counter, last decisions and stand-down)
survives restarts (``docs/state.md``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import msgspec
from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import BotLifecycle, Candle, Decision, Order, Position, Signal

from .common import SeriesKey, StrictParams, interval_ms, round_qty
from .consensus import Consensus, HitRate, Vote, consensus
from .standdown import StandDown, StandDownState

__all__ = ["LogosBot", "LogosParams", "LogosState", "citarion_bot_types"]


class LogosParams(StrictParams):
    symbols: list[str] = []
    exchanges: list[str] = []
    interval: str | None = None
    window_bars: int = Field(default=5, ge=1)
    hit_horizon_bars: int = Field(default=5, ge=1)
    hit_memory: int = Field(default=50, ge=1)
    min_sources: int = Field(default=2, ge=1)
    trade: bool = True
    trade_confidence: float = Field(default=0.4, ge=0, le=1)
    trade_agreement: float = Field(default=0.75, ge=0.5, le=1)
    trade_cooldown_bars: int = Field(default=5, ge=0)
    starting_cash: float = Field(default=10_000.0, gt=0)
    max_position_notional: float = Field(default=2_000.0, gt=0)
    cash_fraction: float = Field(default=0.25, gt=0, le=1)
    min_order_notional: float = Field(default=10.0, ge=0)
    alert_cooldown_bars: int = Field(default=20, ge=0)


@dataclass(slots=True)
class _Series:
    time: int = 0
    close: float = 0.0
    bar_ms: int = 60_000
    interval: str = ""
    votes: dict[str, Vote] = field(default_factory=dict)
    pending: list[tuple[Vote, int]] = field(default_factory=list)  # (vote, due time)
    last_trade: int | None = None


class LogosState(msgspec.Struct, kw_only=True):
    """What LOGOS's decisions and orders depend on (series-keyed maps as rows)."""

    series: list[tuple[SeriesKey, _Series]] = []
    hits: dict[str, list[bool]] = {}
    cash: float | None = None
    position: list[tuple[SeriesKey, float]] = []
    counts: dict[str, int] = {}
    last_decision: list[tuple[SeriesKey, Consensus]] = []
    next_order: int = 1
    risk: StandDownState = msgspec.field(default_factory=StandDownState)


class LogosBot(Bot[LogosParams]):
    type_name = "logos"
    description = "LOG: LOGOS; weighted signal consensus per symbol, decisions and autonomous orders"
    State = LogosState

    def __init__(self, ctx: BotContext, params: LogosParams) -> None:
        super().__init__(ctx, params)
        self.series: dict[SeriesKey, _Series] = {}
        self.hits = HitRate(self.params.hit_memory)
        self.cash = self.params.starting_cash
        self.position: dict[SeriesKey, float] = {}
        self.counts: Counter[str] = Counter()
        self.last_decision: dict[SeriesKey, Consensus] = {}
        self.next_order = 1
        self.risk = StandDown(ctx.bot_id, self.params.alert_cooldown_bars)
        # every series of every interval, decided once (see StrategyBot: params attributes are slow)
        self._wants_every = not params.symbols and not params.exchanges and params.interval is None
        self._window_bars = params.window_bars
        #: Each series' oldest live vote time (derived, not state): a candle that cannot expire a vote
        #: skips the scan over the votes.
        self._oldest: dict[SeriesKey, int] = {}
        #: ``round(rate, 4)`` per hit rate met: a rate is one of the few hundred fractions (hits + 1) /
        #: (n + 2) with n <= ``hit_memory``, rounded once each instead of on every decision.
        self._rounded_rates: dict[float, float] = {}

    def snapshot(self) -> LogosState:
        return LogosState(
            series=list(self.series.items()),
            hits=self.hits.state(),
            cash=self.cash,
            position=list(self.position.items()),
            counts=self.counts,
            last_decision=list(self.last_decision.items()),
            next_order=self.next_order,
            risk=self.risk.state(),
        )

    def restore(self, state: LogosState) -> None:
        self.series = dict(state.series)
        self.hits.restore(state.hits)
        if state.cash is not None:
            self.cash = state.cash
        self.position = dict(state.position)
        self.counts = Counter(state.counts)
        self.last_decision = dict(state.last_decision)
        self.next_order = state.next_order
        self.risk.restore(state.risk)
        self._oldest = {}

    def _oldest_vote(self, key: SeriesKey, votes: dict[str, Vote]) -> None:
        if votes:
            self._oldest[key] = min(vote.time for vote in votes.values())
        else:
            self._oldest.pop(key, None)

    def _series(self, key: SeriesKey) -> _Series:
        found = self.series.get(key)
        if found is None:
            found = self.series[key] = _Series()
        return found

    def wants(self, exchange: str, symbol: str) -> bool:
        p = self.params
        return (not p.symbols or symbol in p.symbols) and (not p.exchanges or exchange in p.exchanges)

    async def handle(self, event: Event) -> None:
        payload = event.payload
        if isinstance(payload, Candle):
            p = self.params  # ``wants`` inline: every candle comes here
            if self._wants_every or (
                (not p.symbols or payload.symbol in p.symbols)
                and (not p.exchanges or payload.exchange in p.exchanges)
                and (p.interval is None or payload.interval == p.interval)
            ):
                await self._on_candle(event, payload)
        elif isinstance(payload, Signal):
            own = event.source == self.ctx.code or event.metadata.get("botId") == self.ctx.bot_id
            if not own and self.wants(payload.exchange, payload.symbol):
                await self._on_signal(event, payload)
        elif isinstance(payload, Order) and payload.bot_id == self.ctx.bot_id:
            # filled, or a MARKET order cancelled after a partial fill on a thin book (book mode)
            if event.topic == "trading.order.filled" or payload.filled_quantity > 0:
                key = (payload.exchange, payload.symbol)
                step = payload.filled_quantity if payload.side == "BUY" else -payload.filled_quantity
                self.position[key] = round_qty(self.position.get(key, 0.0) + step)
                self.counts["fills"] += 1
            elif event.topic == "trading.order.rejected":
                self.counts["rejections"] += 1
        elif isinstance(payload, Position) and payload.bot_id == self.ctx.bot_id:
            if payload.cash is not None:
                self.cash = payload.cash
        elif isinstance(payload, BotLifecycle):
            if payload.state in ("stopped", "failed"):
                await self._drop_source({payload.bot_id, payload.code}, event)
        else:
            self.risk.observe(event)

    async def _on_candle(self, event: Event, candle: Candle) -> None:
        key, close = (candle.exchange, candle.symbol), candle.close
        series = self.series.get(key)
        if series is None:
            series = self.series[key] = _Series()
        if candle.open_time > series.time:
            series.time = candle.open_time
        series.close, now = close, series.time
        if candle.interval != series.interval:
            series.bar_ms, series.interval = interval_ms(candle.interval), candle.interval
        risk = self.risk
        if candle.open_time > risk.now_ms or candle.interval != risk.interval:
            risk.clock(candle.open_time, candle.interval)  # once a bar, not once a candle
        pending = series.pending
        if pending:  # judge the votes that came due (most candles find none, or none yet due)
            still: list[tuple[Vote, int]] = []
            for item in pending:
                vote, due = item
                if now < due:
                    still.append(item)
                elif vote.reference is not None:
                    moved = close - vote.reference
                    self.hits.record(vote.source, moved > 0 if vote.direction == "LONG" else moved < 0)
            if len(still) != len(pending):
                series.pending = still
        votes = series.votes
        if not votes:
            return
        window = self._window_bars * series.bar_ms
        oldest = self._oldest.get(key)
        if oldest is not None and now - oldest <= window:
            return  # every vote is at least as young as the oldest: none expires
        expired = [s for s, vote in votes.items() if now - vote.time > window]
        if expired:
            for source in expired:
                del votes[source]
        self._oldest_vote(key, votes)
        if expired:
            self.counts["expired"] += len(expired)
            await self._decide(event, key)

    async def _on_signal(self, event: Event, signal: Signal) -> None:
        key = (signal.exchange, signal.symbol)
        series = self._series(key)
        data_time = event.metadata.get("dataTime")
        time = data_time if isinstance(data_time, int) else series.time
        if series.time - time > self.params.window_bars * series.bar_ms:
            self.counts["stale"] += 1
            return
        source = str(event.metadata.get("botId") or event.source)
        reference = signal.entry_price or series.close or None
        vote = Vote(source, signal.direction, signal.confidence, time, reference)
        series.votes[source] = vote
        self._oldest_vote(key, series.votes)
        series.pending.append((vote, time + self.params.hit_horizon_bars * series.bar_ms))
        self.counts["signals"] += 1
        await self._decide(event, key)

    async def _drop_source(self, names: set[str], event: Event) -> None:
        for key, series in self.series.items():
            gone = [s for s in series.votes if s in names]
            for source in gone:
                del series.votes[source]
            self._oldest_vote(key, series.votes)
            if gone:
                await self._decide(event, key)

    async def _decide(self, event: Event, key: SeriesKey) -> Consensus:
        series = self.series[key]
        votes = list(series.votes.values())
        rates = {v.source: self.hits.rate(v.source) for v in votes}
        result = consensus(votes, rates)
        self.last_decision[key] = result
        decision = Decision(
            symbol=key[1],
            exchange=key[0],
            direction=result.direction,
            confidence=round(result.confidence, 6),
            agreement=round(result.agreement, 6),
            sources=result.sources,
        )
        hit_rates: dict[str, float] = {}
        rounded = self._rounded_rates
        for source, rate in rates.items():
            shown = rounded.get(rate)
            if shown is None:
                shown = rounded[rate] = round(rate, 4)
            hit_rates[source] = shown
        await self.ctx.publish(
            "analytics.decision.made",
            decision,
            causation_id=event.id,
            metadata={"dataTime": series.time, "votes": len(votes), "hitRates": hit_rates},
        )
        self.counts["decisions"] += 1
        await self._maybe_trade(event, key, result)
        return result

    async def _maybe_trade(self, event: Event, key: SeriesKey, result: Consensus) -> None:
        p, series = self.params, self.series[key]
        if not p.trade or result.direction == "NEUTRAL" or result.count < p.min_sources or series.close <= 0:
            return
        if result.confidence < p.trade_confidence or result.agreement < p.trade_agreement:
            return
        if (
            series.last_trade is not None
            and series.time - series.last_trade < p.trade_cooldown_bars * series.bar_ms
        ):
            return
        held = self.position.get(key, 0.0)
        side: Literal["BUY", "SELL"]
        if result.direction == "LONG":
            if not self.risk.may_buy(key[1]):
                self.counts["held_back"] += 1
                return
            amount = min(p.max_position_notional - held * series.close, self.cash * p.cash_fraction)
            if amount < max(p.min_order_notional, 1e-9):
                return
            side, quantity = "BUY", round_qty(amount / series.close)
        else:
            if held <= 0:
                return
            side, quantity = "SELL", held
        if quantity <= 0:
            return
        series.last_trade = series.time
        reason = (
            f"consensus of {result.count} sources: {result.direction}"
            f" confidence {result.confidence:.2f}, agreement {result.agreement:.2f}"
        )
        signal = Signal(
            symbol=key[1],
            exchange=key[0],
            direction=result.direction,
            confidence=round(result.confidence, 4),
            entry_price=series.close,
            reason=reason,
        )
        meta = {"botId": self.ctx.bot_id, "dataTime": series.time}
        await self.ctx.publish("trading.signal.generated", signal, causation_id=event.id, metadata=meta)
        order = Order(
            order_id=f"{self.ctx.bot_id}-{self.next_order}",
            symbol=key[1],
            exchange=key[0],
            side=side,
            type="MARKET",
            quantity=quantity,
            status="NEW",
            bot_id=self.ctx.bot_id,
            reason=reason,
        )
        self.next_order += 1
        # The decision bar is the series' latest: the exchange fills at its close (docs/bots.md).
        await self.ctx.publish("trading.order.submitted", order, causation_id=event.id, metadata=meta)
        self.counts["orders"] += 1

    def stats(self) -> dict[str, Any]:
        return {
            "signalsIn": self.counts["signals"],
            "stale": self.counts["stale"],
            "expired": self.counts["expired"],
            "decisions": self.counts["decisions"],
            "orders": self.counts["orders"],
            "fills": self.counts["fills"],
            "rejections": self.counts["rejections"],
            "heldBack": self.counts["held_back"],
            "blocked": self.risk.blocked,
            "hitRates": self.hits.rates(),
            "positions": {f"{e}:{s}": q for (e, s), q in sorted(self.position.items()) if q},
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [LogosBot]
