"""The z-score rule shared by PAR, STA and MRB: entries, exits, stops and the stop lockout."""

from __future__ import annotations

import pytest
from citarion_bots.quant.bands import BandRule


def run(rule: BandRule, scores: list[float], gate: bool = True) -> list[str | None]:
    return [rule.step(z, gate) for z in scores]


def test_entry_exit_on_both_sides() -> None:
    rule = BandRule(entry=2.0, exit=0.5, stop=4.0)
    assert run(rule, [0.0, 1.9, 2.0, 1.0, 0.6, 0.5]) == [None, None, "short", None, None, "exit"]
    assert run(rule, [-2.5, -1.0, -0.4]) == ["long", None, "exit"]


def test_stop_then_lockout_until_back_inside_the_exit_band() -> None:
    rule = BandRule(entry=2.0, exit=0.5, stop=4.0)
    assert run(rule, [2.1, 4.2, 3.0, 2.5, 0.4, 2.2]) == ["short", "stop", None, None, None, "short"]
    assert run(BandRule(2.0, 0.5, 4.0), [4.5, -5.0]) == [None, None]  # beyond the stop: never entered


def test_a_closed_gate_blocks_entries_not_exits() -> None:
    rule = BandRule(entry=2.0, exit=0.5, stop=4.0)
    assert run(rule, [3.0, 2.5], gate=False) == [None, None]
    rule.step(2.5)
    assert rule.step(0.1, gate_open=False) == "exit"


def test_thresholds_are_checked() -> None:
    with pytest.raises(ValueError, match="exit < entry < stop"):
        BandRule(entry=2.0, exit=2.0, stop=4.0)
