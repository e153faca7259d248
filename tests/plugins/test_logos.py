"""LOG: consensus arithmetic, agreement and conflict, stale signals, hit rates, and its own trades."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from citarion_bots.common import candle_topic
from citarion_bots.consensus import HitRate, Vote, consensus
from citarion_bots.logos import LogosBot

from citarion_host.events import catalog
from citarion_host.payloads import BotLifecycle, Decision, Order, RiskAlert, Signal
from citarion_host.testing import BotHarness

from .helpers import MINUTE, T0, candle

PUBLISH = ["analytics.>", "trading.signal.>", "trading.order.>"]


def logos(**params: Any) -> BotHarness:
    return BotHarness(LogosBot, {"trade": False, **params}, bot_id="logos", code="LOG", publish=PUBLISH)


async def bar(h: BotHarness, close: float, index: int) -> None:
    await h.feed(candle_topic("binance", "BTCUSDT"), candle(close, index), source="LUM")


async def vote(
    h: BotHarness,
    bot: str,
    direction: str,
    confidence: float,
    index: int,
    *,
    code: str = "GRD",
    entry: float | None = 100.0,
) -> None:
    payload = Signal(
        symbol="BTCUSDT", exchange="binance", direction=direction, confidence=confidence, entry_price=entry
    )  # type: ignore[arg-type]
    event = catalog.make(
        "trading.signal.generated",
        payload,
        source=code,
        metadata={"botId": bot, "dataTime": T0 + index * MINUTE},
    )
    await h.feed_event(event)


def last_decision(h: BotHarness) -> Decision:
    decisions = h.payloads("analytics.decision")
    assert decisions, "no decision published"
    return decisions[-1]  # type: ignore[no-any-return]


def test_consensus_formulas() -> None:
    votes = [Vote("a", "LONG", 0.8, 0), Vote("b", "LONG", 0.6, 0), Vote("c", "SHORT", 0.5, 0)]
    result = consensus(votes)  # every source at the 0.5 prior
    assert result.direction == "LONG"
    assert result.agreement == pytest.approx(0.7 / 0.95)  # (0.4 + 0.3) / (0.4 + 0.3 + 0.25)
    assert result.confidence == pytest.approx(0.45 / 1.5)  # |0.7 - 0.25| / (3 * 0.5)
    assert result.sources == {"a": 0.4, "b": 0.3, "c": -0.25}
    tie = consensus([Vote("a", "LONG", 0.6, 0), Vote("b", "SHORT", 0.6, 0)])
    assert (tie.direction, tie.agreement, tie.confidence) == ("NEUTRAL", 0.5, 0.0)
    assert consensus([]).direction == "NEUTRAL" and consensus([]).agreement == 0.0
    unanimous = consensus([Vote("a", "SHORT", 1.0, 0), Vote("b", "SHORT", 1.0, 0)], {"a": 0.9, "b": 0.2})
    assert (unanimous.direction, unanimous.agreement, unanimous.confidence) == ("SHORT", 1.0, 1.0)


def test_hit_rate_is_laplace_smoothed_over_a_memory() -> None:
    hits = HitRate(memory=3)
    assert hits.rate("x") == 0.5
    for outcome in (False, True, True, True):
        hits.record("x", outcome)
    assert hits.raw("x") == (3, 3) and hits.rate("x") == 0.8  # the oldest outcome fell out


async def test_agreement_weights_the_majority() -> None:
    h = logos()
    await bar(h, 100.0, 0)
    await vote(h, "grid", "LONG", 0.8, 0)
    await vote(h, "bbb", "LONG", 0.6, 0, code="BBB")
    await vote(h, "pump", "SHORT", 0.5, 0, code="PND")
    decision = last_decision(h)
    assert (decision.symbol, decision.exchange, decision.direction) == ("BTCUSDT", "binance", "LONG")
    assert decision.agreement == pytest.approx(0.7 / 0.95, abs=1e-6)
    assert decision.confidence == pytest.approx(0.3, abs=1e-6)
    assert decision.sources == {"grid": 0.4, "bbb": 0.3, "pump": -0.25}
    assert h.published[-1].metadata["votes"] == 3
    await vote(h, "grid", "SHORT", 0.8, 0)  # a source's newer signal replaces its older one
    assert last_decision(h).sources["grid"] == -0.4


async def test_conflict_is_neutral() -> None:
    h = logos()
    await bar(h, 100.0, 0)
    await vote(h, "grid", "LONG", 0.6, 0)
    await vote(h, "range", "SHORT", 0.6, 0, code="RNG")
    decision = last_decision(h)
    assert (decision.direction, decision.agreement, decision.confidence) == ("NEUTRAL", 0.5, 0.0)


async def test_stale_signals_are_refused_and_live_ones_expire_by_data_time() -> None:
    h = logos(window_bars=3)
    await bar(h, 100.0, 10)
    await vote(h, "grid", "LONG", 0.9, 6)  # 4 bars old on arrival
    assert h.payloads("analytics.decision") == [] and h.bot.stats()["stale"] == 1
    await vote(h, "bbb", "LONG", 0.9, 10, code="BBB")
    assert last_decision(h).sources == {"bbb": 0.45}
    for index in (11, 12, 13):
        await bar(h, 100.0, index)
    assert last_decision(h).sources == {"bbb": 0.45}  # 3 bars old: still live
    await bar(h, 100.0, 14)
    decision = last_decision(h)
    assert (decision.direction, decision.sources, decision.confidence) == ("NEUTRAL", {}, 0.0)
    assert h.bot.stats()["expired"] == 1


async def test_own_signals_are_ignored() -> None:
    h = logos()
    await bar(h, 100.0, 0)
    await vote(h, "logos", "LONG", 0.9, 0, code="LOG")
    await vote(h, "other-logos-id", "LONG", 0.9, 0, code="LOG")
    assert h.payloads("analytics.decision") == []


async def test_hit_rates_follow_the_price_and_weight_later_votes() -> None:
    h = logos(hit_horizon_bars=2, window_bars=10)
    await bar(h, 100.0, 0)
    await vote(h, "grid", "LONG", 0.5, 0)
    await vote(h, "bbb", "SHORT", 0.5, 0, code="BBB")
    await bar(h, 99.0, 1)  # not yet due
    assert h.bot.hits.raw("grid") == (0, 0)  # type: ignore[attr-defined]
    await bar(h, 105.0, 2)  # due: price went up from 100
    assert h.bot.stats()["hitRates"] == {
        "bbb": pytest.approx(1 / 3, abs=1e-4),
        "grid": pytest.approx(2 / 3, abs=1e-4),
    }
    await vote(h, "grid", "LONG", 0.6, 2)
    await vote(h, "bbb", "SHORT", 0.6, 2, code="BBB")
    decision = last_decision(h)
    assert decision.direction == "LONG"
    assert decision.agreement == pytest.approx(2 / 3, abs=1e-6)  # 0.4 against 0.2
    assert decision.confidence == pytest.approx(0.2, abs=1e-6)  # 0.2 / (2/3 + 1/3)
    assert h.published[-1].metadata["hitRates"] == {"grid": 0.6667, "bbb": 0.3333}


async def test_trades_strong_consensus_within_limits_and_cooldown() -> None:
    h = logos(trade=True, min_sources=2, trade_confidence=0.5, trade_agreement=0.75, trade_cooldown_bars=3)
    await bar(h, 100.0, 0)
    await vote(h, "grid", "LONG", 0.9, 0)
    assert h.payloads("trading.order") == []  # one source is not a consensus
    await vote(h, "bbb", "LONG", 0.8, 0, code="BBB")
    (order,) = h.payloads("trading.order.submitted")
    assert isinstance(order, Order)
    assert (order.side, order.type, order.quantity, order.bot_id) == (
        "BUY",
        "MARKET",
        20.0,
        "logos",
    )  # 2000 / 100
    own = h.published[-2]
    assert own.topic == "trading.signal.generated" and own.source == "LOG" and own.payload.direction == "LONG"
    await h.feed(
        "trading.order.filled",
        msgspec.structs.replace(order, status="FILLED", filled_quantity=20.0, average_price=100.0),
    )
    await vote(h, "fcs", "LONG", 0.9, 0, code="FCS")
    assert len(h.payloads("trading.order.submitted")) == 1  # cooling down
    for index in (1, 2, 3):
        await bar(h, 100.0, index)
    for source, code in (("grid", "GRD"), ("bbb", "BBB"), ("fcs", "FCS")):
        await vote(h, source, "SHORT", 0.9, 3, code=code)
    sell = h.payloads("trading.order.submitted")[-1]
    assert (sell.side, sell.quantity) == ("SELL", 20.0)


async def test_buys_stand_down_on_blocks_and_pump_alerts() -> None:
    h = logos(trade=True, min_sources=1, trade_confidence=0.1, trade_agreement=0.5, trade_cooldown_bars=0)
    await bar(h, 100.0, 0)
    await h.feed("risk.block.set", {"botId": "logos", "reason": "exposure"}, source="RSK")
    await vote(h, "grid", "LONG", 0.9, 0)
    assert h.payloads("trading.order") == []
    await h.feed("risk.block.cleared", {"botId": "logos"}, source="RSK")
    alert = RiskAlert(kind="pump_and_dump", severity="critical", message="pump", symbol="BTCUSDT")
    await h.feed("risk.alert.triggered", alert, source="PND")
    await vote(h, "bbb", "LONG", 0.9, 0, code="BBB")
    assert h.payloads("trading.order") == [] and h.bot.stats()["heldBack"] == 2


async def test_a_stopped_bot_leaves_the_consensus() -> None:
    h = logos()
    await bar(h, 100.0, 0)
    await vote(h, "grid", "LONG", 0.9, 0)
    await vote(h, "bbb", "SHORT", 0.5, 0, code="BBB")
    await h.feed(
        "system.bot.failed",
        BotLifecycle(bot_id="grid", code="GRD", state="failed", reason="boom"),
        source="HOST",
    )
    assert last_decision(h).sources == {"bbb": -0.25}
