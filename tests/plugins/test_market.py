"""The synthetic market: reproducible, and every planted structure is there to be found.

Known answers: the pair's beta, the basket's weights and the OU's theta are recovered from the
generated candles by the same fitters the bots use; the book's imbalance predicts the next mid move
(and does not when the planted signal is 0); gap episodes show in the cross-exchange price ratio.
"""

from __future__ import annotations

import numpy as np
import pytest
from citarion_bots.market.candles import CandleAggregator, aggregate
from citarion_bots.market.scenario import MarketSpec, generate_market
from citarion_bots.quant.johansen import fit_basket
from citarion_bots.quant.microstructure import imbalance, mid_price
from citarion_bots.quant.ou import fit_ou
from citarion_bots.quant.pairs import fit_pair
from scipy import stats

from citarion_host.events import catalog
from citarion_host.payloads import Candle

from .helpers import candle


def closes(market, symbol: str, exchange: str = "binance") -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.array([c.close for c in market.candles(exchange, symbol)])


def small(**changes: object) -> MarketSpec:
    return MarketSpec.model_validate({"bars": 120, "steps_per_bar": 2, **changes})


def test_same_seed_same_events_other_seed_other_events() -> None:
    first = list(generate_market(small()).events())
    again = list(generate_market(small()).events())
    other = list(generate_market(small(seed=8)).events())
    assert first == again
    bars = lambda events: [e.topic for e in events if ".candle." in e.topic]  # noqa: E731
    assert bars(first) == bars(other) and first != other  # same layout, other prices and trades


def test_every_event_is_a_valid_event_of_its_topic_in_time_order() -> None:
    market = generate_market(small())
    last_step = 0
    seen_ticker: set[tuple[str, str]] = set()
    for event in market.events():
        made = catalog.make(event.topic, event.payload, source="LUM")  # the topic's payload type
        assert made.payload is event.payload
        if ".orderbook." in event.topic or ".trade." in event.topic:
            assert event.data_time >= last_step
            last_step = event.data_time
        key = (event.payload.exchange, event.payload.symbol)  # type: ignore[attr-defined]
        if ".ticker." in event.topic:
            seen_ticker.add(key)
        if ".candle." in event.topic and event.payload.interval == "1m":  # type: ignore[attr-defined]
            assert key in seen_ticker  # the bar's ticker went out first
            seen_ticker.discard(key)


def test_the_planted_pair_is_recovered_from_the_candles() -> None:
    market = generate_market(small(bars=600, books=False, basket=None, ou=None, walks=[], gaps=None))
    fit = fit_pair(closes(market, "BCHUSDT"), closes(market, "LTCUSDT"))
    assert abs(fit.beta - 2.0) < 0.05 and fit.gate(0.05), fit
    assert market.truth["pair"]["beta"] == 2.0


def test_the_planted_basket_is_recovered_from_the_candles() -> None:
    market = generate_market(small(bars=600, pair=None, ou=None, walks=[], gaps=None))
    prices = np.column_stack([closes(market, s) for s in ("SOLUSDT", "AVAXUSDT", "DOTUSDT")])
    fit = fit_basket(prices)
    assert fit.rank >= 1 and np.allclose(fit.weights, (1.0, -0.5, -0.5), atol=0.05), fit.weights


def test_the_planted_theta_is_recovered_from_the_candles() -> None:
    spec = small(
        bars=4000, steps_per_bar=1, pair=None, basket=None, walks=[], gaps=None, exchanges=["binance"]
    )
    spec = spec.model_copy(update={"ou": spec.ou.model_copy(update={"theta": 0.2})})  # type: ignore[union-attr]
    fit = fit_ou(closes(generate_market(spec), "XRPUSDT"), maxlag=4)
    assert abs(fit.theta - 0.2) / 0.2 < 0.15 and fit.gate(0.05), fit


def imbalance_vs_next_move(signal: float) -> stats._stats_py.LinregressResult:  # type: ignore[name-defined]
    spec = small(bars=500, steps_per_bar=4, pair=None, basket=None, ou=None, gaps=None)
    spec = spec.model_copy(update={"book": spec.book.model_copy(update={"signal": signal})})
    book = generate_market(spec).series[("binance", "BTCUSDT")].book
    assert book is not None
    levels = [book.levels(t) for t in range(len(book.best_bid))]
    lean = np.array([imbalance(b, a) for b, a in levels[:-1]])
    moves = np.diff([mid_price(b, a) for b, a in levels])
    return stats.linregress(lean, moves)


def test_the_book_imbalance_predicts_the_next_mid_move() -> None:
    fit = imbalance_vs_next_move(0.6)
    assert fit.slope > 0 and fit.pvalue < 1e-6, fit
    assert fit.rvalue > 0.2


def test_without_the_planted_signal_the_imbalance_predicts_nothing() -> None:
    fit = imbalance_vs_next_move(0.0)
    assert fit.pvalue > 0.01 and abs(fit.rvalue) < 0.05, fit


def test_gaps_open_and_close_as_planted() -> None:
    spec = small(bars=600, pair=None, basket=None, ou=None)
    market = generate_market(spec)
    ratio = market.mids("bybit", "BTCUSDT") / market.mids("binance", "BTCUSDT") - 1
    episodes = market.truth["gaps"]["BTCUSDT:bybit"]
    assert episodes, "the default rate plants a few episodes in 600 bars"
    steps = spec.steps_per_bar
    inside = np.zeros(len(ratio), dtype=bool)
    for e in episodes:
        hold = slice((e["startBar"] + 1) * steps + 1, (e["startBar"] + 6) * steps)
        assert np.allclose(ratio[hold], e["sizeBps"] / 10_000, atol=3e-4), e  # within the jitter
        inside[e["startBar"] * steps : (e["endBar"] + 1) * steps] = True
    assert np.abs(ratio[~inside]).max() < 3e-4  # closed: only the 0.5 bp jitter remains


def test_aggregated_bars_equal_their_constituents() -> None:
    spec = small(bars=180, steps_per_bar=1, books=False, aggregate=["1h"])
    market = generate_market(spec)
    minutes = market.candles("binance", "BTCUSDT")
    hours = [
        e.payload
        for e in market.events()
        if e.topic == "market.candle.closed.binance.BTCUSDT" and e.payload.interval == "1h"  # type: ignore[attr-defined]
    ]
    assert len(hours) == 3
    for h, hour in enumerate(hours):
        part = minutes[60 * h : 60 * (h + 1)]
        assert (hour.open_time, hour.open, hour.close) == (part[0].open_time, part[0].open, part[-1].close)
        assert hour.high == max(c.high for c in part) and hour.low == min(c.low for c in part)
        assert hour.volume == pytest.approx(sum(c.volume for c in part))
    assert aggregate(minutes, "1h") == hours


def test_the_aggregator_drops_a_partial_first_period_and_closes_on_gaps() -> None:
    agg = CandleAggregator("1h")
    t0 = 1_700_006_400_000  # midnight UTC
    late = [candle(100.0, i, interval="1m") for i in range(3)]  # helpers' T0 is mid-hour
    assert [bar for c in late for bar in agg.add(c)] == [] and agg.dropped_partial == 0
    whole = [
        Candle(
            symbol="X",
            exchange="e",
            interval="30m",
            open_time=t0 + k * 1_800_000,
            open=1,
            high=2,
            low=1,
            close=2,
            volume=1,
        )
        for k in (0, 1, 2, 4)  # the 2nd hour lacks its second half; the 3rd hour starts
    ]
    out = [bar for c in whole for bar in agg.add(c)]
    assert [(b.open_time - t0) // 3_600_000 for b in out] == [0, 1]
    assert agg.add(candle(100.0, 60, interval="1m")) == [] and agg.dropped_partial == 1


def test_bad_specs_are_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="multiple of"):
        MarketSpec(aggregate=["90s"])
    with pytest.raises(ValueError, match="two instruments"):
        MarketSpec.model_validate({"ou": {"symbol": "BTCUSDT"}})
    with pytest.raises(ValueError, match="divide"):
        MarketSpec(steps_per_bar=7)
