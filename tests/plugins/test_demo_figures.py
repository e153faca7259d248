"""The demo's trading figures, pinned: making the bots leaner must not change what they trade.

``data/demo_figures.json`` holds what ``configs/dev.toml`` produced on main before the demo bots were
made leaner (issue 12, item 4): per bot the signals, orders, fills, PnL, fees and alerts of the run
summary, the exchange's books (cash, equity, realized/unrealized PnL, fees and every position, to the
cent) and every event count.

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


def test_every_event_count_is_the_pinned_one(demo: dict[str, Any]) -> None:
    topics = {t: n for t, n in demo["topics"].items() if not t.startswith("system.")}
    assert topics == PINNED["topics"]
