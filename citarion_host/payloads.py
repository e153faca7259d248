"""Typed event payloads, with the platform's camelCase JSON field names.

Each payload is a frozen ``msgspec.Struct``: building one in Python, decoding one from JSON and
converting one from a dict all run the same ``__post_init__`` checks, so a bad value is refused
wherever it enters, with the field named. Python attribute names are snake_case; on the wire they
are camelCase (``entry_price`` <-> ``entryPrice``) as in the TypeScript services.

Which payload goes with which topic is declared in :data:`BUILTIN_PAYLOADS`; plugins add their own
through the ``citarion_payload_types`` hook (see ``docs/plugins.md``).
"""

from __future__ import annotations

import math
from typing import Literal

import msgspec

__all__ = [
    "BUILTIN_PAYLOADS",
    "Answer",
    "Balance",
    "BotLifecycle",
    "BusOverflow",
    "Candle",
    "ConnectionStatus",
    "DeadLetter",
    "Decision",
    "HandlerFailure",
    "Order",
    "OrderBook",
    "Payload",
    "PayloadError",
    "PermissionViolation",
    "Position",
    "Query",
    "RiskAlert",
    "Signal",
    "Ticker",
    "Trade",
    "Transfer",
]

Direction = Literal["LONG", "SHORT"]
Side = Literal["BUY", "SELL"]
OrderType = Literal["MARKET", "LIMIT", "STOP", "STOP_LIMIT"]
OrderStatus = Literal["NEW", "PENDING", "PARTIALLY_FILLED", "FILLED", "CANCELLED", "REJECTED"]
Severity = Literal["info", "warning", "critical"]


class PayloadError(ValueError):
    """A payload value breaks its schema. ``field`` is the camelCase wire name."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class Payload(msgspec.Struct, kw_only=True, rename="camel", frozen=True, gc=False):
    """Base of every typed payload."""


_INF = math.inf


def _positive(field: str, value: float | None) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise PayloadError(field, f"must be a finite number > 0, got {value!r}")


def _non_negative(field: str, value: float) -> None:
    if not (value >= 0 and math.isfinite(value)):
        raise PayloadError(field, f"must be a finite number >= 0, got {value!r}")


def _finite(field: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise PayloadError(field, f"must be a finite number, got {value!r}")


def _non_empty(field: str, value: str) -> None:
    if not value:
        raise PayloadError(field, "must not be empty")


class Signal(Payload, frozen=True, gc=False):
    """A strategy's view on a symbol (``trading.signal.*``)."""

    symbol: str
    exchange: str
    direction: Direction
    confidence: float
    entry_price: float | None = None
    stop_loss: float | None = None
    take_profit: float | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        # One cheap expression on the hot path; the detailed checks only run to explain a failure.
        if (
            self.symbol
            and 0.0 <= self.confidence <= 1.0
            and (self.entry_price is None or 0.0 < self.entry_price < _INF)
            and (self.stop_loss is None or 0.0 < self.stop_loss < _INF)
            and (self.take_profit is None or 0.0 < self.take_profit < _INF)
        ):
            return
        _non_empty("symbol", self.symbol)
        if not 0.0 <= self.confidence <= 1.0:
            raise PayloadError("confidence", f"must be within 0..1, got {self.confidence!r}")
        _positive("entryPrice", self.entry_price)
        _positive("stopLoss", self.stop_loss)
        _positive("takeProfit", self.take_profit)


class Order(Payload, frozen=True, gc=False):
    """An order and its state (``trading.order.*``); ``botId`` is the bot instance that owns it."""

    order_id: str
    symbol: str
    exchange: str
    side: Side
    type: OrderType
    quantity: float
    status: OrderStatus
    price: float | None = None
    filled_quantity: float = 0.0
    average_price: float | None = None
    fee: float = 0.0
    bot_id: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if (
            self.order_id
            and self.symbol
            and 0.0 < self.quantity < _INF
            and (self.price is None or 0.0 < self.price < _INF)
            and (self.price is not None or self.type in ("MARKET", "STOP"))
            and 0.0 <= self.filled_quantity < _INF
            and (self.average_price is None or 0.0 < self.average_price < _INF)
            and 0.0 <= self.fee < _INF
        ):
            return
        _non_empty("orderId", self.order_id)
        _non_empty("symbol", self.symbol)
        _positive("quantity", self.quantity)
        _positive("price", self.price)
        if self.type in ("LIMIT", "STOP_LIMIT") and self.price is None:
            raise PayloadError("price", f"is required for a {self.type} order")
        _non_negative("filledQuantity", self.filled_quantity)
        _positive("averagePrice", self.average_price)
        _non_negative("fee", self.fee)


class Position(Payload, frozen=True, gc=False):
    """A bot's position in a symbol after a fill (``trading.position.*``). Quantity is signed."""

    bot_id: str
    symbol: str
    exchange: str
    quantity: float
    entry_price: float
    mark_price: float
    realized_pnl: float = 0.0
    unrealized_pnl: float = 0.0
    fees_paid: float = 0.0
    cash: float | None = None

    def __post_init__(self) -> None:
        _non_empty("symbol", self.symbol)
        _finite("quantity", self.quantity)
        _non_negative("entryPrice", self.entry_price)
        _non_negative("markPrice", self.mark_price)
        _finite("realizedPnl", self.realized_pnl)
        _finite("unrealizedPnl", self.unrealized_pnl)


class Ticker(Payload, frozen=True, gc=False):
    """Best bid/ask and last price (``market.ticker.*``)."""

    symbol: str
    exchange: str
    bid: float
    ask: float
    last: float
    volume: float = 0.0

    def __post_init__(self) -> None:
        if 0.0 < self.bid <= self.ask < _INF and 0.0 < self.last < _INF:
            return
        _positive("bid", self.bid)
        _positive("ask", self.ask)
        _positive("last", self.last)
        if self.ask < self.bid:
            raise PayloadError("ask", f"must be >= bid ({self.bid!r}), got {self.ask!r}")


class Trade(Payload, frozen=True, gc=False):
    """A public trade print (``market.trade.*``)."""

    symbol: str
    exchange: str
    price: float
    quantity: float
    side: Side
    trade_id: str | None = None

    def __post_init__(self) -> None:
        _positive("price", self.price)
        _positive("quantity", self.quantity)


class Candle(Payload, frozen=True, gc=False):
    """One OHLCV bar (``market.candle.*``); ``openTime`` is Unix ms."""

    symbol: str
    exchange: str
    interval: str
    open_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    def __post_init__(self) -> None:
        if (
            0.0 < self.low <= min(self.open, self.close)
            and max(self.open, self.close) <= self.high < _INF
            and 0.0 <= self.volume < _INF
        ):
            return
        for name, value in (("open", self.open), ("high", self.high), ("low", self.low)):
            _positive(name, value)
        _positive("close", self.close)
        _non_negative("volume", self.volume)
        if self.high < max(self.open, self.close, self.low) or self.low > min(self.open, self.close):
            raise PayloadError("high", f"high/low must bound open/close, got {self}")


class OrderBook(Payload, frozen=True, gc=False):
    """Top of the order book (``market.orderbook.*``): ``[price, quantity]`` levels, best first."""

    symbol: str
    exchange: str
    bids: list[tuple[float, float]]
    asks: list[tuple[float, float]]

    def __post_init__(self) -> None:
        if self.bids and self.asks and self.asks[0][0] < self.bids[0][0]:
            raise PayloadError("asks", "best ask is below best bid (crossed book)")


class RiskAlert(Payload, frozen=True, gc=False):
    """A risk condition (``risk.alert.*``); ``key`` lets receivers de-duplicate repeats."""

    kind: str
    severity: Severity
    message: str
    bot_id: str | None = None
    symbol: str | None = None
    value: float | None = None
    limit: float | None = None
    key: str | None = None

    def __post_init__(self) -> None:
        _non_empty("kind", self.kind)


class Decision(Payload, frozen=True, gc=False):
    """LOGOS's consensus for a symbol (``analytics.decision.*``)."""

    symbol: str
    exchange: str
    direction: Literal["LONG", "SHORT", "NEUTRAL"]
    confidence: float
    agreement: float
    sources: dict[str, float] = {}

    def __post_init__(self) -> None:
        for name, value in (("confidence", self.confidence), ("agreement", self.agreement)):
            if not 0.0 <= value <= 1.0:
                raise PayloadError(name, f"must be within 0..1, got {value!r}")


class BotLifecycle(Payload, frozen=True, gc=False):
    """A bot instance changed state (``system.bot.started|stopped|failed|restarting``)."""

    bot_id: str
    code: str
    state: str
    reason: str | None = None
    restarts: int = 0


class HandlerFailure(Payload, frozen=True, gc=False):
    """A subscriber's handler raised (``system.handler.failed``); the bus kept running."""

    subscriber: str
    pattern: str
    event_id: str
    event_topic: str
    error_type: str
    error: str


class DeadLetter(Payload, frozen=True, gc=False):
    """An event that could not be processed (``system.deadletter.*``), kept with the reason.

    ``original`` is the message as received (text), so nothing is lost even when it was not JSON; a
    message too big to park whole keeps its first part (``truncated`` then says how many bytes the
    original had: docs/limits.md).
    """

    reason: str
    error: str
    original: str
    subject: str | None = None
    event_id: str | None = None
    deliveries: int = 0
    truncated: int | None = None


class BusOverflow(Payload, frozen=True, gc=False):
    """A subscriber's queue was full and lower-priority events were dropped (``system.bus.overflow``)."""

    subscriber: str
    pattern: str
    dropped_low: int
    dropped_normal: int
    queued: int


class PermissionViolation(Payload, frozen=True, gc=False):
    """The NATS server refused what a bot's own connection tried (``system.bus.permission``, with
    ``[backend.nats] isolation = "per-bot"``): ``operation`` is ``publish`` or ``subscribe``."""

    bot_id: str
    operation: str
    subject: str


class ConnectionStatus(Payload, frozen=True, gc=False):
    """The bus backend's connection changed (``system.connection.*``)."""

    backend: str
    state: str
    detail: str | None = None


class Balance(Payload, frozen=True, gc=False):
    """One bot's holding of one asset on one exchange (``trading.position.balance.<exchange>``).

    Published by the exchange after every change (fills, transfers). ``available`` is what new
    orders and transfers may use: ``total`` less what resting orders and pending transfers reserve.
    Multi-venue bots (ARB, TRF) size trades and transfers by it.
    """

    bot_id: str
    exchange: str
    asset: str
    total: float
    available: float

    def __post_init__(self) -> None:
        _non_empty("botId", self.bot_id)
        _non_empty("exchange", self.exchange)
        _non_empty("asset", self.asset)
        _finite("total", self.total)
        _finite("available", self.available)


TransferStatus = Literal["REQUESTED", "PENDING", "SETTLED", "REJECTED"]


class Transfer(Payload, frozen=True, gc=False):
    """Moving an asset between two exchanges of one bot's account (``trading.order.transfer.*``).

    ``transferId`` is the requester's client id: the exchange treats a repeated request with the same
    ``(botId, transferId)`` as the same transfer, so a redelivered request never moves money twice.
    ``settleTime`` (data time, Unix ms) is when a PENDING transfer settles or a SETTLED one did.
    """

    transfer_id: str
    bot_id: str
    asset: str
    from_exchange: str
    to_exchange: str
    amount: float
    status: TransferStatus
    fee: float = 0.0
    settle_time: int | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        _non_empty("transferId", self.transfer_id)
        _non_empty("botId", self.bot_id)
        _non_empty("asset", self.asset)
        _non_empty("fromExchange", self.from_exchange)
        _non_empty("toExchange", self.to_exchange)
        _positive("amount", self.amount)
        _non_negative("fee", self.fee)
        if self.from_exchange == self.to_exchange:
            raise PayloadError("toExchange", f"must differ from fromExchange ({self.from_exchange!r})")


class Query(Payload, frozen=True, gc=False):
    """A question to the platform's assistant, ORA (``analytics.query.asked``, request/reply)."""

    question: str
    asker: str | None = None

    def __post_init__(self) -> None:
        _non_empty("question", self.question.strip())
        if len(self.question) > 1_000:
            raise PayloadError("question", f"at most 1000 characters, got {len(self.question)}")


class Answer(Payload, frozen=True, gc=False):
    """ORA's answer (``analytics.query.answered``): the text, the events it cites, or a refusal.

    ``answered`` is false for a question ORA cannot answer from the platform's state; ``text`` then
    says so and ``suggestions`` lists questions it can answer. ``intent`` is the fixed query it
    picked (None when refused); ``score`` the matcher's similarity.
    """

    question: str
    answered: bool
    text: str
    intent: str | None = None
    event_ids: list[str] = []
    suggestions: list[str] = []
    score: float = 0.0


#: Topic pattern -> payload type for the platform's own events. Topics in a known domain that match
#: none of these keep a plain dict payload.
BUILTIN_PAYLOADS: dict[str, type[Payload]] = {
    "trading.signal.>": Signal,
    "trading.order.>": Order,
    "trading.position.>": Position,
    "market.ticker.>": Ticker,
    "market.trade.>": Trade,
    "market.candle.>": Candle,
    "market.orderbook.>": OrderBook,
    "risk.alert.>": RiskAlert,
    "analytics.decision.>": Decision,
    "system.bot.>": BotLifecycle,
    "system.handler.>": HandlerFailure,
    "system.deadletter.>": DeadLetter,
    "system.bus.overflow": BusOverflow,
    "system.bus.permission": PermissionViolation,
    "system.connection.>": ConnectionStatus,
    "trading.order.transfer.>": Transfer,
    "trading.position.balance.>": Balance,
    "analytics.query.asked": Query,
    "analytics.query.answered": Answer,
}
