"""The platform's helper API (``publishSignal``, ``subscribeToSignals``... in Python).

The helpers build a validated event (id, timestamp, domain/entity/action from the topic) and publish
it on a bus: the one passed as ``bus=``, or the one :data:`manager` opened. Payloads may be the typed
struct (``Signal(...)``) or a mapping with the wire's camelCase names, as in the TypeScript examples::

    await manager.initialize({"type": "memory"})
    await subscribe_to_signals(on_signal)
    await publish_signal("GRD", {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG",
                                 "confidence": 0.85, "entryPrice": 50000})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .bus import BackendSettings, EventBus, Handler, Subscription, create_bus
from .errors import BusError
from .events import Event, Priority, catalog, make_event
from .payloads import Candle, Order, OrderBook, Position, RiskAlert, Signal, Ticker, Trade

__all__ = [
    "EventBusManager",
    "manager",
    "publish_candle",
    "publish_order",
    "publish_orderbook",
    "publish_position",
    "publish_risk_alert",
    "publish_signal",
    "publish_ticker",
    "publish_trade",
    "selfcheck",
    "subscribe_to_market",
    "subscribe_to_orders",
    "subscribe_to_positions",
    "subscribe_to_risk_alerts",
    "subscribe_to_signals",
    "subscribe_to_system",
]


class EventBusManager:
    """Opens the configured backend once and hands it to the helpers (``EventBusManager`` in TS)."""

    def __init__(self) -> None:
        self._bus: EventBus | None = None

    async def initialize(self, settings: BackendSettings | Mapping[str, Any] | None = None) -> EventBus:
        """Open the bus described by ``settings`` (``{"type": "memory"}`` by default).

        Unlike a host, this bus delivers concurrently unless ``settings`` ask for ``deterministic``: the
        helpers serve live pub/sub, where a handler runs as soon as its event is published.
        """
        if self._bus is not None and not self._bus.closed:
            raise BusError("the event bus is already initialized; call shutdown() first")
        if not isinstance(settings, BackendSettings):
            settings = {"deterministic": False, **(settings or {})}
        bus = create_bus(settings)
        await bus.start()
        self._bus = bus
        return bus

    @property
    def bus(self) -> EventBus:
        if self._bus is None or self._bus.closed:
            raise BusError("no event bus: call `await manager.initialize(...)` or pass bus=")
        return self._bus

    @property
    def initialized(self) -> bool:
        return self._bus is not None and not self._bus.closed

    async def shutdown(self) -> None:
        if self._bus is not None:
            await self._bus.close()
            self._bus = None


#: The default manager the helpers use when no ``bus=`` is given.
manager = EventBusManager()

Payload = Mapping[str, Any]


async def _publish(
    topic: str,
    source: str,
    payload: Any,
    priority: Priority,
    bus: EventBus | None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Event:
    event = make_event(
        topic,
        payload,
        source=source,
        priority=priority,
        correlation_id=correlation_id,
        causation_id=causation_id,
    )
    await (bus or manager.bus).publish(event)
    return event


async def publish_signal(
    source: str,
    payload: Signal | Payload,
    *,
    action: str = "generated",
    priority: Priority = "normal",
    bus: EventBus | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Event:
    """Publish ``trading.signal.<action>`` (default ``generated``)."""
    return await _publish(
        f"trading.signal.{action}", source, payload, priority, bus, correlation_id, causation_id
    )


async def publish_order(
    source: str,
    payload: Order | Payload,
    action: str = "created",
    *,
    priority: Priority = "high",
    bus: EventBus | None = None,
    correlation_id: str | None = None,
    causation_id: str | None = None,
) -> Event:
    """Publish ``trading.order.<action>`` (``created``, ``filled``, ``rejected``...)."""
    return await _publish(
        f"trading.order.{action}", source, payload, priority, bus, correlation_id, causation_id
    )


async def publish_position(
    source: str,
    payload: Position | Payload,
    *,
    action: str = "updated",
    priority: Priority = "normal",
    bus: EventBus | None = None,
    causation_id: str | None = None,
) -> Event:
    """Publish ``trading.position.<action>``."""
    return await _publish(f"trading.position.{action}", source, payload, priority, bus, None, causation_id)


async def publish_ticker(
    source: str, payload: Ticker | Payload, *, priority: Priority = "normal", bus: EventBus | None = None
) -> Event:
    """Publish ``market.ticker.updated.<exchange>.<symbol>`` (qualified, so consumers can filter)."""
    ticker = catalog.coerce("market.ticker.updated", payload, Ticker)
    return await _publish(
        f"market.ticker.updated.{ticker.exchange}.{ticker.symbol}", source, ticker, priority, bus
    )


async def publish_trade(
    source: str, payload: Trade | Payload, *, priority: Priority = "low", bus: EventBus | None = None
) -> Event:
    """Publish ``market.trade.executed``."""
    return await _publish("market.trade.executed", source, payload, priority, bus, None, None)


async def publish_candle(
    source: str,
    payload: Candle | Payload,
    *,
    action: str = "closed",
    priority: Priority = "normal",
    bus: EventBus | None = None,
) -> Event:
    """Publish ``market.candle.<action>`` (``closed`` for a finished bar)."""
    return await _publish(f"market.candle.{action}", source, payload, priority, bus, None, None)


async def publish_orderbook(
    source: str, payload: OrderBook | Payload, *, priority: Priority = "low", bus: EventBus | None = None
) -> Event:
    """Publish ``market.orderbook.updated``."""
    return await _publish("market.orderbook.updated", source, payload, priority, bus, None, None)


async def publish_risk_alert(
    source: str,
    payload: RiskAlert | Payload,
    *,
    priority: Priority = "critical",
    bus: EventBus | None = None,
    causation_id: str | None = None,
) -> Event:
    """Publish ``risk.alert.triggered`` (critical by default: it overtakes queued events)."""
    return await _publish("risk.alert.triggered", source, payload, priority, bus, None, causation_id)


async def _subscribe(pattern: str, handler: Handler, bus: EventBus | None, **options: Any) -> Subscription:
    return await (bus or manager.bus).subscribe(pattern, handler, **options)


async def subscribe_to_signals(
    handler: Handler, *, bus: EventBus | None = None, **options: Any
) -> Subscription:
    """Every ``trading.signal.*`` event."""
    return await _subscribe("trading.signal.>", handler, bus, **options)


async def subscribe_to_orders(
    handler: Handler, *, bus: EventBus | None = None, **options: Any
) -> Subscription:
    """Every ``trading.order.*`` event."""
    return await _subscribe("trading.order.>", handler, bus, **options)


async def subscribe_to_positions(
    handler: Handler, *, bus: EventBus | None = None, **options: Any
) -> Subscription:
    """Every ``trading.position.*`` event."""
    return await _subscribe("trading.position.>", handler, bus, **options)


async def subscribe_to_market(
    handler: Handler, entity: str = "*", *, bus: EventBus | None = None, **options: Any
) -> Subscription:
    """Market data: all of it, or one entity (``ticker``, ``trade``, ``candle``, ``orderbook``)."""
    return await _subscribe(f"market.{entity}.>", handler, bus, **options)


async def subscribe_to_risk_alerts(
    handler: Handler, *, bus: EventBus | None = None, **options: Any
) -> Subscription:
    """Every ``risk.alert.*`` event."""
    return await _subscribe("risk.alert.>", handler, bus, **options)


async def subscribe_to_system(
    handler: Handler, *, bus: EventBus | None = None, **options: Any
) -> Subscription:
    """Every ``system.*`` event: bot lifecycle, handler failures, dead letters, overflow."""
    return await _subscribe("system.>", handler, bus, **options)


async def selfcheck() -> dict[str, Any]:
    """Publish through the main helpers, seed-style, on the in-memory bus; check what arrives."""
    received: list[str] = []

    async def note(event: Any) -> None:
        received.append(event.topic)

    bus = await manager.initialize({"type": "memory"})
    try:
        await subscribe_to_signals(note)
        await subscribe_to_orders(note)
        await subscribe_to_market(note)
        await subscribe_to_risk_alerts(note)
        signal = {"symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.85}
        await publish_signal("GRD", {**signal, "entryPrice": 50000, "stopLoss": 48000})
        order = {
            "orderId": "12345",
            "symbol": "BTCUSDT",
            "exchange": "binance",
            "side": "BUY",
            "type": "LIMIT",
            "price": 50000,
            "quantity": 0.01,
            "status": "FILLED",
        }
        await publish_order("GRD", order, "filled")
        ticker = {"symbol": "BTCUSDT", "exchange": "binance", "bid": 49999, "ask": 50001, "last": 50000}
        await publish_ticker("LUM", ticker)
        alert = {"kind": "drawdown", "severity": "critical", "message": "self-check"}
        await publish_risk_alert("RSK", alert)
        return {"published": bus.published, "received": received, "ok": len(received) == 4}
    finally:
        await manager.shutdown()
