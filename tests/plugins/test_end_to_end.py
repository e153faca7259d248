"""The whole paper-trading loop on the real host and in-memory bus.

feed (LUM) -> strategies -> signals -> LOGOS -> orders -> paper exchange -> fills, positions ->
risk guard -> alerts and blocks -> Wolf. The bots are the ``[[bots]]`` of the example config
(``configs/paper-trading.toml``): each is built with its params, subscribed to
its declared patterns and allowed to publish only its declared patterns, which must themselves be
allowed by the registry rules (``docs/wiring.md``).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from citarion_host.events import Event
from citarion_host.host import Host
from citarion_host.plugins import Plugins
from citarion_host.registry import load_registry
from citarion_host.settings import load_config
from citarion_host.wiring import check_topology

EXAMPLE = Path(__file__).parents[2] / "configs" / "paper-trading.toml"
BARS, PUMP_AT = 200, 130


def example_config(directory: Path) -> Path:
    """The example config with a shorter feed and a quiet console."""
    config = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for entry in config["bots"]:
        if entry["code"] == "LUM":
            entry["params"] |= {"bars": BARS, "pumps": [{"symbol": "SOLUSDT", "start_bar": PUMP_AT}]}
        if entry["code"] == "WLF":
            entry["params"] |= {"console": "off", "jsonl_path": str(directory / "alerts.jsonl")}
    path = directory / "demo.toml"
    path.write_text(tomli_w.dumps(config), encoding="utf-8")
    return path


class Run:
    def __init__(self, events: list[Event], bots: dict[str, Any], seconds: float) -> None:
        self.events, self.bots, self.seconds = events, bots, seconds
        self.final_stats: dict[str, dict[str, Any]] = {}
        self.by_source: dict[str, set[str]] = defaultdict(set)
        for event in events:
            self.by_source[event.source].add(".".join(event.topic.split(".")[:3]))

    def of(self, topic: str) -> list[Event]:
        return [e for e in self.events if e.topic.startswith(topic)]


async def scenario(directory: Path) -> Run:
    started = time.perf_counter()
    events: list[Event] = []
    host = Host(load_config(example_config(directory)), plugins=Plugins.discover())
    await host.bus.start()
    await host.bus.subscribe(">", events.append, name="test:recorder", max_pending=1 << 20)
    async with host:
        await asyncio.wait_for(host.finished.wait(), timeout=30)
        bots = {bot_id: runner.bot for bot_id, runner in host.runners.items()}
    run = Run(events, bots, time.perf_counter() - started)
    run.final_stats = host.final_stats
    return run


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return asyncio.run(scenario(tmp_path_factory.mktemp("e2e")))


def test_the_wiring_obeys_the_registry_rules(tmp_path: Path) -> None:
    findings = check_topology(load_config(example_config(tmp_path)), load_registry(), Plugins.discover())
    assert [f for f in findings if f.severity == "error"] == []


def test_the_host_reports_every_bot_healthy_and_busy(run: Run) -> None:
    stats = {bot_id: s.get("bot", {}) for bot_id, s in run.final_stats.items()}
    assert stats["lumi"]["completed"] is True and stats["lumi"]["bars"] == BARS * 6
    assert stats["exchange"]["filled"] > 0
    assert stats["logos"]["decisions"] > 0 and stats["wolf"]["delivered"] > 0
    assert all(s.get("errors", 0) == 0 and s.get("refused", 0) == 0 for s in run.final_stats.values())


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


def test_the_run_is_reproducible(run: Run, tmp_path: Path) -> None:
    """The same seed gives the same events (payloads and order), not just the same totals."""
    again = asyncio.run(scenario(tmp_path))

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
