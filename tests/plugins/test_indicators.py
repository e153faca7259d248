"""The pure indicator functions against direct computations."""

from __future__ import annotations

import math
import random
import statistics

import pytest
from citarion_bots.indicators import Holt, RollingBands, bollinger, mean, pstdev, rms


def test_mean_and_pstdev_match_statistics() -> None:
    rng = random.Random(3)
    for n in (2, 5, 20, 57):
        values = [rng.uniform(10, 1_000) for _ in range(n)]
        assert mean(values) == pytest.approx(statistics.fmean(values), rel=1e-15)
        assert pstdev(values) == pytest.approx(statistics.pstdev(values), rel=1e-12)


def test_bollinger_bands_by_hand() -> None:
    closes = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]  # mean 5, population sigma 2
    bands = bollinger(closes, k=2.0)
    assert (bands.lower, bands.middle, bands.upper, bands.sigma) == (1.0, 5.0, 9.0, 2.0)
    assert bands.position(9.0) == 2.0
    assert bollinger([3.0, 3.0], 2.0).position(4.0) == 0.0  # flat window: no sigma, no z


def test_rms_and_empty_windows() -> None:
    assert rms([3.0, -4.0]) == math.sqrt(12.5)
    with pytest.raises(ValueError):
        mean([])
    with pytest.raises(ValueError):
        rms([])


def test_holt_matches_a_hand_computation() -> None:
    holt = Holt(alpha=0.5, beta=0.5)
    assert holt.update(10.0) is None  # level 10
    assert holt.update(12.0) is None  # level 12, trend 2
    assert (holt.level, holt.trend) == (12.0, 2.0)
    # y=13: forecast 14, error -1, level .5*13 + .5*14 = 13.5, trend .5*(13.5-12) + .5*2 = 1.75
    assert holt.update(13.0) == -1.0
    assert (holt.level, holt.trend) == (13.5, 1.75)
    # y=15: forecast 15.25, error -.25, level 15.125, trend .5*1.625 + .5*1.75 = 1.6875
    assert holt.update(15.0) == -0.25
    assert (holt.level, holt.trend) == (15.125, 1.6875)
    assert holt.forecast(2) == 18.5
    assert holt.sigma() == math.sqrt((1 + 0.0625) / 2)
    # h=3, a=.5, B=a*beta=.25: 1 + 2 * (.25 + .5*.25*3 + .0625*3*5/6) = 2.5625
    assert holt.sigma_ahead(3) == pytest.approx(holt.sigma() * math.sqrt(2.5625), rel=1e-15)
    assert holt.sigma_ahead(1) == holt.sigma()


def test_holt_rejects_bad_factors() -> None:
    with pytest.raises(ValueError):
        Holt(alpha=0.0, beta=0.5)


@pytest.mark.parametrize("start", [1.0, 100.0, 50_000.0])
def test_rolling_bands_equal_the_two_pass_bands_of_each_window(start: float) -> None:
    """Over 2,000 values (many exact re-anchorings and many slides between them), at prices from 1
    to BTC-sized: the rolling sums give the two-pass bands within 1e-9 relative (sigma: 1e-7 of it)."""
    rng = random.Random(int(start))
    values, rolling = [start], RollingBands(20, 2.0)
    for _ in range(2_000):
        values.append(values[-1] * (1 + rng.gauss(0, 0.002)))
    for i, value in enumerate(values):
        rolling.append(value)
        if i >= 19:
            want, got = bollinger(values[i - 19 : i + 1], 2.0), rolling.bands()
            assert got.middle == pytest.approx(want.middle, rel=1e-12)
            assert got.sigma == pytest.approx(want.sigma, rel=1e-7)
            assert got.lower == pytest.approx(want.lower, rel=1e-9)
            assert got.upper == pytest.approx(want.upper, rel=1e-9)


def test_rolling_bands_refuse_a_window_of_one() -> None:
    with pytest.raises(ValueError, match="period"):
        RollingBands(1, 2.0)
