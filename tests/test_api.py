"""The seed's helper API: publish_* / subscribe_to_* on the manager's bus or an explicit one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from citarion_host import api
from citarion_host.bus import EventBus, MemoryBus
from citarion_host.errors import BusError
from citarion_host.events import Event
from citarion_host.payloads import Order, RiskAlert, Signal, Ticker

SIGNAL = {
    "symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.85,
    "entryPrice": 50000, "stopLoss": 48000, "takeProfit": 55000,
}  # fmt: skip
ORDER = {
    "orderId": "12345", "symbol": "BTCUSDT", "exchange": "binance", "side": "BUY", "type": "LIMIT",
    "price": 50000, "quantity": 0.01, "status": "FILLED",
}  # fmt: skip


@pytest.fixture
async def bus() -> AsyncIterator[EventBus]:
    bus = await api.manager.initialize({"type": "memory"})
    yield bus
    await api.manager.shutdown()


async def test_seed_examples_work_unchanged(bus: EventBus) -> None:
    got: list[Event] = []

    async def keep(event: Event) -> None:
        got.append(event)

    await api.subscribe_to_signals(keep)
    await api.subscribe_to_orders(keep)
    signal = await api.publish_signal("GRD", SIGNAL)
    order = await api.publish_order("GRD", ORDER, "filled")
    assert got == [signal, order]
    assert signal.topic == "trading.signal.generated" and isinstance(signal.payload, Signal)
    assert order.topic == "trading.order.filled" and isinstance(order.payload, Order)
    assert order.priority == "high"


async def test_market_risk_position_helpers(bus: EventBus) -> None:
    got: list[str] = []

    async def keep(event: Event) -> None:
        got.append(event.topic)

    await api.subscribe_to_market(keep, "ticker")
    await api.subscribe_to_risk_alerts(keep)
    await api.subscribe_to_positions(keep)
    await api.subscribe_to_system(keep)
    ticker = Ticker(symbol="ETHUSDT", exchange="kraken", bid=1.0, ask=1.1, last=1.05)
    await api.publish_ticker("LUM", ticker)
    await api.publish_trade("LUM", {"symbol": "E", "exchange": "k", "price": 1, "quantity": 1, "side": "BUY"})
    alert = await api.publish_risk_alert("RSK", RiskAlert(kind="dd", severity="critical", message="m"))
    await api.publish_position(
        "EXC",
        {"botId": "g", "symbol": "E", "exchange": "k", "quantity": 1, "entryPrice": 1, "markPrice": 1},
    )
    assert alert.priority == "critical"
    assert got == ["market.ticker.updated.kraken.ETHUSDT", "risk.alert.triggered", "trading.position.updated"]


async def test_explicit_bus_argument_wins() -> None:
    got: list[Event] = []

    async def keep(event: Event) -> None:
        got.append(event)

    async with MemoryBus() as own:
        await api.subscribe_to_signals(keep, bus=own)
        await api.publish_signal("GRD", SIGNAL, bus=own, action="expired")
    assert [e.topic for e in got] == ["trading.signal.expired"]


async def test_helpers_without_a_bus_say_what_to_do() -> None:
    assert not api.manager.initialized
    with pytest.raises(BusError, match=r"manager.initialize"):
        await api.publish_signal("GRD", SIGNAL)


async def test_initialize_twice_is_an_error(bus: EventBus) -> None:
    with pytest.raises(BusError, match="already initialized"):
        await api.manager.initialize({"type": "memory"})
