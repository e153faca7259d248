"""MMK: the issue's Avellaneda-Stoikov known answer, inventory skew, tick rounding, volatility."""

from __future__ import annotations

import math

import numpy as np
import pytest
from citarion_bots.quant.avellaneda import MidVolatility, optimal_spread, quotes, reservation_price


def test_the_known_answer() -> None:
    assert reservation_price(100.0, 2, 0.1, 2.0, 0.5) == pytest.approx(99.6)
    assert optimal_spread(0.1, 2.0, 0.5, 1.5) == pytest.approx(1.4908, abs=5e-5)
    q = quotes(100.0, 2, gamma=0.1, sigma=2.0, tau=0.5, kappa=1.5)
    assert (q.bid, q.ask) == pytest.approx((99.6 - 1.4908 / 2, 99.6 + 1.4908 / 2), abs=5e-5)


def test_inventory_skews_both_quotes_and_ticks_widen_never_narrow() -> None:
    flat = quotes(100.0, 0, gamma=0.1, sigma=2.0, tau=0.5, kappa=1.5)
    long = quotes(100.0, 2, gamma=0.1, sigma=2.0, tau=0.5, kappa=1.5)
    short = quotes(100.0, -2, gamma=0.1, sigma=2.0, tau=0.5, kappa=1.5)
    assert long.bid < flat.bid < short.bid and long.ask < flat.ask < short.ask
    ticked = quotes(100.0, 2, gamma=0.1, sigma=2.0, tau=0.5, kappa=1.5, tick=0.01)
    assert ticked.bid == pytest.approx(98.85) and ticked.ask == pytest.approx(100.35)
    with pytest.raises(ValueError):
        optimal_spread(0.0, 2.0, 0.5, 1.5)


def test_mid_volatility_is_realised_variance_per_time_unit() -> None:
    rng = np.random.default_rng(1)
    vol = MidVolatility(window=5000, time_unit_ms=1000.0)  # sigma per sqrt(second)
    mid, t = 100.0, 0
    for _ in range(5001):
        vol.update(t, mid)
        t += 100  # a step every 0.1 s, sd 0.05 per step -> sigma 0.05 / sqrt(0.1)
        mid += rng.normal(0.0, 0.05)
    assert vol.ready and vol.sigma() == pytest.approx(0.05 / math.sqrt(0.1), rel=0.03)
