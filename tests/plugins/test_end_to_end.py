"""The whole paper-trading loop on a real MemoryBus, wired by hand the way the host wires it.

feed (LUM) -> strategies -> signals -> LOGOS -> orders -> paper exchange -> fills, positions ->
risk guard -> alerts and blocks -> Wolf. The bots are the ``[[bots]]`` of the example config
(``configs/paper-trading.toml``): each is built with its params, subscribed to
its declared patterns and allowed to publish only its declared patterns, which must themselves be
allowed by the registry rules (``docs/wiring.md``). ``test_host_run.py`` runs the same file on the
real host.
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import citarion_bots.bollinger
import citarion_bots.dca
import citarion_bots.exchange
import citarion_bots.forecast
import citarion_bots.grid
import citarion_bots.logos
import citarion_bots.lumi
import citarion_bots.pump
import citarion_bots.range
import citarion_bots.risk
import citarion_bots.wolf
import pytest

from citarion_host.bot import Bot
from citarion_host.bus import MemoryBus
from citarion_host.events import Event
from citarion_host.registry import load_registry

from .helpers import BotSpec, wire

EXAMPLE = Path(__file__).parents[2] / "configs" / "paper-trading.toml"
BARS, PUMP_AT = 200, 130
MODULES = [
    citarion_bots.bollinger,
    citarion_bots.dca,
    citarion_bots.exchange,
    citarion_bots.forecast,
    citarion_bots.grid,
    citarion_bots.logos,
    citarion_bots.lumi,
    citarion_bots.pump,
    citarion_bots.range,
    citarion_bots.risk,
    citarion_bots.wolf,
]
TYPES: dict[str, type[Bot]] = {t.type_name: t for m in MODULES for t in m.citarion_bot_types()}


def example_specs() -> list[BotSpec]:
    """The ``[[bots]]`` of the example config, with a shorter feed and a quiet console."""
    specs = []
    for entry in tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["bots"]:
        params = dict(entry.get("params", {}))
        if entry["code"] == "LUM":
            params |= {"bars": BARS, "pumps": [{"symbol": "SOLUSDT", "start_bar": PUMP_AT}]}
        if entry["code"] == "WLF":
            params["console"] = "off"
        specs.append(
            BotSpec(
                entry["id"],
                entry["code"],
                TYPES[entry["plugin"]],
                entry.get("publish", []),
                entry.get("subscribe", []),
                params,
            )
        )
    return specs


SPECS = example_specs()


class Run:
    def __init__(self, events: list[Event], bots: dict[str, Any], seconds: float) -> None:
        self.events, self.bots, self.seconds = events, bots, seconds
        self.by_source: dict[str, set[str]] = defaultdict(set)
        for event in events:
            self.by_source[event.source].add(".".join(event.topic.split(".")[:3]))

    def of(self, topic: str) -> list[Event]:
        return [e for e in self.events if e.topic.startswith(topic)]


async def scenario() -> Run:
    started = time.perf_counter()
    events: list[Event] = []
    async with MemoryBus() as bus:
        done = asyncio.Event()
        await bus.subscribe("market.feed.completed", lambda e: done.set(), name="test:done")
        await bus.subscribe(">", events.append, name="test:recorder")
        bots = await wire(bus, SPECS)
        for bot, _ in bots.values():
            await bot.start()
        await asyncio.wait_for(done.wait(), timeout=30)
        for subscription in bus.subscriptions:
            await subscription.wait_idle()
        for bot, _ in bots.values():
            await bot.stop()
    return Run(events, {name: bot for name, (bot, _) in bots.items()}, time.perf_counter() - started)


@pytest.fixture(scope="module")
def run() -> Run:
    return asyncio.run(scenario())


def test_the_wiring_obeys_the_registry_rules() -> None:
    registry = load_registry()
    for spec in SPECS:
        assert all(registry.may_publish(spec.code, p) for p in spec.publish), spec.id
        assert all(registry.may_subscribe(spec.code, p) for p in spec.subscribe), spec.id


def test_every_bot_produced_its_kinds_of_events(run: Run) -> None:
    trading = {"trading.signal.generated", "trading.order.submitted"}
    expected = {
        "LUM": {"market.candle.closed", "market.ticker.updated", "market.feed.completed"},
        "EXC": {"trading.order.filled", "trading.position.updated"},
        "GRD": trading,
        "DCA": trading,
        "BBB": trading,
        "RNG": trading,
        "FCS": {"trading.signal.generated"},
        "PND": {"risk.alert.triggered", "trading.signal.generated"},
        "LOG": {"analytics.decision.made"} | trading,
        "RSK": {"risk.alert.triggered", "risk.block.set"},
        "WLF": {"system.alert.delivered"},
    }
    for code, kinds in expected.items():
        assert kinds <= run.by_source[code], (code, run.by_source[code])
    assert run.of("market.feed.completed")[0].payload == {"feed": "lumi", "bars": BARS * 3 * 2}
    assert not any(e.topic.startswith("system.handler") for e in run.events)  # no handler ever raised


def test_the_pump_is_caught_and_alerted(run: Run) -> None:
    alerts = [e for e in run.of("risk.alert.triggered") if e.source == "PND"]
    assert {e.metadata["exchange"] for e in alerts} == {"binance", "bybit"}
    assert all(e.payload.symbol == "SOLUSDT" for e in alerts)
    for _, bar, _ in run.bots["argus"].detections:
        assert PUMP_AT + 1 <= bar <= PUMP_AT + 3
    delivered = {e.payload["key"] for e in run.of("system.alert.delivered")}
    assert {"pump_and_dump:binance:SOLUSDT", "pump_and_dump:bybit:SOLUSDT"} <= delivered


def test_every_order_has_an_outcome_and_the_books_balance(run: Run) -> None:
    submitted = {(e.payload.bot_id, e.payload.order_id) for e in run.of("trading.order.submitted")}
    outcomes = [(e.payload.bot_id, e.payload.order_id) for e in run.of("trading.order.") if e.source == "EXC"]
    assert sorted(outcomes) == sorted(submitted)  # market orders: exactly one fill or rejection each
    exchange = run.bots["exchange"]
    stats = exchange.stats()
    assert stats["balanced"] is True
    assert {"mesh", "scale", "band", "edge", "logos"} <= set(stats["books"])
    for bot_id, book in exchange.books.items():
        assert book.imbalance() == 0, bot_id
        snap = stats["books"][bot_id]
        left = snap["cash"] + sum(p["quantity"] * p["markPrice"] for p in snap["positions"].values())
        right = snap["startingCash"] + snap["realizedPnl"] + snap["unrealizedPnl"] - snap["feesPaid"]
        assert left == pytest.approx(right, abs=0.005 * max(1, len(snap["positions"])))


def test_the_bots_views_agree_with_the_exchange(run: Run) -> None:
    exchange, risk = run.bots["exchange"], run.bots["risk"].stats()["accounts"]
    for bot_id in ("mesh", "scale", "band", "edge"):
        held = {k: float(h.quantity) for k, h in exchange.books[bot_id].holdings.items() if h.quantity}
        mine = {k: q for k, q in run.bots[bot_id].inventory.items() if q}
        assert mine == held, bot_id  # each strategy's own inventory is exactly what the exchange booked
    for bot_id, book in exchange.books.items():
        # the guard values q * close unrounded, the exchange rounds each holding to cents; stats round too
        tolerance = 0.005 * (len(book.holdings) + 1)
        assert risk[bot_id]["equity"] == pytest.approx(float(book.equity), abs=tolerance), bot_id


def test_risk_blocks_reach_the_exchange_and_the_bots(run: Run) -> None:
    blocks = run.of("risk.block.set")
    assert blocks and all(e.priority == "critical" for e in blocks)
    blocked_now = set(run.bots["exchange"].blocked)
    for bot_id in blocked_now & {"mesh", "scale", "band", "edge", "logos"}:
        assert run.bots[bot_id].risk.blocked is not None
    assert run.bots["logos"].stats()["hitRates"]  # LOGOS judged the sources


def test_the_run_is_fast_and_reproducible(run: Run) -> None:
    assert run.seconds < 10
    again = asyncio.run(scenario())

    def fingerprint(events: list[Event]) -> list[tuple[str, str, Any]]:
        out = []
        for e in events:
            payload = (
                {k: v for k, v in e.payload.items() if k != "eventId"}
                if isinstance(e.payload, dict)
                else e.payload
            )
            out.append((e.topic, e.source, payload))
        return out

    assert fingerprint(again.events) == fingerprint(run.events)
