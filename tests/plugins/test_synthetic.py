"""The seeded generator: reproducible, consistent bars, small venue gaps, the pump where scheduled."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import pytest
from citarion_bots.synthetic import Bar, PumpSpec, SyntheticSpec, generate
from pydantic import ValidationError


def by_series(bars: list[Bar]) -> dict[tuple[str, str], list[Bar]]:
    out: dict[tuple[str, str], list[Bar]] = defaultdict(list)
    for bar in bars:
        out[(bar.exchange, bar.symbol)].append(bar)
    return out


def test_same_seed_same_series_other_seed_other_series() -> None:
    spec = SyntheticSpec(bars=120)
    assert list(generate(spec)) == list(generate(SyntheticSpec(bars=120)))
    other = list(generate(SyntheticSpec(bars=120, seed=8)))
    assert other != list(generate(spec))


def test_bars_are_valid_and_in_replay_order() -> None:
    spec = SyntheticSpec(bars=300)
    bars = list(generate(spec))
    assert len(bars) == 300 * 3 * 2
    assert [b.time for b in bars] == sorted(b.time for b in bars)
    assert bars[0].time == spec.start_time and bars[-1].time == spec.start_time + 299 * 60_000
    for bar in bars:
        bar.candle("1m")  # the payload's own checks: high/low bound open/close, all positive
        assert bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
    reference = by_series(bars)[("binance", "BTCUSDT")]
    assert reference[0].open == 50_000.0
    assert all(a.close == b.open for a, b in itertools.pairwise(reference))


def test_two_exchanges_differ_by_small_gaps() -> None:
    spec = SyntheticSpec(bars=400, gap_bps=8)
    series = by_series(list(generate(spec)))
    for symbol in spec.symbols:
        gaps = [
            abs(b.close / a.close - 1)
            for a, b in zip(series[("binance", symbol)], series[("bybit", symbol)], strict=True)
        ]
        assert max(gaps) <= 8e-4 + 1e-7  # bounded by gap_bps (plus 8-digit rounding)
        assert sum(1 for g in gaps if g > 1e-5) > 300  # and the venues really differ


def test_regimes_trend_and_revert() -> None:
    """Over a long run some 60-bar windows trend strongly and some barely move."""
    closes = [
        b.close
        for b in generate(SyntheticSpec(symbols=["BTCUSDT"], exchanges=["binance"], bars=2_000, pumps=[]))
    ]
    moves = [abs(math.log(closes[i + 60] / closes[i])) for i in range(0, 1_940, 60)]
    assert max(moves) > 0.03 and min(moves) < 0.01


def test_the_pump_is_where_scheduled() -> None:
    pump = PumpSpec(symbol="SOLUSDT", start_bar=150, rise_bars=4, rise_pct=0.3, dump_bars=4, volume_mult=8)
    spec = SyntheticSpec(bars=200, pumps=[pump])
    for exchange in spec.exchanges:
        bars = by_series(list(generate(spec)))[(exchange, "SOLUSDT")]
        before = bars[149].close
        top = bars[153].close
        after = bars[157].close
        assert 1.2 < top / before < 1.4  # +30% over the 4 rise bars, give or take the noise
        assert 0.9 < after / before < 1.1  # given back over the 4 dump bars
        calm_volume = sum(b.volume for b in bars[100:150]) / 50
        assert all(b.volume > 4 * calm_volume for b in bars[150:154])
        assert all(b.volume < 2.5 * calm_volume for b in bars[100:150])
    untouched = by_series(list(generate(spec)))[("binance", "BTCUSDT")]
    assert max(abs(b.close / a.close - 1) for a, b in itertools.pairwise(untouched)) < 0.02


def test_spec_validation() -> None:
    with pytest.raises(ValidationError, match="pump symbol"):
        SyntheticSpec(symbols=["BTCUSDT"], pumps=[PumpSpec(symbol="SOLUSDT", start_bar=1)])
    with pytest.raises(ValidationError, match="interval"):
        SyntheticSpec(interval="1x")
    with pytest.raises(ValidationError, match="repeat"):
        SyntheticSpec(symbols=["A", "A"], pumps=[])
    with pytest.raises(ValidationError):
        SyntheticSpec(seed=1, colour="blue")  # type: ignore[call-arg]
