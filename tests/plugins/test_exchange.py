"""EXC: fills, fees, slippage, limits, rejections, risk blocks, and books that balance to the cent."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from citarion_bots.exchange import PaperExchange

from citarion_host.payloads import Order, Position, Ticker
from citarion_host.testing import BotHarness

from .helpers import candle

PUBLISH = ["trading.order.>", "trading.position.>"]


def exchange(**params: Any) -> BotHarness:
    defaults = {"fee_bps": 10, "slippage_bps": 5}
    return BotHarness(PaperExchange, {**defaults, **params}, bot_id="exchange", code="EXC", publish=PUBLISH)


def order(
    oid: str,
    side: str,
    qty: float,
    *,
    bot: str | None = "grid",
    kind: str = "MARKET",
    price: float | None = None,
    **kw: Any,
) -> Order:
    return Order(
        order_id=oid,
        symbol=kw.pop("symbol", "BTCUSDT"),
        exchange=kw.pop("exchange", "binance"),
        side=side,  # type: ignore[arg-type]
        type=kind,
        quantity=qty,
        status=kw.pop("status", "NEW"),
        price=price,
        bot_id=bot,
        **kw,  # type: ignore[arg-type]
    )


async def quote(h: BotHarness, last: float, *, symbol: str = "BTCUSDT", exchange_: str = "binance") -> None:
    await h.feed(
        f"market.ticker.updated.{exchange_}.{symbol}",
        Ticker(symbol=symbol, exchange=exchange_, bid=last - 1, ask=last + 1, last=last),
    )


async def submit(h: BotHarness, o: Order) -> list[tuple[str, Any]]:
    before = len(h.published)
    await h.feed("trading.order.submitted", o, source="GRD")
    return [(e.topic, e.payload) for e in h.published[before:]]


def books(h: BotHarness) -> PaperExchange:
    assert isinstance(h.bot, PaperExchange)
    return h.bot


async def test_market_buy_fills_at_last_plus_slippage_with_fee() -> None:
    h = exchange()
    await quote(h, 100.0)
    events = await submit(h, order("g-1", "BUY", 2.0))
    assert [t for t, _ in events] == ["trading.order.filled", "trading.position.updated"]
    filled, position = events[0][1], events[1][1]
    assert (filled.status, filled.filled_quantity, filled.average_price) == ("FILLED", 2.0, 100.05)
    assert filled.fee == 0.2  # 10 bps of 200.10 = 0.2001 -> 0.20
    assert isinstance(position, Position)
    assert (position.bot_id, position.quantity, position.entry_price, position.mark_price) == (
        "grid",
        2.0,
        100.05,
        100.05,
    )
    assert position.cash == 9_799.70
    assert position.fees_paid == 0.2


async def test_round_trip_realized_pnl_and_the_identity_to_the_cent() -> None:
    h = exchange(starting_cash=5_000)
    await quote(h, 100.0)
    await submit(h, order("g-1", "BUY", 3.0))
    await h.feed("market.candle.closed.binance.BTCUSDT", candle(110.0, 1), source="LUM")
    events = await submit(h, order("g-2", "SELL", 1.0))
    position = events[1][1]
    # bought 3 @ 100.05 (cost 300.15), sold 1 @ 110 * (1 - 5bps) = 109.945: notional 109.94 (half-even
    # cents), closed basis 300.15 / 3 = 100.05 -> realized 9.89
    assert position.realized_pnl == 9.89
    assert position.quantity == 2.0 and position.mark_price == 109.945
    book = books(h).books["grid"]
    assert book.imbalance() == 0
    assert book.cash + book.market_value == book.starting_cash + book.realized + book.unrealized - book.fees
    snap = h.bot.stats()["books"]["grid"]
    left = snap["cash"] + sum(p["quantity"] * p["markPrice"] for p in snap["positions"].values())
    right = snap["startingCash"] + snap["realizedPnl"] + snap["unrealizedPnl"] - snap["feesPaid"]
    assert left == pytest.approx(right, abs=0.005)
    assert h.bot.stats()["balanced"] is True


async def test_limit_orders_rest_then_fill_when_a_later_bar_crosses() -> None:
    h = exchange()
    await quote(h, 100.0)
    events = await submit(h, order("g-1", "BUY", 1.0, kind="LIMIT", price=98.0))
    assert events == [("trading.order.accepted", events[0][1])] and events[0][1].status == "PENDING"
    # this bar's prices were known before the order: even a low under the limit must not fill it
    await h.feed("market.candle.closed.binance.BTCUSDT", candle(99.0, 0, low=97.0), source="LUM")
    assert "trading.order.filled" not in h.published_topics()
    await h.feed("market.candle.closed.binance.BTCUSDT", candle(98.5, 1, open_=99.5, low=97.5), source="LUM")
    filled = h.payloads("trading.order.filled")
    assert len(filled) == 1 and filled[0].average_price == 98.0  # at the limit, no slippage
    # a marketable limit fills at once, at the slipped last price capped by the limit
    events = await submit(h, order("g-2", "BUY", 1.0, kind="LIMIT", price=98.51))
    assert events[0][1].average_price == 98.51  # 98.5 * 1.0005 = 98.549 capped at 98.51


async def test_a_gap_through_the_limit_fills_at_the_open_and_ttl_expires() -> None:
    h = exchange(limit_ttl_bars=2)
    await quote(h, 100.0)
    await submit(h, order("g-1", "SELL", 1.0, kind="LIMIT", price=101.0, bot="dca"))  # rejected: nothing held
    await submit(h, order("g-2", "BUY", 1.0, kind="LIMIT", price=99.0))
    await submit(h, order("g-3", "BUY", 1.0, kind="LIMIT", price=90.0))
    await h.feed("market.candle.closed.binance.BTCUSDT", candle(100.0, 0), source="LUM")  # the quoted bar
    await h.feed("market.candle.closed.binance.BTCUSDT", candle(97.0, 1, open_=97.5), source="LUM")
    assert [o.average_price for o in h.payloads("trading.order.filled")] == [97.5]
    for i in (2, 3):
        await h.feed("market.candle.closed.binance.BTCUSDT", candle(97.0, i), source="LUM")
    cancelled = h.payloads("trading.order.cancelled")
    assert [(o.order_id, o.reason) for o in cancelled] == [("g-3", "expired")]
    assert h.bot.stats()["resting"] == 0


@pytest.mark.parametrize(
    ("o", "reason"),
    [
        (order("x-1", "BUY", 1.0, bot=None), "botId missing"),
        (order("x-1", "BUY", 1.0, status="FILLED"), "status must be NEW"),
        (order("x-1", "BUY", 1.0, kind="STOP"), "unsupported order type STOP"),
        (order("x-1", "BUY", 1.0, symbol="DOGEUSDT"), "unknown symbol or no price yet for binance:DOGEUSDT"),
        (order("x-1", "BUY", 1e-9), "quantity 1e-09 is below the lot size"),
        (order("x-1", "BUY", 200.0), "insufficient cash: need 20030.01, have 10000.00"),
        (order("x-1", "SELL", 1.0), "insufficient position: selling 1.00000000, holding 0"),
    ],
)
async def test_invalid_orders_are_rejected_with_a_reason(o: Order, reason: str) -> None:
    h = exchange()
    await quote(h, 100.0)
    events = await submit(h, o)
    assert [t for t, _ in events] == ["trading.order.rejected"]
    assert events[0][1].status == "REJECTED"
    assert events[0][1].reason.startswith(reason), events[0][1].reason
    assert h.published[-1].priority == "high"


async def test_duplicate_order_ids_are_rejected() -> None:
    h = exchange()
    await quote(h, 100.0)
    await submit(h, order("g-1", "BUY", 1.0))
    events = await submit(h, order("g-1", "BUY", 1.0))
    assert events[0][1].reason == "duplicate orderId g-1"


async def test_risk_blocks_refuse_new_risk_but_let_the_bot_reduce() -> None:
    h = exchange()
    await quote(h, 100.0)
    await submit(h, order("g-1", "BUY", 2.0))
    await h.feed("risk.block.set", {"botId": "grid", "reason": "drawdown 12%"}, source="RSK")
    events = await submit(h, order("g-2", "BUY", 1.0))
    assert events[0][1].reason == "bot blocked by risk guard: drawdown 12%"
    events = await submit(h, order("g-3", "SELL", 1.0))
    assert events[0][0] == "trading.order.filled"
    await submit(h, order("d-1", "BUY", 1.0, bot="dca"))  # other bots trade on
    assert h.payloads("trading.order.filled")[-1].bot_id == "dca"
    await h.feed("risk.block.cleared", {"botId": "grid"}, source="RSK")
    assert (await submit(h, order("g-4", "BUY", 1.0)))[0][0] == "trading.order.filled"
    strict = exchange(blocked_may_reduce=False)
    await quote(strict, 100.0)
    await submit(strict, order("g-1", "BUY", 2.0))
    await strict.feed("risk.block.set", {"botId": "grid", "reason": "manual"}, source="RSK")
    assert (await submit(strict, order("g-2", "SELL", 1.0)))[0][0] == "trading.order.rejected"


async def test_shorts_only_when_allowed_and_within_equity() -> None:
    h = exchange(allow_short=True, slippage_bps=0, fee_bps=0, starting_cash=1_000)
    await quote(h, 100.0)
    assert (await submit(h, order("g-1", "SELL", 5.0)))[1][1].quantity == -5.0
    events = await submit(h, order("g-2", "SELL", 6.0))
    assert events[0][1].reason.startswith("short limit")
    await h.feed("market.candle.closed.binance.BTCUSDT", candle(90.0, 1), source="LUM")
    events = await submit(h, order("g-3", "BUY", 5.0))
    assert events[1][1].realized_pnl == 50.0 and events[1][1].cash == 1_050.0


async def test_marks_publish_low_priority_positions_and_cancel_requests() -> None:
    h = exchange(mark_every_bars=1)
    await quote(h, 100.0)
    await submit(h, order("g-1", "BUY", 1.0))
    await submit(h, order("g-2", "BUY", 1.0, kind="LIMIT", price=50.0))
    await quote(h, 104.0)
    await h.feed("market.candle.closed.binance.BTCUSDT", candle(104.0, 1), source="LUM")
    marks = [e for e in h.published if e.topic == "trading.position.updated" and e.priority == "low"]
    assert len(marks) == 1 and marks[0].payload.mark_price == 104.0
    assert marks[0].payload.unrealized_pnl == pytest.approx(104.0 - 100.05)
    await h.feed("trading.order.cancel", order("g-2", "BUY", 1.0, kind="LIMIT", price=50.0), source="GRD")
    await h.feed("trading.order.cancel", order("g-9", "BUY", 1.0), source="GRD")
    assert [o.order_id for o in h.payloads("trading.order.cancelled")] == ["g-2"]
    refused = h.payloads("trading.order.cancel_rejected")  # the contract (docs/market.md): not "rejected"
    assert [(o.order_id, o.reason) for o in refused] == [("g-9", "cancel: no resting order g-9")]
    positions = books(h).mark_to_market("binance", "BTCUSDT", 110.0)
    assert [(p.bot_id, p.mark_price) for p in positions] == [("grid", 110.0)]


async def test_own_reports_and_foreign_topics_are_ignored() -> None:
    h = exchange()
    await quote(h, 100.0)
    await h.feed("trading.order.filled", order("g-1", "BUY", 1.0, status="FILLED"), source="EXC")
    await h.feed("risk.block.set", {"reason": "no bot id"}, source="RSK")
    assert h.published == [] and books(h).blocked == {}


async def test_per_bot_starting_cash_and_stats() -> None:
    h = exchange(starting_cash_by_bot={"logos": 50_000})
    await quote(h, 100.0)
    await submit(h, order("l-1", "BUY", 1.0, bot="logos"))
    stats = h.bot.stats()
    assert stats["books"]["logos"]["startingCash"] == 50_000
    assert stats["filled"] == 1 and stats["rejected"] == 0 and stats["balanced"] is True
    assert books(h).book("logos").starting_cash == Decimal("50000.00")


async def test_positions_are_published_when_they_change_and_at_the_final_mark() -> None:
    """Default: no marks between fills; the feed's completion reports every open position at its
    last price (so the last report of a series carries the run's closing unrealized PnL)."""
    h = exchange()
    await quote(h, 100.0)
    await quote(h, 50.0, symbol="ETHUSDT")
    await submit(h, order("g-1", "BUY", 1.0))
    await submit(h, order("g-2", "BUY", 1.0, symbol="ETHUSDT"))
    await submit(h, order("g-3", "SELL", 1.0, symbol="ETHUSDT"))
    before = len(h.payloads("trading.position.updated"))
    for close in (104.0, 106.0):
        await quote(h, close)
        await h.feed("market.candle.closed.binance.BTCUSDT", candle(close, 1), source="LUM")
    assert len(h.payloads("trading.position.updated")) == before, "a mark is not a change"
    await h.feed("market.feed.completed", {"feed": "lumi", "bars": 2}, source="LUM")
    final = h.payloads("trading.position.updated")[before:]
    assert [(p.symbol, p.quantity, p.mark_price) for p in final] == [("BTCUSDT", 1.0, 106.0)]
    assert final[0].unrealized_pnl == pytest.approx(106.0 - 100.05)
    assert h.published[-1].priority == "low"


async def test_final_marks_can_be_turned_off() -> None:
    h = exchange(final_marks=False)
    await quote(h, 100.0)
    await submit(h, order("g-1", "BUY", 1.0))
    await h.feed("market.feed.completed", {"feed": "lumi", "bars": 1}, source="LUM")
    assert [e.topic for e in h.published] == ["trading.order.filled", "trading.position.updated"]
