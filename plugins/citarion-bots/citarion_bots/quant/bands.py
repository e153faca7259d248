"""Entry, exit and stop thresholds on a z-score: the trading rule PAR, STA and MRB share.

With thresholds ``0 <= exit < entry < stop`` (in sigmas) and the signed score z of a spread (or of a
price around its equilibrium):

* flat: ``entry <= z < stop`` -> ``short`` (sell the rich side); ``-stop < z <= -entry`` -> ``long``;
  only while the model's gate is open (a spread that is not mean-reverting has no mean to return to);
* long: ``z >= -exit`` -> ``exit`` (it came back); ``z <= -stop`` -> ``stop`` (it kept running away);
* short: ``z <= exit`` -> ``exit``; ``z >= stop`` -> ``stop``;
* after a stop, no new entry until ``|z| < exit``: a spread that just broke out is not re-entered on
  the next bar at a worse price (the *lockout*).

Entries beyond the stop are refused for the same reason. The rule keeps the *intended* position; the
bot executes the action and calls :meth:`BandRule.reset` if the orders fail.
"""

from __future__ import annotations

from typing import Literal

__all__ = ["Action", "BandRule", "BandRuleState", "ConfirmedGate", "GateState", "Side"]

Side = Literal["flat", "long", "short"]
Action = Literal["long", "short", "exit", "stop"]
#: A :class:`BandRule`'s state: its intended side and whether a stop locked it out.
BandRuleState = tuple[Side, bool]
#: A :class:`ConfirmedGate`'s state: its streak of passes and the fit count it last saw.
GateState = tuple[int, int]


class BandRule:
    def __init__(self, entry: float, exit: float, stop: float) -> None:
        if not 0 <= exit < entry < stop:
            raise ValueError(f"thresholds must satisfy 0 <= exit < entry < stop, got {exit}, {entry}, {stop}")
        self.entry = entry
        self.exit = exit
        self.stop = stop
        self.side: Side = "flat"
        self.locked = False

    def step(self, z: float, gate_open: bool = True) -> Action | None:
        """Take one score; returns what to do now (and moves the intended position), or None."""
        if self.locked and abs(z) < self.exit:
            self.locked = False
        if self.side == "flat":
            if not gate_open or self.locked:
                return None
            if self.entry <= z < self.stop:
                self.side = "short"
                return "short"
            if -self.stop < z <= -self.entry:
                self.side = "long"
                return "long"
            return None
        sign = 1.0 if self.side == "long" else -1.0  # long profits when z rises back to 0
        if sign * z <= -self.stop:
            self.side, self.locked = "flat", True
            return "stop"
        if sign * z >= -self.exit:
            self.side = "flat"
            return "exit"
        return None

    def reset(self, side: Side = "flat") -> None:
        """Set the position back (the orders of the last action failed)."""
        self.side = side

    def state(self) -> BandRuleState:
        return (self.side, self.locked)

    def restore(self, state: BandRuleState) -> None:
        self.side, self.locked = state


class ConfirmedGate:
    """A model gate that opens only after ``confirm`` consecutive refits passed it.

    A bot refits its window every few bars, and each refit is another test at the same level: over
    a few dozen refits, two unrelated random walks pass a 1 % test at least once far more often than
    1 % of the time. Requiring consecutive passes brings the rate of trading a spurious
    relationship back down (measured in the tests), at the cost of entering a real one a few refits
    later.
    """

    def __init__(self, confirm: int = 1) -> None:
        if confirm < 1:
            raise ValueError(f"confirm must be >= 1, got {confirm}")
        self.confirm = confirm
        self.streak = 0
        self._fits = -1

    def state(self) -> GateState:
        return (self.streak, self._fits)

    def restore(self, state: GateState) -> None:
        self.streak, self._fits = state

    def update(self, fits: int, passed: bool) -> bool:
        """Give the model's fit count and whether its current fit passes; True when the gate is open."""
        if fits != self._fits:
            self._fits = fits
            self.streak = self.streak + 1 if passed else 0
        return self.streak >= self.confirm
