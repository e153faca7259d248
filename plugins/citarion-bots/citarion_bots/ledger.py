"""The exchange's transfers between venues: pending until their data time comes, idempotent by client id.

:class:`TransferLedger` keeps every transfer the exchange has answered, by ``(account, transferId)``:
a request seen again is not executed again (the exchange re-publishes the record's current state), and
the pending ones are released in settle-time order once the exchange's data clock reaches them. It
moves no money: :class:`~citarion_bots.books.Book` does (``send`` when accepted, ``settle`` when due).
Kept across restarts as a :class:`LedgerState` (the records, and the pending ones in heap order).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from citarion_host.payloads import Transfer

__all__ = ["LedgerState", "TransferLedger", "TransferRecord"]


@dataclass(slots=True)
class TransferRecord:
    """One transfer as the exchange answered it; ``transfer`` is its latest published state."""

    transfer: Transfer
    amount: Decimal
    fee: Decimal
    cause: str


class LedgerState(msgspec.Struct, kw_only=True):
    """A :class:`TransferLedger` as plain data: the pending heap names its records by key."""

    records: list[tuple[tuple[str, str], TransferRecord]] = []
    pending: list[tuple[int, int, tuple[str, str]]] = []
    next_order: int = 0


@dataclass
class TransferLedger:
    records: dict[tuple[str, str], TransferRecord] = field(default_factory=dict)
    _pending: list[tuple[int, int, TransferRecord]] = field(default_factory=list)
    _next_order: int = 0
    #: The earliest settle time still pending (None: nothing pending), kept beside the heap: the
    #: exchange reads it on every tick and candle, where a property would cost a call.
    next_due: int | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.next_due = self._pending[0][0] if self._pending else None

    def state(self) -> LedgerState:
        return LedgerState(
            records=list(self.records.items()),
            pending=[(due, n, (r.transfer.bot_id, r.transfer.transfer_id)) for due, n, r in self._pending],
            next_order=self._next_order,
        )

    @classmethod
    def of(cls, state: LedgerState) -> TransferLedger:
        records = dict(state.records)
        pending = [(due, n, records[key]) for due, n, key in state.pending]
        return cls(records, pending, state.next_order)

    def get(self, account: str, transfer_id: str) -> TransferRecord | None:
        return self.records.get((account, transfer_id))

    def add(self, record: TransferRecord) -> None:
        """Remember an answered transfer; a PENDING one waits for its ``settleTime``."""
        transfer = record.transfer
        self.records[(transfer.bot_id, transfer.transfer_id)] = record
        if transfer.status == "PENDING" and transfer.settle_time is not None:
            heapq.heappush(self._pending, (transfer.settle_time, self._next_order, record))
            self._next_order += 1
            self.next_due = self._pending[0][0]

    def due(self, clock: int) -> list[TransferRecord]:
        """The pending transfers whose settle time is at or before ``clock``, in settle-time order."""
        ready = []
        while self._pending and self._pending[0][0] <= clock:
            ready.append(heapq.heappop(self._pending)[2])
        self.next_due = self._pending[0][0] if self._pending else None
        return ready

    def pending(self) -> int:
        return len(self._pending)

    def counts(self) -> dict[str, int]:
        statuses = [r.transfer.status for r in self.records.values()]
        return {status.lower(): statuses.count(status) for status in ("PENDING", "SETTLED", "REJECTED")}
