"""The fleet benchmark runs end to end and reports what it measured (figures are read, not asserted)."""

from __future__ import annotations

import json

import pytest

from citarion_host.cli import main


def test_fleet_bench_prints_every_figure_and_no_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--case", "fleet", "--bots", "12", "--json"]) == 0
    (table,) = json.loads(capsys.readouterr().out)["cases"]["fleet"]
    assert table["title"].startswith("fleet: 12 bots, 34 patterns") and table["notes"] == []
    seconds = {row["name"]: row["seconds"] for row in table["rows"]}
    steps = ["load", "check", "check_and_start", "reload_rewired_apply", "reload_restarted_apply", "stop"]
    assert all(isinstance(seconds[step], float) and seconds[step] >= 0 for step in steps)
    assert [ratio["name"] for ratio in table["ratios"]] == [
        "check and start (s)",
        "reload of one bot, apply (s)",
    ]
