"""Keeping an asset spread over exchanges near target weights (TRF): drift bands, greedy transfers.

With balances ``b_i`` (total B) and target weights ``t_i`` (normalised to sum 1), venue i's weight
is ``b_i / B`` and its target balance ``t_i * B``. Nothing is done while every weight is within
``band`` of its target (a drift band: small drifts are not worth a transfer). Once one leaves it,
every venue is brought back to target:

* surpluses ``b_i - t_i B > 0`` and deficits ``t_j B - b_j > 0`` are paired greedily, the largest
  surplus to the largest deficit, moving the smaller of the two, until one side is used up;
* a move whose fee (``fee_flat + fee_rate * amount``) exceeds its benefit (``benefit_rate *
  amount``: what a unit put back where it is needed is worth) is skipped, as is one below
  ``min_amount``.

e.g. 70 / 20 / 10 with equal targets: A has 36.67 too much, B lacks 13.33 and C 23.33, so A -> C
23.33, then A -> B 13.33.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["Move", "normalise", "plan_transfers", "weights"]


@dataclass(frozen=True, slots=True)
class Move:
    source: str
    target: str
    amount: float
    fee: float


def normalise(targets: Mapping[str, float]) -> dict[str, float]:
    total = math.fsum(targets.values())
    if total <= 0 or any(w < 0 for w in targets.values()):
        raise ValueError(f"target weights must be >= 0 with a positive sum, got {dict(targets)}")
    return {venue: w / total for venue, w in targets.items()}


def weights(balances: Mapping[str, float]) -> dict[str, float]:
    total = math.fsum(balances.values())
    return {venue: (b / total if total > 0 else 0.0) for venue, b in balances.items()}


def plan_transfers(
    balances: Mapping[str, float],
    targets: Mapping[str, float],
    *,
    band: float = 0.0,
    fee_flat: float = 0.0,
    fee_rate: float = 0.0,
    benefit_rate: float = math.inf,
    min_amount: float = 0.0,
    decimals: int = 8,
) -> list[Move]:
    """The transfers that bring ``balances`` to ``targets``, largest first (none within the band)."""
    goal = normalise(targets)
    if set(goal) != set(balances):
        raise ValueError(f"balances {sorted(balances)} and targets {sorted(goal)} name different venues")
    total = math.fsum(balances.values())
    if total <= 0:
        return []
    now = weights(balances)
    if all(abs(now[v] - goal[v]) <= band for v in goal):
        return []
    surplus = {v: balances[v] - goal[v] * total for v in goal if balances[v] > goal[v] * total}
    deficit = {v: goal[v] * total - balances[v] for v in goal if balances[v] < goal[v] * total}
    moves: list[Move] = []
    while surplus and deficit:
        source = max(sorted(surplus), key=lambda v: surplus[v])
        target = max(sorted(deficit), key=lambda v: deficit[v])
        amount = min(surplus[source], deficit[target])
        for side, venue in ((surplus, source), (deficit, target)):
            side[venue] -= amount
            if side[venue] <= total * 1e-12:
                del side[venue]
        amount = round(amount, decimals)
        fee = fee_flat + fee_rate * amount
        benefit = benefit_rate * amount if math.isfinite(benefit_rate) else math.inf
        if amount >= max(min_amount, 10.0**-decimals) and fee <= benefit:
            moves.append(Move(source=source, target=target, amount=amount, fee=fee))
    return moves
