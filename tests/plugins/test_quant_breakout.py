"""MFT arithmetic: Donchian over previous bars, Wilder's ATR, turtle sizing."""

from __future__ import annotations

import pytest
from citarion_bots.quant.breakout import ATR, Donchian, turtle_units


def test_the_channel_excludes_the_current_bar() -> None:
    channel = Donchian(3)
    for high, low in [(10, 8), (12, 9), (11, 7)]:
        channel.add(high, low)
    assert channel.ready and (channel.upper(), channel.lower()) == (12, 7)
    channel.add(13, 10)
    assert (channel.upper(), channel.lower()) == (13, 7)


def test_wilder_atr_equals_a_hand_computation() -> None:
    bars = [(10.0, 9.0, 9.5), (11.0, 9.5, 10.5), (10.8, 10.0, 10.2), (12.0, 10.1, 11.9)]
    # TRs: 1.0 (first: high - low), 1.5, max(0.8, 0.3, 0.5) = 0.8, max(1.9, 1.8, 0.1) = 1.9
    atr = ATR(3)
    values = [atr.update(*bar) for bar in bars]
    assert values[:2] == [None, None]
    assert values[2] == pytest.approx((1.0 + 1.5 + 0.8) / 3)
    assert values[3] == pytest.approx(((1.0 + 1.5 + 0.8) / 3 * 2 + 1.9) / 3)


def test_turtle_units_risk_the_given_amount() -> None:
    assert turtle_units(100.0, 2.5, 2.0) == 20.0  # a 5-point stop on 20 units loses 100
    assert turtle_units(100.0, 0.0, 2.0) == 0.0
