"""Trustworthy runs: fills at the decision bar's price, the same run every time and on every backend,
``explain``, and a backend switch in the middle of a run.

The demo topology (``configs/dev.toml`` on memory, ``configs/prod.toml`` on JetStream against a fixture
nats-server) runs three times on each backend; every check reads the recorded events, never the bots'
own word.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from citarion_host.app import run_host
from citarion_host.cli import main
from citarion_host.natsserver import NatsServer
from citarion_host.settings import load_config

from .test_demo import run_demo

REPO = Path(__file__).resolve().parents[1]
PROD = REPO / "configs" / "prod.toml"
SLIPPAGE = Decimal("5") / Decimal("10000")  # configs/paper-trading.toml: slippage_bps = 5
RUNS = 3
_streams = itertools.count(1)

Run = dict[str, Any]


def run_jetstream(server: NatsServer, directory: Path) -> Run:
    """``citarion-host --config configs/prod.toml`` as a process, servers from the environment."""
    summary_file = directory / "summary.json"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "CITARION_BACKEND__NATS__SERVERS": json.dumps([server.url]),
        "CITARION_BACKEND__NATS__STREAM": f"trust-{next(_streams)}",
        "CITARION_HOST__PROGRESS_INTERVAL_S": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "citarion_host.cli", "--config", str(PROD), "--summary-json", str(summary_file)],
        cwd=directory, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary: Run = json.loads(summary_file.read_text())
    record = directory / "runs" / "prod-events.jsonl"
    summary["recorded"] = [json.loads(line) for line in record.read_text().splitlines()]
    summary["record_path"] = record
    summary["stream"] = env["CITARION_BACKEND__NATS__STREAM"]
    return summary


@pytest.fixture(scope="module")
def memory_runs(tmp_path_factory: pytest.TempPathFactory) -> list[Run]:
    runs = []
    for _ in range(RUNS):
        directory = tmp_path_factory.mktemp("memory")
        run = run_demo(directory)
        run["record_path"] = directory / "runs" / "dev-events.jsonl"
        runs.append(run)
    return runs


@pytest.fixture(scope="module")
def jetstream_runs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Run]]:
    """Each run on a server of its own (one stream may own the subjects), kept for ``explain``."""
    with contextlib.ExitStack() as servers:
        runs = []
        for _ in range(RUNS):
            server = servers.enter_context(NatsServer())
            run = run_jetstream(server, tmp_path_factory.mktemp("jetstream"))
            run["server"] = server
            runs.append(run)
        yield runs


def figures(run: Run) -> list[dict[str, Any]]:
    """Per bot: signals, orders, fills, PnL to the cent, fees (and the rest of the summary row)."""
    keep = (
        "bot",
        "code",
        "state",
        "handled",
        "signals",
        "orders",
        "fills",
        "pnl",
        "fees",
        "alerts",
        "errors",
    )
    return [{k: row[k] for k in keep} for row in run["bots"]]


def sequence(run: Run) -> list[tuple[Any, ...]]:
    """The recorded events with ids replaced by their position in the run and no wall-clock time."""
    events = run["recorded"]
    position = {event["id"]: index for index, event in enumerate(events)}

    def neutral(value: Any) -> Any:
        if isinstance(value, str) and value in position:
            return f"#{position[value]}"
        if isinstance(value, dict):
            return {k: neutral(v) for k, v in value.items()}
        if isinstance(value, list):
            return [neutral(v) for v in value]
        return value

    return [
        (
            e["topic"],
            e["source"],
            e["priority"],
            neutral(e.get("causationId")),
            neutral(e.get("correlationId")),
            json.dumps(neutral(e["payload"]), sort_keys=True),
            json.dumps(neutral(e.get("metadata", {})), sort_keys=True),
        )
        for e in events
    ]


# -- fills at the price their decision saw --------------------------------------------------------


def check_fills(run: Run) -> int:
    """Every market fill's price is its decision bar's close moved by the slippage; returns how many.

    The decision bar is found through the lineage: from the fill, follow ``causationId`` to the market
    event that started the chain; its data time names the bar, looked up on the *order's* series.
    """
    events = run["recorded"]
    by_id = {e["id"]: e for e in events}
    closes = {
        (e["payload"]["exchange"], e["payload"]["symbol"], e["payload"]["openTime"]): e["payload"]["close"]
        for e in events
        if e["topic"].startswith("market.candle.")
    }
    checked = 0
    for fill in (e for e in events if e["topic"] == "trading.order.filled"):
        order = fill["payload"]
        if order["type"] != "MARKET":
            continue
        chain = [fill]
        while not chain[-1]["topic"].startswith("market."):
            cause = chain[-1].get("causationId")
            assert cause in by_id, f"fill {fill['id']}: the chain breaks at {chain[-1]['topic']}"
            chain.append(by_id[cause])
        submitted = chain[1]
        assert submitted["topic"] == "trading.order.submitted", [e["topic"] for e in chain]
        decision_time = chain[-1]["metadata"]["dataTime"]
        assert submitted["metadata"]["dataTime"] == decision_time, "the order carries its decision's time"
        close = Decimal(str(closes[(order["exchange"], order["symbol"], decision_time)]))
        moved = close * (1 + SLIPPAGE) if order["side"] == "BUY" else close * (1 - SLIPPAGE)
        expected = moved.quantize(Decimal("0.00000001"))
        assert Decimal(str(order["averagePrice"])) == expected, (
            order["orderId"],
            [e["topic"] for e in chain],
        )
        checked += 1
    return checked


def test_every_market_fill_is_at_its_decision_bars_close_on_memory(memory_runs: list[Run]) -> None:
    fills = sum(1 for e in memory_runs[0]["recorded"] if e["topic"] == "trading.order.filled")
    assert check_fills(memory_runs[0]) == fills > 400


def test_every_market_fill_is_at_its_decision_bars_close_on_jetstream(jetstream_runs: list[Run]) -> None:
    fills = sum(1 for e in jetstream_runs[0]["recorded"] if e["topic"] == "trading.order.filled")
    assert check_fills(jetstream_runs[0]) == fills > 400


# -- the same seed, the same run --------------------------------------------------------------------


def test_three_runs_on_memory_are_the_same(memory_runs: list[Run]) -> None:
    first = memory_runs[0]
    for other in memory_runs[1:]:
        assert figures(other) == figures(first)
        assert sequence(other) == sequence(first)


def test_three_runs_on_jetstream_are_the_same(jetstream_runs: list[Run]) -> None:
    first = jetstream_runs[0]
    for other in jetstream_runs[1:]:
        assert figures(other) == figures(first)
        assert sequence(other) == sequence(first)


def test_memory_and_jetstream_give_the_same_run(memory_runs: list[Run], jetstream_runs: list[Run]) -> None:
    assert figures(jetstream_runs[0]) == figures(memory_runs[0])
    assert sequence(jetstream_runs[0]) == sequence(memory_runs[0])
    assert jetstream_runs[0]["events"] == memory_runs[0]["events"] > 8_000  # ~9,350: positions on fills


# -- explain ----------------------------------------------------------------------------------------


def explained(args: list[str]) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["explain", *args]) == 0
    return out.getvalue().splitlines()


def expected_chain(run: Run, event_id: str) -> list[dict[str, Any]]:
    by_id = {e["id"]: e for e in run["recorded"]}
    chain = [by_id[event_id]]
    while chain[-1].get("causationId"):
        chain.append(by_id[chain[-1]["causationId"]])
    return chain


def assert_explained(lines: list[str], chain: list[dict[str, Any]]) -> None:
    hops = [line for line in lines if line.startswith(("   ", "<- ")) and line.rstrip().endswith("]")]
    assert len(hops) == len(chain), lines
    for line, event in zip(hops, chain, strict=True):
        assert line.split()[1 if line.startswith("<-") else 0] == event["topic"], line
        assert f" {event['source']} " in line and line.endswith(f"[{event['id']}]"), line
    assert chain[-1]["topic"].startswith("market."), "the chain ends at a market event"
    assert "no causationId: this is where it started" in lines[-1]


def test_explain_prints_a_fills_chain_back_to_the_market_event(memory_runs: list[Run]) -> None:
    run = memory_runs[0]
    fills = [e for e in run["recorded"] if e["topic"] == "trading.order.filled"]
    by_bot = {fill["payload"]["botId"]: fill for fill in fills}
    assert {"logos", "mesh"} <= set(by_bot), "a LOGOS fill (signal -> decision -> order) and a strategy's"
    for fill in by_bot.values():
        chain = expected_chain(run, fill["id"])
        assert_explained(explained([fill["id"], "--record", str(run["record_path"])]), chain)
    logos_chain = [e["topic"] for e in expected_chain(run, by_bot["logos"]["id"])]
    assert logos_chain[:2] == ["trading.order.filled", "trading.order.submitted"]
    assert "trading.signal.generated" in logos_chain


def test_explain_reads_the_jetstream_stream(
    jetstream_runs: list[Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = jetstream_runs[0]
    fill = next(e for e in run["recorded"] if e["topic"] == "trading.order.filled")
    monkeypatch.setenv("CITARION_BACKEND__NATS__SERVERS", json.dumps([run["server"].url]))
    monkeypatch.setenv("CITARION_BACKEND__NATS__STREAM", run["stream"])
    assert_explained(explained([fill["id"], "--config", str(PROD)]), expected_chain(run, fill["id"]))


def test_explain_says_when_an_event_is_not_there(
    memory_runs: list[Run], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["explain", "no-such-id", "--record", str(memory_runs[0]["record_path"])]) == 1
    assert "no event no-such-id in" in capsys.readouterr().err


# -- a backend switch mid-run -----------------------------------------------------------------------

SWITCH = """
include = ["{topology}"]

[host]
progress_interval_s = 0
summary = false
reload = true
record = "{record}"

[backend]
type = "{backend}"
[backend.nats]
servers = ["{server}"]
stream = "switch"
"""


async def test_a_backend_switch_mid_run_keeps_the_record_and_the_summary_whole(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    """memory -> NATS while the feed plays: the monitor and the record follow the new bus, and the
    summary's counters carry over, so every recorded fill has its order and the figures add up."""
    topology = tmp_path / "topology.toml"
    paper = (REPO / "configs" / "paper-trading.toml").read_text()
    topology.write_text(paper.replace("speed = 0.0", "speed = 600.0").replace("bars = 500", "bars = 120"))
    config, record = tmp_path / "switch.toml", tmp_path / "events.jsonl"

    def write(backend: str) -> None:
        text = SWITCH.format(topology=topology, record=record, backend=backend, server=nats_server.url)
        config.write_text(text)

    write("memory")
    run = asyncio.create_task(run_host(load_config(config), handle_signals=False, out=io.StringIO()))
    deadline = asyncio.get_running_loop().time() + 30
    while not (record.exists() and record.stat().st_size > 200_000):  # the feed is well under way
        assert asyncio.get_running_loop().time() < deadline, "the memory run made no progress"
        await asyncio.sleep(0.05)
    write("nats")
    summary = await asyncio.wait_for(run, 120)
    events = [json.loads(line) for line in record.read_text().splitlines()]
    topics = [e["topic"] for e in events]
    started = [e["payload"]["botId"] for e in events if e["topic"] == "system.bot.started"]
    assert started.count("exchange") == 2, "the bots ran on both buses and the record saw both"
    assert "market.feed.completed" in topics, "the record follows the new bus to the end"
    assert summary["events"] == len(events)
    ids = {e["id"] for e in events}
    fills = [e for e in events if e["topic"] == "trading.order.filled"]
    assert fills and all(fill["causationId"] in ids for fill in fills), "every fill's order is recorded"
    rows = {row["bot"]: row for row in summary["bots"]}
    submitted: dict[str, int] = {}
    for e in events:
        if e["topic"] == "trading.order.submitted":
            submitted[e["payload"]["botId"]] = submitted.get(e["payload"]["botId"], 0) + 1
    for bot, count in submitted.items():
        assert rows[bot]["orders"] == count, bot
        assert rows[bot]["fills"] <= rows[bot]["orders"], bot
