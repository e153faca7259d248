"""PND: the generator's injected pump is caught within a few candles; calm markets raise nothing."""

from __future__ import annotations

import pytest
from citarion_bots.common import candle_topic
from citarion_bots.pump import PumpBot, PumpParams, read_pump
from citarion_bots.synthetic import PumpSpec, SyntheticSpec, generate

from citarion_host.payloads import RiskAlert, Signal
from citarion_host.testing import BotHarness

PUBLISH = ["trading.signal.>", "risk.alert.>"]
DETECT_WITHIN = 3  # candles after the pump starts


async def replay(spec: SyntheticSpec, **params: object) -> BotHarness:
    h = BotHarness(PumpBot, params, bot_id="argus", code="PND", publish=PUBLISH)
    for bar in generate(spec):
        await h.feed(candle_topic(bar.exchange, bar.symbol), bar.candle(spec.interval), source="LUM")
    return h


async def test_detects_the_injected_pump_within_n_candles_on_every_exchange() -> None:
    spec = SyntheticSpec(bars=220, pumps=[PumpSpec(symbol="SOLUSDT", start_bar=150)])
    h = await replay(spec)
    detections = h.bot.detections  # type: ignore[attr-defined]
    assert {key for key, _, _ in detections} == {("binance", "SOLUSDT"), ("bybit", "SOLUSDT")}
    assert len(detections) == 2  # once per series: the cool-down keeps the dump bars quiet
    for _, bar, time in detections:
        assert 151 <= bar <= 150 + DETECT_WITHIN  # bar numbers count from 1: bar 151 is the first pump bar
        assert time >= spec.start_time + 150 * 60_000
    alerts = [e for e in h.published if e.topic == "risk.alert.triggered"]
    assert len(alerts) == 2 and all(e.priority == "critical" for e in alerts)
    alert = alerts[0].payload
    assert isinstance(alert, RiskAlert)
    assert (alert.kind, alert.severity, alert.symbol, alert.key) == (
        "pump_and_dump",
        "critical",
        "SOLUSDT",
        "pump_and_dump:binance:SOLUSDT",
    )
    assert alert.value is not None and alert.limit is not None and alert.value >= alert.limit
    signal = h.payloads("trading.signal")[0]
    assert isinstance(signal, Signal) and signal.direction == "SHORT"
    assert signal.take_profit is not None and signal.take_profit < signal.entry_price  # type: ignore[operator]
    assert h.payloads("trading.order") == []  # a detector never trades


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_false_alarm_on_calm_series(seed: int) -> None:
    h = await replay(SyntheticSpec(seed=seed, bars=500, pumps=[]))
    assert h.published == []


async def test_no_false_alarm_on_a_wild_but_honest_market() -> None:
    wild = SyntheticSpec(seed=4, bars=500, pumps=[], volatility=0.008, trend=0.004, regime_bars=20)
    h = await replay(wild)
    assert h.published == []


def reading_for(closes: list[float], volumes: list[float], close: float, volume: float):  # type: ignore[no-untyped-def]
    return read_pump(
        closes, volumes, close, volume, PumpParams(baseline_bars=5, price_window=2, rise_pct=0.05)
    )


def test_both_conditions_are_needed() -> None:
    closes, volumes = [100.0, 100.5, 100.0, 100.5, 100.0, 100.5], [10.0] * 5
    assert reading_for(closes[:-1], volumes, 110.0, 100.0) is None  # not warmed up
    pump = reading_for(closes, volumes, 110.0, 100.0)
    assert pump is not None and pump.is_pump(4.0)
    assert (
        pump.volume_ratio == 10.0
        and pump.rise == pytest.approx(110.0 / 100.0 - 1)
        and pump.reference == 100.0
    )
    assert not reading_for(closes, volumes, 110.0, 30.0).is_pump(4.0)  # rise without the volume
    assert not reading_for(closes, volumes, 101.0, 100.0).is_pump(4.0)  # volume without the rise
