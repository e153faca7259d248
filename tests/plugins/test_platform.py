"""The whole platform (``configs/platform.toml``: the 19 bots, the exchange, the risk guard) on the host.

Checks what issue 14 asks of the platform run: the summary names every code with its figures; each bot
produced its kinds of events; the books of every bot balance to the cent, transfers and the assets held
at start included, recomputed from the recorded events; the same seed gives the same figures on memory,
and the same topology completes on JetStream with the same figures; ORA answers on the bus.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from citarion_host.natsserver import NatsServer
from citarion_host.payloads import Answer
from citarion_host.registry import load_registry
from citarion_host.settings import load_config

from .platform_run import PLATFORM, REPO, Run, ask_on_the_host, run_platform

FIGURES = ("bot", "code", "signals", "orders", "fills", "pnl", "fees", "alerts", "errors")

#: what each bot must have published in the run (topic prefixes, by source code)
KINDS: dict[str, set[str]] = {
    "LUM": {"market.orderbook.snapshot", "market.orderbook.updated", "market.trade.executed",
            "market.ticker.updated", "market.candle.closed", "market.feed.completed"},
    "EXC": {"trading.order.accepted", "trading.order.partially_filled", "trading.order.filled",
            "trading.order.cancelled", "trading.order.amended",
            "trading.order.transfer.pending", "trading.order.transfer.settled", "trading.position.updated",
            "trading.position.balance"},
    "RSK": {"risk.alert.triggered", "risk.block.set", "risk.block.cleared", "risk.alert.resolved"},
    "WLF": {"system.alert.delivered"},
    "PND": {"trading.signal.generated", "risk.alert.triggered"},
    "GRD": {"trading.signal.generated", "trading.order.submitted"},
    "DCA": {"trading.signal.generated", "trading.order.submitted"},
    "BBB": {"trading.signal.generated", "trading.order.submitted"},
    "RNG": {"trading.signal.generated", "trading.order.submitted"},
    "FCS": {"trading.signal.generated"},
    "ARB": {"trading.signal.generated", "trading.order.submitted"},
    "PAR": {"trading.signal.generated", "trading.order.submitted"},
    "STA": {"trading.signal.generated", "trading.order.submitted"},
    "MMK": {"trading.order.submitted", "trading.order.amend"},
    "MRB": {"trading.signal.generated", "trading.order.submitted"},
    "TRF": {"trading.order.transfer.requested"},
    "HFT": {"trading.signal.generated", "trading.order.submitted"},
    "MFT": {"trading.signal.generated", "trading.order.submitted"},
    "LFT": {"trading.signal.generated", "trading.order.submitted"},
    "LOG": {"analytics.decision.made", "trading.signal.generated", "trading.order.submitted"},
}  # fmt: skip
TRADERS = ("mesh", "scale", "band", "edge", "orion", "spectrum", "reed", "architect", "equilibrist", "helios",
           "selene", "atlas", "logos")  # fmt: skip


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    return [run_platform(tmp_path_factory.mktemp(f"platform{n}")) for n in range(2)]


def rows(run: Run) -> dict[str, dict[str, Any]]:
    return {row["bot"]: row for row in run["bots"]}


def kinds(run: Run) -> dict[str, set[str]]:
    found: dict[str, set[str]] = defaultdict(set)
    for event in run["recorded"]:
        topic = event["topic"]
        found[event["source"]].add(topic if topic.count(".") < 3 or topic.startswith("trading.order.transfer")
                                   else ".".join(topic.split(".")[:3]))  # fmt: skip
    return found


def figures(run: Run) -> list[dict[str, Any]]:
    return [{k: row[k] for k in FIGURES} for row in run["bots"]]


def test_the_summary_lists_all_19_bots_with_their_figures(runs: list[Run]) -> None:
    run = runs[0]
    codes = {row["code"] for row in run["bots"]}
    assert codes == set(load_registry().codes) | {"EXC", "RSK"}
    assert len(load_registry().codes) == 19
    for row in run["bots"]:
        assert row["state"] == "running" and row["errors"] == 0, row
        assert f"  {row['code']}  " in run["printed"], row["code"]
    table = rows(run)
    for trader in TRADERS:
        assert table[trader]["orders"] > 0 and table[trader]["fills"] > 0, trader
    assert rows(run)["lumi"]["stats"]["completed"] is True
    assert "events/s through the bus" in run["printed"]


def test_every_bot_produced_its_kinds_of_events(runs: list[Run]) -> None:
    found = kinds(runs[0])
    for code, wanted in KINDS.items():
        assert wanted <= found[code], (code, sorted(wanted - found[code]))
    detected = [d["series"] for d in rows(runs[0])["argus"]["stats"]["detections"]]
    assert detected == ["binance:ETHUSDT", "bybit:ETHUSDT"], "the planted pump, on both exchanges"
    kron = rows(runs[0])["kron"]["stats"]
    assert kron["settled"] == kron["requested"] > 0 and kron["rejected"] == 0


def test_ora_answers_on_the_bus_at_the_end_of_the_run() -> None:
    events, replies = asyncio.run(ask_on_the_host(["what is the pnl of orion?", "tell me a joke"]))
    pnl, joke = (reply.payload for reply in replies)
    assert isinstance(pnl, Answer) and isinstance(joke, Answer)
    assert pnl.answered and pnl.intent == "pnl" and pnl.text.startswith("orion: PnL ")
    ids = {e.id for e in events}
    assert pnl.event_ids and set(pnl.event_ids) <= ids, "every cited event is one of the run's"
    assert not joke.answered and joke.suggestions
    assert all(reply.source == "ORA" and reply.topic == "analytics.query.answered" for reply in replies)


def test_the_books_of_every_bot_balance_to_the_cent_transfers_included(runs: list[Run]) -> None:
    """From the recorded events: cash + positions at mark == starting cash + assets held at start
    (valued at their first report) + realized + unrealized - fees - transfer fees, per bot; the
    exchange's own exact books balance too (imbalance 0, cash == venues + in transit)."""
    run = runs[0]
    params = next(b for b in load_config(PLATFORM).config.bots if b.id == "exchange").params
    last: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    first: dict[tuple[str, str], dict[str, Any]] = {}
    cash: dict[str, Decimal] = {}
    transfer_fees: dict[str, Decimal] = defaultdict(Decimal)
    for event in run["recorded"]:
        payload = event["payload"]
        if event["topic"] == "trading.position.updated":
            series = f"{payload['exchange']}:{payload['symbol']}"
            last[payload["botId"]][series] = payload
            first.setdefault((payload["botId"], series), payload)
            cash[payload["botId"]] = Decimal(str(payload["cash"]))
        elif event["topic"] == "trading.order.transfer.pending":
            transfer_fees[payload["botId"]] += Decimal(str(payload["fee"]))
    assert set(last) >= set(TRADERS)
    for bot_id, positions in last.items():
        accounts = params.get("accounts", {}).get(bot_id)
        if accounts is None:
            start = Decimal(str(params.get("starting_cash_by_bot", {}).get(bot_id, params["starting_cash"])))
            deposits = Decimal(0)
        else:
            start = sum((Decimal(str(a.get("USDT", 0))) for a in accounts.values()), Decimal(0))
            deposits = sum(
                (
                    (
                        Decimal(str(qty)) * Decimal(str(first[(bot_id, f"{ex}:{asset}USDT")]["entryPrice"]))
                    ).quantize(Decimal("0.01"))
                    for ex, assets in accounts.items()
                    for asset, qty in assets.items()
                    if asset != "USDT"
                ),
                Decimal(0),
            )
        held = sum(Decimal(str(p["quantity"])) * Decimal(str(p["markPrice"])) for p in positions.values())
        realized = sum(Decimal(str(p["realizedPnl"])) for p in positions.values())
        unrealized = sum(Decimal(str(p["unrealizedPnl"])) for p in positions.values())
        fees = sum(Decimal(str(p["feesPaid"])) for p in positions.values())
        left = cash[bot_id] + held
        right = start + deposits + realized + unrealized - fees - transfer_fees[bot_id]
        tolerance = Decimal("0.005") * (len(positions) + 1)
        assert abs(left - right) <= tolerance, (bot_id, left, right)
    assert transfer_fees["orion"] > 0, "TRF moved ARB's cash: the identity above includes its fees"
    stats = rows(run)["exchange"]["stats"]
    assert stats["balanced"] is True
    assert all(book["imbalance"] == 0 for book in stats["books"].values())
    orion = stats["books"]["orion"]
    assert orion["cash"] == pytest.approx(sum(orion["venues"].values()) + orion["inTransit"], abs=1e-9)


def test_the_same_seed_gives_the_same_figures(runs: list[Run]) -> None:
    first, again = runs
    assert figures(again) == figures(first)
    assert rows(again)["exchange"]["stats"]["books"] == rows(first)["exchange"]["stats"]["books"]
    assert {t: n for t, n in again["topics"].items() if not t.startswith("system.")} == {
        t: n for t, n in first["topics"].items() if not t.startswith("system.")
    }


def test_the_same_topology_completes_on_jetstream(
    nats_server: NatsServer, tmp_path: Path, runs: list[Run]
) -> None:
    """configs/platform.toml with the backend switched to NATS JetStream by the environment (a fixture
    nats-server): it completes, every bot runs without an error, and the figures are memory's."""
    summary_file = tmp_path / "summary.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CITARION_BACKEND__TYPE": "nats",
        "CITARION_BACKEND__NATS__SERVERS": json.dumps([nats_server.url]),
        "CITARION_BACKEND__NATS__STREAM": "platform",
        "CITARION_HOST__PROGRESS_INTERVAL_S": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "citarion_host.cli", "--config", str(PLATFORM), "--summary-json", str(summary_file)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    assert all(row["state"] == "running" and row["errors"] == 0 for row in summary["bots"])
    assert rows(summary)["lumi"]["stats"]["completed"] is True
    assert rows(summary)["exchange"]["stats"]["balanced"] is True
    assert figures(summary) == figures(runs[0])
    platform_events = {t: n for t, n in summary["topics"].items() if not t.startswith("system.")}
    assert platform_events == {t: n for t, n in runs[0]["topics"].items() if not t.startswith("system.")}
