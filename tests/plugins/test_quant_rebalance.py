"""TRF: the issue's 70/20/10 known answer, drift bands, and fees that outweigh the benefit."""

from __future__ import annotations

import pytest
from citarion_bots.quant.rebalance import Move, plan_transfers

EQUAL = {"A": 1.0, "B": 1.0, "C": 1.0}


def test_70_20_10_with_equal_targets() -> None:
    moves = plan_transfers({"A": 70.0, "B": 20.0, "C": 10.0}, EQUAL, decimals=2)
    assert moves == [Move("A", "C", 23.33, 0.0), Move("A", "B", 13.33, 0.0)]


def test_within_the_band_nothing_moves() -> None:
    balances = {"A": 36.0, "B": 33.0, "C": 31.0}
    assert plan_transfers(balances, EQUAL, band=0.05) == []
    assert [m.amount for m in plan_transfers(balances, EQUAL, band=0.02)] == pytest.approx(
        [2.3333333, 0.3333333]
    )


def test_a_transfer_whose_fee_exceeds_its_benefit_is_skipped() -> None:
    balances = {"A": 70.0, "B": 20.0, "C": 10.0}
    # fee 1 + 0.1 %: A->C (23.33) is worth 1.17 at 5 %, A->B (13.33) only 0.67 < its fee 1.013
    moves = plan_transfers(balances, EQUAL, fee_flat=1.0, fee_rate=0.001, benefit_rate=0.05, decimals=2)
    assert [(m.source, m.target, m.amount) for m in moves] == [("A", "C", 23.33)]
    assert moves[0].fee == pytest.approx(1.02333)
    assert plan_transfers(balances, EQUAL, min_amount=20.0, decimals=2) == [Move("A", "C", 23.33, 0.0)]


def test_bad_inputs_name_the_problem() -> None:
    with pytest.raises(ValueError, match="different venues"):
        plan_transfers({"A": 1.0}, {"B": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        plan_transfers({"A": 1.0}, {"A": 0.0})
    assert plan_transfers({"A": 0.0, "B": 0.0}, {"A": 1.0, "B": 1.0}) == []
