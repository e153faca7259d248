"""``bench --case ui`` on a short demo: its rows, and every stream checked for every event.

Structure and correctness only, never a timing (the machine is shared): the figures are in docs/ui.md.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from citarion_host.bench import BenchError
from citarion_host.bench_demo import DEMO_CONFIG
from citarion_host.bench_ui import (
    CLIENTS,
    FLEET_LOW,
    FLEET_SAME,
    IDLE,
    OFF,
    TAIL_LOW,
    run_ui_bench,
)

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
    assert names == [OFF, IDLE, FLEET_LOW, FLEET_SAME, TAIL_LOW, CLIENTS]
    assert "idle CPU priority" in FLEET_LOW and "normal priority" in FLEET_SAME
    events = table.row(OFF)["events"]
    assert events > 500 and all(row["events"] == events for row in table.rows)  # the same replay
    assert table.row(TAIL_LOW)["streamed"] == events
    for fleet in (FLEET_LOW, FLEET_SAME):  # the bots' lifecycle only
        assert 0 < table.row(fleet)["streamed"] < events
    assert table.row(IDLE)["streamed"] == 0
    for row in table.rows:  # the host's share of a core, what the browsers took meanwhile
        assert row["host_cores"] > 0 and row["browser_cpu_us_per_event"] >= 0, row["name"]
    for name in names[1:]:
        row = table.row(name)
        assert row["delivered_min"] >= row["streamed"] and row["lost"] == 0, name
        # each variant against its own 'ui off' run: a ratio of that pair, not of the medians
        assert row["vs_off_events_per_s"] > 0 and row["vs_off_cpu_us_per_event"] > 0, name
    assert "vs_off_events_per_s" not in table.row(OFF)
    assert [r.target for r in table.ratios] == [">= 0.9", "<= 1.1", ">= 0.9", "<= 1.1", None, None, None]
    assert FLEET_LOW in table.ratios[0].name and FLEET_SAME in table.ratios[2].name
    (policies,) = [note for note in table.notes if note.startswith("processes started")]
    assert re.search(r": (.*, )?[1-9][0-9]* idle", policies), policies  # the wrapper took effect


async def test_the_ui_case_names_a_missing_chromium(short_demo: Path, tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="no chromium"):
        await run_ui_bench(short_demo, rounds_=1, chromium=str(tmp_path / "nope"))
