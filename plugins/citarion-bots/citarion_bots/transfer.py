"""TRF (Kron), transfer / rebalancing: keep an asset spread over exchanges near target weights.

TRF follows one account's balances of ``asset`` (its own, or ``account``'s) from the exchange's
``trading.position.balance.<exchange>`` events. Once every exchange in ``exchanges`` has reported
one, and whenever a balance changes while no transfer of the asset is in flight, it plans with
:func:`citarion_bots.quant.rebalance.plan_transfers`:

* nothing while every venue's weight is within ``band`` of its target (``targets``, default
  equal weights): small drifts are not worth a transfer;
* otherwise greedy transfers, largest surplus to largest deficit, bringing every venue back to
  target; each skipped when its expected fee (``fee_flat + fee_rate * amount``, the exchange's
  transfer fee as TRF expects it) exceeds its benefit (``benefit_rate * amount``) or it is under
  ``min_amount``, and cut to what the source has *available* after the fee.

Each transfer is a ``Transfer`` on ``trading.order.transfer.requested`` with a client id
``<bot id>-<data time>-<n>`` (the exchange treats a repeated id as the same transfer, so a restart or
a redelivery never moves funds twice). It stays in flight until the exchange reports it
``settled`` or ``rejected``; meanwhile TRF plans nothing more for the asset, since the balances it
would plan from are about to change. TRF publishes no signals and no orders.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from citarion_host.bot import Bot, BotContext
from citarion_host.events import Event
from citarion_host.hookspecs import hookimpl
from citarion_host.payloads import Balance, Transfer

from .desk import DeskBot, DeskParams, DeskState
from .quant.rebalance import Move, plan_transfers

__all__ = ["TransferBot", "TransferParams", "citarion_bot_types"]

TRANSFER_REQUESTED = "trading.order.transfer.requested"


class TransferParams(DeskParams):
    asset: str = "USDT"
    exchanges: list[str] = Field(default_factory=lambda: ["binance", "bybit"], min_length=2)
    targets: dict[str, float] = {}
    band: float = Field(default=0.1, ge=0, lt=1)
    fee_flat: float = Field(default=1.0, ge=0)
    fee_rate: float = Field(default=0.0, ge=0, lt=1)
    benefit_rate: float = Field(default=0.01, ge=0)
    min_amount: float = Field(default=10.0, ge=0)
    decimals: int = Field(default=2, ge=0, le=8)
    account: str | None = None

    @model_validator(mode="after")
    def _check(self) -> TransferParams:
        if len(set(self.exchanges)) != len(self.exchanges):
            raise ValueError("exchanges must not repeat")
        if self.targets and set(self.targets) != set(self.exchanges):
            raise ValueError(
                f"targets must name exactly the exchanges {self.exchanges}, got {sorted(self.targets)}"
            )
        return self


class TransferState(DeskState, kw_only=True):
    """A desk's state plus the transfers in flight and what was moved and paid."""

    in_flight: dict[str, Transfer] = {}
    moved: float = 0.0
    fees: float = 0.0


class TransferBot(DeskBot[TransferParams]):
    type_name = "transfer"
    description = "TRF: keeps an asset's per-exchange balances near target weights with fee-aware transfers"
    State = TransferState

    def __init__(self, ctx: BotContext, params: TransferParams) -> None:
        super().__init__(ctx, params)
        self.in_flight: dict[str, Transfer] = {}
        self.moved = 0.0
        self.fees = 0.0

    def state_fields(self) -> dict[str, Any]:
        return {**super().state_fields(), "in_flight": self.in_flight, "moved": self.moved, "fees": self.fees}

    def restore(self, state: Any) -> None:
        super().restore(state)
        self.in_flight = dict(state.in_flight)
        self.moved, self.fees = state.moved, state.fees

    @property
    def account(self) -> str:
        return self.params.account or str(self.ctx.bot_id)

    def targets(self) -> dict[str, float]:
        return self.params.targets or dict.fromkeys(self.params.exchanges, 1.0)

    async def on_balance(self, event: Event, balance: Balance) -> None:
        if balance.asset == self.params.asset and balance.exchange in self.params.exchanges:
            await self.rebalance(event)

    async def on_transfer(self, event: Event, transfer: Transfer) -> None:
        if transfer.transfer_id not in self.in_flight:
            return
        if transfer.status in ("SETTLED", "REJECTED"):
            del self.in_flight[transfer.transfer_id]
            if transfer.status == "SETTLED":
                self.counts["settled"] += 1
                self.moved += transfer.amount
                self.fees += transfer.fee
            else:
                self.counts["rejected_transfers"] += 1
                self.ctx.log.info(
                    "transfer rejected",
                    extra={"transfer_id": transfer.transfer_id, "reason": transfer.reason},
                )
            await self.rebalance(event)
        else:
            self.in_flight[transfer.transfer_id] = transfer

    async def rebalance(self, event: Event) -> list[Move]:
        """Plan and request the transfers the current balances call for (none while one is in flight)."""
        p = self.params
        if self.in_flight:
            return []
        known = {ex: self.balances.get((ex, p.asset)) for ex in p.exchanges}
        if any(b is None for b in known.values()):
            self.counts["waiting_for_balances"] += 1
            return []
        totals = {ex: b.total for ex, b in known.items() if b is not None}
        moves = plan_transfers(
            totals, self.targets(), band=p.band, fee_flat=p.fee_flat, fee_rate=p.fee_rate,
            benefit_rate=p.benefit_rate, min_amount=p.min_amount, decimals=p.decimals,
        )  # fmt: skip
        sent = []
        spent: dict[str, float] = {}
        for n, move in enumerate(moves, 1):
            source = known[move.source]
            assert source is not None
            room = source.available - spent.get(move.source, 0.0) - move.fee
            amount = round(min(move.amount, room), p.decimals)
            if amount < max(p.min_amount, 10.0**-p.decimals):
                self.counts["short_of_funds"] += 1
                continue
            fee = p.fee_flat + p.fee_rate * amount
            spent[move.source] = spent.get(move.source, 0.0) + amount + fee
            await self._request(event, Move(move.source, move.target, amount, fee), n)
            sent.append(move)
        return sent

    async def _request(self, event: Event, move: Move, n: int) -> None:
        transfer = Transfer(
            transfer_id=f"{self.ctx.bot_id}-{self.now}-{n}",
            bot_id=self.account,
            asset=self.params.asset,
            from_exchange=move.source,
            to_exchange=move.target,
            amount=move.amount,
            status="REQUESTED",
            fee=round(move.fee, 8),
        )
        self.in_flight[transfer.transfer_id] = transfer
        self.counts["requested"] += 1
        if not self.params.trade:
            self.in_flight.clear()  # planning only: nothing will settle
            return
        await self.ctx.publish(
            TRANSFER_REQUESTED,
            transfer,
            causation_id=event.id,
            metadata={"botId": self.ctx.bot_id, "dataTime": self.now},
        )

    def stats(self) -> dict[str, Any]:
        p = self.params
        return {
            "requested": self.counts["requested"],
            "settled": self.counts["settled"],
            "rejected": self.counts["rejected_transfers"],
            "inFlight": len(self.in_flight),
            "moved": round(self.moved, 8),
            "fees": round(self.fees, 8),
            "balances": {ex: b.total for (ex, asset), b in sorted(self.balances.items()) if asset == p.asset},
            "waitingForBalances": self.counts["waiting_for_balances"],
        }


@hookimpl
def citarion_bot_types() -> list[type[Bot]]:
    return [TransferBot]
