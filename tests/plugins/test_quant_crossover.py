"""LFT arithmetic: crossings of a constructed series equal the analytic list; no look-ahead."""

from __future__ import annotations

import numpy as np
import pytest
from citarion_bots.quant.crossover import Crossover, TrailingStop


def crossings(closes: list[float], fast: int, slow: int) -> list[tuple[int, str]]:
    rule = Crossover(fast, slow)
    return [(t, c) for t, close in enumerate(closes) if (c := rule.update(close)) is not None]


def test_steps_cross_exactly_on_the_step_bars() -> None:
    # a step up at bar 40 and down at 80, each at least a slow window after the last: fast - slow is
    # 0 before a step and 10 * k * (1/fast - 1/slow) != 0 from its first bar on
    closes = [100.0] * 40 + [110.0] * 40 + [90.0] * 40
    assert crossings(closes, 5, 20) == [(40, "up"), (80, "down")]


def test_crossings_equal_a_direct_numpy_computation() -> None:
    rng = np.random.default_rng(7)
    closes = list(100 + np.cumsum(rng.normal(0, 1, 400)))
    fast, slow = 10, 30
    sma = lambda n: np.convolve(closes, np.ones(n) / n, mode="valid")  # noqa: E731
    diff = sma(fast)[slow - fast :] - sma(slow)  # diff[i] belongs to bar i + slow - 1
    expected = []
    for i in range(1, len(diff)):
        if diff[i - 1] <= 0 < diff[i]:
            expected.append((i + slow - 1, "up"))
        elif diff[i - 1] >= 0 > diff[i]:
            expected.append((i + slow - 1, "down"))
    assert expected and crossings(closes, fast, slow) == expected


def test_a_decision_at_t_does_not_change_when_bar_t_plus_1_changes() -> None:
    rng = np.random.default_rng(8)
    closes = list(100 + np.cumsum(rng.normal(0, 1, 200)))
    base = crossings(closes, 5, 20)
    for t in (60, 120, 180):
        for bump in (-50.0, 50.0):
            changed = [*closes[: t + 1], closes[t + 1] + bump, *closes[t + 2 :]]
            assert [c for c in crossings(changed, 5, 20) if c[0] <= t] == [c for c in base if c[0] <= t]


def test_trailing_stop_follows_the_peak() -> None:
    stop = TrailingStop(0.1)
    stop.arm("long", 100.0)
    assert [stop.update(c) for c in (105.0, 120.0, 109.0, 108.0)] == [False, False, False, True]
    assert stop.side is None and not stop.update(1.0)
    stop.arm("short", 100.0)
    assert stop.update(95.0) is False and stop.level == pytest.approx(104.5)
    assert stop.update(104.6) is True
