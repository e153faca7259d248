"""What PAR and MRB share: a desk trading one spread of several symbols.

Both fit a model on bars lined up across their symbols (:class:`~citarion_bots.sync.BarSync`), gate
entries on confirmed fits (:class:`~citarion_bots.quant.bands.ConfirmedGate`) and trade the spread's
z-score with one band rule (:class:`~citarion_bots.quant.bands.BandRule`); they differ only in the
model (Engle-Granger for a pair, Johansen for a basket). Their state is therefore the same five parts,
kept and restored here once.
"""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from .desk import DeskBot, DeskParamsT, DeskState
from .quant.bands import BandRule, BandRuleState, ConfirmedGate, GateState
from .sync import BarSync, BarSyncState

__all__ = ["SpreadDesk", "SpreadState"]


class _Model(Protocol):
    def state(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


class SpreadState(DeskState, kw_only=True):
    """A desk's state plus the spread's rule, gate, bar sync and last z (each bot adds its ``model``)."""

    rule: BandRuleState = ("flat", False)
    gate: GateState = (0, -1)
    sync: BarSyncState = msgspec.field(default_factory=lambda: ({}, None, 0))
    z: float | None = None


class SpreadDesk(DeskBot[DeskParamsT]):
    """A desk whose ``__init__`` sets ``model``, ``rule``, ``gate``, ``sync`` and ``z``."""

    model: _Model
    rule: BandRule
    gate: ConfirmedGate
    sync: BarSync
    z: float | None

    def state_fields(self) -> dict[str, Any]:
        return {
            **super().state_fields(),
            "model": self.model.state(),
            "rule": self.rule.state(),
            "gate": self.gate.state(),
            "sync": self.sync.state(),
            "z": self.z,
        }

    def restore(self, state: Any) -> None:
        super().restore(state)
        self.model.restore(state.model)
        self.rule.restore(state.rule)
        self.gate.restore(state.gate)
        self.sync.restore(state.sync)
        self.z = state.z
