"""When a trading bot must stop adding risk: its own risk block, or a pump alert on a symbol.

Shared by the strategies and LOGOS, which read ``risk.>``:

* ``risk.block.set`` / ``risk.block.cleared`` (dict payloads) naming this bot's id: no new buys
  until cleared (the exchange would refuse them anyway; standing down avoids a stream of rejected
  orders and keeps the bot's own view of its book true);
* ``risk.alert.triggered`` with a RiskAlert of kind ``pump_and_dump``: no buys of that symbol, on
  any exchange, for ``halt_bars`` bars of data time (buying into a pump is what the alert is for).

Selling is never held back here: reducing a position is how risk goes down.

Its state (:class:`StandDownState`) is part of each of those bots' snapshots (``docs/state.md``).
"""

from __future__ import annotations

import msgspec

from citarion_host.events import Event
from citarion_host.payloads import RiskAlert

from .common import interval_ms

__all__ = ["PUMP_ALERT_KIND", "StandDown", "StandDownState"]

PUMP_ALERT_KIND = "pump_and_dump"


class StandDownState(msgspec.Struct, kw_only=True):
    """What the events told a :class:`StandDown` (its halt length comes from the bot's params)."""

    blocked: str | None = None
    now_ms: int = 0
    bar_ms: int = 60_000
    interval: str = ""
    alerts: int = 0
    halted_until: dict[str, int] = {}


class StandDown:
    def __init__(self, bot_id: str, halt_bars: int) -> None:
        self.bot_id = bot_id
        self.halt_bars = halt_bars
        self.blocked: str | None = None
        self.now_ms = 0
        self.bar_ms = 60_000
        self.interval = ""  # the candles' interval (``bar_ms`` is parsed from it)
        self.alerts = 0
        self._halted_until: dict[str, int] = {}

    def clock(self, open_time: int, interval: str) -> None:
        """Advance data time to a candle's open time (never backwards)."""
        if open_time > self.now_ms:
            self.now_ms = open_time
        if interval != self.interval:  # parsed once per interval, not once per candle
            self.bar_ms, self.interval = interval_ms(interval), interval

    def observe(self, event: Event) -> bool:
        """Take in a risk event; True when it was one this class handles."""
        payload = event.payload
        if isinstance(payload, RiskAlert):
            if (
                payload.kind == PUMP_ALERT_KIND
                and payload.symbol
                and event.topic.startswith("risk.alert.triggered")
            ):
                until = self.now_ms + self.halt_bars * self.bar_ms
                self._halted_until[payload.symbol] = max(until, self._halted_until.get(payload.symbol, 0))
                self.alerts += 1
            return True
        if isinstance(payload, dict) and event.topic.startswith("risk.block."):
            if payload.get("botId") == self.bot_id:
                if event.topic == "risk.block.set":
                    self.blocked = str(payload.get("reason") or "risk block")
                elif event.topic == "risk.block.cleared":
                    self.blocked = None
            return True
        return False

    def state(self) -> StandDownState:
        return StandDownState(
            blocked=self.blocked,
            now_ms=self.now_ms,
            bar_ms=self.bar_ms,
            interval=self.interval,
            alerts=self.alerts,
            halted_until=self._halted_until,
        )

    def restore(self, state: StandDownState) -> None:
        self.blocked, self.now_ms, self.bar_ms = state.blocked, state.now_ms, state.bar_ms
        self.interval, self.alerts = state.interval, state.alerts
        self._halted_until = dict(state.halted_until)

    def halted(self, symbol: str) -> bool:
        return self._halted_until.get(symbol, -1) >= self.now_ms

    def may_buy(self, symbol: str) -> bool:
        return self.blocked is None and not self.halted(symbol)
