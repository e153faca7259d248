"""The paper-trading demo reloaded mid-run: a strategy's params change, its state does not.

``configs/dev.toml`` (memory) and ``configs/prod.toml`` (JetStream, a fixture nats-server), their topology
paced (``speed``) so the run lasts long enough to be reloaded in the middle: the topology file is rewritten
while it runs with new params for the grid strategy (``mesh``) and LOGOS, and the reload applied. Then:

* the restarted bots got exactly the state their predecessors stopped with (positions, cash, order-id
  counters, windows: the snapshot the restart restored equals the old instance's final state);
* no order is rejected as a duplicate, and each bot's order ids run on without a gap or a repeat;
* a changed param applies from the reload on (the grid's orders are sized by the new ``order_quote``);
* each restarted bot's own view of its position equals what its fills in the record add up to;
* the books balance to the cent at the end, recomputed from the recorded position reports.

Snapshots are only taken at the restart (``every_events``/``every_s`` out of reach), so "what was
restored" is one snapshot, not a race with the ones a running bot takes.
"""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from citarion_host.events import Event
from citarion_host.host import Host
from citarion_host.natsserver import NatsServer
from citarion_host.reload import ConfigReloader
from citarion_host.settings import load_config
from citarion_host.state import encode_snapshot, state_spec
from tests.bus.conftest import eventually

REPO = Path(__file__).resolve().parents[1]
PAPER = (REPO / "configs" / "paper-trading.toml").read_text()
STARTING_CASH = Decimal("10000")
RELOADED = ("mesh", "logos")


def topology(*, reloaded: bool) -> str:
    """The demo's topology, paced (200 bars, ~4 s); ``reloaded``: new params for mesh and LOGOS."""
    text = PAPER.replace("speed = 0.0", "speed = 3000.0").replace("bars = 500", "bars = 200")
    if reloaded:
        text = text.replace(
            "params = { levels = 5, spacing_pct = 0.004, order_quote = 100.0 }",
            "params = { levels = 5, spacing_pct = 0.004, order_quote = 130.0 }",
        )
        text = text.replace("trade_confidence = 0.3,", "trade_confidence = 0.31,")
    assert text.count("speed = 3000.0") == 1 and (not reloaded or "order_quote = 130.0" in text)
    return text


def main_config(backend: str, server: NatsServer | None) -> str:
    """``configs/dev.toml`` or ``configs/prod.toml`` around the paced topology; snapshots at restarts only."""
    if backend == "memory":
        text = (REPO / "configs" / "dev.toml").read_text()
    else:
        assert server is not None
        text = (REPO / "configs" / "prod.toml").read_text()
        text = text.replace('servers = ["nats://127.0.0.1:4222"]', f'servers = ["{server.url}"]')
        text = text.replace('stream = "citarion-events"', 'stream = "reload-demo"')
    text = text.replace('include = ["paper-trading.toml"]', 'include = ["topology.toml"]')
    text = re.sub(r"(?m)^record = .*$", "", text)  # recorded here, by a subscription
    text = re.sub(r"(?m)^progress_interval_s = .*$", "", text)
    return text.replace("[host]\n", "[host]\nprogress_interval_s = 0\nsummary = false\n", 1) + (
        "\n[state]\nevery_events = 1000000000\nevery_s = 100000.0\n"
    )


def encoded(bot: Any) -> bytes:
    snapshot, _ = encode_snapshot(
        "b", state_spec(type(bot)), bot.snapshot(), handled=0, seq=None, stream=None, event_id=None
    )
    return bytes(snapshot.state)


def fills(events: list[Event], bot_id: str) -> dict[str, float]:
    """A bot's position per series, added up from its fills in the record."""
    held: dict[str, float] = defaultdict(float)
    for event in events:
        order = event.payload
        if event.topic == "trading.order.filled" and order.bot_id == bot_id:
            step = order.filled_quantity if order.side == "BUY" else -order.filled_quantity
            held[f"{order.exchange}:{order.symbol}"] = round(
                held[f"{order.exchange}:{order.symbol}"] + step, 8
            )
    return {series: quantity for series, quantity in sorted(held.items()) if quantity}


def assert_books_balance(events: list[Event]) -> None:
    """cash + positions at mark == starting cash + realized + unrealized - fees, per bot, from the last
    recorded position reports (each amount rounded to the cent: half a cent per position)."""
    last: dict[str, dict[str, Any]] = {}
    cash: dict[str, Decimal] = {}
    for event in events:
        if event.topic == "trading.position.updated":
            p = event.payload
            last.setdefault(p.bot_id, {})[f"{p.exchange}:{p.symbol}"] = p
            cash[p.bot_id] = Decimal(str(p.cash))
    assert set(last) >= set(RELOADED)
    for bot_id, positions in last.items():
        d = [
            (
                Decimal(str(p.quantity)) * Decimal(str(p.mark_price)),
                p.realized_pnl,
                p.unrealized_pnl,
                p.fees_paid,
            )
            for p in positions.values()
        ]
        left = cash[bot_id] + sum(held for held, *_ in d)
        right = STARTING_CASH + sum(Decimal(str(r)) + Decimal(str(u)) - Decimal(str(f)) for _, r, u, f in d)
        assert abs(left - right) <= Decimal("0.005") * (len(positions) + 1), (bot_id, left, right)


@pytest.mark.parametrize("backend", ["memory", pytest.param("nats", marks=pytest.mark.nats)])
async def test_a_strategy_reloaded_mid_run_keeps_its_positions_cash_and_order_ids(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    server: NatsServer | None = request.getfixturevalue("nats_server") if backend == "nats" else None
    (tmp_path / "topology.toml").write_text(topology(reloaded=False))
    config = tmp_path / "host.toml"
    config.write_text(main_config(backend, server))
    host = Host(load_config(config))
    events: list[Event] = []
    await host.bus.start()
    await host.bus.subscribe(">", events.append, name="test:recorder", max_pending=1 << 21)
    reloader = ConfigReloader(host)
    async with host:
        runners = {bot_id: host.runners[bot_id] for bot_id in RELOADED}
        await eventually(
            lambda: all(r.bot is not None and r.bot.counts["fills"] >= 3 for r in runners.values()),  # type: ignore[attr-defined]
            timeout=60,
            what="mesh and LOGOS to hold positions",
        )
        old = {bot_id: runner.bot for bot_id, runner in runners.items()}
        (tmp_path / "topology.toml").write_text(topology(reloaded=True))
        result = await reloader.reload_once()
        assert result.status == "applied" and result.diff is not None, result
        assert {b.id for b in result.diff.restarted} == set(RELOADED), result
        for bot_id, runner in runners.items():
            previous = old[bot_id]
            assert runner.bot is not previous, f"{bot_id} was restarted"
            restored = runner.checkpoints.latest  # type: ignore[union-attr]  # the only snapshot since
            assert restored is not None and bytes(restored.state) == encoded(previous), bot_id
        assert runners["mesh"].bot.params.order_quote == 130.0  # type: ignore[union-attr]
        assert not host.finished.is_set(), "reloaded before the feed completed"
        await asyncio.wait_for(host.finished.wait(), timeout=120)
        await host.bus.settle()
        # each bot's own view of its position: LOGOS's positions, the grid's inventory
        views = {bot_id: runner.bot.stats() for bot_id, runner in runners.items()}  # type: ignore[union-attr]
        positions = {"logos": views["logos"]["positions"], "mesh": views["mesh"]["inventory"]}
        balanced = host.runners["exchange"].bot.stats()["balanced"]  # type: ignore[union-attr]

    rejected = [e.payload.reason for e in events if e.topic == "trading.order.rejected"]
    assert not [r for r in rejected if "duplicate" in (r or "")], rejected
    started = [e.payload.bot_id for e in events if e.topic == "system.bot.started"]
    for bot_id in RELOADED:
        assert started.count(bot_id) == 2, f"{bot_id} ran twice: before and after the reload"
        submitted = [
            e.payload.order_id
            for e in events
            if e.topic == "trading.order.submitted" and e.payload.bot_id == bot_id
        ]
        assert submitted == [f"{bot_id}-{k}" for k in range(1, len(submitted) + 1)], bot_id
        assert positions[bot_id] == fills(events, bot_id), f"{bot_id}'s position carried over the reload"
    by_id = {e.id: e for e in events}
    reload_at = next(
        i for i, e in enumerate(events) if e.topic == "system.bot.restarting" and e.payload.bot_id == "mesh"
    )
    for index, event in enumerate(events):
        order = event.payload
        if event.topic == "trading.order.submitted" and order.bot_id == "mesh" and order.side == "BUY":
            quote = (
                order.quantity * by_id[event.causation_id].payload.close
            )  # sized at a level near the close
            expected = 130.0 if index > reload_at else 100.0
            assert 0.9 * expected < quote <= expected * 1.0001, (order.order_id, quote, expected)
    assert balanced is True
    assert_books_balance(events)
