"""HFT: the issue's imbalance and micro-price known answer."""

from __future__ import annotations

import pytest
from citarion_bots.quant.microstructure import imbalance, micro_price, mid_price


def test_the_known_answer() -> None:
    bids, asks = [(100.0, 3.0)], [(101.0, 1.0)]
    assert imbalance(bids, asks) == 0.75
    assert micro_price(bids, asks) == pytest.approx(100.75)
    assert mid_price(bids, asks) == 100.5


def test_deeper_levels_and_empty_sides() -> None:
    bids, asks = [(100.0, 3.0), (99.0, 1.0)], [(101.0, 1.0), (102.0, 5.0)]
    assert imbalance(bids, asks, levels=2) == pytest.approx(4 / 10)
    assert imbalance([(100.0, 0.0)], [(101.0, 0.0)]) == 0.5
    with pytest.raises(ValueError):
        imbalance(bids, asks, levels=0)
