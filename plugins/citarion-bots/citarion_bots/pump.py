"""PND (Argus), pump-and-dump detection: a volume spike together with a fast price rise.

Against a rolling baseline of the previous ``baseline_bars`` bars (the current bar excluded, so a
spike cannot dilute its own baseline), the current bar is a pump when both hold:

    volume ratio   v / mean(v_baseline)      >= volume_mult
    price rise     c / c[-price_window] - 1  >= max(rise_pct, return_z * sigma_r * sqrt(price_window))

where sigma_r is the population sigma of the baseline's one-bar returns. The second term scales
the threshold to the symbol's own volatility, so a naturally wild symbol needs a larger move; the
``rise_pct`` floor keeps a near-flat symbol from alarming on a tiny one. Requiring the volume spike
too is what separates a pump from an ordinary trend leg.

On a detection Argus publishes ``risk.alert.triggered`` (RiskAlert kind ``pump_and_dump``, severity
critical, key ``pump_and_dump:<exchange>:<symbol>``) with priority critical, so strategies stand
down on the symbol, and a SHORT signal ("avoid / expect the dump", target the pre-pump price). It
then keeps quiet on that series for ``cooldown_bars``. Argus never trades: it is a detector.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Candle, RiskAlert

from .common import SeriesKey
from .indicators import mean, pstdev
from .standdown import PUMP_ALERT_KIND
from .strategy import StrategyBot, StrategyParams, StrategyState

__all__ = ["PumpBot", "PumpParams", "PumpReading", "citarion_bot_types", "read_pump"]


class PumpParams(StrategyParams):
    baseline_bars: int = Field(default=30, ge=5)
    volume_mult: float = Field(default=4.0, gt=1)
    price_window: int = Field(default=3, ge=1)
    rise_pct: float = Field(default=0.05, gt=0)
    return_z: float = Field(default=4.0, ge=0)
    cooldown_bars: int = Field(default=30, ge=0)


@dataclass(frozen=True, slots=True)
class PumpReading:
    volume_ratio: float
    rise: float
    threshold: float
    reference: float

    def is_pump(self, volume_mult: float) -> bool:
        return self.volume_ratio >= volume_mult and self.rise >= self.threshold


def read_pump(
    closes: Sequence[float],
    volumes: Sequence[float],
    close: float,
    volume: float,
    params: PumpParams,
    returns: Sequence[float] | None = None,
) -> PumpReading | None:
    """The current bar against the baseline (previous closes and volumes); None until warmed up.

    ``returns``: the baseline's one-bar returns when the caller keeps them rolling (the bot does);
    else they are computed from the last ``baseline_bars + 1`` closes. Either way the same floats.
    """
    if (
        len(volumes) < params.baseline_bars
        or len(closes) < max(params.baseline_bars, params.price_window) + 1
    ):
        return None
    if returns is None:
        base = list(closes)[-(params.baseline_bars + 1) :]
        returns = [b / a - 1 for a, b in itertools.pairwise(base)]
    reference = closes[-params.price_window]
    base_volume = mean(volumes)
    threshold = max(params.rise_pct, params.return_z * pstdev(returns) * math.sqrt(params.price_window))
    ratio = volume / base_volume if base_volume > 0 else math.inf
    return PumpReading(
        volume_ratio=ratio, rise=close / reference - 1, threshold=threshold, reference=reference
    )


class PumpState(StrategyState, kw_only=True):
    """A strategy's state plus each series' close, volume and return windows, its quiet period, and
    the detections made."""

    closes: list[tuple[SeriesKey, list[float]]] = []
    volumes: list[tuple[SeriesKey, list[float]]] = []
    returns: list[tuple[SeriesKey, list[float]]] = []
    quiet_until: list[tuple[SeriesKey, int]] = []
    detections: list[tuple[SeriesKey, int, int]] = []


class PumpBot(StrategyBot[PumpParams]):
    type_name = "pump-dump"
    description = (
        "PND: pump-and-dump detector; volume spike + fast rise -> critical risk alert + SHORT signal"
    )
    State = PumpState

    def __init__(self, ctx: BotContext, params: PumpParams) -> None:
        super().__init__(ctx, params)
        self.closes: dict[SeriesKey, deque[float]] = {}
        self.volumes: dict[SeriesKey, deque[float]] = {}
        self.returns: dict[SeriesKey, deque[float]] = {}  # the baseline's one-bar returns, rolling
        self.quiet_until: dict[SeriesKey, int] = {}
        self.detections: list[tuple[SeriesKey, int, int]] = []  # (series, bar number, open time)
        # read once per candle: the baseline length and the volume screen's multiple less its margin
        self._screen = (params.baseline_bars, params.volume_mult * (1 - 1e-9))

    def state_fields(self) -> dict[str, Any]:
        return {
            **super().state_fields(),
            "closes": [(key, list(window)) for key, window in self.closes.items()],
            "volumes": [(key, list(window)) for key, window in self.volumes.items()],
            "returns": [(key, list(window)) for key, window in self.returns.items()],
            "quiet_until": list(self.quiet_until.items()),
            "detections": self.detections,
        }

    def restore(self, state: Any) -> None:
        super().restore(state)
        p = self.params
        span = max(p.baseline_bars, p.price_window) + 1
        self.closes = {key: deque(window, maxlen=span) for key, window in state.closes}
        self.volumes = {key: deque(window, maxlen=p.baseline_bars) for key, window in state.volumes}
        self.returns = {key: deque(window, maxlen=p.baseline_bars) for key, window in state.returns}
        self.quiet_until = dict(state.quiet_until)
        self.detections = list(state.detections)

    async def on_candle(self, event: Event, candle: Candle) -> None:
        key, p = (candle.exchange, candle.symbol), self.params
        baseline, screen = self._screen
        # get, not setdefault: that would build three deques per candle
        closes, volumes, returns = self.closes.get(key), self.volumes.get(key), self.returns.get(key)
        if closes is None:
            closes = self.closes[key] = deque(maxlen=max(p.baseline_bars, p.price_window) + 1)
        if volumes is None:
            volumes = self.volumes[key] = deque(maxlen=p.baseline_bars)
        if returns is None:
            returns = self.returns[key] = deque(maxlen=p.baseline_bars)
        # The volume spike is the rarer condition: test it first (the same mean read_pump takes), so
        # the returns' sigma is only computed for bars that could be a pump. Most bars are far below
        # it: a plain sum (within n ulps of the exact one, the volumes being >= 0) settles those with
        # a 1e-9 margin; only a bar near the threshold needs the exact mean to decide.
        quiet, n = False, len(volumes)
        if n == baseline:
            rough = sum(volumes)
            quiet = rough > 0 and candle.volume * n < rough * screen
            if not quiet:
                base = math.fsum(volumes) / n  # mean(volumes)
                quiet = base > 0 and candle.volume / base < p.volume_mult
        reading = None if quiet else read_pump(closes, volumes, candle.close, candle.volume, p, returns)
        if closes:
            returns.append(candle.close / closes[-1] - 1)
        closes.append(candle.close)
        volumes.append(candle.volume)
        bar = self.bars[key]
        if reading is None or not reading.is_pump(p.volume_mult) or bar < self.quiet_until.get(key, 0):
            return
        self.quiet_until[key] = bar + p.cooldown_bars + 1
        self.detections.append((key, bar, candle.open_time))
        await self._report(event, candle, reading)

    async def _report(self, event: Event, candle: Candle, reading: PumpReading) -> None:
        p, where = self.params, f"{candle.exchange}:{candle.symbol}"
        message = (
            f"pump on {where}: {reading.rise:+.1%} in {p.price_window} bars "
            f"on {reading.volume_ratio:.1f}x baseline volume"
        )
        alert = RiskAlert(
            kind=PUMP_ALERT_KIND,
            severity="critical",
            message=message,
            symbol=candle.symbol,
            value=round(reading.rise, 6),
            limit=round(reading.threshold, 6),
            key=f"{PUMP_ALERT_KIND}:{where}",
        )
        await self.ctx.publish(
            "risk.alert.triggered",
            alert,
            priority="critical",
            causation_id=event.id,
            metadata={"botId": self.ctx.bot_id, "dataTime": candle.open_time, "exchange": candle.exchange},
        )
        self.counts["alerts_raised"] += 1
        strength = 0.25 * min(1.0, reading.rise / reading.threshold - 1) + 0.25 * min(
            1.0, reading.volume_ratio / p.volume_mult - 1
        )
        await self.signal(
            event,
            candle,
            "SHORT",
            0.5 + strength,
            entry=candle.close,
            stop=candle.close * (1 + reading.rise),
            take=reading.reference,
            reason=message + ": avoid, expect the dump",
        )
        self.ctx.log.warning("pump detected", extra={"series": where, "rise": reading.rise})

    def stats(self) -> dict[str, Any]:
        return {
            **super().stats(),
            "detections": [
                {"series": f"{e}:{s}", "bar": bar, "time": t} for (e, s), bar, t in self.detections
            ],
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [PumpBot]
