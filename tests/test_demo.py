"""The paper-trading demo (`make paper`, configs/dev.toml) end to end on the in-memory bus.

Checks what the issue asks of the main job: it completes and prints the summary; every bot produced
its kinds of events; the books balance to the cent, recomputed here from the recorded events (not
taken from the exchange's word); the same seed gives the same summary, run after run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from citarion_host.cli import main

REPO = Path(__file__).resolve().parents[1]
DEV = REPO / "configs" / "dev.toml"
STARTING_CASH = Decimal("10000")


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_demo(directory: Path) -> dict[str, Any]:
    """``citarion-host --config configs/dev.toml`` in ``directory``; summary, output and record."""
    summary_file = directory / "summary.json"
    out = io.StringIO()
    with working_directory(directory), contextlib.redirect_stdout(out):
        code = main(["--config", str(DEV), "--no-reload", "--summary-json", str(summary_file)])
    assert code == 0
    summary: dict[str, Any] = json.loads(summary_file.read_text())
    summary["printed"] = out.getvalue()
    record = directory / "runs" / "dev-events.jsonl"
    summary["recorded"] = [json.loads(line) for line in record.read_text().splitlines()]
    return summary


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_demo(tmp_path_factory.mktemp("demo"))


def rows(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["bot"]: row for row in summary["bots"]}


def kinds(summary: dict[str, Any], source: str) -> set[str]:
    return {
        f"{e['domain']}.{e['entity']}.{e['action']}" for e in summary["recorded"] if e["source"] == source
    }


def test_the_demo_completes_and_prints_the_summary(demo: dict[str, Any]) -> None:
    printed = demo["printed"]
    assert "bot       code  state" in printed and "events/s through the bus" in printed
    assert "events recorded to runs/dev-events.jsonl" in printed
    # ~9,350 since the exchange reports positions on fills, not every candle (tests/plugins/test_demo_figures.py)
    assert demo["events"] == len(demo["recorded"]) > 8_000
    assert demo["events_per_s"] > 0
    assert all(row["state"] == "running" and row["errors"] == 0 for row in demo["bots"])


def test_every_bot_produced_its_kinds_of_events(demo: dict[str, Any]) -> None:
    table = rows(demo)
    assert {"market.candle.closed", "market.ticker.updated", "market.feed.completed"} <= kinds(demo, "LUM")
    for strategy in ("mesh", "scale", "band", "edge"):
        assert table[strategy]["signals"] > 0 and table[strategy]["fills"] > 0, strategy
    assert table["vision"]["signals"] > 0
    assert {"trading.signal.generated", "risk.alert.triggered"} <= kinds(demo, "PND")
    assert {"analytics.decision.made", "trading.order.submitted"} <= kinds(demo, "LOG")
    assert table["logos"]["fills"] > 0
    assert {"trading.order.filled", "trading.position.updated"} <= kinds(demo, "EXC")
    # Every order is answered: filled, or rejected with a reason (a blocked bot sees its block before
    # its next candle, so in this topology none is rejected for it).
    topics = [e["topic"] for e in demo["recorded"]]
    answered = topics.count("trading.order.filled") + topics.count("trading.order.rejected")
    exchange = table["exchange"]["stats"]
    assert (
        topics.count("trading.order.submitted") == answered + exchange["resting"] + exchange["heldForBar"] > 0
    )
    assert {"risk.alert.triggered", "risk.block.set"} <= kinds(demo, "RSK")
    assert "system.alert.delivered" in kinds(demo, "WLF")
    assert table["wolf"]["stats"]["delivered"] > 0
    detected = [d["series"] for d in table["argus"]["stats"]["detections"]]
    assert detected == ["binance:SOLUSDT", "bybit:SOLUSDT"], "the injected pump, on both exchanges"


def test_books_balance_to_the_cent_from_the_recorded_events(demo: dict[str, Any]) -> None:
    """cash + positions at mark == starting cash + realized + unrealized PnL - fees, per bot.

    The exchange keeps its books in exact cents; each amount an event reports is rounded to the cent,
    so recomputed from events the identity holds within half a cent per reported position."""
    last: dict[str, dict[str, dict[str, Any]]] = {}
    cash: dict[str, Decimal] = {}
    for event in demo["recorded"]:
        if event["topic"] == "trading.position.updated":
            position = event["payload"]
            last.setdefault(position["botId"], {})[f"{position['exchange']}:{position['symbol']}"] = position
            cash[position["botId"]] = Decimal(str(position["cash"]))
    assert set(last) >= {"mesh", "scale", "band", "edge", "logos"}
    for bot_id, positions in last.items():
        held = sum(Decimal(str(p["quantity"])) * Decimal(str(p["markPrice"])) for p in positions.values())
        realized = sum(Decimal(str(p["realizedPnl"])) for p in positions.values())
        unrealized = sum(Decimal(str(p["unrealizedPnl"])) for p in positions.values())
        fees = sum(Decimal(str(p["feesPaid"])) for p in positions.values())
        left = cash[bot_id] + held
        right = STARTING_CASH + realized + unrealized - fees
        tolerance = Decimal("0.005") * (len(positions) + 1)
        assert abs(left - right) <= tolerance, (bot_id, left, right)
    assert rows(demo)["exchange"]["stats"]["balanced"] is True


def test_the_same_seed_gives_the_same_summary(demo: dict[str, Any], tmp_path: Path) -> None:
    again = run_demo(tmp_path)

    def comparable(summary: dict[str, Any]) -> Any:
        """The trading figures of every bot, and every non-system event count. (How many host
        lifecycle events a bot sees while the others shut down depends on the stop order's timing.)"""
        figures = ("bot", "signals", "orders", "fills", "pnl", "fees", "alerts", "errors")
        rows = [{k: row[k] for k in figures} for row in summary["bots"]]
        return rows, {t: n for t, n in summary["topics"].items() if not t.startswith("system.")}

    assert comparable(again) == comparable(demo)
    assert rows(again)["exchange"]["stats"]["books"] == rows(demo)["exchange"]["stats"]["books"]
