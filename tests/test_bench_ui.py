"""``bench --case ui`` on a short demo: its rows, and every stream checked for every event.

Structure and correctness only, never a timing (the machine is shared): the figures are in docs/ui.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from citarion_host.bench import BenchError
from citarion_host.bench_demo import DEMO_CONFIG
from citarion_host.bench_ui import SSE_CLIENTS, run_ui_bench

CHROMIUM = os.environ.get("CITARION_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
def short_demo(tmp_path: Path) -> Path:
    """The demo topology on 40 bars instead of 500 (copies of configs/dev.toml and what it includes)."""
    paper = (DEMO_CONFIG.parent / "paper-trading.toml").read_text()
    assert "bars = 500" in paper
    (tmp_path / "paper-trading.toml").write_text(paper.replace("bars = 500", "bars = 40"))
    (tmp_path / "dev.toml").write_text(DEMO_CONFIG.read_text())
    return tmp_path / "dev.toml"


@pytest.mark.slow
async def test_the_ui_case_runs_every_variant_and_checks_every_stream(short_demo: Path) -> None:
    (table,) = await run_ui_bench(short_demo, rounds_=1, chromium=CHROMIUM)
    names = [row["name"] for row in table.rows]
    assert names == [
        "ui off",
        "ui on, nobody watching",
        "ui on + browser (fleet)",
        "ui on + browser (tail)",
        f"ui on + {SSE_CLIENTS} SSE clients",
    ]
    events = table.row("ui off")["events"]
    assert events > 500 and all(row["events"] == events for row in table.rows)  # the same replay
    assert table.row("ui on + browser (tail)")["streamed"] == events
    assert 0 < table.row("ui on + browser (fleet)")["streamed"] < events  # the bots' lifecycle only
    assert table.row("ui on, nobody watching")["streamed"] == 0
    for row in table.rows:  # the host's share of a core, what the browser took meanwhile
        assert row["host_cores"] > 0 and row["browser_cpu_us_per_event"] >= 0, row["name"]
    for name in names[1:]:
        row = table.row(name)
        assert row["delivered_min"] >= row["streamed"] and row["lost"] == 0, name
    assert [r.target for r in table.ratios] == [">= 0.9", None, "<= 1.1", None, None]


async def test_the_ui_case_names_a_missing_chromium(short_demo: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no chromium"):
        await run_ui_bench(short_demo, rounds_=1, chromium=str(tmp_path / "nope"))
