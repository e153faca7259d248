"""HFT (Helios), high-frequency: trade the order book's imbalance for seconds, with a time stop.

On every book of a series it trades (``symbols`` / ``exchanges``), over the top ``levels``::

    imbalance I = Qbid / (Qbid + Qask)         micro-price = bid * (1 - I) + ask * I   (top level)

(:mod:`citarion_bots.quant.microstructure`; e.g. bid 100 x 3 / ask 101 x 1 -> I = 0.75, micro-price
100.75.) A heavy bid (``I >= entry_imbalance``) whose micro-price stands at least ``min_edge_bps``
over the mid is a LONG: buy ``order_quote`` worth as an IOC limit at the best ask (never paying
more than the price seen). A heavy ask (``I <= 1 - entry_imbalance``) is a SHORT: sold only with
``allow_short``. No new entry (nor signal) within ``cooldown_ms`` of the last on the series, nor
beyond the inventory cap ``max_position_quote`` (|position| x mid).

Exits, at market: the **time stop** (the position is ``hold_ms`` old in data time) or the lean
gone (``I <= exit_imbalance`` for a long, ``>= 1 - exit_imbalance`` for a short). Holding periods
are seconds: data time is the books' ``dataTime``.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import OrderBook

from .common import SeriesKey
from .desk import DeskBot, DeskParams, DeskState, Fill
from .quant.microstructure import imbalance, micro_price, mid_price

__all__ = ["HftBot", "HftParams", "citarion_bot_types"]


class HftParams(DeskParams):
    symbols: list[str] = []
    exchanges: list[str] = []
    levels: int = Field(default=1, ge=1, le=50)
    entry_imbalance: float = Field(default=0.7, gt=0.5, lt=1)
    exit_imbalance: float = Field(default=0.5, gt=0, lt=1)
    min_edge_bps: float = Field(default=0.0, ge=0)
    order_quote: float = Field(default=100.0, gt=0)
    max_position_quote: float = Field(default=300.0, gt=0)
    hold_ms: int = Field(default=5_000, gt=0)
    cooldown_ms: int = Field(default=1_000, ge=0)
    allow_short: bool = False
    signals: bool = True

    @model_validator(mode="after")
    def _check(self) -> HftParams:
        if self.exit_imbalance >= self.entry_imbalance:
            raise ValueError("exit_imbalance must be below entry_imbalance")
        return self


class HftState(DeskState, kw_only=True):
    """A desk's state plus when each position opened, each series' last entry and last reading."""

    entered: list[tuple[SeriesKey, int]] = []
    last_entry: list[tuple[SeriesKey, int]] = []
    last: list[tuple[SeriesKey, tuple[float, float]]] = []


class HftBot(DeskBot[HftParams]):
    type_name = "hft-imbalance"
    description = "HFT: order-book imbalance and micro-price scalping with a time stop and an inventory cap"
    State = HftState

    def __init__(self, ctx: BotContext, params: HftParams) -> None:
        super().__init__(ctx, params)
        self.entered: dict[SeriesKey, int] = {}
        self.last_entry: dict[SeriesKey, int] = {}
        self.last: dict[SeriesKey, tuple[float, float]] = {}  # (imbalance, micro-price)

    def state_fields(self) -> dict[str, Any]:
        return {
            **super().state_fields(),
            "entered": list(self.entered.items()),
            "last_entry": list(self.last_entry.items()),
            "last": list(self.last.items()),
        }

    def restore(self, state: Any) -> None:
        super().restore(state)
        self.entered, self.last_entry = dict(state.entered), dict(state.last_entry)
        self.last = dict(state.last)

    def wants(self, exchange: str, symbol: str) -> bool:
        p = self.params
        return (not p.symbols or symbol in p.symbols) and (not p.exchanges or exchange in p.exchanges)

    async def on_book(self, event: Event, book: OrderBook, time: int) -> None:
        if not self.wants(book.exchange, book.symbol):
            return
        p, key = self.params, (book.exchange, book.symbol)
        lean = imbalance(book.bids, book.asks, p.levels)
        micro, mid = micro_price(book.bids, book.asks), mid_price(book.bids, book.asks)
        self.last[key] = (lean, micro)
        held = self.position[key]
        if held:
            aged = time - self.entered.get(key, time) >= p.hold_ms
            faded = lean <= p.exit_imbalance if held > 0 else lean >= 1 - p.exit_imbalance
            if aged or faded:
                why = f"time stop ({p.hold_ms} ms)" if aged else f"imbalance back to {lean:.2f}"
                if await self.flatten(event, key, time, why) is not None:
                    self.counts["time_stops" if aged else "fades"] += 1
                return
        if self.working(tag="entry", key=key) or time - self.last_entry.get(key, -(10**18)) < p.cooldown_ms:
            return
        edge_bps = (micro - mid) / mid * 10_000
        if lean >= p.entry_imbalance and edge_bps >= p.min_edge_bps:
            await self._enter(event, book, "BUY", lean, micro, time)
        elif lean <= 1 - p.entry_imbalance and -edge_bps >= p.min_edge_bps:
            await self._enter(event, book, "SELL", lean, micro, time)

    async def _enter(
        self, event: Event, book: OrderBook, side: str, lean: float, micro: float, time: int
    ) -> None:
        p, key = self.params, (book.exchange, book.symbol)
        buy = side == "BUY"
        price = book.asks[0][0] if buy else book.bids[0][0]
        quantity = p.order_quote / price
        mid = mid_price(book.bids, book.asks)
        if (abs(self.position[key] + (quantity if buy else -quantity))) * mid > p.max_position_quote + 1e-9:
            self.counts["capped"] += 1
            return
        reason = f"imbalance {lean:.2f}, micro-price {micro:.10g} vs mid {mid:.10g}"
        self.last_entry[key] = time  # the cooldown spaces views too: a lean is one view, not one per book
        if p.signals:
            await self.signal(
                event, exchange=book.exchange, symbol=book.symbol, direction="LONG" if buy else "SHORT",
                confidence=lean if buy else 1 - lean, time=time, entry=price, reason=reason,
            )  # fmt: skip
        if buy or p.allow_short:
            await self.submit(
                event, exchange=book.exchange, symbol=book.symbol, side="BUY" if buy else "SELL",
                quantity=quantity, price=price, tif="IOC", time=time, tag="entry", reason=reason,
            )  # fmt: skip

    async def on_fill(self, event: Event, fill: Fill) -> None:
        if fill.working.tag == "entry" and abs(self.position[fill.key]) == fill.quantity:
            self.entered[fill.key] = fill.working.data_time  # the position opened with this fill

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "timeStops": self.counts["time_stops"],
            "fades": self.counts["fades"],
            "capped": self.counts["capped"],
            "last": {
                f"{e}:{s}": {"imbalance": round(i, 6), "microPrice": m}
                for (e, s), (i, m) in sorted(self.last.items())
            },
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [HftBot]
