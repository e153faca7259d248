"""The fleet benchmark runs end to end and reports what it measured (figures are read, not asserted)."""

from __future__ import annotations

import json

import pytest

from citarion_host.cli import main


def test_fleet_bench_prints_every_figure_and_no_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--case", "fleet", "--bots", "12"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["case"], result["bots"], result["patterns"], result["problems"]) == ("fleet", 12, 34, [])
    steps = ["load_s", "check_s", "check_and_start_s", "reload_rewired_apply_s", "reload_restarted_apply_s"]
    assert all(isinstance(result[step], float) and result[step] >= 0 for step in [*steps, "stop_s"])
