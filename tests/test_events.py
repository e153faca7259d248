"""Envelope and wire format: camelCase names, round trips, and errors that name topic and field."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from citarion_host.events import (
    Event,
    EventCatalog,
    InvalidEventError,
    catalog,
    decode_event,
    encode_event,
    make_event,
)
from citarion_host.payloads import (
    Answer,
    Balance,
    BotLifecycle,
    BusOverflow,
    Candle,
    ConnectionStatus,
    DeadLetter,
    Decision,
    HandlerFailure,
    Order,
    OrderBook,
    Payload,
    PayloadError,
    PermissionViolation,
    Position,
    Query,
    RiskAlert,
    Signal,
    Ticker,
    Trade,
    Transfer,
)

BASE_EVENT_FIELDS = {
    "id", "topic", "domain", "entity", "action", "timestamp", "source", "priority",
    "correlationId", "causationId", "metadata", "payload",
}  # fmt: skip

#: One valid example of every built-in payload type, in wire (camelCase) form, with its topic.
EXAMPLES: dict[type[Payload], tuple[str, dict[str, Any]]] = {
    Signal: ("trading.signal.generated", {
        "symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.85,
        "entryPrice": 50000.0, "stopLoss": 48000.0, "takeProfit": 55000.0, "reason": "grid",
    }),
    Order: ("trading.order.filled", {
        "orderId": "12345", "symbol": "BTCUSDT", "exchange": "binance", "side": "BUY", "type": "LIMIT",
        "price": 50000.0, "quantity": 0.01, "status": "FILLED", "filledQuantity": 0.01,
        "averagePrice": 50000.0, "fee": 0.5, "botId": "grid-1", "reason": None,
    }),
    Position: ("trading.position.updated", {
        "botId": "grid-1", "symbol": "BTCUSDT", "exchange": "binance", "quantity": -0.5,
        "entryPrice": 50000.0, "markPrice": 50100.0, "realizedPnl": 12.5, "unrealizedPnl": -50.0,
        "feesPaid": 1.0, "cash": 1000.0,
    }),
    Ticker: ("market.ticker.updated.binance.BTCUSDT", {
        "symbol": "BTCUSDT", "exchange": "binance", "bid": 49999.0, "ask": 50001.0, "last": 50000.0,
        "volume": 12.0,
    }),
    Trade: ("market.trade.executed", {
        "symbol": "BTCUSDT", "exchange": "binance", "price": 50000.0, "quantity": 0.1, "side": "SELL",
        "tradeId": "t-1",
    }),
    Candle: ("market.candle.closed", {
        "symbol": "BTCUSDT", "exchange": "binance", "interval": "1m", "openTime": 1700000000000,
        "open": 100.0, "high": 110.0, "low": 95.0, "close": 105.0, "volume": 3.0,
    }),
    OrderBook: ("market.orderbook.updated", {
        "symbol": "BTCUSDT", "exchange": "binance", "bids": [[99.0, 1.0]], "asks": [[101.0, 2.0]],
    }),
    RiskAlert: ("risk.alert.triggered", {
        "kind": "drawdown", "severity": "critical", "message": "drawdown 12% > 10%", "botId": "grid-1",
        "symbol": "BTCUSDT", "value": 0.12, "limit": 0.1, "key": "drawdown:grid-1",
    }),
    Decision: ("analytics.decision.made", {
        "symbol": "BTCUSDT", "exchange": "binance", "direction": "LONG", "confidence": 0.7,
        "agreement": 0.9, "sources": {"GRD": 0.6},
    }),
    BotLifecycle: ("system.bot.started", {
        "botId": "grid-1", "code": "GRD", "state": "running", "reason": None, "restarts": 0,
    }),
    HandlerFailure: ("system.handler.failed", {
        "subscriber": "grid-1", "pattern": "market.>", "eventId": "x", "eventTopic": "market.ticker.updated",
        "errorType": "ValueError", "error": "bad",
    }),
    DeadLetter: ("system.deadletter.malformed", {
        "reason": "malformed", "error": "not json", "original": "{", "subject": "trading.x.y",
        "eventId": None, "deliveries": 0, "truncated": None,
    }),
    BusOverflow: ("system.bus.overflow", {
        "subscriber": "s", "pattern": "market.>", "droppedLow": 3, "droppedNormal": 0, "queued": 10,
    }),
    ConnectionStatus: ("system.connection.lost", {"backend": "nats", "state": "disconnected", "detail": None}),
    PermissionViolation: ("system.bus.permission", {
        "botId": "rogue", "operation": "publish", "subject": "trading.order.submitted",
    }),
    Balance: ("trading.position.balance.binance", {
        "botId": "arb-1", "exchange": "binance", "asset": "USDT", "total": 5000.0, "available": 4900.0,
    }),
    Transfer: ("trading.order.transfer.requested", {
        "transferId": "kron-t1", "botId": "arb-1", "asset": "USDT", "fromExchange": "binance",
        "toExchange": "bybit", "amount": 250.0, "status": "REQUESTED", "fee": 0.0, "settleTime": None,
        "reason": None,
    }),
    Query: ("analytics.query.asked", {"question": "why is mesh blocked", "asker": "cli"}),
    Answer: ("analytics.query.answered", {
        "question": "why is mesh blocked", "answered": True, "text": "mesh is blocked: ...",
        "intent": "why_blocked", "eventIds": ["0190a1b2-0000-7000-8000-000000000001"], "suggestions": [],
        "score": 0.91,
    }),
}  # fmt: skip


def test_every_builtin_payload_type_has_an_example() -> None:
    from citarion_host.payloads import BUILTIN_PAYLOADS

    assert set(BUILTIN_PAYLOADS.values()) == set(EXAMPLES)


@pytest.mark.parametrize("payload_type", list(EXAMPLES), ids=lambda t: t.__name__)
def test_round_trip_uses_the_wire_names(payload_type: type[Payload]) -> None:
    topic, wire_payload = EXAMPLES[payload_type]
    event = make_event(topic, wire_payload, source="GRD", correlation_id="c-1", causation_id="e-0",
                       metadata={"run": 1})  # fmt: skip
    assert isinstance(event.payload, payload_type)
    data = encode_event(event)
    document = json.loads(data)
    assert set(document) == BASE_EVENT_FIELDS
    assert document["payload"] == wire_payload, "payload keys are exactly the camelCase wire names"
    assert (document["domain"], document["entity"], document["action"]) == tuple(topic.split(".")[:3])
    assert decode_event(data) == event


def test_optional_envelope_fields_are_omitted_not_null() -> None:
    event = make_event("trading.signal.generated", EXAMPLES[Signal][1], source="GRD")
    document = json.loads(encode_event(event))
    assert "correlationId" not in document and "causationId" not in document
    assert document["priority"] == "normal" and document["source"] == "GRD"
    assert decode_event(encode_event(event)) == event


def test_id_is_uuid7_and_timestamp_is_unix_ms() -> None:
    import time
    import uuid

    before = time.time_ns() // 1_000_000
    event = make_event("trading.signal.generated", EXAMPLES[Signal][1], source="GRD")
    after = time.time_ns() // 1_000_000
    assert uuid.UUID(event.id).version == 7
    assert before <= event.timestamp <= after
    assert int(event.id.replace("-", "")[:12], 16) >= before


def test_decodes_what_a_typescript_service_sends() -> None:
    ts_json = (
        '{"id":"0190b1c2-0000-7000-8000-000000000001","topic":"trading.order.filled","domain":"trading",'
        '"entity":"order","action":"filled","timestamp":1720000000000,"source":"GRD","priority":"high",'
        '"payload":{"orderId":"12345","symbol":"BTCUSDT","exchange":"binance","side":"BUY","type":"LIMIT",'
        '"price":50000,"quantity":0.01,"status":"FILLED"}}'
    )
    event = decode_event(ts_json)
    assert isinstance(event.payload, Order)
    assert event.payload.order_id == "12345" and event.payload.price == 50000.0
    assert event.priority == "high" and event.metadata == {}


def test_unknown_topic_in_known_domain_keeps_a_dict_payload() -> None:
    event = make_event("analytics.note.created", {"text": "hi", "n": [1, 2]}, source="ORA")
    assert decode_event(encode_event(event)).payload == {"text": "hi", "n": [1, 2]}


def test_qualified_topics_keep_first_three_tokens() -> None:
    event = make_event("market.ticker.updated.binance.BTCUSDT", EXAMPLES[Ticker][1], source="LUM")
    assert (event.domain, event.entity, event.action) == ("market", "ticker", "updated")


@pytest.mark.parametrize(
    ("topic", "payload", "message"),
    [
        ("trading.signal", {}, "topic 'trading.signal': field 'topic': needs at least"),
        ("trading..signal.x", {}, "field 'topic': topic 'trading..signal.x' has an empty token"),
        ("trading.signal.*", {}, "field 'topic': topic 'trading.signal.*' contains wildcard"),
        ("crypto.signal.generated", {}, "topic 'crypto.signal.generated': field 'domain': unknown domain 'crypto'"),
        ("trading.signal.generated", {**EXAMPLES[Signal][1], "confidence": 1.5},
         "topic 'trading.signal.generated': field 'payload.confidence': must be within 0..1, got 1.5"),
        ("trading.signal.generated", {**EXAMPLES[Signal][1], "direction": "UP"},
         "topic 'trading.signal.generated': field 'payload.direction': Invalid enum value 'UP'"),
        ("trading.signal.generated", {"symbol": "BTCUSDT"},
         "topic 'trading.signal.generated': field 'payload.exchange': Object missing required field"),
        ("trading.order.created", {**EXAMPLES[Order][1], "quantity": 0},
         "topic 'trading.order.created': field 'payload.quantity': must be a finite number > 0, got 0"),
        ("trading.order.created", {**EXAMPLES[Order][1], "type": "LIMIT", "price": None},
         "topic 'trading.order.created': field 'payload.price': is required for a LIMIT order"),
        ("market.ticker.updated", {**EXAMPLES[Ticker][1], "bid": 10.0, "ask": 9.0},
         "topic 'market.ticker.updated': field 'payload.ask': must be >= bid"),
        ("trading.signal.generated", ["not", "a", "mapping"],
         "topic 'trading.signal.generated': field 'payload': expected Signal"),
    ],
)  # fmt: skip
def test_make_rejects_bad_input_naming_topic_and_field(topic: str, payload: Any, message: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        make_event(topic, payload, source="GRD")
    assert message in str(caught.value)


def test_make_rejects_bad_priority_and_source() -> None:
    with pytest.raises(InvalidEventError, match="field 'priority'"):
        make_event("trading.signal.generated", EXAMPLES[Signal][1], source="GRD", priority="urgent")  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError, match="field 'source'"):
        make_event("trading.signal.generated", EXAMPLES[Signal][1], source="")


def _wire(**changes: Any) -> bytes:
    document = json.loads(
        encode_event(make_event("trading.signal.generated", EXAMPLES[Signal][1], source="GRD"))
    )
    for key, value in changes.items():
        if value is None:
            document.pop(key)
        else:
            document[key] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{oops", "event: field '<root>': JSON is malformed"),
        (_wire(entity="order"), "topic 'trading.signal.generated': field 'entity': 'order' contradicts the topic"),
        (_wire(domain="market"), "field 'domain': 'market' contradicts the topic ('trading')"),
        (_wire(topic="bogus.signal.generated", domain="bogus"), "field 'domain': unknown domain 'bogus'"),
        (_wire(priority="urgent"), "topic 'trading.signal.generated': field 'priority'"),
        (_wire(timestamp="yesterday"), "topic 'trading.signal.generated': field 'timestamp': Expected `int`"),
        (_wire(source=None), "topic 'trading.signal.generated': field 'source'"),
        (_wire(payload={**EXAMPLES[Signal][1], "confidence": -1}), "field 'payload.confidence': must be within 0..1"),
        (_wire(payload={**EXAMPLES[Signal][1], "entryPrice": "cheap"}), "field 'payload.entryPrice': Expected `float | null`"),
    ],
)  # fmt: skip
def test_decode_rejects_bad_wire_data_naming_topic_and_field(data: bytes, message: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        decode_event(data)
    assert message in str(caught.value)


def test_payload_structs_validate_on_construction() -> None:
    with pytest.raises(PayloadError, match="confidence: must be within 0..1, got 2"):
        Signal(symbol="BTCUSDT", exchange="binance", direction="LONG", confidence=2)
    with pytest.raises(PayloadError, match="entryPrice: must be a finite number > 0, got nan"):
        Signal(
            symbol="BTCUSDT", exchange="binance", direction="LONG", confidence=0.5, entry_price=float("nan")
        )


def test_events_are_immutable() -> None:
    event = make_event("trading.signal.generated", EXAMPLES[Signal][1], source="GRD")
    with pytest.raises(AttributeError):
        event.topic = "x.y.z"  # type: ignore[misc]


def test_catalog_is_extensible_by_plugins() -> None:
    class Funding(Payload, frozen=True):
        symbol: str
        rate: float

    own = EventCatalog.with_builtins()
    own.add_domain("defi")
    own.register_payload("defi.funding.>", Funding)
    event = own.make("defi.funding.updated", {"symbol": "BTC", "rate": 0.01}, source="LUM")
    assert isinstance(event.payload, Funding)
    assert own.decode(own.encode(event)) == event
    with pytest.raises(InvalidEventError, match="unknown domain 'defi'"):
        catalog.make("defi.funding.updated", {}, source="LUM")
    with pytest.raises(TypeError, match="must be a msgspec.Struct"):
        own.register_payload("defi.x.>", dict)  # type: ignore[arg-type]


def test_most_specific_payload_pattern_wins() -> None:
    class Special(Payload, frozen=True):
        note: str

    own = EventCatalog.with_builtins()
    own.register_payload("trading.signal.special", Special)
    assert own.payload_type("trading.signal.special") is Special
    assert own.payload_type("trading.signal.generated") is Signal


def test_event_struct_is_a_msgspec_struct_with_camel_names() -> None:
    fields = msgspec.structs.fields(Event)
    assert {f.encode_name for f in fields} == BASE_EVENT_FIELDS
