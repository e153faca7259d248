"""The nine institutional and frequency bots on the real host and in-memory bus, fed by the
synthetic market (tests/plugins/market_feed.py, as LUM will feed it) and filled by the paper
exchange (level-2 matching, per-exchange accounts for ARB and TRF, transfers).

Each bot is wired within its registry category's rules (checked), and each produces its kinds of
events; TRF rebalances its account with a transfer that settles after the exchange's delay.
"""

from __future__ import annotations

import asyncio
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

TRADING_PUBLISH = [
    "trading.signal.>",
    "trading.order.submitted",
    "trading.order.cancel",
    "trading.order.amend",
]
ORDER_REPORTS = ["trading.order.accepted", "trading.order.partially_filled", "trading.order.filled",
                 "trading.order.rejected", "trading.order.cancelled", "trading.order.amended",
                 "trading.order.cancel_rejected", "trading.order.amend_rejected"]  # fmt: skip
TRANSFER_REPORTS = ["trading.order.transfer.pending", "trading.order.transfer.settled",
                    "trading.order.transfer.rejected"]  # fmt: skip


def bot(
    id_: str,
    code: str,
    plugin: str,
    subscribe: list[str],
    params: dict[str, Any],
    publish: list[str] | None = None,
) -> dict[str, Any]:
    return {"id": id_, "code": code, "plugin": plugin, "publish": publish or TRADING_PUBLISH,
            "subscribe": [*subscribe, *ORDER_REPORTS, "risk.>"], "params": params}  # fmt: skip


def config() -> dict[str, Any]:
    return {
        "host": {"name": "institutional", "stop_on": "market.feed.completed", "summary": False, "progress_interval_s": 0},
        "backend": {"type": "memory"},
        "bots": [
            {"id": "exchange", "code": "EXC", "plugin": "paper-exchange",
             "publish": [*ORDER_REPORTS, *TRANSFER_REPORTS, "trading.position.>"],
             "subscribe": ["trading.order.submitted", "trading.order.cancel", "trading.order.amend",
                           "trading.order.transfer.requested", "market.>", "risk.block.>"],
             "params": {"starting_cash": 100_000.0, "allow_short": True, "limit_ttl_bars": 5,
                        "fee_bps": 10.0, "maker_fee_bps": 2.0, "slippage_bps": 1.0,
                        "accounts": {"orion": {"binance": {"USDT": 20_000.0, "BTC": 0.5},
                                               "bybit": {"USDT": 20_000.0, "BTC": 0.5}},
                                     "kron": {"binance": {"USDT": 7_000.0}, "bybit": {"USDT": 3_000.0}}},
                        "transfer_delay_ms": 120_000}},
            bot("orion", "ARB", "arbitrage", ["market.orderbook.>", "trading.position.balance.>"],
                {"symbols": ["BTCUSDT"], "taker_fee_bps": 5.0, "min_edge_bps": 2.0, "max_quote": 2_000.0}),
            bot("spectrum", "PAR", "pairs", ["market.candle.>"], {"lookback": 120, "refit_every": 10, "entry_z": 1.5}),
            bot("reed", "STA", "stat-arb", ["market.candle.>"],
                {"symbols": ["XRPUSDT"], "exchanges": ["binance"], "lookback": 250, "refit_every": 10, "entry_k": 1.5,
                 "pvalue_max": 0.05}),
            bot("architect", "MMK", "market-maker", ["market.orderbook.>"],
                {"symbol": "BTCUSDT", "gamma": 0.001, "kappa": 1.5, "quote_size": 0.01, "max_inventory": 0.05}),
            bot("equilibrist", "MRB", "basket", ["market.candle.>"],
                {"lookback": 250, "refit_every": 10, "entry_z": 1.5, "significance": 0.05, "confirm_fits": 2}),
            bot("kron", "TRF", "transfer", ["trading.position.balance.>", *TRANSFER_REPORTS],
                {"asset": "USDT"}, publish=["trading.order.transfer.requested"]),
            bot("helios", "HFT", "hft-imbalance", ["market.orderbook.>"],
                {"symbols": ["BTCUSDT"], "entry_imbalance": 0.75, "cooldown_ms": 30_000, "hold_ms": 30_000}),
            bot("selene", "MFT", "mft-breakout", ["market.candle.>"],
                {"symbols": ["BTCUSDT"], "interval": "5m", "channel": 6, "exit_channel": 3, "atr_period": 6}),
            bot("atlas", "LFT", "lft-crossover", ["market.candle.>"],
                {"symbols": ["BTCUSDT"], "interval": "1h", "fast": 1, "slow": 2, "trail_pct": 0.05}),
            {"id": "lumi", "code": "LUM", "plugin": "tests.plugins.market_feed:MarketFeedBot",
             "publish": ["market.>"], "subscribe": [],
             "params": {"bars": 420, "steps_per_bar": 2, "aggregate": ["5m", "1h"]}},
        ],
    }  # fmt: skip


class Run:
    def __init__(self, events: list[Event], bots: dict[str, Any]) -> None:
        self.events, self.bots = events, bots
        self.by_source: dict[str, set[str]] = defaultdict(set)
        for event in events:
            self.by_source[event.source].add(".".join(event.topic.split(".")[:3]))


async def scenario(path: Path) -> Run:
    events: list[Event] = []
    host = Host(load_config(path), plugins=Plugins.discover())
    await host.bus.start()
    await host.bus.subscribe(">", events.append, name="test:recorder", max_pending=1 << 21)
    async with host:
        await asyncio.wait_for(host.finished.wait(), timeout=120)
        bots = {bot_id: runner.bot for bot_id, runner in host.runners.items()}
    return Run(events, bots)


@pytest.fixture(scope="module")
def path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    file = tmp_path_factory.mktemp("institutional") / "institutional.toml"
    file.write_text(tomli_w.dumps(config()), encoding="utf-8")
    return file


@pytest.fixture(scope="module")
def run(path: Path) -> Run:
    return asyncio.run(scenario(path))


def test_the_wiring_obeys_the_registry_rules(path: Path) -> None:
    findings = check_topology(load_config(path), load_registry(), Plugins.discover())
    assert [f for f in findings if f.severity == "error"] == []


def test_every_bot_produced_its_kinds_of_events(run: Run) -> None:
    signal, submitted = "trading.signal.generated", "trading.order.submitted"
    expected = {
        "ARB": {signal, submitted},
        "PAR": {signal, submitted},
        "STA": {signal, submitted},
        "MMK": {submitted},
        "MRB": {signal, submitted},
        "HFT": {signal, submitted},
        "MFT": {signal, submitted},
        "LFT": {signal, submitted},
    }
    for code, kinds in expected.items():
        assert kinds <= run.by_source[code], (code, run.by_source[code])
    # kron starts 7,000 / 3,000: one transfer of 2,000 (fee 1) brings it to 5,000 / 5,000 once it settles
    assert run.by_source["TRF"] == {"trading.order.transfer"}
    assert run.bots["kron"].stats() | {"balances": None} == run.bots["kron"].stats() | {
        "requested": 1, "settled": 1, "rejected": 0, "inFlight": 0, "moved": 2_000.0, "fees": 1.0, "balances": None
    }  # fmt: skip
    assert run.bots["kron"].stats()["balances"] == {"binance": 4_999.0, "bybit": 5_000.0}


def test_every_signal_and_order_is_stamped_with_bot_and_data_time(run: Run) -> None:
    ids = {"ARB": "orion", "PAR": "spectrum", "STA": "reed", "MMK": "architect", "MRB": "equilibrist",
           "HFT": "helios", "MFT": "selene", "LFT": "atlas"}  # fmt: skip
    stamped = [
        e for e in run.events if e.source in ids and e.topic.startswith(("trading.signal", "trading.order"))
    ]
    assert stamped
    for event in stamped:
        assert event.metadata["botId"] == ids[event.source]
        assert isinstance(event.metadata["dataTime"], int) and event.metadata["dataTime"] >= 1_700_006_400_000


def test_the_bots_books_agree_with_the_exchange(run: Run) -> None:
    exchange = run.bots["exchange"]
    assert exchange.stats()["balanced"] is True
    for bot_id in ("orion", "spectrum", "reed", "architect", "equilibrist", "helios", "selene", "atlas"):
        # what it traded: the exchange's holdings less what the account held at start (ARB's BTC)
        start = exchange.params.accounts.get(bot_id, {})
        held = {
            k: float(h.quantity) - start.get(k[0], {}).get(k[1].removesuffix("USDT"), 0.0)
            for k, h in (exchange.books[bot_id].holdings.items() if bot_id in exchange.books else ())
        }
        held = {k: q for k, q in held.items() if abs(q) > 1e-9}
        mine = {k: q for k, q in run.bots[bot_id].position.items() if q}
        assert mine == pytest.approx(held), bot_id
        assert run.bots[bot_id].stats()["untimed"] == 0  # every book the bot used carried its dataTime


def test_no_handler_ever_raised(run: Run) -> None:
    assert not [e for e in run.events if e.topic.startswith("system.handler")]
