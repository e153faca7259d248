"""RSK: drawdown, exposure and loss-streak limits -> critical alert + block, then the clear."""

from __future__ import annotations

from typing import Any

import pytest
from citarion_bots.common import candle_topic
from citarion_bots.risk import RiskGuard

from citarion_host.payloads import Order, Position, RiskAlert
from citarion_host.testing import BotHarness

from .helpers import candle

PUBLISH = ["risk.>"]


def guard(**params: Any) -> BotHarness:
    return BotHarness(RiskGuard, params, bot_id="risk", code="RSK", publish=PUBLISH)


def position(qty: float, mark: float, cash: float, *, bot: str = "grid", realized: float = 0.0) -> Position:
    return Position(
        bot_id=bot,
        symbol="BTCUSDT",
        exchange="binance",
        quantity=qty,
        entry_price=1_000.0,
        mark_price=mark,
        realized_pnl=realized,
        cash=cash,
    )


async def price(h: BotHarness, close: float, index: int) -> None:
    await h.feed(candle_topic("binance", "BTCUSDT"), candle(close, index), source="LUM")


def topics(h: BotHarness) -> list[str]:
    return h.published_topics()


async def test_drawdown_alerts_blocks_once_then_clears_after_the_cooldown() -> None:
    h = guard(max_drawdown=0.10, cooldown_bars=3)
    await price(h, 1_000.0, 0)
    await h.feed("trading.position.updated", position(10, 1_000.0, 0.0), source="EXC")  # equity 10000 = peak
    await price(h, 950.0, 1)
    assert topics(h) == []  # 5% down
    await price(h, 880.0, 2)
    assert topics(h) == ["risk.alert.triggered", "risk.block.set"]
    alert, block = h.published[0], h.published[1]
    assert alert.priority == block.priority == "critical"
    assert isinstance(alert.payload, RiskAlert)
    assert (alert.payload.kind, alert.payload.severity, alert.payload.bot_id, alert.payload.key) == (
        "drawdown",
        "critical",
        "grid",
        "drawdown:grid",
    )
    assert alert.payload.value == pytest.approx(0.12) and alert.payload.limit == 0.10
    assert block.payload == {
        "botId": "grid",
        "kind": "drawdown",
        "key": "drawdown:grid",
        "reason": block.payload["reason"],
    }
    assert "drawdown 12.0%" in block.payload["reason"]
    await price(h, 870.0, 3)
    await price(h, 860.0, 4)
    assert len(h.published) == 2  # blocked: no repeat while it lasts
    await price(h, 860.0, 5)  # third bar since the block
    assert topics(h)[2:] == ["risk.block.cleared", "risk.alert.resolved"]
    assert h.published[2].payload["botId"] == "grid" and h.published[3].payload.severity == "info"
    assert h.bot.stats()["accounts"]["grid"]["peak"] == 8_600.0  # re-based: a fresh loss is needed
    await price(h, 800.0, 6)  # 7% under the new peak: fine
    assert len(h.published) == 4


async def test_drawdown_clears_early_when_equity_recovers() -> None:
    h = guard(max_drawdown=0.10, cooldown_bars=50)
    await h.feed("trading.position.updated", position(10, 1_000.0, 0.0), source="EXC")
    await price(h, 880.0, 1)
    await price(h, 940.0, 2)  # 6%: not yet under half the limit
    assert topics(h) == ["risk.alert.triggered", "risk.block.set"]
    await price(h, 960.0, 3)  # 4% < 5%
    assert topics(h)[-2:] == ["risk.block.cleared", "risk.alert.resolved"]


async def test_exposure_blocks_until_back_within_the_limit() -> None:
    h = guard(max_gross_exposure=5_000.0, max_drawdown=0.5)
    await h.feed("trading.position.updated", position(6, 1_000.0, 4_000.0), source="EXC")
    assert topics(h) == ["risk.alert.triggered", "risk.block.set"]
    assert h.published[0].payload.kind == "exposure" and h.published[0].payload.value == 6_000.0
    await h.feed(
        "trading.position.updated", position(4.8, 1_000.0, 5_200.0), source="EXC"
    )  # within, not clear of it
    assert len(h.published) == 2  # 4800 > 0.9 * 5000: still blocked, no flapping at the limit
    await h.feed("trading.position.updated", position(4, 1_000.0, 6_000.0), source="EXC")  # sold 2
    assert topics(h)[-2:] == ["risk.block.cleared", "risk.alert.resolved"]


async def test_loss_streak_counts_losing_exits_and_a_win_resets_it() -> None:
    h = guard(max_loss_streak=2, cooldown_bars=1)
    await h.feed("trading.position.updated", position(3, 1_000.0, 7_000.0, realized=0.0), source="EXC")
    await h.feed("trading.position.updated", position(2, 1_000.0, 8_000.0, realized=-5.0), source="EXC")
    await h.feed(
        "trading.position.updated", position(2, 1_000.0, 8_000.0, realized=-5.0), source="EXC"
    )  # a mark, not an exit
    await h.feed(
        "trading.position.updated", position(1, 1_000.0, 9_000.0, realized=3.0), source="EXC"
    )  # a win
    await h.feed("trading.position.updated", position(1, 1_000.0, 9_000.0, realized=1.0), source="EXC")
    assert topics(h) == []
    await h.feed("trading.position.updated", position(0, 1_000.0, 9_990.0, realized=-0.5), source="EXC")
    assert topics(h) == ["risk.alert.triggered", "risk.block.set"]
    assert h.published[0].payload.key == "loss_streak:grid"
    await price(h, 1_000.0, 1)
    await price(h, 1_000.0, 2)
    assert topics(h)[-2:] == ["risk.block.cleared", "risk.alert.resolved"]
    assert h.bot.stats()["accounts"]["grid"]["lossStreak"] == 0


async def test_watches_only_the_listed_bots_and_counts_fills() -> None:
    h = guard(bots=["dca"], max_gross_exposure=1.0)
    await h.feed("trading.position.updated", position(6, 1_000.0, 4_000.0, bot="grid"), source="EXC")
    assert topics(h) == [] and "grid" not in h.bot.stats()["accounts"]
    h2 = guard()
    await h2.feed("trading.position.updated", position(1, 1_000.0, 9_000.0), source="EXC")
    fill = Order(
        order_id="g-1",
        symbol="BTCUSDT",
        exchange="binance",
        side="BUY",
        type="MARKET",
        quantity=1.0,
        status="FILLED",
        bot_id="grid",
    )
    await h2.feed("trading.order.filled", fill, source="EXC")
    account = h2.bot.stats()["accounts"]["grid"]
    assert account == {
        "equity": 10_000.0,
        "peak": 10_000.0,
        "exposure": 1_000.0,
        "lossStreak": 0,
        "fills": 1,
        "blocked": None,
    }
