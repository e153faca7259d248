"""The demo's trading figures, pinned: making the bots leaner must not change what they trade.

``data/demo_figures.json`` holds what ``configs/dev.toml`` produced on main before the demo bots were
made leaner (issue 12, item 4): per bot the signals, orders, fills, PnL, fees and alerts of the run
summary, the exchange's books (cash, equity, realized/unrealized PnL, fees and every position, to the
cent) and every event count except the position reports. The exchange now reports a position when a
fill changes it and once more, at its final mark, when the feed completes (``mark_every_bars = 0``,
docs/bots.md "EXC"), instead of every open position on every candle, so only the count of
``trading.position.updated`` events differs, and this test says by how much.

Regenerate the file only for a change that is *meant* to change the demo's trading, and say so in the
commit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ..test_demo import run_demo

PINNED = json.loads((Path(__file__).parent / "data" / "demo_figures.json").read_text())
FIGURES = ("bot", "code", "signals", "orders", "fills", "pnl", "fees", "alerts")
POSITIONS = "trading.position.updated"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_demo(tmp_path_factory.mktemp("pinned"))


def exchange_stats(summary: dict[str, Any]) -> dict[str, Any]:
    stats: dict[str, Any] = next(row for row in summary["bots"] if row["bot"] == "exchange")["stats"]
    return stats


def test_every_bots_trading_figures_are_the_pinned_ones(demo: dict[str, Any]) -> None:
    assert [{k: row[k] for k in FIGURES} for row in demo["bots"]] == PINNED["bots"]


def test_the_exchanges_books_are_the_pinned_ones_to_the_cent(demo: dict[str, Any]) -> None:
    stats = exchange_stats(demo)
    assert stats["books"] == PINNED["books"]
    assert {k: stats[k] for k in PINNED["exchange"]} == PINNED["exchange"]


def test_only_the_position_reports_changed_in_number(demo: dict[str, Any]) -> None:
    topics = {t: n for t, n in demo["topics"].items() if not t.startswith("system.")}
    assert {t: n for t, n in topics.items() if t != POSITIONS} == {
        t: n for t, n in PINNED["topics"].items() if t != POSITIONS
    }
    # Before: every open position on every candle (7,854). Now: one per fill plus the final marks.
    fills = topics["trading.order.filled"]
    open_at_end = sum(
        1
        for book in exchange_stats(demo)["books"].values()
        for position in book["positions"].values()
        if position["quantity"]
    )
    assert topics[POSITIONS] == fills + open_at_end < PINNED["topics"][POSITIONS] // 10
